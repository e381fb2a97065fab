"""Cross-modal fusion blocks and an image–text matching (ITM) head on top of them.

Every fusion takes token features of the two towers, ``text [B, L, text_dim]`` and ``image [B, N,
image_dim]`` (``TextEncoder.forward_tokens``, ``VisionTransformer.forward_tokens``), with bool padding
masks ``[B, L]`` (True = padded, as ``TextEncoder.padding_mask`` gives them), and returns one fused vector
per pair, ``[B, out_dim]``. Every attention is the one :class:`~mie.models.attention.MultiHeadAttention`
(cross-attention with ``cross=True``); the padding masks become its key masks (True = may attend) once per
forward (:func:`key_masks`), and the blocks take those:

* ``cross``: text tokens self-attend and cross-attend to the image (ALBEF / BLIP's text encoder);
  ``mie.models.multimodal.CrossModalFusion``;
* ``gated``: Flamingo's gated cross-attention (Alayrac et al., 2022): ``x + tanh(a) * xattn(x, image)``
  and ``x + tanh(b) * ff(x)`` with ``a = b = 0`` at init, so an untrained block returns its input exactly,
  each followed by a text self-attention block;
* ``bidirectional``: both streams update at once, text attending to the image and image to the text;
* ``coattention``: ViLBERT's co-attention (Lu et al., 2019): each stream's queries attend to the other
  stream's keys and values in place of self-attention, then a self-attention block per stream.

Two-stream fusions return ``[mean text, mean image]`` (``out_dim = 2 * dim``). ``ImageTextMatcher`` adds a
linear ITM head (a match logit per pair)::

    matcher = ImageTextMatcher(FusionConfig(type="gated", dim=64, layers=2), text_dim=128, image_dim=128)
    logits = matcher(text_tokens, image_tokens, text_padding_mask)  # [B]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from mie.config import POSITIVE, Rule, one_of
from mie.models.attention import MultiHeadAttention
from mie.models.blocks import NORMS, FeedForward, TransformerBlock, build_norm, init_transformer_
from mie.models.multimodal import CrossModalFusion, key_masks
from mie.registry import Registry

FUSIONS = ("cross", "gated", "bidirectional", "coattention")


@dataclass
class FusionConfig:
    """A fusion block: its ``type`` (one of ``FUSIONS``), width, heads and number of layers."""

    RULES: ClassVar[dict[str, Rule]] = {"type": one_of(*FUSIONS), "dim": POSITIVE, "heads": POSITIVE,
                                        "layers": POSITIVE, "mlp_ratio": POSITIVE,
                                        "dropout": (lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
                                        "norm": one_of(*NORMS)}

    type: str = "cross"
    dim: int = 128
    heads: int = 4
    layers: int = 2
    mlp_ratio: float = 2.0
    dropout: float = 0.0
    norm: str = "layernorm"


def masked_mean(tokens: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the non-padded tokens of ``[B, L, D]`` (``padding_mask`` True = padded) -> ``[B, D]``."""
    if padding_mask is None:
        return tokens.mean(dim=1)
    keep = (~padding_mask.bool()).unsqueeze(-1).to(tokens.dtype)
    return (tokens * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)


