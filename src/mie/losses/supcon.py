"""Supervised contrastive loss (Khosla et al., 2020, "Supervised Contrastive Learning"), the
``L_out`` form: for each anchor, the mean log-probability of all same-label views.

    >>> loss = SupervisedContrastiveLoss(temperature=0.1)(view1, view2, labels=class_ids)
    >>> loss = SupervisedContrastiveLoss()(features, labels=class_ids)    # one view, or [B, V, D]
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from mie.losses.base import (
    LossBase,
    check_ids,
    check_positive,
    check_same_shape,
    check_tensor,
    diagnostics_enabled,
)
from mie.losses.distributed import gather_no_grad, gather_with_grad
from mie.losses.registry import register_loss


@register_loss("supcon")
class SupervisedContrastiveLoss(LossBase):
    """SupCon over all views of a batch; positives share a label, the anchor itself is excluded.

    Features are ``a`` (``[B, D]`` or ``[B, V, D]``) plus an optional second view ``b``; ``labels``
    (or ``match_ids``) are ``[B]`` ints. Without labels every sample is its own class (SimCLR).
    Anchors with no positive are left out of the mean. The loss is scaled by
    ``temperature / base_temperature`` as in the paper's code.
    """

    consumes: ClassVar[dict[str, str]] = {"a": "image_embeds", "b": "text_embeds", "labels": "labels",
                                          "match_ids": "match_ids"}

    min_batch = 1

    def __init__(
        self,
        temperature: float = 0.07,
        base_temperature: float = 0.07,
        normalize: bool = True,
        gather_distributed: bool = False,
    ) -> None:
        super().__init__()
        self.temperature = check_positive(temperature, "temperature")
        self.base_temperature = check_positive(base_temperature, "base_temperature")
        self.normalize = normalize
        self.gather_distributed = gather_distributed

    def _views(self, a: Tensor, b: Tensor | None) -> Tensor:
        a = check_tensor(a, "features", ndim=None)
        if a.dim() not in (2, 3):
            raise ValueError(f"features must be [B, D] or [B, V, D], got shape {tuple(a.shape)}")
        views = a if a.dim() == 3 else a[:, None]
        if b is not None:
            b = check_tensor(b, "second view", ndim=None)
            check_same_shape(a, b, "features", "second view")
            views = torch.cat([views, b if b.dim() == 3 else b[:, None]], dim=1)
        return F.normalize(views, dim=-1) if self.normalize else views

    def forward(
        self,
        a: Tensor,
        b: Tensor | None = None,
        labels: Tensor | None = None,
        match_ids: Tensor | None = None,
    ) -> Tensor:
        """Mean SupCon loss over anchors that have at least one positive (a scalar)."""
        views = self._views(a, b)
        batch, n_views = views.shape[:2]
        labels = labels if labels is not None else match_ids
        if labels is None:
            labels = torch.arange(batch, device=views.device)
        labels = check_ids(labels, batch, "labels").to(views.device)
        feats_all, offset = gather_with_grad(views) if self.gather_distributed else (views, 0)
        labels_all = gather_no_grad(labels) if self.gather_distributed else labels
        # Anchors: local views, view-major; contrast set: all (gathered) views, view-major.
        anchors = views.transpose(0, 1).reshape(n_views * batch, -1)
        contrast = feats_all.transpose(0, 1).reshape(n_views * feats_all.shape[0], -1)
        anchor_labels, contrast_labels = labels.repeat(n_views), labels_all.repeat(n_views)
        n_all = feats_all.shape[0]
        self_index = (torch.arange(batch, device=views.device) + offset).repeat(n_views)
        self_index = self_index + n_all * torch.arange(n_views, device=views.device).repeat_interleave(batch)
        logits = anchors @ contrast.T / self.temperature
        not_self = torch.arange(logits.shape[1], device=logits.device)[None, :] != self_index[:, None]
        positive = (anchor_labels[:, None] == contrast_labels[None, :]) & not_self
        log_prob = logits - torch.logsumexp(logits.masked_fill(~not_self, float("-inf")), dim=1, keepdim=True)
        n_pos = positive.sum(1)
        valid = n_pos > 0
        if diagnostics_enabled() and not bool(valid.any()):
            raise ValueError("no anchor has a positive: pass labels with repeats or a second view")
        # The mean over the anchors with a positive, as weights (no data-dependent selection); with
        # none at all (possible only with diagnostics off) it is 0 / 0, a non-finite loss.
        mean_log_prob = (log_prob * positive).sum(1) / n_pos.clamp_min(1)
        mean_over_valid = (mean_log_prob * valid).sum() / valid.sum()
        loss = -(self.temperature / self.base_temperature) * mean_over_valid
        self.record(loss=loss, anchors_with_positives=valid.float().mean())
        return loss
