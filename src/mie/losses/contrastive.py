"""InfoNCE contrastive loss (van den Oord et al., 2018, "Representation Learning with Contrastive
Predictive Coding"), one direction or symmetric, with a fixed temperature.

    >>> loss = ContrastiveLoss(temperature=0.1)(queries, keys)          # diagonal pairs are positive
    >>> loss = ContrastiveLoss(symmetric=False)(queries, keys, match_ids=ids)
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from mie.losses.base import LossBase, check_ids, check_positive
from mie.losses.distributed import gather_no_grad, gather_with_grad
from mie.losses.infonce import info_nce
from mie.losses.registry import register_loss


@register_loss("contrastive")
class ContrastiveLoss(LossBase):
    """InfoNCE of ``a`` against ``b`` (and ``b`` against ``a`` when ``symmetric``).

    Without ``match_ids`` row ``i`` of ``a`` pairs with row ``i`` of ``b``; with them every entry sharing
    an id is a positive (targets spread uniformly).
    """

    consumes: ClassVar[dict[str, str]] = {"a": "image_embeds", "b": "text_embeds", "match_ids": "match_ids"}

    def __init__(
        self,
        temperature: float = 0.07,
        symmetric: bool = True,
        normalize: bool = True,
        gather_distributed: bool = False,
    ) -> None:
        super().__init__()
        self.temperature = check_positive(temperature, "temperature")
        self.symmetric = symmetric
        self.normalize = normalize
        self.gather_distributed = gather_distributed

    def forward(self, a: Tensor, b: Tensor, match_ids: Tensor | None = None) -> Tensor:
        """Mean InfoNCE loss (a scalar)."""
        a, b = self.check_pair(a, b)
        if self.normalize:
            a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
        ids = None if match_ids is None else check_ids(match_ids, a.shape[0]).to(a.device)
        scale = torch.full((), 1.0 / self.temperature, dtype=a.dtype, device=a.device)
        b_all, offset = gather_with_grad(b) if self.gather_distributed else (b, 0)
        ids_all = gather_no_grad(ids) if (ids is not None and self.gather_distributed) else ids
        loss_ab = info_nce(a, b_all, scale, offset=offset, q_ids=ids, k_ids=ids_all).mean()
        terms = {"loss_ab": loss_ab}
        loss = loss_ab
        if self.symmetric:
            a_all, _ = gather_with_grad(a) if self.gather_distributed else (a, 0)
            loss_ba = info_nce(b, a_all, scale, offset=offset, q_ids=ids, k_ids=ids_all).mean()
            terms["loss_ba"] = loss_ba
            loss = (loss_ab + loss_ba) / 2
        self.record(loss=loss, **terms, **self.pair_stats(a, b, ids))
        return loss
