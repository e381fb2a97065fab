"""``build_dataset(config.data, "train")``: the split of whatever dataset format ``config.format`` names.

Importing this module imports every format module of the package, each of which registers its
builder in ``mie.data.registry``; so ``build_dataset`` and ``DATASET_FORMATS`` taken from here
always know every format.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.utils.data import Dataset

# Imported for their registrations; each module defines its dataset and its builder side by side.
from mie.data import coco, flickr, jsonl, synthetic, tabular, webdataset  # noqa: F401
from mie.data.config import DataConfig
from mie.data.registry import DATASET_FORMATS

__all__ = ["DATASET_FORMATS", "build_dataset"]


def build_dataset(config: DataConfig, split: str, transform: Callable | None = None, **kw: Any) -> Dataset:
    """The ``split`` of the dataset described by ``config``; extra ``kw`` go to the format's builder.

    ``max_train_samples`` is applied by the builders to ``config.train_split`` only.
    """
    builder = DATASET_FORMATS.get(config.format)
    if builder is None:
        known = ", ".join(sorted(DATASET_FORMATS))
        raise ValueError(f"unknown data.format {config.format!r}; known formats: {known}")
    return builder(config, split, transform, **kw)
