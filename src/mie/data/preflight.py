"""Before any training: does the data hold every split the run will ask for, and how many images each.

``check_splits`` reads only manifests, tables, annotation files and shard names (it decodes no image
and generates nothing), so a run that cannot give a meaningful result stops in a second with one
line instead of after an epoch::

    counts = check_splits(config.data, [config.data.train_split, config.data.val_split, *config.data.test_splits])
    # {"train": 8000, "val": 500, "test": 1000}; -1 for a stream (webdataset) whose length is unknown

A split the data lacks is a ``ConfigError`` naming the config key that asked for it and the splits
the data has: ``data.test_splits: split 'test_heldout' is not in data/mine (it has train, val, test) —
set data.test_splits to splits your data has``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

from mie.data import coco, tabular
from mie.data.build import AUTO, build_dataset, resolve_auto_format
from mie.data.config import DataConfig
from mie.data.image_text import SplitNotFoundError
from mie.data.jsonl import manifest_splits
from mie.data.registry import max_samples_for
from mie.data.shapes_files import MANIFEST, SPLITS
from mie.data.splits import HASH_SPLITS
from mie.data.webdataset import expand_shards, split_shards
from mie.errors import ConfigError

__all__ = ["UNKNOWN", "check_splits", "data_splits"]

logger = logging.getLogger(__name__)

UNKNOWN = -1  # the sample count of a stream, known only by reading it whole


def check_splits(config: DataConfig, splits: Sequence[str]) -> dict[str, int]:
    """The number of images in each of ``splits`` (blank names are ignored), or a one-line error.

    Map-style formats count what ``build_dataset`` would hold (after ``max_train_samples`` and blank
    captions); ``webdataset`` checks that each split's shards exist and gives ``UNKNOWN`` (-1);
    ``synthetic`` takes the sizes from ``config.synthetic``, generated or not. A split the data does
    not have raises ``ConfigError`` (``data.train_split`` / ``data.val_split`` / ``data.test_splits``:
    the split, the splits the data has, the fix); a split that is there but unusable keeps the
    format's own ``DataError``. ``format: auto`` is resolved first, reading only.
    """
    if config.format == AUTO:
        config = resolve_auto_format(config)
    wanted = list(dict.fromkeys(s for s in splits if s))
    if config.format == "synthetic":
        return _synthetic_counts(config, wanted)
    if config.format == "flickr" and config.format_options.get("lazy_load") is False:
        config = dataclasses.replace(config, format_options={**config.format_options, "lazy_load": True})
    counts: dict[str, int] = {}
    for split in wanted:
        try:
            dataset = build_dataset(config, split)
        except (SplitNotFoundError, FileNotFoundError) as err:
            have = data_splits(config)
            if have is None or split in have:
                raise  # the split is there (or cannot be listed): the format's own error says what is wrong
            raise _missing(config, split, have) from err
        counts[split] = len(dataset) if hasattr(dataset, "__len__") else UNKNOWN
    if config.format == "webdataset":
        _warn_shared_shards(config, wanted)
    return counts


def data_splits(config: DataConfig) -> list[str] | None:
    """The split names the data at ``config.path`` has, reading names and annotation files only; None when
    they cannot be listed (one shard pattern serves every split)."""
    path = Path(config.path)
    options = config.format_options
    if config.format == "jsonl":
        manifest = path / options.get("manifest", MANIFEST) if path.is_dir() else path
        return [s for s in manifest_splits(manifest) if s != "None"] if manifest.is_file() else []
    if config.format == "csv":
        if path.is_dir():
            return sorted({p.stem for p in path.iterdir() if p.suffix.lower() in tabular.TABLE_SUFFIXES})
        if not path.is_file():
            return []
        return tabular.table_splits(path, options.get("split_column", "split"), options.get("separator"))
    if config.format == "coco":
        return _coco_splits(path)
    if config.format == "flickr":
        return list(HASH_SPLITS) if path.is_dir() else []
    if config.format == "webdataset":
        return _webdataset_splits(config)
    return None


def _coco_splits(path: Path) -> list[str]:
    """Splits of a COCO root (one per ``annotations/captions_<split><year>.json``, or Karpathy's) or file."""
    single = path if path.is_file() else coco.single_captions_file(path)
    if single is not None or (path / coco.KARPATHY_FILE).is_file():
        return list(HASH_SPLITS)  # Karpathy's file has train / val / test too
    found = [coco.OFFICIAL_NAME.fullmatch(p.name) for p in sorted(path.glob("annotations/captions_*.json"))]
    return sorted({m.group(1) for m in found if m})


def _webdataset_splits(config: DataConfig) -> list[str] | None:
    """Splits of shards: ``format_options.shards`` keys, ``<split>/*.tar`` folders or ``<split>-*.tar`` names."""
    shards = config.format_options.get("shards")
    if shards:
        return sorted(shards)
    if "{split}" in config.path:  # only the usual names can be tried; None lets the shard error speak
        return [s for s in (*HASH_SPLITS, "test_heldout")
                if any(Path(p).is_file() for p in expand_shards(config.path.replace("{split}", s)))] or None
    folder = Path(config.path)
    if not folder.is_dir():
        return None
    names = {p.parent.name for p in folder.glob("*/*.tar")} | {p.name.split("-")[0] for p in folder.glob("*-*.tar")}
    return sorted(names)


def _synthetic_counts(config: DataConfig, wanted: list[str]) -> dict[str, int]:
    """Split sizes of the shapes data from its config: what generation writes (or wrote) there."""
    sizes = dict(zip(SPLITS, (config.synthetic.num_train, config.synthetic.num_val, config.synthetic.num_test,
                              config.synthetic.num_heldout)))
    have = [s for s in SPLITS if sizes[s] > 0]
    counts = {}
    for split in wanted:
        if split not in have:
            raise _missing(config, split, have, where="data.synthetic" if split in SPLITS else None)
        cap = max_samples_for(config, split)
        counts[split] = min(sizes[split], cap) if cap > 0 else sizes[split]
    return counts


def _warn_shared_shards(config: DataConfig, wanted: list[str]) -> None:
    """Warn when a test or validation split streams the very shards the training split does."""
    options = config.format_options.get("shards")
    train = expand_shards(split_shards(config, config.train_split, options)) if config.train_split in wanted else []
    for split in wanted:
        if split != config.train_split and train and expand_shards(split_shards(config, split, options)) == train:
            logger.warning("data.path %s serves the same shards as %r and %r: scores on %r come from training "
                           "data; put each split in its own <split>/ folder or use {split} in the path",
                           config.path, config.train_split, split, split)


def _key(config: DataConfig, split: str) -> str:
    """The config key that asked for ``split``."""
    if split == config.train_split:
        return "data.train_split"
    if split == config.val_split:
        return "data.val_split"
    return "data.test_splits" if split in config.test_splits else "data"


def _missing(config: DataConfig, split: str, have: Sequence[str], where: str | None = None) -> ConfigError:
    """The one-line ``ConfigError`` of a split the data does not have."""
    key = _key(config, split)
    fix = f"set {key} to splits your data has" if key != "data" else "ask for splits your data has"
    if where:
        fix += f" (or give {where}.num_{'heldout' if split == 'test_heldout' else split} a size)"
    return ConfigError(f"split {split!r} is not in {config.path} (it has {', '.join(have) or 'no splits'})",
                       where=key, fix=fix)
