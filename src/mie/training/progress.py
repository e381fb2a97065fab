"""``ProgressBar``: where a run is and when it will end, in a terminal and in a log file alike."""

from __future__ import annotations

import logging
import math
import sys
import time
from typing import IO, TYPE_CHECKING

from mie.training.callbacks import Callback

if TYPE_CHECKING:
    from mie.training.base import BaseTrainer

logger = logging.getLogger(__name__)


def length_line(trainer: BaseTrainer) -> str | None:
    """``max_steps=300 sets the length of training: 300 steps = 9.7 epochs of 31 steps ...`` for a run whose
    length ``max_steps`` sets (no stages), else None."""
    config = trainer.config
    if config.stages or config.max_steps <= 0:
        return None
    per_epoch = trainer.steps_per_epoch
    epochs = (f"{config.max_steps / per_epoch:.3g} epochs of {per_epoch} steps ({math.ceil(config.max_steps / per_epoch)} "
              "started)" if per_epoch else "epochs of a stream of unknown length")
    return (f"max_steps={config.max_steps} sets the length of training: {config.max_steps} steps = {epochs}; "
            f"the config's epochs ({config.epochs}) is not used")


def _clock(seconds: float) -> str:
    """``1:02:03`` or ``2:03``."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class ProgressBar(Callback):
    """Step, loss, lr, speed, elapsed time and ETA, on rank 0 unless ``quiet``.

    In a terminal: one self-rewriting line, refreshed every ``log_every`` steps. Otherwise (``nohup``,
    a cluster log, a pipe): a plain line every ``every_fraction`` of the stage or ``every_seconds``,
    whichever comes first, so a log file shows progress without thousands of lines. Both print a
    line per epoch. The ETA is the stage's remaining steps at the speed measured since the last line.
    """

    def __init__(self, stream: IO[str] | None = None, quiet: bool = False, every_fraction: float = 0.1,
                 every_seconds: float = 60.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.every_fraction = every_fraction
        self.every_seconds = every_seconds
        self._shown = False
        self._start: float | None = None
        self._last: tuple[int, float] | None = None  # (step, time) of the previous refresh
        self._last_line: tuple[int, float] = (0, 0.0)  # (stage step, time) of the last plain line
        self._per_step: float | None = None

    def _tty(self) -> bool:
        isatty = getattr(self.stream, "isatty", None)
        return bool(isatty and isatty())

    def _enabled(self, trainer: BaseTrainer) -> bool:
        return trainer.is_main and not self.quiet

    def on_train_begin(self, trainer: BaseTrainer) -> None:
        """Hook: start the clocks."""
        now = time.monotonic()
        self._start, self._last, self._last_line = now, (trainer.global_step, now), (trainer.stage_step, now)
        line = length_line(trainer)
        if line and trainer.is_main:
            logger.info("%s", line)

    def on_step_end(self, trainer: BaseTrainer, step: int, metrics: dict[str, float]) -> None:
        """Hook: an optimizer step has been taken; refresh on logged steps."""
        if not metrics or not self._enabled(trainer):
            return
        now = time.monotonic()
        if self._last is not None and step > self._last[0]:
            measured = (now - self._last[1]) / (step - self._last[0])
            self._per_step = measured if self._per_step is None else 0.7 * self._per_step + 0.3 * measured
        self._last = (step, now)
        if self._tty():
            self.stream.write("\r" + self._line(trainer, metrics, now).ljust(100))
            self._shown = True
        else:
            done, last_time = self._last_line
            due = (trainer.stage_step - done >= max(1, int(self.every_fraction * trainer.total_steps))
                   or now - last_time >= self.every_seconds or trainer.stage_step >= trainer.total_steps)
            if not due:
                return
            self._last_line = (trainer.stage_step, now)
            self.stream.write(self._line(trainer, metrics, now) + "\n")
        self.stream.flush()

    def _line(self, trainer: BaseTrainer, metrics: dict[str, float], now: float) -> str:
        total, done = trainer.total_steps, trainer.stage_step
        stages = f"stage {trainer.stage + 1}/{len(trainer.stages)} " if len(trainer.stages) > 1 else ""
        eta = _clock((total - done) * self._per_step) if self._per_step is not None else "?"
        return (f"{stages}epoch {trainer.epoch + 1} step {done}/{total} ({100 * done / max(1, total):.0f}%) "
                f"loss {metrics.get('train/loss', float('nan')):.4f} lr {metrics.get('train/lr', 0.0):.2e} "
                f"{metrics.get('train/samples_per_sec', 0.0):.0f} samples/s "
                f"elapsed {_clock(now - (self._start or now))} ETA {eta}")

    def on_epoch_end(self, trainer: BaseTrainer, epoch: int, metrics: dict[str, float]) -> None:
        """Hook: an epoch has ended with these metrics."""
        if not self._enabled(trainer):
            return
        # The losses and the headline retrieval figures; every metric is in metrics.jsonl.
        shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()
                          if k.endswith("loss") or (k.startswith("val/") and "mean_R@" in k))
        self.stream.write(("\n" if self._shown else "") + f"epoch {epoch + 1} done: {shown}\n")
        self.stream.flush()
        self._shown = False

    def on_train_end(self, trainer: BaseTrainer, history: list[dict[str, float]]) -> None:
        """Hook: end a self-rewriting line (an interrupted epoch has no epoch line)."""
        if self._shown and self._enabled(trainer):
            self.stream.write("\n")
            self.stream.flush()
            self._shown = False
