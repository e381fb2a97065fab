"""Flickr30k / Flickr8k as distributed: the Karpathy split JSON or the original caption files.

Layouts read (``data_dir`` is the folder holding them; the images folder is found by its usual name)::

    dataset_flickr30k.json        Karpathy: {"images": [{"filename": "1000092795.jpg", "split": "train",
                                              "sentences": [{"raw": "Two young guys ..."}, ...]}, ...]}
    results_20130124.token        original Flickr30k: ``1000092795.jpg#0<TAB>Two young guys ...``
    Flickr8k.token.txt            original Flickr8k, same line format
    results.csv                   Kaggle Flickr30k: ``image_name| comment_number| comment``
    flickr30k-images/ | Flicker8k_Dataset/ | Images/ | images/ | flickr30k_images/   the JPEGs

Splits are Karpathy's ``train`` / ``val`` / ``test`` (``restval`` is folded into ``train``, as usual).
The original caption files carry no split: Flickr8k's ``Flickr_8k.{train,dev,test}Images.txt`` lists
are used when present, else a stable hash of the file name puts 90% / 5% / 5% of the images in
train / val / test; ``all`` selects every image. Example::

    train = FlickrDataset("data/flickr30k", "train", transform=build_image_transform(224, train=True))
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

from mie.data.config import DataConfig
from mie.data.image_text import ImageTextDataset, ImageTextRecord, SplitNotFoundError, usable_records
from mie.data.karpathy import read_karpathy_json
from mie.data.registry import check_format_options, max_samples_for, register_dataset_format
from mie.data.splits import hash_split, warn_hash_split
from mie.data.tabular import read_csv_rows
from mie.data.transforms import DEFAULT_MAX_IMAGE_PIXELS
from mie.errors import DataError
from mie.io.cache import read_text_lines

KARPATHY_FILES = ("dataset_flickr30k.json", "dataset_flickr8k.json")
TOKEN_FILES = ("results_20130124.token", "Flickr8k.token.txt", "results.token")
CSV_FILES = ("results.csv",)
IMAGE_DIRS = ("flickr30k-images", "Flicker8k_Dataset", "Flickr8k_Dataset", "flickr30k_images", "Images", "images")
FLICKR8K_SPLIT_FILES = {"train": "Flickr_8k.trainImages.txt", "val": "Flickr_8k.devImages.txt",
                        "test": "Flickr_8k.testImages.txt"}
SPLITS = ("train", "val", "test", "all")
HASH_PERCENTS = (90, 5, 5)  # train / val / test of the original caption files (mie.data.splits)
FLICKR_LAYOUT = (
    "a folder with an annotation file (dataset_flickr30k.json / dataset_flickr8k.json from Karpathy's "
    "splits, or the original results_20130124.token / Flickr8k.token.txt / results.csv) and an images "
    "folder (flickr30k-images/, Flicker8k_Dataset/, Images/ or images/)"
)


def find_images_dir(data_dir: Path, names: tuple[str, ...] = IMAGE_DIRS, layout: str = FLICKR_LAYOUT) -> Path:
    """The first existing images folder among ``names`` in ``data_dir`` (Kaggle's nested copy included)."""
    for name in names:
        candidate = data_dir / name
        if candidate.is_dir():
            nested = candidate / name  # the Kaggle archive unpacks to flickr30k_images/flickr30k_images/
            return nested if nested.is_dir() else candidate
    raise FileNotFoundError(f"no images folder ({', '.join(names)}) in {data_dir}; expected {layout}")


def read_token_file(path: Path) -> dict[str, list[str]]:
    """``name.jpg#k<TAB>caption`` lines -> image name -> captions in file order (``#k`` is dropped)."""
    captions: dict[str, list[str]] = {}
    with read_text_lines(path) as lines:
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            key, sep, caption = line.rstrip("\n").partition("\t")
            if not sep:
                raise DataError(f"expected 'name.jpg#k<TAB>caption', got {line.strip()[:60]!r}",
                                where=f"{path}:{lineno}", fix="separate the image name and caption by a tab")
            captions.setdefault(key.split("#", 1)[0], []).append(caption)
    return captions


def read_results_csv(path: Path, malformed: Counter[str]) -> dict[str, list[str]]:
    """Kaggle's ``image_name| comment_number| comment`` file -> image name -> captions.

    A row without three ``|`` fields (the public file has a few) is counted in ``malformed``.
    """
    captions: dict[str, list[str]] = {}
    with read_csv_rows(path, delimiter="|") as rows:
        header = [h.strip() for h in next(rows, [])]
        if header[:1] != ["image_name"]:
            raise DataError(f"expected the header 'image_name| comment_number| comment', got {header[:5]}",
                            where=path, fix="use Kaggle's results.csv as published")
        for row in rows:
            if len(row) < 3:
                malformed["malformed line"] += 1
                continue
            captions.setdefault(row[0].strip(), []).append("|".join(row[2:]).strip())
    return captions


def _split_lists(data_dir: Path) -> dict[str, str] | None:
    """Image name -> split from Flickr8k's split lists, or None when they are absent."""
    if not all((data_dir / name).is_file() for name in FLICKR8K_SPLIT_FILES.values()):
        return None
    assignment = {}
    for split, name in FLICKR8K_SPLIT_FILES.items():
        with read_text_lines(data_dir / name) as lines:
            for line in lines:
                if line.strip():
                    assignment[line.strip()] = split
    return assignment


def _original_records(data_dir: Path, annotation: Path, split: str, images_dir: Path,
                      skipped: Counter[str]) -> list[ImageTextRecord]:
    by_image = (read_results_csv(annotation, skipped) if annotation.suffix == ".csv"
                else read_token_file(annotation))
    lists = _split_lists(data_dir)
    if lists is None and split != "all":
        warn_hash_split(annotation, "carries no splits (and there are no Flickr_8k.*Images.txt lists)",
                        "use Karpathy's dataset_flickr30k.json for the usual splits", HASH_PERCENTS)
    records = []
    for name, captions in by_image.items():
        image_split = lists.get(name) if lists is not None else hash_split(name, HASH_PERCENTS)
        if split == "all" or image_split == split:
            records.append(ImageTextRecord(images_dir / name, captions, image_id=name, split=image_split))
    return records


def find_flickr_annotation(data_dir: Path) -> Path:
    """The annotation file of a Flickr folder: Karpathy JSON first, then the original caption files."""
    for name in KARPATHY_FILES + TOKEN_FILES + CSV_FILES:
        if (data_dir / name).is_file():
            return data_dir / name
    raise FileNotFoundError(f"no Flickr annotation file in {data_dir}; expected {FLICKR_LAYOUT}")


class FlickrDataset(ImageTextDataset):
    """Flickr30k / Flickr8k image–caption pairs (one record per image, its 5 captions) for ``split``.

    ``annotation`` / ``images_dir`` override the file and folder found in ``data_dir``.
    ``lazy_load=False`` decodes every image once when opened (cached in memory), so broken files are
    found and counted up front; the default decodes on first access. Blank captions, and images
    with none left, are skipped and counted in ``skipped`` (see ``skip_report``).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        split: str = "train",
        transform: Callable[[Image.Image], torch.Tensor] | None = None,
        lazy_load: bool = True,
        cache_images: bool = False,
        max_samples: int = 0,
        annotation: str | os.PathLike[str] | None = None,
        images_dir: str | os.PathLike[str] | None = None,
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    ) -> None:
        data_dir = Path(data_dir)
        if not data_dir.is_dir():
            raise FileNotFoundError(f"Flickr folder {data_dir} does not exist; expected {FLICKR_LAYOUT}")
        if split not in SPLITS:
            raise SplitNotFoundError(f"unknown Flickr split {split!r}", where=data_dir,
                                     fix=f"choose one of {', '.join(SPLITS)}")
        annotation_path = Path(annotation) if annotation else find_flickr_annotation(data_dir)
        if not annotation_path.is_file():
            raise FileNotFoundError(f"Flickr annotation file {annotation_path} not found; expected {FLICKR_LAYOUT}")
        image_root = Path(images_dir) if images_dir else find_images_dir(data_dir)
        if not image_root.is_dir():
            raise FileNotFoundError(f"Flickr images folder {image_root} not found; expected {FLICKR_LAYOUT}")
        parse_skips: Counter[str] = Counter()
        if annotation_path.suffix == ".json":
            records = read_karpathy_json(annotation_path, split, image_root)
        else:
            records = _original_records(data_dir, annotation_path, split, image_root, parse_skips)
        records = usable_records(records, annotation_path, f"no images with captions in split {split!r}",
                                 max_samples, parse_skips)
        super().__init__(records, transform=transform, cache_images=cache_images or not lazy_load,
                         max_image_pixels=max_image_pixels)
        self.skipped.update(parse_skips)
        self.annotation_path = annotation_path
        self.split = split
        if not lazy_load:
            for index in range(len(self.records)):
                self._decode(index)


@register_dataset_format("flickr")
def build_flickr(config: DataConfig, split: str, transform: Callable | None = None,
                 cache_images: bool = False) -> FlickrDataset:
    """Flickr30k / Flickr8k at ``config.path``. Options: ``annotation``, ``images_dir``, ``lazy_load``."""
    options = check_format_options(config, ("annotation", "images_dir", "lazy_load"))
    return FlickrDataset(config.path, split, transform=transform, lazy_load=bool(options.get("lazy_load", True)),
                         cache_images=cache_images, max_samples=max_samples_for(config, split),
                         annotation=options.get("annotation"), images_dir=options.get("images_dir"),
                         max_image_pixels=config.max_image_pixels)
