"""The wall-clock budget (``max_minutes``): stop when it is spent, and size the last stage to fit.

In the last stage the speed is measured over ``trainer.budget_calibration_steps`` steps and the
stage's schedule is shrunk to the steps that fit, so cosine decay ends near the budget's end. The
measurement starts with the stage's second epoch (or after twice that many steps, if sooner): a
first epoch that fills caches would make the run look slower than it is. Either event is said
aloud (a warning) and kept in ``trainer.notices`` for the report.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from mie.training.distributed import broadcast_int, is_distributed

if TYPE_CHECKING:
    from mie.training.base import BaseTrainer

logger = logging.getLogger(__name__)


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
    if trainer.stage != len(trainer.stages) - 1 or trainer._budget_total is not None:
        return
    n = trainer.budget_calibration_steps
    if trainer._calibration is None or trainer._calibration[0] != trainer.stage:
        trainer._calibration = (trainer.stage, trainer.epoch, trainer.global_step, None, 0.0)  # this fit's start
    stage, epoch0, step0, start_step, start_time = trainer._calibration
    if start_step is None:
        if trainer.epoch != epoch0 or trainer.global_step - step0 >= 2 * n:
            trainer._calibration = (stage, epoch0, step0, trainer.global_step, time.monotonic())
    elif trainer.global_step - start_step >= n:
        per_step = (time.monotonic() - start_time) / (trainer.global_step - start_step)
        planned = trainer.total_steps
        fits = trainer.stage_step + int((budget - elapsed) / per_step)
        trainer._budget_total = broadcast_int(max(trainer.stage_step + 1, min(planned, fits)), trainer.device)
        if trainer._budget_total < planned:
            notice(trainer, f"max_minutes={minutes:g}: the schedule of stage {trainer.stage} was shortened from "
                            f"{planned} to {trainer._budget_total} steps to fit the time budget "
                            f"({per_step:.2f} s/step measured)")
