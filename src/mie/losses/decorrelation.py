"""Feature decorrelation regulariser, DeCov (Cogswell et al., 2016, "Reducing Overfitting in Deep
Networks by Decorrelating Representations"), with a scale-free correlation variant.

    >>> loss = DecorrelationLoss()(image_embeds)                 # one or two embedding batches
    >>> loss = DecorrelationLoss(mode="correlation")(image_embeds, text_embeds)
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from mie.losses.base import LossBase, check_same_shape, check_tensor
from mie.losses.registry import register_loss

_MODES = ("covariance", "correlation")


@register_loss("decorrelation")
class DecorrelationLoss(LossBase):
    """Penalty on off-diagonal feature (co)variances over the batch.

    ``covariance`` is DeCov: ``0.5 * (||C||_F^2 - ||diag C||^2)`` with the biased covariance ``C``.
    ``correlation`` uses the correlation matrix and averages the squared off-diagonal entries, so it is
    in [0, 1] whatever the feature scale. With two inputs the two penalties are averaged.
    """

    consumes: ClassVar[dict[str, str]] = {"a": "image_embeds", "b": "text_embeds"}

    min_batch = 2

    def __init__(self, mode: str = "covariance", eps: float = 1e-5) -> None:
        super().__init__()
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        self.mode, self.eps = mode, float(eps)

    def _penalty(self, x: Tensor) -> Tensor:
        n, d = x.shape
        x = x - x.mean(0)
        if self.mode == "correlation":
            x = x / torch.sqrt(x.pow(2).mean(0) + self.eps)
        cov = x.T @ x / n
        off = cov.pow(2).sum() - cov.diagonal().pow(2).sum()
        return 0.5 * off if self.mode == "covariance" else off / max(d * (d - 1), 1)

    def forward(self, a: Tensor, b: Tensor | None = None) -> Tensor:
        """The penalty of ``a`` (averaged with that of ``b`` when given)."""
        a = check_tensor(a, "a", ndim=2, min_batch=self.min_batch)
        if b is None:
            loss = self._penalty(a)
        else:
            b = check_tensor(b, "b", ndim=2, min_batch=self.min_batch)
            check_same_shape(a, b, "a", "b")
            loss = (self._penalty(a) + self._penalty(b)) / 2
        self.record(loss=loss)
        return loss
