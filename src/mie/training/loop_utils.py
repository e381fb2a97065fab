"""Small helpers of the training loop: devices, moving batches, batch sizes, lengths, floats."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import torch

PRECISIONS = ("fp32", "bf16", "fp16")


def resolve_device(spec: str | torch.device) -> torch.device:
    """``"auto"`` picks CUDA, then Apple MPS, then CPU; an explicit but absent device is an error."""
    if isinstance(spec, torch.device):
        return spec
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={spec!r} but CUDA is not available; use device=auto or cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={spec!r} but MPS is not available; use device=auto or cpu")
    return device


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a (nested) dict / list / tuple batch to ``device``; leave the rest as is."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=device.type == "cuda")
    if isinstance(batch, Mapping):
        return {key: move_to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(value, device) for value in batch)
    return batch


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


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (None = fp32); fp16 off CUDA falls back to bf16."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is unknown; choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None
    if precision == "fp16" and device.type != "cuda":
        warnings.warn(f"precision=fp16 needs CUDA (a GradScaler); on {device.type} training "
                      "falls back to bf16", stacklevel=4)
        return torch.bfloat16
    return torch.float16 if precision == "fp16" else torch.bfloat16
