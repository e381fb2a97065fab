"""mie.losses: one module per loss, each registered by name.

    >>> from mie.losses import build_loss, LOSSES
    >>> loss_fn = build_loss("clip", temperature=0.07)
    >>> loss = loss_fn(image_embeds, text_embeds)
    >>> loss_fn.last_metrics                      # detached floats for logging

Importing this package imports every loss module so that ``LOSSES`` is complete.
"""

from mie.losses.base import LogitScale, LossBase
from mie.losses.clip import CLIPStyleLoss
from mie.losses.registry import LOSSES, build_loss, loss_arguments, register_loss

__all__ = [
    "LOSSES",
    "CLIPStyleLoss",
    "LogitScale",
    "LossBase",
    "build_loss",
    "loss_arguments",
    "register_loss",
]
