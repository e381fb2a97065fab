"""Training: ``BaseTrainer`` owns the loop, trainers fill in the steps, callbacks observe."""

from mie.training.base import BaseTrainer, batch_size_of, move_to_device, resolve_device
from mie.training.callbacks import (
    Callback,
    CallbackList,
    EarlyStopping,
    MetricsLogger,
    ModelCheckpoint,
    ProgressBar,
)
from mie.training.multimodal import MultimodalTrainer
from mie.training.optim import create_optimizer, split_decay_parameters
from mie.training.rng import capture_rng_state, restore_rng_state, set_seed
from mie.training.schedules import build_scheduler, lr_multiplier

__all__ = [
    "BaseTrainer",
    "Callback",
    "CallbackList",
    "EarlyStopping",
    "MetricsLogger",
    "ModelCheckpoint",
    "MultimodalTrainer",
    "ProgressBar",
    "batch_size_of",
    "build_scheduler",
    "capture_rng_state",
    "create_optimizer",
    "lr_multiplier",
    "move_to_device",
    "resolve_device",
    "restore_rng_state",
    "set_seed",
    "split_decay_parameters",
]
