"""A weighted mix of cross-modal InfoNCE, NT-Xent over the 2N image and text views, and a supervised
contrastive term from class labels, as used for multimodal pre-training with partial labels (e.g.
Mu et al., 2022, "SLIP: Self-supervision meets Language-Image Pre-training" mixes CLIP and SimCLR).

    >>> loss_fn = MultimodalMixedContrastiveLoss(infonce_weight=1.0, ntxent_weight=0.5, supervised_weight=0.5)
    >>> loss = loss_fn(image_embeds, text_embeds, labels=class_ids)
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from mie.losses.base import LossBase
from mie.losses.contrastive import ContrastiveLoss
from mie.losses.ntxent import NTXentLoss
from mie.losses.registry import register_loss
from mie.losses.supcon import SupervisedContrastiveLoss


@register_loss("multimodal_mixed")
class MultimodalMixedContrastiveLoss(LossBase):
    """``w_infonce * InfoNCE + w_ntxent * NT-Xent + w_supervised * SupCon``.

    The supervised term needs ``labels`` (``match_ids`` are used when labels are absent); with neither
    it is skipped. ``match_ids`` also mark InfoNCE positives.
    """

    consumes: ClassVar[dict[str, str]] = {"image_embeds": "image_embeds", "text_embeds": "text_embeds",
                                          "labels": "labels", "match_ids": "match_ids"}

    min_batch = 2

    def __init__(
        self,
        temperature: float = 0.07,
        infonce_weight: float = 1.0,
        ntxent_weight: float = 0.5,
        supervised_weight: float = 0.5,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        weights = {
            "infonce_weight": infonce_weight,
            "ntxent_weight": ntxent_weight,
            "supervised_weight": supervised_weight,
        }
        for name, value in weights.items():
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if sum(weights.values()) <= 0:
            raise ValueError("at least one of infonce_weight, ntxent_weight, supervised_weight must be > 0")
        self.weights = {k.removesuffix("_weight"): float(v) for k, v in weights.items()}
        self.infonce = ContrastiveLoss(temperature=temperature, normalize=normalize)
        self.ntxent = NTXentLoss(temperature=temperature, normalize=normalize)
        self.supervised = SupervisedContrastiveLoss(
            temperature, base_temperature=temperature, normalize=normalize
        )

    def forward(
        self,
        image_embeds: Tensor,
        text_embeds: Tensor,
        labels: Tensor | None = None,
        match_ids: Tensor | None = None,
    ) -> Tensor:
        """The weighted sum of the active terms (a scalar)."""
        img, txt = self.check_pair(image_embeds, text_embeds, "image_embeds", "text_embeds")
        terms: dict[str, Tensor] = {}
        if self.weights["infonce"]:
            terms["infonce"] = self.infonce(img, txt, match_ids=match_ids)
        if self.weights["ntxent"]:
            terms["ntxent"] = self.ntxent(img, txt)
        class_ids = labels if labels is not None else match_ids
        if self.weights["supervised"] and class_ids is not None:
            terms["supervised"] = self.supervised(img, txt, labels=class_ids)
        if not terms:
            raise ValueError(
                "only the supervised term is enabled but neither labels nor match_ids were given"
            )
        loss = sum(self.weights[name] * value for name, value in terms.items())
        self.record(loss=loss, **{f"loss_{name}": value for name, value in terms.items()})
        return loss
