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

from mie.registry import Registry
from mie.training.config import ScheduleConfig

# The multiplier after warmup, by schedule name: (step, warmup, total_steps, min_lr_ratio) -> factor.
SCHEDULE_SHAPES: Registry[Callable[[int, int, int, float], float]] = Registry("schedule")


def _progress(step: int, warmup: int, total: int) -> float:
    return min(1.0, max(0.0, (step - warmup) / max(1, total - warmup)))


@SCHEDULE_SHAPES.register("cosine")
def _cosine(step: int, warmup: int, total: int, m: float) -> float:
    shape = 0.5 * (1.0 + math.cos(math.pi * _progress(step, warmup, total)))
    return m + (1.0 - m) * shape


@SCHEDULE_SHAPES.register("linear")
def _linear(step: int, warmup: int, total: int, m: float) -> float:
    return m + (1.0 - m) * (1.0 - _progress(step, warmup, total))


@SCHEDULE_SHAPES.register("constant")
def _constant(step: int, warmup: int, total: int, m: float) -> float:
    return 1.0


@SCHEDULE_SHAPES.register("inverse_sqrt")
def _inverse_sqrt(step: int, warmup: int, total: int, m: float) -> float:
    return max(m, math.sqrt(max(1, warmup) / (step + 1)))


SCHEDULES = tuple(SCHEDULE_SHAPES)  # cosine, linear, constant, inverse_sqrt


def lr_multiplier(step: int, cfg: ScheduleConfig, total_steps: int) -> float:
    """The factor applied to the base lr after ``step`` optimizer steps (see the module docstring)."""
    warmup = max(0, cfg.warmup_steps)
    if step < warmup:
        return (step + 1) / warmup
    return SCHEDULE_SHAPES.lookup(cfg.name, where="schedule.name")(step, warmup, total_steps, cfg.min_lr_ratio)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig,
                    total_steps: int | Callable[[], int]) -> LambdaLR:
    """A ``LambdaLR`` following :func:`lr_multiplier`; step it once per optimizer step.

    ``total_steps`` may be a callable, read at every step, so a trainer can shrink the schedule once
    it knows how many steps fit a wall-clock budget. The multiplier is a closure, so the scheduler's
    ``state_dict`` holds only counters: a resumed run follows the schedule of its current config.
    """
    SCHEDULE_SHAPES.lookup(cfg.name, where="schedule.name")  # an unknown name fails now, not at the first step
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
