"""Training: ``BaseTrainer`` owns the loop, a ``Task`` says what a batch means, callbacks observe."""

from mie.training.base import BaseTrainer
from mie.training.callbacks import (
    Callback,
    CallbackList,
    EarlyStopping,
    MetricsLogger,
)
from mie.training.checkpoint_callback import ModelCheckpoint
from mie.training.config import OptimizerConfig, ScheduleConfig, StageConfig, TrainerConfig
from mie.training.loop_utils import batch_size_of, move_to_device, resolve_device
from mie.training.optim import create_adamw, create_optimizer, split_decay_parameters
from mie.training.progress import ProgressBar
from mie.training.rng import capture_rng_state, restore_rng_state, set_seed
from mie.training.schedules import build_scheduler, lr_multiplier
from mie.training.task import Task

__all__ = [
    "BaseTrainer",
    "Callback",
    "CallbackList",
    "EarlyStopping",
    "MetricsLogger",
    "ModelCheckpoint",
    "OptimizerConfig",
    "ProgressBar",
    "ScheduleConfig",
    "StageConfig",
    "Task",
    "TrainerConfig",
    "batch_size_of",
    "build_scheduler",
    "capture_rng_state",
    "create_adamw",
    "create_optimizer",
    "lr_multiplier",
    "move_to_device",
    "resolve_device",
    "restore_rng_state",
    "set_seed",
    "split_decay_parameters",
]
