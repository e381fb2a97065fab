"""Training tasks: one module per kind of training (contrastive image–text today)."""

from mie.training.tasks.contrastive import (
    IMAGE_TEXT_INPUTS,
    ContrastiveTask,
    build_task_loss,
    check_task_loss,
)

__all__ = ["IMAGE_TEXT_INPUTS", "ContrastiveTask", "build_task_loss", "check_task_loss"]
