"""``build_dataset(config.data, "train")``: the split of whatever dataset format ``config.format`` names.

Importing this module imports every format module of the package, each of which registers its
builder in ``mie.data.registry``; so ``build_dataset`` and ``DATASET_FORMATS`` taken from here
always know every format.

``format: auto`` (the default) reads the files at ``config.path`` to tell their format and never
writes there (``resolve_auto_format``); only ``format: synthetic`` generates data, into an empty folder
or over its own earlier output.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

# Imported for their registrations; each module defines its dataset and its builder side by side.
from mie.data import coco, flickr, jsonl, synthetic, tabular, webdataset  # noqa: F401
from mie.data.config import DataConfig
from mie.data.registry import DATASET_FORMATS
from mie.data.shapes_files import MANIFEST, MARKER, read_marker
from mie.errors import ConfigError, DataError

__all__ = ["AUTO", "DATASET_FORMATS", "build_dataset", "detect_data_format", "resolve_auto_format"]

logger = logging.getLogger(__name__)

AUTO = "auto"
_READ_FORMATS = "jsonl, csv, flickr, coco, webdataset"
_LOOKED_FOR = (f"looked for {MANIFEST} or one *.jsonl, <split>.csv / .tsv or one table, "
               "dataset_flickr30k.json / results_20130124.token, annotations/captions_*.json, dataset_coco.json or "
               "one captions*.json, "
               "*.tar shards")


def build_dataset(config: DataConfig, split: str, transform: Callable | None = None, **kw: Any) -> Dataset:
    """The ``split`` of the dataset described by ``config``; extra ``kw`` go to the format's builder.

    ``format: auto`` is first resolved from the files at ``config.path`` (see ``resolve_auto_format``).
    ``max_train_samples`` is applied by the builders to ``config.train_split`` only.
    """
    if config.format == AUTO:
        config = resolve_auto_format(config)
    return DATASET_FORMATS.lookup(config.format, also=[AUTO])(config, split, transform, **kw)


def resolve_auto_format(config: DataConfig) -> DataConfig:
    """A copy of ``config`` with the format (and, for a folder of one manifest or table, that file as
    ``path``) detected from what ``config.path`` holds; reads only. A ``ConfigError`` when nothing fits."""
    fmt, path = detect_data_format(config.path, splits=(config.train_split, config.val_split, *config.test_splits))
    logger.info("data.format auto: %s reads as %s", path, fmt)
    return dataclasses.replace(config, format=fmt, path=path)


def detect_data_format(path: str, splits: tuple[str, ...] = ("train", "val", "test")) -> tuple[str, str]:
    """``(format, path to read)`` of the dataset at ``path``, from its names alone; never writes.

    A shapes folder (``dataset.json`` + ``captions.jsonl``) reads as ``jsonl``, as it is, without
    regenerating. ``splits`` are the table names that make a folder of ``<split>.csv`` a CSV dataset.
    """
    if "{" in path and ".tar" in path:
        return "webdataset", path  # a brace pattern of shards, e.g. data/{split}-{000..009}.tar
    target = Path(path)
    if not os.path.lexists(target):
        raise _cannot_tell(path, "it does not exist")
    if target.is_file():
        if target.name in flickr.KARPATHY_FILES:
            return "flickr", str(target.parent)
        by_suffix = {".jsonl": "jsonl", ".csv": "csv", ".tsv": "csv", ".tar": "webdataset", ".json": "coco"}
        if target.suffix.lower() in by_suffix:
            return by_suffix[target.suffix.lower()], path
        raise _cannot_tell(path, f"a file with extension {target.suffix or '(none)'!r}")
    names = sorted(p.name for p in target.iterdir())
    if not names:
        raise _cannot_tell(path, "the folder is empty")
    if MARKER in names:
        _refuse_unfinished_generation(target)
    return _detect_in_folder(target, names, splits)


def _detect_in_folder(target: Path, names: list[str], splits: tuple[str, ...]) -> tuple[str, str]:
    """The format of a folder whose entries are ``names`` (sorted)."""
    path = str(target)
    if MANIFEST in names:
        return "jsonl", path
    if coco.KARPATHY_FILE in names or any((target / "annotations").glob("captions_*.json")):
        return "coco", path
    if set(names) & set(flickr.KARPATHY_FILES + flickr.TOKEN_FILES + flickr.CSV_FILES):
        return "flickr", path
    captions_file = coco.single_captions_file(target)
    if captions_file is not None:
        return "coco", str(captions_file)
    manifests = [n for n in names if n.endswith(".jsonl") and (target / n).is_file()]
    tables = [n for n in names if n.lower().endswith(tabular.TABLE_SUFFIXES) and (target / n).is_file()]
    if len(manifests) == 1:
        return "jsonl", str(target / manifests[0])
    if any(Path(n).stem in splits for n in tables):
        return "csv", path
    if len(tables) == 1:
        return "csv", str(target / tables[0])
    if any(n.endswith(".tar") for n in names) or any(target.glob("*/*.tar")):
        return "webdataset", path
    if len(manifests) > 1 or len(tables) > 1:
        several = manifests if len(manifests) > 1 else tables
        raise _cannot_tell(path, f"several manifests or tables: {', '.join(several[:4])}; point data.path at one")
    shown = ", ".join(n + ("/" if (target / n).is_dir() else "") for n in names[:5])
    raise _cannot_tell(path, f"found {shown}{' ...' if len(names) > 5 else ''}; {_LOOKED_FOR}")


def _refuse_unfinished_generation(target: Path) -> None:
    """A shapes folder whose generation never finished is not read as data (a foreign marker is ignored)."""
    try:
        marker = read_marker(target)
    except DataError:
        return  # someone else's dataset.json: the folder is the user's data, judged by its other files
    if marker is not None and marker.get("complete") is False:
        raise ConfigError(f"data.path '{target}' holds a shapes generation that did not finish",
                          where="data.format", fix="set data.format to synthetic to generate it again")


def _cannot_tell(path: str, found: str) -> ConfigError:
    """The one-line ``ConfigError`` of an undetectable ``data.path``."""
    return ConfigError(f"cannot tell the format of '{path}' ({found})", where="data.format",
                      fix=f"set data.format to one of {_READ_FORMATS} (or synthetic to generate the shapes demo "
                          "data there)")
