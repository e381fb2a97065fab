"""Contrastive loss with hard-negative up-weighting (Robinson et al., 2021, "Contrastive Learning with
Hard Negative Samples"), plus a semi-hard variant in the spirit of FaceNet (Schroff et al., 2015).

Each negative's term in the InfoNCE denominator is multiplied by an importance weight
``w_ij = M * exp(beta * s_ij) / sum_k exp(beta * s_ik)`` (mean 1 over the M weighted negatives), so
negatives that look like the positive count more. ``mode="semi_hard"`` up-weights only negatives less
similar than the positive (those more similar are likely false negatives and keep weight 1).

    >>> loss = HardNegativeLoss(temperature=0.1, beta=2.0)(image_embeds, text_embeds)
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from mie.losses.base import LossBase, check_positive, diagnostics_enabled
from mie.losses.registry import register_loss

_MODES = ("hard", "semi_hard")


@register_loss("hard_negative")
class HardNegativeLoss(LossBase):
    """Symmetric InfoNCE whose negatives are re-weighted by hardness (``beta = 0`` gives plain InfoNCE)."""

    consumes: ClassVar[dict[str, str]] = {"a": "image_embeds", "b": "text_embeds"}

    min_batch = 2

    def __init__(
        self, temperature: float = 0.07, beta: float = 1.0, mode: str = "hard", normalize: bool = True
    ) -> None:
        super().__init__()
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.temperature = check_positive(temperature, "temperature")
        self.beta = float(beta)
        self.mode = mode
        self.normalize = normalize

    @torch.no_grad()
    def weights(self, sims: Tensor) -> Tensor:
        """Detached importance weights ``[B, B]`` for the negatives of each row (the diagonal is unused)."""
        eye = torch.eye(sims.shape[0], dtype=torch.bool, device=sims.device)
        weighted = ~eye
        if self.mode == "semi_hard":
            weighted &= sims < sims.diagonal()[:, None]
        scores = (self.beta * sims).masked_fill(~weighted, float("-inf"))
        count = weighted.sum(1, keepdim=True)
        # Rows with nothing to weight produce NaN from softmax over all -inf; they keep weight 1.
        importance = torch.nan_to_num(torch.softmax(scores, dim=1), nan=0.0) * count
        return torch.where(weighted, importance, torch.ones_like(sims))

    def _direction(self, q: Tensor, k: Tensor) -> Tensor:
        sims = q @ k.T
        logits = sims / self.temperature
        eye = torch.eye(q.shape[0], dtype=torch.bool, device=q.device)
        # log(w * e^l) = l + log w; the positive keeps weight 1.
        weighted = torch.where(eye, logits, logits + self.weights(sims.detach()).clamp_min(1e-30).log())
        return (torch.logsumexp(weighted, dim=1) - logits.diagonal()).mean()

    @torch.no_grad()
    def _stats(self, a: Tensor, b: Tensor) -> dict[str, Tensor | float]:
        """Diagnostics: the fraction of a->b negatives less similar than their positive, and pair stats."""
        sims = a @ b.T
        n = a.shape[0]
        easier = (sims < sims.diagonal()[:, None]).float().sum() / max(n * (n - 1), 1)  # never the diagonal
        return {"semi_hard_fraction": easier, **self.pair_stats(a, b)}

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Mean of the two directions' weighted InfoNCE (a scalar)."""
        a, b = self.check_pair(a, b)
        if self.normalize:
            a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
        loss = (self._direction(a, b) + self._direction(b, a)) / 2
        self.record(loss=loss, **(self._stats(a, b) if diagnostics_enabled() else {}))
        return loss
