"""Where training runs and how data gets there: the device, batch copies, pinned loaders, autocast.

Written once for every recipe, so a run on a CUDA machine gets the same treatment everywhere:

* ``device: auto`` picks CUDA when present (then Apple MPS, then the CPU); ``cpu`` / ``cuda`` /
  ``cuda:N`` / ``mps`` are taken as given, and one that is absent is a :class:`ConfigError`.
* Batches are copied with ``non_blocking=True`` on CUDA only (from pinned memory the copy overlaps
  the previous step; elsewhere the flag means nothing or is unsafe), and loaders pin their batches
  only when the device is CUDA (:func:`pin_memory`): pinning costs a copy that only a GPU repays.
* ``precision: auto`` is bf16 autocast on a CUDA device that computes in bf16 and fp32 elsewhere (on
  CPUs without AVX512-BF16/AMX, bf16 runs several times slower than fp32); ``bf16`` / ``fp16`` /
  ``fp32`` are taken as given (fp16 needs CUDA's GradScaler and falls back to bf16 elsewhere).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Mapping
from typing import Any

import torch

from mie.errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")

_requested: str | None = None  # the command line's --device, if given: it wins over every config's device key


def request_device(spec: str | None) -> None:
    """Make ``spec`` (the command line's ``--device``) win over every device named by a string in this
    process, as ``--threads`` does for threads; ``None`` withdraws the request. Checked here, at once."""
    global _requested
    _requested = None
    if spec is not None:
        try:  # an absent device is refused before any work
            resolve_device(spec)
        except ConfigError as exc:
            fix = exc.fix.replace("device=", "--device ") if exc.fix else None
            raise ConfigError(exc.what, where="--device", fix=fix) from None
    _requested = spec


def resolve_device(spec: str | torch.device) -> torch.device:
    """``"auto"`` picks CUDA, then Apple MPS, then CPU; an explicit but absent device is a ConfigError.
    A ``--device`` request (:func:`request_device`) replaces any ``spec`` given as a string."""
    if isinstance(spec, torch.device):
        return spec
    spec = _requested or spec
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ConfigError(f"{spec!r} is not a device", where="device",
                          fix="use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{spec!r} but CUDA is not available", where="device",
                          fix="use device=auto or cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"{spec!r} but this machine has {torch.cuda.device_count()} CUDA device(s)",
                          where="device", fix="use device=auto or cuda:0")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{spec!r} but MPS is not available", where="device", fix="use device=auto or cpu")
    return device


def is_cuda(device: str | torch.device) -> bool:
    """Whether ``device`` (a spec such as ``"auto"`` or a resolved device) is a CUDA device."""
    return resolve_device(device).type == "cuda"


def pin_memory(device: str | torch.device) -> bool:
    """The ``pin_memory`` a DataLoader feeding ``device`` should use: True on CUDA only."""
    return is_cuda(device)


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor of a (nested) dict / list / tuple batch to ``device``; leave the rest as is.

    On CUDA the copies are ``non_blocking``: from pinned memory they overlap the running step, and
    they never make the host wait (a blocking copy is a host synchronisation).
    """
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=device.type == "cuda")
    if isinstance(batch, Mapping):
        return {key: to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(value, device) for value in batch)
    return batch


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (None = fp32, no autocast).

    ``auto`` is bf16 on a CUDA device that supports it and fp32 elsewhere; fp16 off CUDA falls back to bf16.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"{precision!r} is unknown", where="precision", fix=f"choose one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)
        return torch.bfloat16 if bf16 else None
    if precision == "fp32":
        return None
    if precision == "fp16" and device.type != "cuda":
        warnings.warn(f"precision=fp16 needs CUDA (a GradScaler); on {device.type} training "
                      "falls back to bf16", stacklevel=4)
        return torch.bfloat16
    return torch.float16 if precision == "fp16" else torch.bfloat16


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to ``dtype`` on ``device``'s type, or nothing when ``dtype`` is None (fp32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
