"""The ``jsonl`` format: a ``captions.jsonl`` manifest read into records and a dataset.

The manifest format (``captions.jsonl``) has one JSON object per image::

    {"image": "images/train/0001.png", "captions": ["a red circle", ...], "split": "train",
     "id": "train_0001", "attributes": {...}}

``image`` is relative to the manifest's folder (or absolute); ``id``, ``split`` and ``attributes``
are optional.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

from mie.data.config import DataConfig
from mie.data.image_text import ImageTextDataset, ImageTextRecord, SplitNotFoundError
from mie.data.registry import check_format_options, max_samples_for, register_dataset_format
from mie.data.transforms import DEFAULT_MAX_IMAGE_PIXELS
from mie.errors import DataError
from mie.io.cache import read_jsonl

MANIFEST_LAYOUT = (
    "a JSON-lines file with one object per image, e.g. "
    '{"image": "images/train/0001.png", "captions": ["a red circle", "..."], "split": "train"}; '
    "image paths are relative to the manifest's folder"
)
MANIFEST_FIX = f"write one JSON object per line: {MANIFEST_LAYOUT}"


def _parse_record(obj: Any, where: str, root: Path) -> ImageTextRecord:
    """Validate one manifest object and turn it into a record; ``where`` is "file:line" for errors."""
    if not isinstance(obj, dict):
        raise DataError(f"expected a JSON object, got {type(obj).__name__}", where=where, fix=MANIFEST_FIX)
    missing = [key for key in ("image", "captions") if key not in obj]
    if missing:
        raise DataError(f"missing key(s) {', '.join(missing)}", where=where, fix=MANIFEST_FIX)
    captions = obj["captions"]
    if not isinstance(captions, list) or not captions or not all(isinstance(c, str) for c in captions):
        raise DataError(f"'captions' must be a non-empty list of strings, got {captions!r:.60}", where=where,
                        fix=MANIFEST_FIX)
    if not isinstance(obj["image"], str) or not obj["image"]:
        raise DataError(f"'image' must be a non-empty path string, got {obj['image']!r:.60}", where=where,
                        fix=MANIFEST_FIX)
    for key, kind in (("split", str), ("attributes", dict)):
        if obj.get(key) is not None and not isinstance(obj[key], kind):
            raise DataError(f"'{key}' must be a {'string' if kind is str else 'JSON object'}, got "
                            f"{obj[key]!r:.60}", where=where, fix=MANIFEST_FIX)
    path = Path(obj["image"])
    image_id = obj.get("id", obj["image"])
    return ImageTextRecord(
        path=path if path.is_absolute() else root / path,
        captions=list(captions),
        image_id=image_id if isinstance(image_id, str) else str(image_id)[:200],
        split=obj.get("split"),
        attributes=obj.get("attributes"),
    )


def read_manifest(
    manifest_path: str | os.PathLike[str],
    split: str | None = None,
    root: str | os.PathLike[str] | None = None,
) -> list[ImageTextRecord]:
    """Read a ``captions.jsonl`` manifest into records, keeping only ``split`` when given."""
    manifest = Path(manifest_path)
    if not manifest.is_file():
        raise FileNotFoundError(f"image-text manifest {manifest} not found; expected {MANIFEST_LAYOUT}")
    base = Path(root) if root is not None else manifest.parent
    records: list[ImageTextRecord] = []
    for where, obj in read_jsonl(manifest, MANIFEST_FIX):
        record = _parse_record(obj, where, base)
        if split is not None and record.split is None:
            raise DataError(f"no 'split' key, so split {split!r} cannot be selected", where=where,
                            fix="give every line a 'split', or read the manifest without one")
        if split is None or record.split == split:
            records.append(record)
    if split is not None and not records:
        raise SplitNotFoundError(f"no records in split {split!r}; splits present: {manifest_splits(manifest)}",
                                 where=manifest)
    return records


def manifest_splits(manifest_path: str | os.PathLike[str]) -> list[str]:
    """The distinct ``split`` values of a manifest, sorted; a line that is not an object is a DataError."""
    splits = set()
    for where, obj in read_jsonl(Path(manifest_path), MANIFEST_FIX):
        if not isinstance(obj, dict):
            raise DataError(f"expected a JSON object, got {type(obj).__name__}", where=where, fix=MANIFEST_FIX)
        splits.add(str(obj.get("split"))[:200])
    return sorted(splits)


class JsonlImageText(ImageTextDataset):
    """An ``ImageTextDataset`` read from a ``captions.jsonl`` manifest (optionally one split of it).

    ``root`` is the folder image paths are relative to (default: the manifest's folder);
    ``max_samples > 0`` keeps only the first that many records.
    """

    def __init__(
        self,
        manifest_path: str | os.PathLike[str],
        split: str | None = None,
        transform: Callable[[Image.Image], torch.Tensor] | None = None,
        root: str | os.PathLike[str] | None = None,
        cache_images: bool = False,
        max_samples: int = 0,
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    ) -> None:
        records = read_manifest(manifest_path, split=split, root=root)
        if max_samples > 0:
            records = records[:max_samples]
        super().__init__(records, transform=transform, cache_images=cache_images, max_image_pixels=max_image_pixels)
        self.manifest_path = Path(manifest_path)
        self.split = split


@register_dataset_format("jsonl")
def build_jsonl(
    config: DataConfig, split: str, transform: Callable | None = None, cache_images: bool = False
) -> Dataset:
    """A ``captions.jsonl`` manifest; ``config.path`` is the manifest file or the folder holding it.

    Options: ``manifest`` (file name inside a folder ``path``, default ``captions.jsonl``) and
    ``root`` (folder the image paths are relative to, default the manifest's folder).
    """
    options = check_format_options(config, ("manifest", "root"))
    path = Path(config.path)
    manifest = path / options.get("manifest", "captions.jsonl") if path.is_dir() else path
    return JsonlImageText(
        manifest,
        split=split,
        transform=transform,
        root=options.get("root"),
        cache_images=cache_images,
        max_samples=max_samples_for(config, split),
        max_image_pixels=config.max_image_pixels,
    )
