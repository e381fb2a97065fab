"""Inference in the trainer's precision policy: one ``precision`` setting (``auto`` | ``fp32`` | ``bf16`` |
``fp16``) resolved by :func:`mie.training.device.resolve_precision`, so training and inference agree on what
each setting means on each device (``auto`` = bf16 on a CUDA GPU that computes in it, fp32 elsewhere; fp16
off CUDA falls back to bf16).

>>> with inference_precision("bf16", torch.device("cpu")):  # doctest: +SKIP
...     logits = model(ids)

:func:`compare_precisions` measures rather than assumes: the same workload timed under each setting, with
the largest difference of its output from fp32's.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch

from mie.optimization.benchmark import measure
from mie.training.device import autocast, resolve_precision


@contextlib.contextmanager
def inference_precision(precision: str, device: torch.device) -> Iterator[torch.dtype | None]:
    """Autocast as the trainer would for ``precision`` on ``device``; yields the dtype (None = fp32)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fp16 off CUDA: the trainer's fallback warning is for training runs
        dtype = resolve_precision(precision, device)
    with autocast(device, dtype):
        yield dtype


def _first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (list, tuple)) and value:
        return _first_tensor(value[0])
    return None


def compare_precisions(fn: Callable[[], Any], items: int, device: torch.device,
                       precisions: tuple[str, ...] = ("fp32", "bf16"), repeats: int = 5) -> dict[str, dict[str, Any]]:
    """Speed of ``fn`` under each precision and its output's largest deviation from fp32's."""
    rows: dict[str, dict[str, Any]] = {}
    reference = None
    for precision in precisions:
        with inference_precision(precision, device) as dtype:
            with torch.inference_mode():
                output = _first_tensor(fn())
            row: dict[str, Any] = {"dtype": str(dtype or torch.float32).removeprefix("torch."),
                                   **measure(fn, items, repeats=repeats)}
        if output is not None:
            output = output.float()
            if reference is None:
                reference = output
            row["max_abs_diff_vs_first"] = round(float((output - reference).abs().max()), 6)
        rows[precision] = row
    return rows
