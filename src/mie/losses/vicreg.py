"""VICReg: variance-invariance-covariance regularisation (Bardes et al., 2022, "VICReg: Variance-Invariance-
Covariance Regularization for Self-Supervised Learning").

    >>> loss = VICRegLoss(sim_coeff=25, std_coeff=25, cov_coeff=1)(view1_embeds, view2_embeds)
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from mie.losses.base import LossBase
from mie.losses.registry import register_loss


def variance_term(x: Tensor, gamma: float, eps: float) -> Tensor:
    """Hinge on the per-dimension standard deviation: ``mean_d relu(gamma - sqrt(var_d + eps))``."""
    return F.relu(gamma - torch.sqrt(x.var(dim=0) + eps)).mean()


def covariance_term(x: Tensor) -> Tensor:
    """Sum of squared off-diagonal covariances divided by the dimension."""
    n, d = x.shape
    x = x - x.mean(0)
    cov = x.T @ x / (n - 1)
    return (cov.pow(2).sum() - cov.diagonal().pow(2).sum()) / d


@register_loss("vicreg")
class VICRegLoss(LossBase):
    """``sim_coeff * MSE(a, b) + std_coeff * variance + cov_coeff * covariance`` (variance and covariance
    averaged over the two branches, as in the paper's pseudo-code)."""

    consumes: ClassVar[dict[str, str]] = {"a": "image_embeds", "b": "text_embeds"}

    min_batch = 2

    def __init__(
        self,
        sim_coeff: float = 25.0,
        std_coeff: float = 25.0,
        cov_coeff: float = 1.0,
        gamma: float = 1.0,
        eps: float = 1e-4,
    ) -> None:
        super().__init__()
        for name, value in {"sim_coeff": sim_coeff, "std_coeff": std_coeff, "cov_coeff": cov_coeff}.items():
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        self.sim_coeff, self.std_coeff, self.cov_coeff = float(sim_coeff), float(std_coeff), float(cov_coeff)
        self.gamma, self.eps = float(gamma), float(eps)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """The weighted VICReg objective (a scalar)."""
        a, b = self.check_pair(a, b, "view1", "view2")
        invariance = F.mse_loss(a, b)
        variance = (variance_term(a, self.gamma, self.eps) + variance_term(b, self.gamma, self.eps)) / 2
        covariance = covariance_term(a) + covariance_term(b)
        loss = self.sim_coeff * invariance + self.std_coeff * variance + self.cov_coeff * covariance
        self.record(loss=loss, invariance=invariance, variance=variance, covariance=covariance)
        return loss