class GatedCrossAttentionBlock(nn.Module):
    """Flamingo's gated cross-attention dense block; with both gates at 0 (the init) it is the identity."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0, dropout: float = 0.0,
                 norm: str = "layernorm") -> None:
        super().__init__()
        self.norm_cross, self.norm_ff = build_norm(norm, dim), build_norm(norm, dim)
        self.cross_attn = MultiHeadAttention(dim, heads, dropout=dropout, cross=True)
        self.ff = FeedForward(dim, int(dim * mlp_ratio), dropout=dropout)
        self.attn_gate = nn.Parameter(torch.zeros(()))
        self.ff_gate = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None = None
                ) -> torch.Tensor:
        """``x [B, L, dim]`` attends to ``context [B, S, dim]`` through the tanh gates; ``context_mask``:
        the attention key mask of the context (``[B, 1, 1, S]``, True = may attend)."""
        x = x + self.attn_gate.tanh() * self.cross_attn(self.norm_cross(x), context, mask=context_mask)
        return x + self.ff_gate.tanh() * self.ff(self.norm_ff(x))


class _Fusion(nn.Module):
    """Shared input projections (a linear map when a tower's width differs from ``dim``)."""

    def __init__(self, config: FusionConfig, text_dim: int | None, image_dim: int | None) -> None:
        super().__init__()
        self.config = config
        self.out_dim = config.dim
        self.text_in = nn.Linear(text_dim, config.dim) if text_dim not in (None, config.dim) else nn.Identity()
        self.image_in = nn.Linear(image_dim, config.dim) if image_dim not in (None, config.dim) else nn.Identity()

    def _block(self, cross: bool) -> TransformerBlock:
        c = self.config
        return TransformerBlock(c.dim, c.heads, mlp_ratio=c.mlp_ratio, dropout=c.dropout, norm=c.norm,
                                cross_attention=cross)

    @staticmethod
    def _check(text: torch.Tensor, image: torch.Tensor) -> None:
        if text.shape[0] != image.shape[0]:
            raise ValueError(f"batch sizes differ: text {text.shape[0]} vs image {image.shape[0]}")


class CrossAttentionFusion(_Fusion):
    """``cross``: ``CrossModalFusion`` (text self-attention + cross-attention to the image), text mean."""

    def __init__(self, config: FusionConfig, text_dim: int | None = None, image_dim: int | None = None) -> None:
        super().__init__(config, None, None)
        self.fusion = CrossModalFusion(config.dim, config.heads, config.layers, text_dim=text_dim,
                                       image_dim=image_dim, mlp_ratio=config.mlp_ratio, dropout=config.dropout,
                                       norm=config.norm)

    def forward(self, text: torch.Tensor, image: torch.Tensor, text_padding_mask: torch.Tensor | None = None,
                image_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Fused ``[B, dim]``."""
        return self.fusion(text, image, text_padding_mask, image_padding_mask)


class GatedCrossAttentionFusion(_Fusion):
    """``gated``: per layer a ``GatedCrossAttentionBlock`` then a text self-attention block; text mean."""

    def __init__(self, config: FusionConfig, text_dim: int | None = None, image_dim: int | None = None) -> None:
        super().__init__(config, text_dim, image_dim)
        self.gated = nn.ModuleList(GatedCrossAttentionBlock(config.dim, config.heads, config.mlp_ratio,
                                                            config.dropout, config.norm) for _ in range(config.layers))
        self.blocks = nn.ModuleList(self._block(cross=False) for _ in range(config.layers))
        self.norm = build_norm(config.norm, config.dim)
        init_transformer_(self, config.layers, std=config.dim ** -0.5)

    def forward(self, text: torch.Tensor, image: torch.Tensor, text_padding_mask: torch.Tensor | None = None,
                image_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Fused ``[B, dim]``."""
        self._check(text, image)
        x, context = self.text_in(text), self.image_in(image)
        text_mask, image_mask = key_masks(text_padding_mask, image_padding_mask)
        for gated, block in zip(self.gated, self.blocks):
            x = block(gated(x, context, image_mask), mask=text_mask)
        return masked_mean(self.norm(x), text_padding_mask)


class BidirectionalCrossAttentionFusion(_Fusion):
    """``bidirectional``: per layer, text (self + cross to image) and image (self + cross to text) blocks
    update both streams from the previous layer's states; ``[text mean, image mean]``."""

    def __init__(self, config: FusionConfig, text_dim: int | None = None, image_dim: int | None = None) -> None:
        super().__init__(config, text_dim, image_dim)
        self.out_dim = 2 * config.dim
        self.text_blocks = nn.ModuleList(self._block(cross=True) for _ in range(config.layers))
        self.image_blocks = nn.ModuleList(self._block(cross=True) for _ in range(config.layers))
        self.text_norm, self.image_norm = build_norm(config.norm, config.dim), build_norm(config.norm, config.dim)
        init_transformer_(self, config.layers, std=config.dim ** -0.5)

    def forward(self, text: torch.Tensor, image: torch.Tensor, text_padding_mask: torch.Tensor | None = None,
                image_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Fused ``[B, 2 * dim]``."""
        self._check(text, image)
        t, i = self.text_in(text), self.image_in(image)
        text_mask, image_mask = key_masks(text_padding_mask, image_padding_mask)
        for text_block, image_block in zip(self.text_blocks, self.image_blocks):
            t, i = (text_block(t, i, mask=text_mask, context_mask=image_mask),
                    image_block(i, t, mask=image_mask, context_mask=text_mask))
        return torch.cat([masked_mean(self.text_norm(t), text_padding_mask),
                          masked_mean(self.image_norm(i), image_padding_mask)], dim=-1)


class CoAttentionLayer(nn.Module):
    """ViLBERT's co-attention: each stream's queries attend to the other's keys/values, then its MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0, dropout: float = 0.0,
                 norm: str = "layernorm") -> None:
        super().__init__()
        self.norms = nn.ModuleList(build_norm(norm, dim) for _ in range(4))
        self.text_attn = MultiHeadAttention(dim, heads, dropout=dropout, cross=True)
        self.image_attn = MultiHeadAttention(dim, heads, dropout=dropout, cross=True)
        self.text_ff = FeedForward(dim, int(dim * mlp_ratio), dropout=dropout)
        self.image_ff = FeedForward(dim, int(dim * mlp_ratio), dropout=dropout)

    def forward(self, t: torch.Tensor, i: torch.Tensor, text_mask: torch.Tensor | None = None,
                image_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Updated ``(text [B, L, dim], image [B, N, dim])``; ``text_mask``/``image_mask``: each stream's
        attention key mask (``[B, 1, 1, L]``, True = may attend)."""
        nt, ni = self.norms[0](t), self.norms[1](i)
        t = t + self.text_attn(nt, ni, mask=image_mask)
        i = i + self.image_attn(ni, nt, mask=text_mask)
        return t + self.text_ff(self.norms[2](t)), i + self.image_ff(self.norms[3](i))


class CoAttentionFusion(_Fusion):
    """``coattention``: per layer a ``CoAttentionLayer`` then a self-attention block per stream;
    ``[text mean, image mean]``."""

    def __init__(self, config: FusionConfig, text_dim: int | None = None, image_dim: int | None = None) -> None:
        super().__init__(config, text_dim, image_dim)
        self.out_dim = 2 * config.dim
        c = config
        self.co = nn.ModuleList(CoAttentionLayer(c.dim, c.heads, c.mlp_ratio, c.dropout, c.norm) for _ in range(c.layers))
        self.text_blocks = nn.ModuleList(self._block(cross=False) for _ in range(c.layers))
        self.image_blocks = nn.ModuleList(self._block(cross=False) for _ in range(c.layers))
        self.text_norm, self.image_norm = build_norm(c.norm, c.dim), build_norm(c.norm, c.dim)
        init_transformer_(self, c.layers, std=c.dim ** -0.5)

    def forward(self, text: torch.Tensor, image: torch.Tensor, text_padding_mask: torch.Tensor | None = None,
                image_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Fused ``[B, 2 * dim]``."""
        self._check(text, image)
        t, i = self.text_in(text), self.image_in(image)
        text_mask, image_mask = key_masks(text_padding_mask, image_padding_mask)
        for co, text_block, image_block in zip(self.co, self.text_blocks, self.image_blocks):
            t, i = co(t, i, text_mask, image_mask)
            t = text_block(t, mask=text_mask)
            i = image_block(i, mask=image_mask)
        return torch.cat([masked_mean(self.text_norm(t), text_padding_mask),
                          masked_mean(self.image_norm(i), image_padding_mask)], dim=-1)


FUSION_CLASSES: Registry[type[_Fusion]] = Registry("fusion type")
for _name, _cls in (("cross", CrossAttentionFusion), ("gated", GatedCrossAttentionFusion),
                    ("bidirectional", BidirectionalCrossAttentionFusion), ("coattention", CoAttentionFusion)):
    FUSION_CLASSES.add(_name, _cls)
del _name, _cls


def build_fusion(config: FusionConfig, text_dim: int | None = None, image_dim: int | None = None) -> nn.Module:
    """The fusion ``config.type`` names; its ``out_dim`` attribute is the width of what it returns."""
    return FUSION_CLASSES.lookup(config.type)(config, text_dim, image_dim)


class ImageTextMatcher(nn.Module):
    """ITM (ALBEF, BLIP): a fusion block and a linear head giving one match logit per image–text pair."""

    def __init__(self, config: FusionConfig, text_dim: int, image_dim: int) -> None:
        super().__init__()
        self.config = config
        self.fusion = build_fusion(config, text_dim, image_dim)
        self.head = nn.Linear(self.fusion.out_dim, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, text: torch.Tensor, image: torch.Tensor, text_padding_mask: torch.Tensor | None = None,
                image_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Match logits ``[B]`` (sigmoid = probability that the text describes the image)."""
        return self.head(self.fusion(text, image, text_padding_mask, image_padding_mask)).squeeze(-1)
