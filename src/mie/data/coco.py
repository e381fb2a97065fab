"""MS-COCO Captions: the official ``captions_*.json`` annotations, or Karpathy's ``dataset_coco.json``.

Layouts read (``data_dir`` is the COCO root)::

    annotations/captions_train2017.json   {"images": [{"id": 9, "file_name": "000000000009.jpg"}, ...],
    annotations/captions_val2017.json      "annotations": [{"image_id": 9, "caption": "..."}, ...]}
    train2017/ val2017/                   the JPEGs (2014 names work the same way)

    dataset_coco.json                     Karpathy splits: images[].filepath (train2014 / val2014),
                                          filename, split (train / restval / val / test), sentences[].raw

    captions.json  images/                one captions file of your own (``data.path`` names the file, or
                                          a folder holding one ``captions*.json``)

With the official files, split ``train`` / ``val`` reads ``captions_{split}{year}.json`` (2017, then
2014) and its ``{split}{year}/`` folder; with Karpathy's file (used when present) the splits are
``train`` (with ``restval``) / ``val`` / ``test``. A single captions file carries no split: its images
are split train / val / test 80 / 10 / 10 by a hash of their file names (``mie.data.splits``), and
found in ``images_dir``, else the first of ``<split><year>/`` beside its folder, ``images/`` in or
beside its folder, its folder, its parent that holds them. Example::

    val = CocoCaptions("data/coco", "val", transform=build_image_transform(224, train=False))
    mine = CocoCaptions("data/mine/captions.json", "test")
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

from mie.data.config import DataConfig
from mie.data.image_text import ImageTextDataset, ImageTextRecord, usable_records
from mie.data.karpathy import read_json_annotation, read_karpathy_json
from mie.data.registry import check_format_options, max_samples_for, register_dataset_format
from mie.data.splits import describe, hash_split, in_split, warn_hash_split
from mie.data.transforms import DEFAULT_MAX_IMAGE_PIXELS
from mie.errors import ConfigError, DataError

YEARS = ("2017", "2014")
KARPATHY_FILE = "dataset_coco.json"
COCO_LAYOUT = (
    "a COCO root with annotations/captions_<split><year>.json and an image folder <split><year>/ "
    "(e.g. annotations/captions_val2017.json + val2017/), or Karpathy's dataset_coco.json beside "
    "train2014/ and val2014/"
)
OFFICIAL_NAME = re.compile(r"captions_([a-z]+)(\d{4})\.json")
COCO_FIX = "use the COCO captions JSON as published (images[].id / file_name, annotations[].image_id / caption)"


def read_coco_captions(annotation: Path, images_dir: Path) -> list[ImageTextRecord]:
    """One record per image of a COCO ``captions_*.json``, its captions in annotation order.

    Every way the file can be wrong (bytes, JSON, types of ``images`` / ``annotations`` and their
    fields) is a DataError naming the file and the entry.
    """
    data = read_json_annotation(annotation, COCO_FIX)
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise DataError(f"expected COCO captions JSON with 'images' and 'annotations'; the layout is "
                        f"{COCO_LAYOUT}", where=annotation, fix=COCO_FIX)
    for key in ("images", "annotations"):
        if not isinstance(data[key], list) or not all(isinstance(item, dict) for item in data[key]):
            raise DataError(f"'{key}' must be a list of objects, got {type(data[key]).__name__}", where=annotation,
                            fix=COCO_FIX)
    captions: dict[int | str, list[str]] = {}
    for i, ann in enumerate(data["annotations"]):
        caption = ann.get("caption") or ""
        if not isinstance(caption, str):
            raise DataError(f"annotations[{i}].caption must be a string, got {caption!r:.60}", where=annotation,
                            fix=COCO_FIX)
        captions.setdefault(_image_id(annotation, f"annotations[{i}].image_id", ann.get("image_id")),
                            []).append(caption)
    records = []
    for i, image in enumerate(data["images"]):
        image_id = _image_id(annotation, f"images[{i}].id", image.get("id"))
        file_name = image.get("file_name")
        if not isinstance(file_name, str) or not file_name:
            raise DataError(f"images[{i}].file_name must be a non-empty string, got {file_name!r:.60}",
                            where=annotation, fix=COCO_FIX)
        records.append(ImageTextRecord(images_dir / file_name, captions.get(image_id, []), image_id=str(image_id)))
    return records


def _image_id(annotation: Path, field: str, value: object) -> int | str:
    """An image id as COCO writes it (an int, sometimes a string); anything else is a DataError."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise DataError(f"{field} must be an integer or a string, got {value!r:.60}", where=annotation, fix=COCO_FIX)
    return value


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


