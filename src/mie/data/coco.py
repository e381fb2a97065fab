"""MS-COCO Captions: the official ``captions_*.json`` annotations, or Karpathy's ``dataset_coco.json``.

Layouts read (``data_dir`` is the COCO root)::

    annotations/captions_train2017.json   {"images": [{"id": 9, "file_name": "000000000009.jpg"}, ...],
    annotations/captions_val2017.json      "annotations": [{"image_id": 9, "caption": "..."}, ...]}
    train2017/ val2017/                   the JPEGs (2014 names work the same way)

    dataset_coco.json                     Karpathy splits: images[].filepath (train2014 / val2014),
                                          filename, split (train / restval / val / test), sentences[].raw

With the official files, split ``train`` / ``val`` reads ``captions_{split}{year}.json`` (2017, then
2014) and its ``{split}{year}/`` folder; with Karpathy's file (used when present) the splits are
``train`` (with ``restval``) / ``val`` / ``test``. Example::

    val = CocoCaptions("data/coco", "val", transform=build_image_transform(224, train=False))
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

from mie.data.config import DataConfig
from mie.data.image_text import ImageTextDataset, ImageTextRecord, usable_records
from mie.data.karpathy import read_karpathy_json
from mie.data.registry import check_format_options, max_samples_for, register_dataset_format

YEARS = ("2017", "2014")
KARPATHY_FILE = "dataset_coco.json"
COCO_LAYOUT = (
    "a COCO root with annotations/captions_<split><year>.json and an image folder <split><year>/ "
    "(e.g. annotations/captions_val2017.json + val2017/), or Karpathy's dataset_coco.json beside "
    "train2014/ and val2014/"
)


def read_coco_captions(annotation: Path, images_dir: Path) -> list[ImageTextRecord]:
    """One record per image of a COCO ``captions_*.json``, its captions in annotation order."""
    try:
        data = json.loads(annotation.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{annotation}: invalid JSON ({err.msg} at line {err.lineno})") from err
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise ValueError(f"{annotation}: expected COCO captions JSON with 'images' and 'annotations'; "
                         f"the layout is {COCO_LAYOUT}")
    captions: dict[int, list[str]] = {}
    for ann in data["annotations"]:
        captions.setdefault(ann["image_id"], []).append(ann.get("caption") or "")
    return [
        ImageTextRecord(images_dir / image["file_name"], captions.get(image["id"], []), image_id=str(image["id"]))
        for image in data["images"]
    ]


def _official_files(data_dir: Path, split: str) -> tuple[Path, Path]:
    """(annotation file, image folder) of ``split`` in the official layout, first year found."""
    for year in YEARS:
        annotation = data_dir / "annotations" / f"captions_{split}{year}.json"
        if annotation.is_file():
            images_dir = data_dir / f"{split}{year}"
            if not images_dir.is_dir():
                raise FileNotFoundError(f"COCO image folder {images_dir} not found (annotations are at "
                                        f"{annotation}); expected {COCO_LAYOUT}")
            return annotation, images_dir
    tried = ", ".join(f"annotations/captions_{split}{y}.json" for y in YEARS)
    raise FileNotFoundError(f"no COCO annotation file for split {split!r} in {data_dir} (tried {tried}); "
                            f"expected {COCO_LAYOUT}")


class CocoCaptions(ImageTextDataset):
    """COCO Captions for ``split``: one record per image with its (usually 5) captions.

    ``annotation`` / ``images_dir`` point at an annotation file and image folder elsewhere. Blank
    captions, and images left without any, are skipped and counted in ``skipped``.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        split: str = "train",
        transform: Callable[[Image.Image], torch.Tensor] | None = None,
        cache_images: bool = False,
        max_samples: int = 0,
        annotation: str | os.PathLike[str] | None = None,
        images_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        data_dir = Path(data_dir)
        if not data_dir.is_dir():
            raise FileNotFoundError(f"COCO folder {data_dir} does not exist; expected {COCO_LAYOUT}")
        if annotation is None and (data_dir / KARPATHY_FILE).is_file():
            annotation_path, image_root = data_dir / KARPATHY_FILE, Path(images_dir or data_dir)
        elif annotation is None:
            annotation_path, image_root = _official_files(data_dir, split)
            image_root = Path(images_dir) if images_dir else image_root
        else:
            annotation_path, image_root = Path(annotation), Path(images_dir or data_dir)
        if not annotation_path.is_file():
            raise FileNotFoundError(f"COCO annotation file {annotation_path} not found; expected {COCO_LAYOUT}")
        if not image_root.is_dir():
            raise FileNotFoundError(f"COCO image folder {image_root} not found; expected {COCO_LAYOUT}")
        if annotation_path.name == KARPATHY_FILE:
            records = read_karpathy_json(annotation_path, split, image_root)
        else:
            records = read_coco_captions(annotation_path, image_root)
        parse_skips: Counter[str] = Counter()
        records = usable_records(records, annotation_path, f"no images with captions for split {split!r}",
                                 max_samples, parse_skips)
        super().__init__(records, transform=transform, cache_images=cache_images)
        self.skipped.update(parse_skips)
        self.annotation_path = annotation_path
        self.split = split


@register_dataset_format("coco")
def build_coco(config: DataConfig, split: str, transform: Callable | None = None,
               cache_images: bool = False) -> CocoCaptions:
    """COCO Captions at ``config.path``. Options: ``annotation`` and ``images_dir`` (override the layout)."""
    options = check_format_options(config, ("annotation", "images_dir"))
    return CocoCaptions(config.path, split, transform=transform, cache_images=cache_images,
                        max_samples=max_samples_for(config, split), annotation=options.get("annotation"),
                        images_dir=options.get("images_dir"))
