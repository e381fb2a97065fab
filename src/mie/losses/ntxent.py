"""NT-Xent, the SimCLR loss (Chen et al., 2020, "A Simple Framework for Contrastive Learning of Visual
Representations"): 2N views, each view's positive is its pair, the other 2N - 2 views are negatives.

    >>> loss = NTXentLoss(temperature=0.5)(view1_embeds, view2_embeds)
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from mie.losses.base import LossBase, check_positive
from mie.losses.distributed import gather_with_grad
from mie.losses.registry import register_loss


def two_view_logits(a: Tensor, b: Tensor, temperature: float, gather: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Logits of the 2B local views against all 2N views (gathered over ranks when ``gather``).

    Returns ``(logits [2B, 2N], self_index [2B], positive_index [2B])``; keys are laid out as
    ``[a of all ranks, b of all ranks]`` so that local row ``i`` of ``a`` sits at ``offset + i``.
    """
    a_all, offset = gather_with_grad(a) if gather else (a, 0)
    b_all, _ = gather_with_grad(b) if gather else (b, 0)
    n_all, local = a_all.shape[0], torch.arange(a.shape[0], device=a.device) + offset
    queries, keys = torch.cat([a, b]), torch.cat([a_all, b_all])
    self_index = torch.cat([local, local + n_all])
    positive_index = torch.cat([local + n_all, local])
    return queries @ keys.T / temperature, self_index, positive_index


@register_loss("ntxent")
class NTXentLoss(LossBase):
    """Normalised-temperature cross-entropy over the 2N views of N pairs (symmetric in the two views)."""

    consumes: ClassVar[dict[str, str]] = {"a": "image_embeds", "b": "text_embeds"}

    min_batch = 2

    def __init__(
        self, temperature: float = 0.5, normalize: bool = True, gather_distributed: bool = False
    ) -> None:
        super().__init__()
        self.temperature = check_positive(temperature, "temperature")
        self.normalize = normalize
        self.gather_distributed = gather_distributed

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Mean cross-entropy over all 2B views (a scalar)."""
        a, b = self.check_pair(a, b, "view1", "view2")
        if self.normalize:
            a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
        logits, self_index, positive_index = two_view_logits(a, b, self.temperature, self.gather_distributed)
        rows = torch.arange(logits.shape[0], device=logits.device)
        # A view is never its own negative: drop it from the softmax.
        logits = logits.index_put((rows, self_index), logits.new_full((), float("-inf")))
        loss = F.cross_entropy(logits, positive_index)
        self.record(loss=loss, **self.pair_stats(a, b))
        return loss
