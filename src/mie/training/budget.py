"""The wall-clock budget (``max_minutes``): stop when it is spent, and size the last stage to fit.

In the last stage the speed is measured over ``trainer.budget_calibration_steps`` steps and the
stage's schedule is shrunk to the steps that fit, so cosine decay ends near the budget's end. The
measurement starts with the stage's second epoch (or after twice that many steps, if sooner): a
first epoch that fills caches would make the run look slower than it is. On every logged step after
that the fit is redone with the mean speed since the measurement began (validation passes included),
so a machine whose load changes still ends its schedule near the budget's end instead of being cut
off at a high learning rate. Stopping and the first shortening are said aloud (a warning) and kept in
``trainer.notices`` for the report, which holds the last fit. A first fit that drops more than a quarter of
the planned steps adds a second warning at once, with the expected effect and what to do about it.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING

from mie.training.distributed import broadcast_int, is_distributed

if TYPE_CHECKING:
    from mie.training.base import BaseTrainer

logger = logging.getLogger(__name__)

SEVERE_CUT = 0.25  # a budget that drops more than this share of the planned steps is said aloud with advice


def severe_cut_advice(total: int, planned: int, per_step: float) -> str:
    """What a user at the terminal needs when the budget cuts the schedule deeply: the cut, its effect, the
    machine's load, and the three ways out (fewer threads, more minutes, a quieter machine)."""
    from mie.models.budget import usable_cores

    try:
        load = f"1-minute load {os.getloadavg()[0]:.1f} on {usable_cores()} cores"
    except OSError:  # no load average on this platform
        load = f"{usable_cores()} cores"
    return (f"the time budget cuts training by {1 - total / planned:.0%} ({total} of {planned} steps at "
            f"{per_step:.2f} s/step; {load}): expect a clearly weaker model than the full schedule gives — on a "
            "machine other jobs keep busy pass --threads 1, raise max_minutes (0 = no limit, e.g. --set "
            "max_minutes=0), or run on a quieter machine")


def notice(trainer: BaseTrainer, text: str) -> None:
    """Say ``text`` once on rank 0 and keep it for the report."""
    if text not in trainer.notices:
        trainer.notices.append(text)
        if trainer.is_main:
            logger.warning(text)


def check_time_budget(trainer: BaseTrainer, logged: bool) -> None:
    """Stop the run once ``max_minutes`` is spent; resize the last stage's schedule once measured."""
    minutes = trainer.config.max_minutes
    # Under DDP the clock check is a collective (rank 0 decides): only on logged steps.
    if minutes <= 0 or (is_distributed() and not logged):
        return
    budget, elapsed = minutes * 60.0, trainer.elapsed_seconds()
    # Rank 0's clock decides, so every process stops (and resizes) at the same step.
    if broadcast_int(int(elapsed >= budget), trainer.device):
        trainer.should_stop = True
        notice(trainer, f"max_minutes={minutes:g} spent: stopped at step {trainer.stage_step} of "
                        f"{trainer.total_steps} (stage {trainer.stage}); raise max_minutes or set it to 0 for the whole run")
        return
    if trainer.stage != len(trainer.stages) - 1:
        return
    n = trainer.budget_calibration_steps
    if trainer._calibration is None or trainer._calibration[0] != trainer.stage:
        trainer._calibration = (trainer.stage, trainer.epoch, trainer.global_step, None, 0.0)  # this fit's start
    stage, epoch0, step0, start_step, start_time = trainer._calibration
    if start_step is None:
        if trainer.epoch != epoch0 or trainer.global_step - step0 >= 2 * n:
            trainer._calibration = (stage, epoch0, step0, trainer.global_step, time.monotonic())
        return
    first = trainer._budget_total is None
    if trainer.global_step - start_step < n or not (first or logged):
        return
    per_step = (time.monotonic() - start_time) / (trainer.global_step - start_step)
    planned = trainer.planned_steps
    fits = trainer.stage_step + int((budget - elapsed) / per_step)
    total = broadcast_int(max(trainer.stage_step + 1, min(planned, fits)), trainer.device)
    if total == trainer._budget_total:
        return
    trainer._budget_total = total
    text = (f"max_minutes={minutes:g}: the schedule of stage {trainer.stage} was shortened from {planned} to "
            f"{total} steps to fit the time budget ({per_step:.2f} s/step measured)")
    if first:
        if total < planned:
            notice(trainer, text)
        if total < (1 - SEVERE_CUT) * planned:
            notice(trainer, severe_cut_advice(total, planned, per_step))
        return
    kept = [i for i, t in enumerate(trainer.notices) if t.startswith(text.split(" was shortened")[0])]
    if kept:  # a refit: the report keeps only the latest sizing
        trainer.notices[kept[-1]] = text
    elif total < planned:
        notice(trainer, text)
    logger.debug(text)
