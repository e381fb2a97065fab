"""Feature consistency: keep features close to those of a frozen reference model, as in feature
distillation against forgetting (Li & Hoiem, 2017, "Learning without Forgetting"; Romero et al., 2015,
"FitNets").

    >>> loss = FeatureConsistencyLoss(distance="cosine")(student_features, frozen_features)
"""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor

from mie.losses.base import LossBase, check_same_shape, check_tensor
from mie.losses.registry import register_loss

_DISTANCES = ("cosine", "l2", "l1", "smooth_l1")


@register_loss("feature_consistency")
class FeatureConsistencyLoss(LossBase):
    """Distance between ``features`` and detached ``reference`` features (``[..., D]``, same shape).

    ``cosine``: mean ``1 - cos``; ``l2``: mean squared error; ``l1``: mean absolute error;
    ``smooth_l1``: Huber with threshold ``beta``. No gradient reaches the reference.
    """

    consumes: ClassVar[dict[str, str]] = {"features": "features", "reference": "reference_features"}

    def __init__(self, distance: str = "cosine", beta: float = 1.0) -> None:
        super().__init__()
        if distance not in _DISTANCES:
            raise ValueError(f"distance must be one of {_DISTANCES}, got {distance!r}")
        if beta <= 0:
            raise ValueError(f"beta must be > 0, got {beta}")
        self.distance, self.beta = distance, float(beta)

    def forward(self, features: Tensor, reference: Tensor) -> Tensor:
        """Mean distance to the frozen reference (a scalar)."""
        features = check_tensor(features, "features", ndim=None)
        reference = check_tensor(reference, "reference", ndim=None).detach()
        check_same_shape(features, reference, "features", "reference")
        if self.distance == "cosine":
            loss = (1 - F.cosine_similarity(features, reference, dim=-1)).mean()
        elif self.distance == "l2":
            loss = F.mse_loss(features, reference)
        elif self.distance == "l1":
            loss = F.l1_loss(features, reference)
        else:
            loss = F.smooth_l1_loss(features, reference, beta=self.beta)
        self.record(loss=loss, cosine=F.cosine_similarity(features, reference, dim=-1).mean())
        return loss
