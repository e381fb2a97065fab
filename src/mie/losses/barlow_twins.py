"""Barlow Twins (Zbontar et al., 2021, "Barlow Twins: Self-Supervised Learning via Redundancy Reduction"):
drive the cross-correlation matrix of the two batch-standardised views to the identity.

    >>> loss = BarlowTwinsLoss(lambda_offdiag=5e-3)(view1_embeds, view2_embeds)
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from mie.losses.base import LossBase
from mie.losses.registry import register_loss


def standardize(x: Tensor, eps: float) -> Tensor:
    """Per-dimension batch standardisation (what ``BatchNorm1d(affine=False)`` does in training mode)."""
    return (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + eps)


@register_loss("barlow_twins")
class BarlowTwinsLoss(LossBase):
    """``sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2`` with ``C = z_a^T z_b / N``."""

    consumes: ClassVar[dict[str, str]] = {"a": "image_embeds", "b": "text_embeds"}

    min_batch = 2

    def __init__(self, lambda_offdiag: float = 5e-3, eps: float = 1e-5) -> None:
        super().__init__()
        if lambda_offdiag < 0:
            raise ValueError(f"lambda_offdiag must be >= 0, got {lambda_offdiag}")
        self.lambda_offdiag, self.eps = float(lambda_offdiag), float(eps)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Invariance plus weighted redundancy-reduction term (a scalar)."""
        a, b = self.check_pair(a, b, "view1", "view2")
        corr = standardize(a, self.eps).T @ standardize(b, self.eps) / a.shape[0]
        diag = corr.diagonal()
        on_diag = (1 - diag).pow(2).sum()
        off_diag = corr.pow(2).sum() - diag.pow(2).sum()
        loss = on_diag + self.lambda_offdiag * off_diag
        self.record(loss=loss, on_diag=on_diag, off_diag=off_diag)
        return loss
