"""SigLIP pairwise sigmoid loss (Zhai et al., 2023, "Sigmoid Loss for Language Image Pre-Training").

Every image-text pair is an independent binary problem:
``loss = -1/B * sum_ij log sigmoid(z_ij * (t * x_i . y_j + b))`` with ``z_ij = +1`` for matching pairs
and ``-1`` otherwise; ``t = exp(t')`` and ``b`` are learnable, initialised to ``t' = log 10, b = -10``.

    >>> loss = SigLIPLoss()(image_embeds, text_embeds)
    >>> loss = SigLIPLoss(chunk_size=1024)(image_embeds, text_embeds)     # O(B) memory
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mie.losses.base import LossBase, as_scalar, check_ids, check_scale, diagnostics_enabled
from mie.losses.chunked import chunked_softplus_sum
from mie.losses.distributed import gather_no_grad, gather_with_grad
from mie.losses.infonce import positive_key_sums
from mie.losses.registry import register_loss


@register_loss("siglip")
class SigLIPLoss(LossBase):
    """Sigmoid loss over all pairs with a learnable temperature and bias.

    Rewritten as ``sum_ij softplus(l_ij) - sum_{positives} l_ij`` (since ``softplus(-l) = softplus(l) - l``),
    the positive term is linear in B and only the softplus sum touches all pairs; ``chunk_size`` computes
    it over column chunks with recomputation in backward (no B x B logits, same result as dense).
    ``match_ids`` makes all pairs sharing an id positive.
    """

    # A task's logit_scale (the model's learnable multiplier) replaces the loss's own ``log_scale``, as
    # in SigLIP where the model holds t; the bias stays the loss's own (models here have none).
    consumes: ClassVar[dict[str, str]] = {"image_embeds": "image_embeds", "text_embeds": "text_embeds",
                                          "logit_scale": "logit_scale", "match_ids": "match_ids"}

    def __init__(
        self,
        init_logit_scale: float = math.log(10.0),
        init_logit_bias: float = -10.0,
        learnable: bool = True,
        normalize: bool = True,
        chunk_size: int | None = None,
        gather_distributed: bool = False,
    ) -> None:
        super().__init__()
        if chunk_size is not None and int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size}")
        scale, bias = torch.tensor(float(init_logit_scale)), torch.tensor(float(init_logit_bias))
        if learnable:
            self.log_scale, self.bias = nn.Parameter(scale), nn.Parameter(bias)
        else:
            self.register_buffer("log_scale", scale)
            self.register_buffer("bias", bias)
        self.normalize = normalize
        self.chunk_size = chunk_size
        self.gather_distributed = gather_distributed

    def forward(
        self,
        image_embeds: Tensor,
        text_embeds: Tensor,
        match_ids: Tensor | None = None,
        logit_scale: Tensor | float | None = None,
        logit_bias: Tensor | float | None = None,
    ) -> Tensor:
        """Mean over images of the summed pairwise sigmoid losses (a scalar).

        ``logit_scale`` (the multiplier ``t``) and ``logit_bias`` from a model override the loss's own.
        """
        img, txt = self.check_pair(image_embeds, text_embeds, "image_embeds", "text_embeds")
        if self.normalize:
            img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
        scale = self.log_scale.exp() if logit_scale is None else check_scale(logit_scale, device=img.device)
        bias = self.bias.reshape(()) if logit_bias is None else as_scalar(logit_bias, "logit_bias", img.device)
        if diagnostics_enabled() and not torch.isfinite(bias):
            raise ValueError(f"logit_bias must be a finite scalar, got {logit_bias!r}")
        scale, bias = scale.to(img.device, img.dtype), bias.to(img.device, img.dtype)
        ids = None if match_ids is None else check_ids(match_ids, img.shape[0]).to(img.device)
        txt_all, offset = gather_with_grad(txt) if self.gather_distributed else (txt, 0)
        if self.chunk_size:
            all_pairs = chunked_softplus_sum(img, txt_all, scale, bias, self.chunk_size)
        else:
            all_pairs = F.softplus(scale * (img @ txt_all.T) + bias).sum()
        if ids is None:
            pos_sum, n_pos = txt_all[offset : offset + img.shape[0]], img.new_ones(img.shape[0])
        else:
            ids_all = gather_no_grad(ids) if self.gather_distributed else ids
            pos_sum, n_pos = positive_key_sums(ids, txt_all, ids_all)
        positives = scale * (img * pos_sum).sum() + bias * n_pos.sum()
        loss = (all_pairs - positives) / img.shape[0]
        self.record(loss=loss, logit_scale=scale, logit_bias=bias, **self.pair_stats(img, txt, ids))
        return loss
