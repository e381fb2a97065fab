"""The dataset-format registry: names -> builders, and the helpers every builder shares.

A format is a builder ``(config: DataConfig, split: str, transform, **kw) -> Dataset`` registered with
``@register_dataset_format("name")`` in the module that defines its dataset. Builders validate
``config.format_options`` themselves (``check_format_options``), rejecting option names they do not
know. ``mie.data.build.build_dataset`` imports every format module and dispatches on
``config.format`` (``auto`` first resolved from the files at ``config.path``); this module imports
none of them, so they can all import it::

    @register_dataset_format("csv")
    def build_csv(config, split, transform=None, **kw): ...

It imports no torch either: the shapes generator registers its format here and its spawned workers
must stay light.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from mie.errors import ConfigError
from mie.registry import Registry

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from mie.data.config import DataConfig

DatasetBuilder = Callable[..., "Dataset"]
DATASET_FORMATS: Registry[DatasetBuilder] = Registry("data.format", plural="formats",
                                                    fix="set data.format to one of them")


def register_dataset_format(name: str) -> Callable[[DatasetBuilder], DatasetBuilder]:
    """Decorator that makes a builder available to ``build_dataset`` under ``name``."""
    return DATASET_FORMATS.register(name)


def check_format_options(config: DataConfig, allowed: Iterable[str]) -> dict[str, Any]:
    """``config.format_options`` after checking every name is in ``allowed`` (error names the bad ones)."""
    allowed = set(allowed)
    unknown = sorted(set(config.format_options) - allowed)
    if unknown:
        accepted = ", ".join(sorted(allowed)) or "none"
        raise ConfigError(f"unknown data.format_options {unknown} for format {config.format!r}",
                          fix=f"accepted options: {accepted}")
    return dict(config.format_options)


def max_samples_for(config: DataConfig, split: str) -> int:
    """How many records to keep: ``max_train_samples`` for the training split, else all (0)."""
    return config.max_train_samples if split == config.train_split else 0
