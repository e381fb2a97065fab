"""Small helpers of the training loop: batch sizes, lengths, floats (devices: :mod:`mie.training.device`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

# The device helpers lived here; these names stay importable from this module.
from mie.training.device import PRECISIONS, resolve_device, resolve_precision
from mie.training.device import to_device as move_to_device

__all__ = ["PRECISIONS", "batch_size_of", "move_to_device", "resolve_device", "resolve_precision", "safe_len",
           "to_float"]


def batch_size_of(batch: Any) -> int:
    """Number of samples in a batch: the first dimension of its first tensor (1 if none)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.ndim else 1
    values = batch.values() if isinstance(batch, Mapping) else batch if isinstance(batch, (list, tuple)) else ()
    for value in values:
        if isinstance(value, (torch.Tensor, Mapping, list, tuple)):
            return batch_size_of(value)
    return 1


def to_float(value: Any) -> float:
    """A Python float of a number or a tensor (its mean); a host synchronisation for device tensors."""
    return float(value.detach().float().mean()) if isinstance(value, torch.Tensor) else float(value)


def safe_len(loader: Iterable) -> int | None:
    """``len(loader)``, or None for a stream without a length."""
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:  # an IterableDataset without __len__
        return None
