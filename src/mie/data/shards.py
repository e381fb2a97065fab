"""Any map-style dataset as WebDataset tar shards: ``to_shards(path, out_dir)``.

The result trains with ``data.format=webdataset``; ``mie data shards`` (``mie.cli.data``) is this
module on the command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mie.data.build import build_dataset
from mie.data.config import DataConfig
from mie.data.image_text import SplitNotFoundError, dataset_records
from mie.data.inspection import detect_format, splits_to_try
from mie.data.webdataset import write_shards
from mie.errors import DataError


def to_shards(path: str | Path, out_dir: str | Path, fmt: str | None = None, samples_per_shard: int = 1000,
              options: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Convert every split of a dataset to WebDataset shards ``out_dir/<split>/<split>-NNNNN.tar``.

    The result trains with ``data.format=webdataset`` and ``data.path=out_dir``. Returns, per split,
    what :func:`mie.data.webdataset.write_shards` reports.
    """
    fmt = fmt or detect_format(path)
    if fmt == "webdataset":
        raise DataError(f"{path} already holds WebDataset shards; nothing to convert",
                        fix="train on them with data.format=webdataset")
    config = DataConfig(format=fmt, path=str(path), format_options=dict(options or {}))
    written: dict[str, dict[str, Any]] = {}
    for split in splits_to_try(fmt, Path(path)):
        try:
            records = dataset_records(build_dataset(config, split))
        except (FileNotFoundError, SplitNotFoundError):
            continue  # this split is absent; the others may exist
        if records:
            written[split] = write_shards(records, Path(out_dir) / split, split, samples_per_shard)
    if not written:
        raise DataError(f"no readable split in {path} as format {fmt!r}", fix="check the path and --format")
    return written
