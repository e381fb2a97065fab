"""``ModelCheckpoint``: the callback that publishes a run's checkpoints, one transaction per step."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mie.io.store import CheckpointStore
from mie.training.callbacks import Callback, _check_mode, _improved

if TYPE_CHECKING:
    from mie.training.base import BaseTrainer


class ModelCheckpoint(Callback):
    """Publishes checkpoints as one transaction per step (:class:`mie.io.store.CheckpointStore`).

    In ``dirpath`` (default ``<output_dir>/checkpoints``), each commit holds:

    * ``last.safetensors`` + ``last.json`` + ``last_state.pt``: every ``every_n_steps`` steps, at the
      end of every epoch that improved ``best``, at stage ends and at the end of training
      (``last_state.pt`` is what ``fit(resume_from=...)`` reads);
    * ``best.safetensors`` + ``best.json``: written in the same commit as the ``last`` state that
      records the new best score (an improvement is committed at the end of its epoch), else carried
      over from the previous commit, so a resumed run never sees a best without its state or the reverse.

    ``step_000100.safetensors`` (+ json) are extra copies at the periodic saves when ``keep_last_n > 0``,
    keeping only the newest ``keep_last_n``. ``None`` arguments take their value from the trainer's
    config (``checkpoint_every_steps``, ``best_metric``, ``best_mode``).
    """

    def __init__(self, dirpath: str | Path | None = None, every_n_steps: int | None = None,
                 monitor: str | None = None, mode: str | None = None, keep_last_n: int = 0,
                 save_last: bool = True) -> None:
        self.dirpath = Path(dirpath) if dirpath is not None else None
        self.every_n_steps = every_n_steps
        self.monitor = monitor
        self.mode = _check_mode(mode) if mode is not None else None
        self.keep_last_n = keep_last_n
        self.save_last = save_last
        self.best_score: float | None = None
        self.best_step: int | None = None
        self._pending_best: dict[str, Any] | None = None
        self._fresh = True
        self._committed: tuple | None = None
        self._warned_missing = False

    def on_train_begin(self, trainer: BaseTrainer) -> None:
        """Hook: training is about to start; stale files of a killed save are cleaned up."""
        cfg = trainer.config
        self.dirpath = self.dirpath or Path(cfg.output_dir) / "checkpoints"
        self.every_n_steps = cfg.checkpoint_every_steps if self.every_n_steps is None else self.every_n_steps
        self.monitor = self.monitor or cfg.best_metric
        self.mode = self.mode or _check_mode(cfg.best_mode)
        self._committed = self._progress(trainer)  # what was loaded (or nothing yet) needs no new commit
        self._fresh = trainer.global_step == 0 and not trainer.history  # carry no best of an earlier run
        if trainer.is_main:
            CheckpointStore(self.dirpath).repair()

    @staticmethod
    def _progress(trainer: BaseTrainer) -> tuple:
        return (trainer.global_step, trainer.stage, len(trainer.history))

    def _commit(self, trainer: BaseTrainer) -> None:
        """Publish ``last`` (+ state) and, when it improved, ``best`` as one transaction."""
        progress = self._progress(trainer)
        if progress == self._committed and self._pending_best is None:
            return
        if trainer.is_main:
            writers = trainer.checkpoint_writers("last", with_state=True)
            if self._pending_best is not None:
                writers.update(trainer.checkpoint_writers("best", with_state=False,
                                                          extra_metadata=self._pending_best))
            store = CheckpointStore(self.dirpath)
            carry = () if self._fresh else ("best.safetensors", "best.json")
            commit = store.commit(trainer.global_step, writers, carry=carry,
                                  info={"stage": trainer.stage, "epoch": trainer.epoch})
            trainer.callbacks.on_checkpoint(trainer, commit / "last.safetensors")
        self._committed, self._pending_best, self._fresh = progress, None, False

    def on_step_end(self, trainer: BaseTrainer, step: int, metrics: dict[str, float]) -> None:
        """Hook: an optimizer step has been taken."""
        if not self.every_n_steps or step % self.every_n_steps != 0:
            return
        if self.save_last:
            self._commit(trainer)
        if self.keep_last_n > 0:
            trainer.save_checkpoint(self.dirpath, f"step_{step:06d}", with_state=False)
            self._prune(trainer)

    def on_epoch_end(self, trainer: BaseTrainer, epoch: int, metrics: dict[str, float]) -> None:
        """Hook: an epoch ended; a new best is committed now, together with the state that records it."""
        if self._pending_best is not None:
            self._commit(trainer)

    def on_stage_end(self, trainer: BaseTrainer, stage: int) -> None:
        """Hook: a stage has finished; its end is a resumable checkpoint (``last``)."""
        self._commit(trainer)

    def _prune(self, trainer: BaseTrainer) -> None:
        if not trainer.is_main:
            return
        periodic = sorted(self.dirpath.glob("step_*.safetensors"))
        for old in periodic[: max(0, len(periodic) - self.keep_last_n)]:
            old.unlink(missing_ok=True)
            old.with_suffix(".json").unlink(missing_ok=True)

    def on_validation_end(self, trainer: BaseTrainer, metrics: dict[str, float]) -> None:
        """Hook: validation has produced these metrics; an improvement is committed at the epoch's end."""
        if self.monitor not in metrics:
            if not self._warned_missing:
                warnings.warn(f"ModelCheckpoint: metric {self.monitor!r} not among validation metrics "
                              f"{sorted(metrics)}; no best checkpoint is kept (set best_metric)", stacklevel=2)
                self._warned_missing = True
            return
        value = float(metrics[self.monitor])
        if _improved(value, self.best_score, self.mode):
            self.best_score, self.best_step = value, trainer.global_step
            self._pending_best = {"best_metric": self.monitor, "best_score": value}

    def on_train_end(self, trainer: BaseTrainer, history: list[dict[str, float]]) -> None:
        """Hook: training has finished; its final state is committed."""
        if self.save_last or self._pending_best is not None:
            self._commit(trainer)

    def state_dict(self) -> dict[str, Any]:
        """What this object needs to resume exactly (JSON-friendly)."""
        return {"best_score": self.best_score, "best_step": self.best_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        self.best_score, self.best_step = state["best_score"], state["best_step"]
