"""Token / class cross-entropy with label smoothing (Szegedy et al., 2016, "Rethinking the Inception
Architecture") and an ignored padding index, for language modelling, seq2seq and classification.

    >>> loss = CrossEntropyLoss(label_smoothing=0.1, ignore_index=0)(logits, targets)
    >>> # logits [B, T, V] with targets [B, T], or logits [B, C] with targets [B]
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from mie.losses.base import LossBase, check_tensor, diagnostics_enabled
from mie.losses.registry import register_loss


@register_loss("cross_entropy")
class CrossEntropyLoss(LossBase):
    """Mean cross-entropy over the targets that are not ``ignore_index``.

    When every target is ignored the loss is an exact zero that still depends on the logits (so a
    batch of padding does not produce NaN). Metrics: ``nll`` (without smoothing), ``perplexity``,
    ``accuracy`` and ``tokens`` over the counted targets.
    """

    consumes: ClassVar[dict[str, str]] = {"logits": "logits", "targets": "targets"}

    def __init__(self, label_smoothing: float = 0.0, ignore_index: int = -100) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing, self.ignore_index = float(label_smoothing), int(ignore_index)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Cross-entropy of ``logits [..., C]`` against integer ``targets [...]`` (a scalar)."""
        logits = check_tensor(logits, "logits", ndim=None)
        if logits.dim() < 2:
            raise ValueError(
                f"logits must be [..., num_classes] with a batch dimension, got shape {tuple(logits.shape)}"
            )
        if not isinstance(targets, Tensor) or targets.is_floating_point():
            raise ValueError("targets must be an integer torch.Tensor of class indices")
        if targets.shape != logits.shape[:-1]:
            raise ValueError(
                f"targets shape {tuple(targets.shape)} must equal logits shape without the last dim "
                f"{tuple(logits.shape[:-1])}"
            )
        flat_logits, flat_targets = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).long()
        counted = flat_targets != self.ignore_index
        if diagnostics_enabled():  # a value check: it reads the targets back
            bad = counted & ((flat_targets < 0) | (flat_targets >= logits.shape[-1]))
            if bool(bad.any()):
                raise ValueError(
                    f"targets contain {flat_targets[bad][0].item()} outside [0, {logits.shape[-1]}) "
                    f"(ignore_index is {self.ignore_index})"
                )
        # The summed loss over the counted targets divided by their number (at least 1): the mean
        # without reading the count back, and an exact zero when every target is ignored.
        n_counted = counted.sum()
        loss = F.cross_entropy(
            flat_logits, flat_targets, ignore_index=self.ignore_index, label_smoothing=self.label_smoothing,
            reduction="sum",
        ) / n_counted.clamp_min(1)
        if not diagnostics_enabled():
            self.record()
            return loss
        tokens = int(n_counted)
        if tokens == 0:
            self.record(loss=loss, nll=0.0, perplexity=1.0, accuracy=0.0, tokens=0)
            return loss
        with torch.no_grad():
            nll = F.cross_entropy(flat_logits, flat_targets, ignore_index=self.ignore_index)
            accuracy = ((flat_logits.argmax(-1) == flat_targets) & counted).sum() / tokens
        self.record(loss=loss, nll=nll, perplexity=math.exp(min(float(nll), 50.0)), accuracy=accuracy,
                    tokens=tokens)
        return loss
