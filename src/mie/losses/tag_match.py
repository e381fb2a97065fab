"""Tag matching: images against the text tower's own embeddings of the caption tags (phrase-level sigmoid).

``caption_tags`` puts a linear head on the image tower; this loss asks the text tower instead. Each of
``data.caption_tags`` ("circle", "red", "red circle", ...) is encoded as a short text, and every image is
scored against every tag with a sigmoid, SigLIP-style: the targets are which tags the image's own
captions use (weak supervision from the captions, never labels). Whole captions can be told apart by
colours, counts and positions alone; a phrase such as "red circle" cannot, and the image that holds a red
square and a blue circle is its negative, so the image tower must bind colour to shape and the text tower
learns the short queries a user types. Because the tags are texts, phrases never seen in training ("a
pink star" where no training image has one) are scored by composition, not by a head row of their own::

    loss:
      name: combined
      kwargs: {losses: [{name: clip}, {name: tag_match, weight: 1.0}]}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mie.losses.base import LossBase, check_positive, check_tensor
from mie.losses.caption_tags import tag_columns
from mie.losses.registry import register_loss


def _unit(images: Tensor, name: str, tags: Tensor, ndim: int = 2) -> tuple[Tensor, Tensor]:
    """Both checked (rank, finite, one width) and scaled to unit length, in the images' compute dtype."""
    images = check_tensor(images, name, ndim=ndim)
    tags = check_tensor(tags, "tag_text_embeds")
    if images.shape[-1] != tags.shape[-1]:
        raise ValueError(f"{name} shape {list(images.shape)} and tag_text_embeds shape {list(tags.shape)} differ "
                         "in width; both must come from one dual encoder")
    return F.normalize(images, dim=-1), F.normalize(tags, dim=-1).to(images.dtype)


@register_loss("tag_match")
class TagMatchLoss(LossBase):
    """Binary cross-entropy of ``scale * cos(image, tag text) + bias`` against ``tag_targets`` ``[B, T]``.

    ``tag_text_embeds`` ``[T, D]`` are the text tower's embeddings of ``data.caption_tags`` (the clip task
    encodes them in the same forward as the captions). ``init_scale`` and ``init_bias`` start the learnable
    temperature and bias; the bias starts near the log-odds of a tag being present (few tags per image).
    ``positive_weight`` scales the loss of present tags (rare ones would otherwise be drowned by absent ones).
    ``tags`` scores only those of ``data.caption_tags`` (``tag_names``, filled in by the clip recipe).
    """

    consumes: ClassVar[dict[str, str]] = {"image_embeds": "image_embeds", "tag_text_embeds": "tag_text_embeds",
                                          "tag_targets": "tag_targets"}

    def __init__(self, init_scale: float = 10.0, init_bias: float = -5.0, positive_weight: float = 1.0,
                 tag_names: Sequence[str] = (), tags: Sequence[str] = ()) -> None:
        super().__init__()
        columns = tag_columns(tags, tag_names)
        self.register_buffer("columns", None if columns is None else torch.tensor(columns), persistent=False)
        check_positive(init_scale, "init_scale")
        self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)))
        self.bias = nn.Parameter(torch.tensor(float(init_bias)))
        self.positive_weight = check_positive(positive_weight, "positive_weight")

    def forward(self, image_embeds: Tensor, tag_text_embeds: Tensor, tag_targets: Tensor) -> Tensor:
        """Mean binary cross-entropy over images and tags (a scalar)."""
        images, tags = _unit(image_embeds, "image_embeds", tag_text_embeds)
        return self._bce(images @ tags.T, tag_targets)

    def _picked(self, cosines: Tensor, tag_targets: Tensor) -> tuple[Tensor, Tensor]:
        """Only the ``tags`` columns of both (after their shapes were checked against each other)."""
        if self.columns is None:
            return cosines, tag_targets
        return cosines[..., self.columns], tag_targets[:, self.columns]

    def _bce(self, cosines: Tensor, tag_targets: Tensor) -> Tensor:
        """The loss of image-tag cosines ``[B, T]`` against ``tag_targets``, with the metrics recorded."""
        if not isinstance(tag_targets, Tensor) or tuple(tag_targets.shape) != tuple(cosines.shape):
            raise ValueError(f"tag_targets must be [B, T] = {list(cosines.shape)} (images x tags), got shape "
                             f"{list(getattr(tag_targets, 'shape', ()))}")
        cosines, tag_targets = self._picked(cosines, tag_targets)
        logits = self.log_scale.exp() * cosines + self.bias
        targets = tag_targets.to(logits.dtype)
        weight = None if self.positive_weight == 1.0 else 1.0 + (self.positive_weight - 1.0) * targets
        loss = F.binary_cross_entropy_with_logits(logits, targets, weight=weight)
        self.record(loss=loss, tag_accuracy=((logits > 0) == (targets > 0.5)).float().mean(),
                    tag_scale=self.log_scale.exp())
        return loss


@register_loss("tag_ground")
class TagGroundLoss(TagMatchLoss):
    """``tag_match`` scored per patch: an image's score for a tag is its best patch's, ``max_n cos(token_n, tag)``.

    A pooled embedding can only hold "red circle" as a conjunction feature that survives the mean over patches
    (a red square beside a blue circle pools to the same colour and shape words). A patch holds one object, so
    here each patch need only say what its own object is; the mean over patches then carries the objects'
    conjunctions into the embedding retrieval uses. As FILIP (Yao et al., 2021) scores tokens by their best
    match; the gradient reaches the best patch of each image and tag. ``image_token_embeds`` ``[B, N, D]`` are
    the image tower's patch tokens in the embedding space (the clip task asks the model for them).
    """

    consumes: ClassVar[dict[str, str]] = {"image_token_embeds": "image_token_embeds",
                                          "tag_text_embeds": "tag_text_embeds", "tag_targets": "tag_targets"}

    def forward(self, image_token_embeds: Tensor, tag_text_embeds: Tensor, tag_targets: Tensor) -> Tensor:
        """Mean binary cross-entropy over images and tags of the best patch's scaled cosine plus the bias."""
        tokens, tags = _unit(image_token_embeds, "image_token_embeds", tag_text_embeds, ndim=3)
        return self._bce((tokens @ tags.T).amax(dim=1), tag_targets)  # [B, N, T] cosines -> the best patch
