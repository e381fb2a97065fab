"""Checks made before any training: refuse what cannot give a meaningful result, in one line.

A batch larger than the training set gives 0 optimizer steps (batches drop their ragged end), and
the "results" would be those of an untrained model; a split the data lacks would fail only after
training, losing the run's report. Both are caught here, before the first step.
"""

from __future__ import annotations

from torch.utils.data import Dataset, IterableDataset

from mie.data.preflight import check_splits
from mie.errors import ConfigError
from mie.recipes.clip.config import ClipConfig
from mie.training.distributed import get_world_size


def suggest_batch_size(num_samples: int) -> int:
    """The largest power of two that leaves at least four batches per epoch (at least 1)."""
    size = 1
    while size * 2 * 4 <= num_samples:
        size *= 2
    return size


def check_batch_sizes(config: ClipConfig, train_set: Dataset) -> None:
    """Every batch size (data's and each stage's) must fit the training set at least once per rank."""
    if isinstance(train_set, IterableDataset):
        return  # a stream's length is unknown up front
    num, world = len(train_set), get_world_size()
    sizes = [("data.batch_size", config.data.batch_size)]
    sizes += [(f"stages[{i}].batch_size", stage.batch_size) for i, stage in enumerate(config.stages) if stage.batch_size]
    for key, batch in sizes:
        if batch * world > num:
            ranks = f" across {world} ranks" if world > 1 else ""
            raise ConfigError(f"{batch} is larger than the {num} training images of {config.data.path}{ranks}, "
                              "so training would take 0 steps", where=key,
                              fix=f"set it to at most {num // world}, e.g. --set {key}={suggest_batch_size(num // world)}")


def check_splits_exist(config: ClipConfig) -> dict[str, int]:
    """Every split the config names (train, val, test) must be in the data: checked from manifests
    and annotations only (no image is decoded), so a missing test split fails before training."""
    data = config.data
    return check_splits(data, [data.train_split, data.val_split, *data.test_splits])
