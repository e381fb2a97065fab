"""The plainest symmetric contrastive loss: cross-entropy over a cosine-similarity matrix with the
diagonal as targets (as in CLIP, Radford et al., 2021), with a choice of reduction.

    >>> per_pair = SimpleContrastiveLoss(reduction="none")(image_embeds, text_embeds)   # shape [B]
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from mie.losses.base import LossBase, check_positive
from mie.losses.distributed import gather_with_grad
from mie.losses.registry import register_loss

_REDUCTIONS = ("mean", "sum", "none")


@register_loss("simple_contrastive")
class SimpleContrastiveLoss(LossBase):
    """Per-pair loss ``(CE(a_i -> b) + CE(b_i -> a)) / 2`` reduced by ``mean``, ``sum`` or ``none``.

    ``reduction="none"`` returns the ``[B]`` per-pair losses (useful for hard-example mining);
    the other reductions return a scalar.
    """

    consumes: ClassVar[dict[str, str]] = {"a": "image_embeds", "b": "text_embeds"}

    def __init__(
        self,
        temperature: float = 0.07,
        normalize: bool = True,
        reduction: str = "mean",
        gather_distributed: bool = False,
    ) -> None:
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.temperature = check_positive(temperature, "temperature")
        self.normalize = normalize
        self.reduction = reduction
        self.gather_distributed = gather_distributed

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """The reduced symmetric cross-entropy."""
        a, b = self.check_pair(a, b)
        if self.normalize:
            a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
        a_all, offset = gather_with_grad(a) if self.gather_distributed else (a, 0)
        b_all, _ = gather_with_grad(b) if self.gather_distributed else (b, 0)
        targets = torch.arange(a.shape[0], device=a.device) + offset
        per_ab = F.cross_entropy(a @ b_all.T / self.temperature, targets, reduction="none")
        per_ba = F.cross_entropy(b @ a_all.T / self.temperature, targets, reduction="none")
        per_pair = (per_ab + per_ba) / 2
        loss = per_pair if self.reduction == "none" else getattr(per_pair, self.reduction)()
        self.record(loss=per_pair.mean(), **self.pair_stats(a, b))
        return loss