def single_captions_file(folder: Path) -> Path | None:
    """The one ``captions*.json`` directly in ``folder`` (a folder of your own data), or None."""
    found = sorted(folder.glob("captions*.json")) if folder.is_dir() else []
    return found[0] if len(found) == 1 and found[0].is_file() else None


def find_image_root(annotation: Path, file_names: list[str]) -> Path:
    """The folder that holds the images of a lone captions file: the first candidate (``<split><year>/``
    beside its folder, ``images/`` in or beside it, its folder, its parent) holding one of ``file_names``."""
    folder = annotation.parent
    official = OFFICIAL_NAME.fullmatch(annotation.name)  # captions_train2017.json -> train2017/
    named = [folder.parent / "".join(official.groups()), folder / "".join(official.groups())] if official else []
    candidates = list(dict.fromkeys([*named, folder / "images", folder.parent / "images", folder, folder.parent]))
    probe = file_names[:5]
    for candidate in candidates:
        if not probe or any((candidate / name).is_file() for name in probe):
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise DataError(f"none of its first images ({', '.join(probe)}) is in {looked}", where=annotation,
                    fix="set data.format_options.images_dir to the folder that holds them")


def read_captions_file(annotation: Path, split: str | None, images_dir: Path | None = None) -> list[ImageTextRecord]:
    """Records of ``split`` from one captions file given as ``data.path``: Karpathy's ``dataset_coco.json`` by
    its splits, any other COCO captions file by a hash of each image's file name (``None`` / ``all``: every image)."""
    if annotation.name == KARPATHY_FILE:
        return read_karpathy_json(annotation, split or "all", images_dir or annotation.parent)
    records = read_coco_captions(annotation, Path())  # paths relative to the image root found below
    root = images_dir or find_image_root(annotation, [str(r.path) for r in records])
    if split not in (None, "all"):
        warn_hash_split(annotation, "is one captions file with no splits",
                        "point data.path at a COCO root (annotations/captions_<split><year>.json) to choose")
    kept = []
    for record in records:
        name = str(record.path)
        if in_split(name, split):
            record.path, record.split = root / record.path, hash_split(name)
            kept.append(record)
    return kept


class CocoCaptions(ImageTextDataset):
    """COCO Captions for ``split``: one record per image with its (usually 5) captions.

    ``data_dir`` is a COCO root, or one captions file (or a folder holding one ``captions*.json``),
    whose images are split by a hash of their names (``read_captions_file``). ``annotation`` /
    ``images_dir`` point at an annotation file and image folder elsewhere. Blank
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
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    ) -> None:
        annotation_path, records, note = _read_records(Path(data_dir), split, annotation, images_dir)
        parse_skips: Counter[str] = Counter()
        records = usable_records(records, annotation_path, f"no images with captions for split {split!r}{note}",
                                 max_samples, parse_skips)
        super().__init__(records, transform=transform, cache_images=cache_images, max_image_pixels=max_image_pixels)
        self.skipped.update(parse_skips)
        self.annotation_path = annotation_path
        self.split = split


def _read_records(data_dir: Path, split: str, annotation: str | os.PathLike[str] | None,
                  images_dir: str | os.PathLike[str] | None) -> tuple[Path, list[ImageTextRecord], str]:
    """(annotation file, records of ``split``, a note for an empty split) of whatever ``data_dir`` holds."""
    single = data_dir if data_dir.is_file() else None
    if single is None and annotation is None and not (data_dir / KARPATHY_FILE).is_file() \
            and not (data_dir / "annotations").is_dir():
        single = single_captions_file(data_dir)
    if single is not None:
        if annotation is not None:
            raise ConfigError(f"data.path {data_dir} is already an annotation file",
                              where="data.format_options.annotation",
                              fix="drop the annotation option, or point data.path at the COCO root")
        hashed = "" if single.name == KARPATHY_FILE else f" ({single.name} is split {describe()} by a hash of the image names)"
        return single, read_captions_file(single, split, Path(images_dir) if images_dir else None), hashed
    if not data_dir.is_dir():
        raise FileNotFoundError(f"COCO folder or captions file {data_dir} does not exist; expected {COCO_LAYOUT}")
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
        return annotation_path, read_karpathy_json(annotation_path, split, image_root), ""
    return annotation_path, read_coco_captions(annotation_path, image_root), ""


@register_dataset_format("coco")
def build_coco(config: DataConfig, split: str, transform: Callable | None = None,
               cache_images: bool = False) -> CocoCaptions:
    """COCO Captions at ``config.path``. Options: ``annotation`` and ``images_dir`` (override the layout)."""
    options = check_format_options(config, ("annotation", "images_dir"))
    return CocoCaptions(config.path, split, transform=transform, cache_images=cache_images,
                        max_samples=max_samples_for(config, split), annotation=options.get("annotation"),
                        images_dir=options.get("images_dir"), max_image_pixels=config.max_image_pixels)
