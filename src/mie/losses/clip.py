"""CLIP's symmetric InfoNCE loss (Radford et al., 2021, "Learning Transferable Visual Models From
Natural Language Supervision").

    >>> loss_fn = CLIPStyleLoss(temperature=0.07)
    >>> loss = loss_fn(image_embeds, text_embeds)                     # loss's own temperature
    >>> loss = loss_fn(image_embeds, text_embeds, logit_scale=model.logit_scale.exp())
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from mie.losses.base import LogitScale, LossBase, check_ids, check_scale
from mie.losses.distributed import gather_no_grad, gather_with_grad
from mie.losses.infonce import info_nce
from mie.losses.registry import register_loss


@register_loss("clip")
class CLIPStyleLoss(LossBase):
    """Symmetric image<->text InfoNCE with a fixed or learnable temperature and label smoothing.

    ``match_ids`` (one int per pair): every text sharing an image's id is a positive for it (targets
    spread uniformly over them), so the same image twice in a batch is never a negative.
    ``chunk_size`` computes the log-sum-exp over column chunks with recomputation in backward: peak
    memory is linear in B (no B x B logits) and the result equals dense mode; match_ids and label
    smoothing are supported there too. ``gather_distributed`` compares local features with the
    features of all ranks (labels offset by ``rank * B``). ``negative_text_embeds`` (NegCLIP's hard
    negative captions, ``data.caption_swaps``) are extra columns of the image->text direction only: each
    image must rank its own caption above every caption of the batch and every negative (this rank's).
    """

    consumes: ClassVar[dict[str, str]] = {"image_embeds": "image_embeds", "text_embeds": "text_embeds",
                                          "logit_scale": "logit_scale", "match_ids": "match_ids",
                                          "negative_text_embeds": "negative_text_embeds"}

    min_batch = 1

    def __init__(
        self,
        temperature: float = 0.07,
        learnable_temperature: bool = False,
        label_smoothing: float = 0.0,
        max_logit_scale: float = 100.0,
        normalize: bool = True,
        chunk_size: int | None = None,
        gather_distributed: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if chunk_size is not None and int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size}")
        self.logit_scale = LogitScale(temperature, learnable_temperature, max_logit_scale)
        self.label_smoothing = float(label_smoothing)
        self.normalize = normalize
        self.chunk_size = chunk_size
        self.gather_distributed = gather_distributed

    def forward(
        self,
        image_embeds: Tensor,
        text_embeds: Tensor,
        logit_scale: Tensor | float | None = None,
        match_ids: Tensor | None = None,
        negative_text_embeds: Tensor | None = None,
    ) -> Tensor:
        """Mean of the image->text and text->image cross-entropies (a scalar).

        ``logit_scale`` is the multiplier itself (``1 / temperature``, e.g. ``model.logit_scale.exp()``);
        when omitted the loss's own temperature is used.
        """
        img, txt = self.check_pair(image_embeds, text_embeds, "image_embeds", "text_embeds")
        if self.normalize:
            img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
        scale = self.logit_scale() if logit_scale is None else check_scale(logit_scale, device=img.device)
        scale = scale.to(img.dtype)
        ids = None if match_ids is None else check_ids(match_ids, img.shape[0]).to(img.device)
        img_all, offset = gather_with_grad(img) if self.gather_distributed else (img, 0)
        txt_all, _ = gather_with_grad(txt) if self.gather_distributed else (txt, 0)
        ids_all = gather_no_grad(ids) if (ids is not None and self.gather_distributed) else ids
        common = dict(offset=offset, q_ids=ids, label_smoothing=self.label_smoothing, chunk_size=self.chunk_size)
        text_keys, text_ids = txt_all, ids_all
        if negative_text_embeds is not None and negative_text_embeds.shape[0]:
            neg = negative_text_embeds.to(txt_all.dtype)
            neg = F.normalize(neg, dim=-1) if self.normalize else neg
            # After the batch's captions, so the positives' columns (offset) do not move; id -1 is no image's.
            text_keys = torch.cat([txt_all, neg])
            if ids_all is not None:
                text_ids = torch.cat([ids_all, ids_all.new_full((neg.shape[0],), -1)])
        loss_i2t = info_nce(img, text_keys, scale, k_ids=text_ids, **common).mean()
        loss_t2i = info_nce(txt, img_all, scale, k_ids=ids_all, **common).mean()
        loss = (loss_i2t + loss_t2i) / 2
        self.record(
            loss=loss,
            loss_i2t=loss_i2t,
            loss_t2i=loss_t2i,
            logit_scale=scale,
            temperature=1.0 / scale,
            **self.pair_stats(img, txt, ids),
        )
        return loss
