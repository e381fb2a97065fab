"""Callbacks: observers of the training loop with named hooks (the Keras / Lightning pattern).

The trainer owns the loop and calls, in this order::

    on_train_begin
      on_epoch_begin
        on_step_end            (after every optimizer step; metrics only every log_every steps)
        on_validation_end      (when the epoch is validated)
        on_checkpoint          (whenever a checkpoint file is written)
      on_epoch_end
      on_stage_end             (when a stage of a multistage run has finished)
    on_train_end

Callbacks that write files or print check ``trainer.is_main`` so only rank 0 does. A callback
with state worth resuming (best score, patience) implements ``state_dict`` / ``load_state_dict``;
the trainer stores it in its own state under the callback's class name.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mie.io.atomic import atomic_write_text
from mie.training.budget import notice

if TYPE_CHECKING:
    from mie.training.base import BaseTrainer


class Callback:
    """Base class: every hook is a no-op; override the ones you need."""

    def on_train_begin(self, trainer: BaseTrainer) -> None:
        """Called once before the first epoch (after a resume has been loaded)."""

    def on_train_end(self, trainer: BaseTrainer, history: list[dict[str, float]]) -> None:
        """Called once when the loop stops, for whatever reason."""

    def on_epoch_begin(self, trainer: BaseTrainer, epoch: int) -> None:
        """Called before epoch ``epoch`` (0-based) starts or resumes."""

    def on_epoch_end(self, trainer: BaseTrainer, epoch: int, metrics: dict[str, float]) -> None:
        """Called after epoch ``epoch`` with its train (and val) metrics; ``trainer.epoch`` is already ``epoch + 1``."""

    def on_step_end(self, trainer: BaseTrainer, step: int, metrics: dict[str, float]) -> None:
        """Called after optimizer step number ``step`` (1-based). On logged steps (every ``log_every``)
        ``metrics`` holds the ``train/...`` means since the last log; on the others it is empty."""

    def on_stage_end(self, trainer: BaseTrainer, stage: int) -> None:
        """Called when stage ``stage`` (0-based) of a multistage run has finished."""

    def on_validation_end(self, trainer: BaseTrainer, metrics: dict[str, float]) -> None:
        """Called after validation with its ``val/...`` metrics."""

    def on_checkpoint(self, trainer: BaseTrainer, path: Path) -> None:
        """Called after a checkpoint has been written to ``path``."""

    def state_dict(self) -> dict[str, Any]:
        """Plain-typed state to resume this callback (empty by default)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


