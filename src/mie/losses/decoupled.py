"""Decoupled contrastive loss, DCL / DCLW (Yeh et al., 2022, "Decoupled Contrastive Learning").

NT-Xent with the positive removed from the denominator, which removes the negative-positive coupling
that makes small batches hard; DCLW additionally weights the positive term with a von Mises-Fisher
weight ``w_i = 2 - N * softmax_i(a_i . b_i / sigma)`` so hard positives count more.

    >>> loss = DecoupledContrastiveLoss(temperature=0.1)(view1_embeds, view2_embeds)
    >>> loss = DecoupledContrastiveLoss(weighting="vmf", sigma=0.5)(view1_embeds, view2_embeds)
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from mie.losses.base import LossBase, check_positive
from mie.losses.distributed import gather_with_grad
from mie.losses.ntxent import two_view_logits
from mie.losses.registry import register_loss


@register_loss("decoupled")
class DecoupledContrastiveLoss(LossBase):
    """``loss_i = -w_i * s_ip / T + logsumexp_{negatives} s_ij / T`` averaged over the 2N views.

    ``weighting=None`` is DCL (``w = 1``); ``weighting="vmf"`` is DCLW. The weights are computed on
    detached similarities over the whole (gathered) batch.
    """

    consumes: ClassVar[dict[str, str]] = {"a": "image_embeds", "b": "text_embeds"}

    min_batch = 2

    def __init__(
        self,
        temperature: float = 0.1,
        weighting: str | None = None,
        sigma: float = 0.5,
        normalize: bool = True,
        gather_distributed: bool = False,
    ) -> None:
        super().__init__()
        if weighting not in (None, "vmf"):
            raise ValueError(f"weighting must be None or 'vmf', got {weighting!r}")
        self.temperature = check_positive(temperature, "temperature")
        self.weighting = weighting
        self.sigma = check_positive(sigma, "sigma")
        self.normalize = normalize
        self.gather_distributed = gather_distributed

    def _weights(self, a: Tensor, b: Tensor) -> Tensor:
        if self.weighting is None:
            return a.new_ones(2 * a.shape[0])
        with torch.no_grad():
            a_all, offset = gather_with_grad(a) if self.gather_distributed else (a, 0)
            b_all, _ = gather_with_grad(b) if self.gather_distributed else (b, 0)
            sims = (a_all * b_all).sum(-1) / self.sigma
            weights = 2 - a_all.shape[0] * torch.softmax(sims, dim=0)
            local = weights[offset : offset + a.shape[0]]
        return torch.cat([local, local])

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Mean DCL(W) loss over the 2B views (a scalar)."""
        a, b = self.check_pair(a, b, "view1", "view2")
        if self.normalize:
            a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
        logits, self_index, positive_index = two_view_logits(a, b, self.temperature, self.gather_distributed)
        rows = torch.arange(logits.shape[0], device=logits.device)
        positive = logits[rows, positive_index]
        # Decoupling: both the view itself and its positive leave the denominator.
        negatives = logits.index_put((rows, self_index), logits.new_full((), float("-inf")))
        negatives = negatives.index_put((rows, positive_index), logits.new_full((), float("-inf")))
        per_view = -self._weights(a, b) * positive + torch.logsumexp(negatives, dim=1)
        loss = per_view.mean()
        self.record(loss=loss, positive_term=-positive.mean(), **self.pair_stats(a, b))
        return loss
