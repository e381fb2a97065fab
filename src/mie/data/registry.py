"""Dataset formats by name: ``build_dataset(config.data, "train")`` builds whatever ``config.format`` names.

A format is a builder ``(config: DataConfig, split: str, transform, **kw) -> Dataset`` registered with
``@register_dataset_format("name")``. Builders validate ``config.format_options`` themselves, rejecting
option names they do not know. This module registers ``synthetic`` and ``jsonl``; ``flickr``, ``coco``,
``csv`` and ``webdataset`` are registered by their modules, imported at the bottom of this one::

    @register_dataset_format("csv")
    def build_csv(config, split, transform=None, **kw): ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from mie.data.config import DataConfig
from mie.data.image_text import JsonlImageText
from mie.data.synthetic import ensure_shapes_dataset

DatasetBuilder = Callable[..., Dataset]
DATASET_FORMATS: dict[str, DatasetBuilder] = {}


def register_dataset_format(name: str) -> Callable[[DatasetBuilder], DatasetBuilder]:
    """Decorator that makes a builder available to ``build_dataset`` under ``name``."""

    def decorator(builder: DatasetBuilder) -> DatasetBuilder:
        if name in DATASET_FORMATS and DATASET_FORMATS[name] is not builder:
            raise ValueError(
                f"dataset format {name!r} is already registered by {DATASET_FORMATS[name].__module__}"
            )
        DATASET_FORMATS[name] = builder
        return builder

    return decorator


def build_dataset(config: DataConfig, split: str, transform: Callable | None = None, **kw: Any) -> Dataset:
    """The ``split`` of the dataset described by ``config``; extra ``kw`` go to the format's builder.

    ``max_train_samples`` is applied by the builders to ``config.train_split`` only.
    """
    builder = DATASET_FORMATS.get(config.format)
    if builder is None:
        known = ", ".join(sorted(DATASET_FORMATS))
        raise ValueError(f"unknown data.format {config.format!r}; known formats: {known}")
    return builder(config, split, transform, **kw)


def check_format_options(config: DataConfig, allowed: Iterable[str]) -> dict[str, Any]:
    """``config.format_options`` after checking every name is in ``allowed`` (error names the bad ones)."""
    allowed = set(allowed)
    unknown = sorted(set(config.format_options) - allowed)
    if unknown:
        accepted = ", ".join(sorted(allowed)) or "none"
        raise ValueError(
            f"unknown data.format_options {unknown} for format {config.format!r}; accepted options: {accepted}"
        )
    return dict(config.format_options)


def max_samples_for(config: DataConfig, split: str) -> int:
    """How many records to keep: ``max_train_samples`` for the training split, else all (0)."""
    return config.max_train_samples if split == config.train_split else 0


@register_dataset_format("jsonl")
def build_jsonl(
    config: DataConfig, split: str, transform: Callable | None = None, cache_images: bool = False
) -> Dataset:
    """A ``captions.jsonl`` manifest; ``config.path`` is the manifest file or the folder holding it.

    Options: ``manifest`` (file name inside a folder ``path``, default ``captions.jsonl``) and
    ``root`` (folder the image paths are relative to, default the manifest's folder).
    """
    options = check_format_options(config, ("manifest", "root"))
    path = Path(config.path)
    manifest = path / options.get("manifest", "captions.jsonl") if path.is_dir() else path
    return JsonlImageText(
        manifest,
        split=split,
        transform=transform,
        root=options.get("root"),
        cache_images=cache_images,
        max_samples=max_samples_for(config, split),
    )


@register_dataset_format("synthetic")
def build_synthetic(
    config: DataConfig, split: str, transform: Callable | None = None, cache_images: bool = False
) -> Dataset:
    """The embedded shapes dataset at ``config.path``, generated first if absent or made differently.

    Option: ``workers`` (processes used when generating; default automatic).
    """
    options = check_format_options(config, ("workers",))
    root = ensure_shapes_dataset(config.synthetic, config.path, workers=options.get("workers"))
    return JsonlImageText(
        root / "captions.jsonl",
        split=split,
        transform=transform,
        cache_images=cache_images,
        max_samples=max_samples_for(config, split),
    )


# The other formats register themselves on import; imported last because they import this module.
from mie.data import coco, flickr, tabular, webdataset  # noqa: E402, F401
