"""``TensorBoardLogger``: the numbers of ``metrics.jsonl`` as TensorBoard event files, beside it.

Switched on with ``tensorboard: true`` in the config (the optional ``tensorboard`` extra provides
the writer: ``pip install -e '.[tensorboard]'``). Files go to ``<output_dir>/tensorboard``; view
them with ``tensorboard --logdir runs``. On resume, events after the resumed step are purged first,
so the curves have no duplicate steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mie.errors import ConfigError
from mie.training.callbacks import Callback

if TYPE_CHECKING:
    from mie.training.base import BaseTrainer


class TensorBoardLogger(Callback):
    """Writes every logged ``train/...`` step metric and every epoch's ``val/...`` metrics (rank 0)."""

    def __init__(self, log_dir: str | Path | None = None) -> None:
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self._writer: Any = None

    def on_train_begin(self, trainer: BaseTrainer) -> None:
        """Hook: open the writer (purging events past the resumed step)."""
        if not trainer.is_main:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("needs the tensorboard package", where="tensorboard",
                              fix="pip install tensorboard (the 'tensorboard' extra), or set tensorboard: false") from None
        log_dir = self.log_dir or Path(trainer.config.output_dir) / "tensorboard"
        self._writer = SummaryWriter(str(log_dir), purge_step=trainer.global_step + 1 if trainer.global_step else None)

    def on_step_end(self, trainer: BaseTrainer, step: int, metrics: dict[str, float]) -> None:
        """Hook: write a logged step's metrics."""
        if self._writer is not None:
            for key, value in metrics.items():
                self._writer.add_scalar(key, value, step)

    def on_epoch_end(self, trainer: BaseTrainer, epoch: int, metrics: dict[str, float]) -> None:
        """Hook: write the epoch's validation metrics at its last step."""
        if self._writer is not None:
            for key, value in metrics.items():
                if key.startswith("val/"):
                    self._writer.add_scalar(key, value, trainer.global_step)
            self._writer.flush()

    def on_train_end(self, trainer: BaseTrainer, history: list[dict[str, float]]) -> None:
        """Hook: flush and close the files."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
