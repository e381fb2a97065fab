"""Karpathy's split files (``dataset_flickr30k.json``, ``dataset_flickr8k.json``, ``dataset_coco.json``).

The de-facto train / val / test split of Flickr and COCO retrieval papers (Karpathy & Fei-Fei, 2015)::

    {"images": [{"filepath": "val2014", "filename": "...jpg", "split": "train" | "restval" | "val" | "test",
                 "sentences": [{"raw": "A man ...", "tokens": [...]}, ...]}, ...], "dataset": "coco"}

``filepath`` exists only for COCO. ``restval`` (COCO's extra training images) is read as ``train``.
"""

from __future__ import annotations

import json
from pathlib import Path

from mie.data.image_text import ImageTextRecord


def read_karpathy_json(path: Path, split: str, images_dir: Path) -> list[ImageTextRecord]:
    """Records of ``split`` from a Karpathy ``dataset_*.json`` (Flickr or COCO; ``restval`` counts as train)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON ({err.msg} at line {err.lineno})") from err
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"{path}: expected a Karpathy split file with an 'images' list; got keys "
                         f"{sorted(data) if isinstance(data, dict) else type(data).__name__}")
    wanted = {"train", "restval"} if split == "train" else {split}
    records = []
    for i, entry in enumerate(data["images"]):
        if "filename" not in entry or "split" not in entry:
            raise ValueError(f"{path}: images[{i}] lacks 'filename' or 'split'; expected Karpathy's format")
        if split != "all" and entry["split"] not in wanted:
            continue
        folder = images_dir / entry["filepath"] if entry.get("filepath") else images_dir
        captions = [s.get("raw", "") for s in entry.get("sentences", [])]
        records.append(ImageTextRecord(folder / entry["filename"], captions, image_id=str(entry["filename"]),
                                       split=entry["split"]))
    return records
