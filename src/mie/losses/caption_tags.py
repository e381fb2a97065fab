"""Caption-tag prediction: a linear head on the image embedding predicts which listed words its captions use.

A weak-supervision term in the spirit of tag prediction for visual pre-training: the targets come from
the image's own captions (``data.caption_tags`` lists the words; a word counts when any caption of the
image holds it), never from labels. Added to the contrastive loss it pays the image tower for seeing
what the captions name even where the batch's pairs can be told apart without it (the shapes data's
shapes, when colours already separate the batch)::

    loss:
      name: combined
      kwargs: {losses: [{name: clip}, {name: caption_tags, weight: 1.0}]}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mie.losses.base import LossBase, check_tensor
from mie.losses.registry import register_loss


def tag_columns(tags: Sequence[str], tag_names: Sequence[str]) -> list[int] | None:
    """Columns of ``tag_names`` (``data.caption_tags``) that ``tags`` picks, in order; None when ``tags`` is
    empty (all of them). An unknown tag is a one-line error."""
    if not tags:
        return None
    names = list(tag_names)
    unknown = [tag for tag in tags if tag not in names]
    if unknown:
        raise ValueError(f"tags {unknown} are not in data.caption_tags (or no training caption uses them); "
                         f"pick from {names}")
    return [names.index(tag) for tag in tags]


@register_loss("caption_tags")
class CaptionTagLoss(LossBase):
    """Multi-label binary cross-entropy of ``head(image_embeds)`` against ``tag_targets`` ``[B, T]``.

    ``embed_dim``, ``num_tags`` and ``tag_names`` are filled in by the clip recipe (the model's and
    ``data.caption_tags``'s); ``tags`` predicts only those of ``data.caption_tags`` (default all).
    """

    consumes: ClassVar[dict[str, str]] = {"image_embeds": "image_embeds", "tag_targets": "tag_targets"}

    def __init__(self, embed_dim: int = 0, num_tags: int = 0, tag_names: Sequence[str] = (),
                 tags: Sequence[str] = ()) -> None:
        super().__init__()
        if embed_dim < 1 or num_tags < 1:
            raise ValueError(f"caption_tags needs the words to predict: list them in data.caption_tags "
                             f"(got {num_tags} tags, embed_dim {embed_dim})")
        columns = tag_columns(tags, tag_names)
        self.num_targets = num_tags
        self.register_buffer("columns", None if columns is None else torch.tensor(columns), persistent=False)
        self.head = nn.Linear(embed_dim, num_tags if columns is None else len(columns))
        # Unit-norm embeddings have entries ~ 1/sqrt(D); scaling them to ~1 lets the head train at the lr
        # the towers use without huge weights (which weight decay would fight).
        self.input_scale = math.sqrt(embed_dim)

    def forward(self, image_embeds: Tensor, tag_targets: Tensor) -> Tensor:
        """Mean binary cross-entropy over images and tags (a scalar)."""
        image_embeds = check_tensor(image_embeds, "image_embeds")
        if not isinstance(tag_targets, Tensor) or tag_targets.dim() != 2 or tag_targets.shape != (image_embeds.shape[0], self.num_targets):
            raise ValueError(f"tag_targets must be [B, {self.num_targets}] for {image_embeds.shape[0]} "
                             f"images, got shape {tuple(getattr(tag_targets, 'shape', ()))}")
        if self.columns is not None:
            tag_targets = tag_targets[:, self.columns]
        logits = self.head(image_embeds.to(self.head.weight.dtype) * self.input_scale)
        loss = F.binary_cross_entropy_with_logits(logits, tag_targets.to(logits.dtype))
        self.record(loss=loss, tag_accuracy=((logits > 0) == (tag_targets > 0.5)).float().mean())
        return loss
