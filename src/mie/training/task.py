"""``Task``: what one batch means. ``BaseTrainer`` owns the loop and knows no task.

A task holds the trained ``model`` (the weights a checkpoint stores) and whatever else one kind of
training needs (a loss with state, a frozen reference copy, a momentum encoder). The trainer calls:

* ``training_forward(batch) -> {"loss": tensor, ...detached diagnostics}`` on every micro-batch
  (through ``forward``, so DDP can wrap the task); ``logging_step`` tells it whether this step is
  logged, so costly diagnostics and host synchronisations are skipped on the others;
* ``after_optimizer_step()`` once after each optimizer step (a logit-scale clamp, an EMA update, a
  queue's enqueue);
* ``on_stage_start(index, stage)`` when a stage begins (its loss, reference copies);
* ``validation_forward(batch)`` per validation batch and ``validation_metrics()`` once per validation
  for metrics over a whole set (retrieval recall, BLEU) that are not means of batches.

A language-model task returns ``{"loss": cross_entropy(logits, targets)}``; a preference task the
DPO loss of a chosen/rejected batch; neither touches the loop.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mie.training.config import StageConfig


class Task(nn.Module):
    """Base class of every training task; subclasses implement :meth:`training_forward`."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        #: True on micro-batches of a step that is logged: compute diagnostics, check values
        self.logging_step = True

    def forward(self, batch: Any) -> dict[str, Any]:
        """``training_forward``: DDP wraps the task and calls this."""
        return self.training_forward(batch)

    def training_forward(self, batch: Any) -> dict[str, Any]:
        """The loss of one (device-placed) batch: ``{"loss": scalar tensor, ...detached scalars}``."""
        raise NotImplementedError(f"{type(self).__name__} must implement training_forward(batch)")

    @torch.no_grad()
    def validation_forward(self, batch: Any) -> dict[str, Any]:
        """Scalar metrics of one validation batch (default: its training loss)."""
        return {"loss": self.training_forward(batch)["loss"]}

    def validation_metrics(self) -> dict[str, float]:
        """Metrics over a whole validation set, computed once per validation (default: none)."""
        return {}

    def after_optimizer_step(self) -> None:
        """Called once after every optimizer step (default: nothing)."""

    def on_stage_start(self, index: int, stage: StageConfig) -> None:
        """Called when stage ``index`` starts or resumes, before its optimizer is built."""
