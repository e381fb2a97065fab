"""Karpathy's split files (``dataset_flickr30k.json``, ``dataset_flickr8k.json``, ``dataset_coco.json``).

The de-facto train / val / test split of Flickr and COCO retrieval papers (Karpathy & Fei-Fei, 2015)::

    {"images": [{"filepath": "val2014", "filename": "...jpg", "split": "train" | "restval" | "val" | "test",
                 "sentences": [{"raw": "A man ...", "tokens": [...]}, ...]}, ...], "dataset": "coco"}

``filepath`` exists only for COCO. ``restval`` (COCO's extra training images) is read as ``train``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mie.data.image_text import ImageTextRecord
from mie.errors import DataError, storage_error
from mie.io.cache import decode_utf8, parse_json

KARPATHY_FIX = "use Karpathy's dataset_*.json as published (images[].filename, split, sentences[].raw)"


def read_json_annotation(path: Path, fix: str) -> Any:
    """The parsed JSON of an annotation file; bad bytes, bad JSON and deep nesting are DataErrors."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise storage_error(err, path) from err
    return parse_json(decode_utf8(raw, path), path, fix)


def _entry_field(path: Path, i: int, entry: dict[str, Any], key: str, optional: bool = False) -> str | None:
    """``entry[key]`` when it is a string (None when absent and ``optional``); else a DataError."""
    value = entry.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise DataError(f"images[{i}].{key} must be a non-empty string, got {value!r:.60}", where=path,
                        fix=KARPATHY_FIX)
    return value


def _sentences(path: Path, i: int, entry: dict[str, Any]) -> list[str]:
    """The ``raw`` captions of ``images[i]``; wrong types are DataErrors naming the entry."""
    sentences = entry.get("sentences", [])
    if not isinstance(sentences, list) or not all(isinstance(s, dict) for s in sentences):
        raise DataError(f"images[{i}].sentences must be a list of objects, got {sentences!r:.60}", where=path,
                        fix=KARPATHY_FIX)
    raws = [s.get("raw", "") for s in sentences]
    if not all(isinstance(r, str) for r in raws):
        raise DataError(f"images[{i}].sentences[].raw must be strings, got {raws!r:.60}", where=path,
                        fix=KARPATHY_FIX)
    return raws


def read_karpathy_json(path: Path, split: str, images_dir: Path) -> list[ImageTextRecord]:
    """Records of ``split`` from a Karpathy ``dataset_*.json`` (Flickr or COCO; ``restval`` counts as train)."""
    data = read_json_annotation(path, KARPATHY_FIX)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f"expected a Karpathy split file with an 'images' list; got "
                        f"{sorted(data)[:10] if isinstance(data, dict) else type(data).__name__}", where=path,
                        fix=KARPATHY_FIX)
    wanted = {"train", "restval"} if split == "train" else {split}
    records = []
    for i, entry in enumerate(data["images"]):
        if not isinstance(entry, dict) or "filename" not in entry or "split" not in entry:
            raise DataError(f"images[{i}] lacks 'filename' or 'split'; expected Karpathy's format", where=path,
                            fix=KARPATHY_FIX)
        filename = _entry_field(path, i, entry, "filename")
        entry_split = _entry_field(path, i, entry, "split")
        if split != "all" and entry_split not in wanted:
            continue
        filepath = _entry_field(path, i, entry, "filepath", optional=True)
        folder = images_dir / filepath if filepath else images_dir
        records.append(ImageTextRecord(folder / filename, _sentences(path, i, entry), image_id=filename,
                                       split=entry_split))
    return records