class CallbackList(Callback):
    """Calls each hook on every callback, in the order given."""

    def __init__(self, callbacks: Iterable[Callback] | None = None) -> None:
        self.callbacks: list[Callback] = list(callbacks or [])

    def __iter__(self):
        return iter(self.callbacks)

    def __len__(self) -> int:
        return len(self.callbacks)

    def append(self, callback: Callback) -> None:
        """Add a callback at the end."""
        self.callbacks.append(callback)

    def on_train_begin(self, trainer: BaseTrainer) -> None:
        """Call ``on_train_begin`` on every callback, in order."""
        for cb in self.callbacks:
            cb.on_train_begin(trainer)

    def on_train_end(self, trainer: BaseTrainer, history: list[dict[str, float]]) -> None:
        """Call ``on_train_end`` on every callback, in order."""
        for cb in self.callbacks:
            cb.on_train_end(trainer, history)

    def on_epoch_begin(self, trainer: BaseTrainer, epoch: int) -> None:
        """Call ``on_epoch_begin`` on every callback, in order."""
        for cb in self.callbacks:
            cb.on_epoch_begin(trainer, epoch)

    def on_epoch_end(self, trainer: BaseTrainer, epoch: int, metrics: dict[str, float]) -> None:
        """Call ``on_epoch_end`` on every callback, in order."""
        for cb in self.callbacks:
            cb.on_epoch_end(trainer, epoch, metrics)

    def on_step_end(self, trainer: BaseTrainer, step: int, metrics: dict[str, float]) -> None:
        """Call ``on_step_end`` on every callback, in order."""
        for cb in self.callbacks:
            cb.on_step_end(trainer, step, metrics)

    def on_validation_end(self, trainer: BaseTrainer, metrics: dict[str, float]) -> None:
        """Call ``on_validation_end`` on every callback, in order."""
        for cb in self.callbacks:
            cb.on_validation_end(trainer, metrics)

    def on_stage_end(self, trainer: BaseTrainer, stage: int) -> None:
        """Call ``on_stage_end`` on every callback, in order."""
        for cb in self.callbacks:
            cb.on_stage_end(trainer, stage)

    def on_checkpoint(self, trainer: BaseTrainer, path: Path) -> None:
        """Call ``on_checkpoint`` on every callback, in order."""
        for cb in self.callbacks:
            cb.on_checkpoint(trainer, path)

    def state_dict(self) -> dict[str, Any]:
        """States of the callbacks that have one, keyed by class name (numbered if repeated)."""
        return {key: state for key, cb in self._keyed() if (state := cb.state_dict())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Give each callback its part of ``state_dict()``'s output."""
        for key, cb in self._keyed():
            if key in state:
                cb.load_state_dict(state[key])

    def _keyed(self) -> list[tuple[str, Callback]]:
        counts: dict[str, int] = {}
        keyed = []
        for cb in self.callbacks:
            name = type(cb).__name__
            counts[name] = counts.get(name, 0) + 1
            keyed.append((name if counts[name] == 1 else f"{name}_{counts[name]}", cb))
        return keyed


def _improved(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    if best is None:
        return not math.isnan(value)
    return value > best + min_delta if mode == "max" else value < best - min_delta


def _check_mode(mode: str) -> str:
    if mode not in ("max", "min"):
        raise ValueError(f"mode={mode!r} must be 'max' or 'min'")
    return mode


class MetricsLogger(Callback):
    """Appends JSON lines to ``<output_dir>/metrics.jsonl`` (rank 0 only).

    Every ``log_every`` steps: ``{"event": "step", "step", "epoch", "time", "train/loss", "train/lr", ...}``;
    after each epoch: ``{"event": "epoch", "step", "epoch", "train/...", "val/..."}``.
    Appending (not rewriting) keeps the lines of a run that is later resumed.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None

    def _file(self, trainer: BaseTrainer) -> Path:
        return self.path or Path(trainer.config.output_dir) / "metrics.jsonl"

    def _write(self, trainer: BaseTrainer, record: dict[str, Any]) -> None:
        if not trainer.is_main:
            return
        file = self._file(trainer)
        file.parent.mkdir(parents=True, exist_ok=True)
        with open(file, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def on_train_begin(self, trainer: BaseTrainer) -> None:
        """Hook: keep only the lines of the state training starts from, so a resume writes no step twice.

        A fresh run (step 0) starts an empty file; a resumed one keeps step lines up to its step and
        the epoch lines its history holds. The file is rewritten atomically.
        """
        file = self._file(trainer)
        if not trainer.is_main or not file.is_file():
            return
        epochs = {(h.get("stage", 0), h.get("epoch"), h.get("step")) for h in trainer.history}
        kept = []
        for line in file.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a line torn by a kill
            if not isinstance(row, dict) or not isinstance(row.get("step"), int):
                continue
            if row.get("event") == "epoch":
                keep = (row.get("stage", 0), row.get("epoch"), row["step"]) in epochs
            else:
                keep = row["step"] <= trainer.global_step
            if keep:
                kept.append(line + "\n")
        atomic_write_text(file, "".join(kept))

    def on_step_end(self, trainer: BaseTrainer, step: int, metrics: dict[str, float]) -> None:
        """Hook: an optimizer step has been taken."""
        if metrics:
            self._write(trainer, {"event": "step", "step": step, "stage": trainer.stage, "epoch": trainer.epoch,
                                  "time": round(time.time(), 3), **metrics})

    def on_epoch_end(self, trainer: BaseTrainer, epoch: int, metrics: dict[str, float]) -> None:
        """Hook: an epoch has ended with these metrics."""
        self._write(trainer, {"event": "epoch", "step": trainer.global_step, "stage": trainer.stage,
                              "epoch": epoch, "time": round(time.time(), 3), **metrics})


class EarlyStopping(Callback):
    """Stops training when ``monitor`` has not improved by ``min_delta`` for ``patience`` validations."""

    def __init__(self, monitor: str = "val/loss", mode: str = "min", patience: int = 3,
                 min_delta: float = 0.0) -> None:
        self.monitor = monitor
        self.mode = _check_mode(mode)
        self.patience = patience
        self.min_delta = min_delta
        self.best: float | None = None
        self.bad_epochs = 0

    def on_validation_end(self, trainer: BaseTrainer, metrics: dict[str, float]) -> None:
        """Hook: validation has produced these metrics."""
        if self.monitor not in metrics:
            raise ValueError(f"EarlyStopping monitors {self.monitor!r}, but validation returned "
                             f"{sorted(metrics)}; pick one of those")
        value = float(metrics[self.monitor])
        if _improved(value, self.best, self.mode, self.min_delta):
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs >= self.patience:
                trainer.should_stop = True
                notice(trainer, f"early stopping: {self.monitor} has not improved for {self.patience} "
                                f"validations; stopped at step {trainer.global_step}")

    def state_dict(self) -> dict[str, Any]:
        """What this object needs to resume exactly (JSON-friendly)."""
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        self.best, self.bad_epochs = state["best"], state["bad_epochs"]

