"""Learning-rate schedules: linear warmup, then cosine / linear decay to ``min_lr_ratio``, inverse square
root (Vaswani et al., 2017), or constant.

The multiplier of the base lr after ``s`` optimizer steps (``W`` warmup steps, ``T`` total steps,
``m`` = ``min_lr_ratio``)::

    s < W:      (s + 1) / W                       (the first step already trains)
    cosine:     m + (1 - m) * 0.5 * (1 + cos(pi * p)),   p = clamp((s - W) / (T - W), 0, 1)
    linear:     m + (1 - m) * (1 - p)
    inverse_sqrt: max(m, sqrt(W / (s + 1)))            (no end: the lr falls as 1/sqrt(step))
    constant:   1
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR

from mie.training.config import ScheduleConfig

SCHEDULES = ("cosine", "linear", "constant", "inverse_sqrt")


def lr_multiplier(step: int, cfg: ScheduleConfig, total_steps: int) -> float:
    """The factor applied to the base lr after ``step`` optimizer steps (see the module docstring)."""
    warmup = max(0, cfg.warmup_steps)
    if step < warmup:
        return (step + 1) / warmup
    if cfg.name == "constant":
        return 1.0
    if cfg.name == "inverse_sqrt":
        return max(cfg.min_lr_ratio, math.sqrt(max(1, warmup) / (step + 1)))
    progress = min(1.0, max(0.0, (step - warmup) / max(1, total_steps - warmup)))
    if cfg.name == "cosine":
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        shape = 1.0 - progress
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * shape


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig,
                    total_steps: int | Callable[[], int]) -> LambdaLR:
    """A ``LambdaLR`` following :func:`lr_multiplier`; step it once per optimizer step.

    ``total_steps`` may be a callable, read at every step, so a trainer can shrink the schedule once
    it knows how many steps fit a wall-clock budget. The multiplier is a closure, so the scheduler's
    ``state_dict`` holds only counters: a resumed run follows the schedule of its current config.
    """
    if cfg.name not in SCHEDULES:
        raise ValueError(f"schedule.name={cfg.name!r} is unknown; choose one of {', '.join(SCHEDULES)}")
    if not 0.0 <= cfg.min_lr_ratio <= 1.0:
        raise ValueError(f"schedule.min_lr_ratio={cfg.min_lr_ratio} must lie in [0, 1]")
    get_total = total_steps if callable(total_steps) else (lambda: total_steps)
    total = get_total()
    if total <= 0:
        raise ValueError(f"total_steps={total} must be positive (check epochs, max_steps and the loader length)")
    if cfg.name != "constant" and cfg.warmup_steps >= total:
        warnings.warn(f"schedule.warmup_steps={cfg.warmup_steps} >= total steps {total}: the lr never "
                      "reaches its peak; lower warmup_steps", stacklevel=2)
    return LambdaLR(optimizer, lambda step: lr_multiplier(step, cfg, get_total()))
