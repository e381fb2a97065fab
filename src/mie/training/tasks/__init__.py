"""Training tasks: one module per kind of training (contrastive image–text, causal language modelling)."""

from mie.training.tasks.contrastive import (
    IMAGE_TEXT_INPUTS,
    ContrastiveTask,
    build_task_loss,
    check_task_loss,
)
from mie.training.tasks.language_model import LanguageModelTask, bits_per_byte, lm_metrics

__all__ = ["IMAGE_TEXT_INPUTS", "ContrastiveTask", "LanguageModelTask", "bits_per_byte", "build_task_loss",
           "check_task_loss", "lm_metrics"]
