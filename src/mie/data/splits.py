"""Held-out splits for data that names none: a stable hash of each image's name picks its split.

A CSV table without a split column, a single COCO captions file and Flickr's original caption files
carry no train / val / test assignment. Rather than serve one set of images as every split (and
report test scores on training data), each image goes to the split its name hashes to: the same
image lands in the same split on every machine and every run, whatever the order of the rows::

    hash_split("images/0001.jpg")                # 'train' (80% of names), 'val' (10%) or 'test' (10%)
    hash_split("1000092795.jpg", (90, 5, 5))     # Flickr's original files: 90 / 5 / 5

``all`` selects every image (``in_split``).
"""

from __future__ import annotations

import hashlib
import logging
import os

__all__ = ["ALL", "DEFAULT_PERCENTS", "HASH_SPLITS", "describe", "hash_split", "in_split", "warn_hash_split"]

logger = logging.getLogger(__name__)

HASH_SPLITS = ("train", "val", "test")
DEFAULT_PERCENTS = (80, 10, 10)  # train / val / test, in percent of the images
ALL = "all"
_warned: set[tuple[str, str]] = set()


def hash_split(name: str, percents: tuple[int, int, int] = DEFAULT_PERCENTS) -> str:
    """The split (``train`` / ``val`` / ``test``) of an image, from a SHA-256 of its ``name``."""
    bucket = int(hashlib.sha256(name.encode("utf-8")).hexdigest()[:8], 16) % 100
    train, val, _ = percents
    return "train" if bucket < train else "val" if bucket < train + val else "test"


def in_split(name: str, split: str | None, percents: tuple[int, int, int] = DEFAULT_PERCENTS) -> bool:
    """Whether image ``name`` belongs to ``split`` by its hash (``None`` and ``all`` take every image)."""
    return split is None or split == ALL or hash_split(name, percents) == split


def describe(percents: tuple[int, int, int] = DEFAULT_PERCENTS) -> str:
    """``"train/val/test 80/10/10"``: the rule in words, for logs and errors."""
    return f"{'/'.join(HASH_SPLITS)} {'/'.join(str(p) for p in percents)}"


def warn_hash_split(source: str | os.PathLike[str], why: str, fix: str,
                    percents: tuple[int, int, int] = DEFAULT_PERCENTS) -> None:
    """Log, once per ``source`` and reason, that its images are split by a hash of their names.

    ``warn_hash_split("data.csv", "has no 'split' column", "add a split column to choose")`` logs
    ``data.csv has no 'split' column: split by a hash of the image name into train/val/test 80/10/10;
    add a split column to choose``.
    """
    key = (os.fspath(source), why)
    if key in _warned:
        return
    _warned.add(key)
    logger.warning("%s %s: split by a hash of the image name into %s; %s", key[0], why, describe(percents), fix)
