"""Image–text models: the CLIP-style ``DualEncoder`` and a ``CrossModalFusion`` block."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mie.config import NON_NEGATIVE, POSITIVE, Rule, one_of
from mie.models.attention import key_mask
from mie.models.blocks import NORMS, TransformerBlock, build_norm, init_transformer_, trunc_normal_
from mie.models.budget import check_model_size
from mie.models.text import TextEncoder
from mie.models.vision import VisionTransformer


@dataclass
class DualEncoderConfig:
    """Architecture of a dual encoder (ViT image tower + causal text tower + projections).

    Every field is explicit: ``name`` only labels the architecture. The registered presets
    (``tiny``/``small``/``base``) live in ``mie.models.registry``: ``build_model("small")`` builds one and
    ``get_model_config("small")`` gives its fields to copy into a YAML file. ``vocab_size = 0`` means
    "take it from the tokenizer".
    """

    RULES: ClassVar[dict[str, Rule]] = {
        **{name: POSITIVE for name in (
            "embed_dim", "image_size", "patch_size", "in_channels", "vision_width", "vision_layers",
            "vision_heads", "text_width", "text_layers", "text_heads", "context_length", "mlp_ratio",
            "max_logit_scale")},
        "vocab_size": NON_NEGATIVE,
        "vision_pool": one_of("cls", "mean"),
        "vision_stem": one_of("patch", "conv"),
        "norm": one_of(*NORMS),
        "dropout": (lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
    }

    name: str = "tiny"
    embed_dim: int = 256
    image_size: int = 64
    patch_size: int = 8
    in_channels: int = 3
    vision_width: int = 256
    vision_layers: int = 4
    vision_heads: int = 4
    vision_pool: str = "cls"  # cls | mean
    vision_stem: str = "patch"  # patch (one linear per patch) | conv (3x3 stride-2 convs, Xiao et al. 2021)
    text_width: int = 256
    text_layers: int = 4
    text_heads: int = 4
    context_length: int = 32
    vocab_size: int = 0
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    norm: str = "layernorm"  # layernorm | rmsnorm
    init_logit_scale: float = math.log(1 / 0.07)
    max_logit_scale: float = 100.0

    def check_limits(self, key: str = "model") -> None:
        """Refuse sizes past the hard bounds or this machine's memory before anything is built (see
        :mod:`mie.models.budget`); the config machinery calls it at every load."""
        check_model_size(self, key or "model")


class DualEncoder(nn.Module):
    """A ViT image tower and a causal text tower, each linearly projected (no bias) to ``embed_dim``.

    Trained contrastively (CLIP, Radford et al., 2021): ``forward`` returns both embeddings and the
    temperature ``logit_scale = exp(t)`` of the learnable log-scale ``t``. The returned value is clamped
    at ``config.max_logit_scale`` in ``forward``; the parameter itself is clamped in place only by
    ``clamp_logit_scale_()``, which the trainer calls after each optimizer step so that ``t`` cannot drift
    past the cap where its gradient is zero.
    """

    def __init__(self, config: DualEncoderConfig, eos_id: int, pad_id: int) -> None:
        super().__init__()
        if config.vocab_size <= 0:
            raise ValueError(
                f"model.vocab_size is {config.vocab_size}; set it from the tokenizer "
                "(mie.models.build_model(..., vocab_size=tokenizer.vocab_size) does this)"
            )
        if config.max_logit_scale <= 1.0:
            raise ValueError(f"model.max_logit_scale must be > 1, got {config.max_logit_scale}")
        check_model_size(config)  # before any weight is allocated
        self.config = dataclasses.replace(config)
        self.eos_id, self.pad_id = eos_id, pad_id
        self.visual = VisionTransformer(
            image_size=config.image_size,
            patch_size=config.patch_size,
            in_channels=config.in_channels,
            width=config.vision_width,
            layers=config.vision_layers,
            heads=config.vision_heads,
            mlp_ratio=config.mlp_ratio,
            dropout=config.dropout,
            norm=config.norm,
            pool=config.vision_pool,
            stem=config.vision_stem,
        )
        self.text = TextEncoder(
            config.vocab_size,
            eos_id=eos_id,
            pad_id=pad_id,
            context_length=config.context_length,
            width=config.text_width,
            layers=config.text_layers,
            heads=config.text_heads,
            mlp_ratio=config.mlp_ratio,
            dropout=config.dropout,
            norm=config.norm,
        )
        self.image_projection = nn.Linear(config.vision_width, config.embed_dim, bias=False)
        self.text_projection = nn.Linear(config.text_width, config.embed_dim, bias=False)
        for projection in (self.image_projection, self.text_projection):
            trunc_normal_(projection.weight, std=0.02)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.init_logit_scale)))

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Image embeddings ``[B, embed_dim]`` (unit L2 norm when ``normalize``)."""
        embeds = self.image_projection(self.visual(images))
        return F.normalize(embeds, dim=-1) if normalize else embeds

    def encode_text(self, ids: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Text embeddings ``[B, embed_dim]`` from token ids ``[B, L]`` (unit L2 norm when ``normalize``)."""
        embeds = self.text_projection(self.text(ids))
        return F.normalize(embeds, dim=-1) if normalize else embeds

    def get_logit_scale(self) -> torch.Tensor:
        """``exp(logit_scale)`` capped at ``config.max_logit_scale`` (gradient flows below the cap)."""
        return self.logit_scale.clamp(max=math.log(self.config.max_logit_scale)).exp()

    @torch.no_grad()
    def clamp_logit_scale_(self) -> None:
        """Clamp the log-scale parameter in place to ``[0, log(max_logit_scale)]`` (call after a step)."""
        self.logit_scale.clamp_(0.0, math.log(self.config.max_logit_scale))

    def encode_image_tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit image embeddings ``[B, embed_dim]`` and the patch tokens projected into the same space,
        ``[B, N, embed_dim]`` (not normalised; for a mean-pooled tower their mean is the embedding before its
        norm), from one pass of the image tower."""
        tokens = self.visual.forward_tokens(images)
        patches = tokens[:, 1:] if self.visual.cls_token is not None else tokens
        pooled = self.image_projection(self.visual.pool_tokens(tokens))
        return F.normalize(pooled, dim=-1), self.image_projection(patches)

    def forward(self, images: torch.Tensor, ids: torch.Tensor, image_tokens: bool = False) -> dict[str, torch.Tensor]:
        """Normalized ``image_embeds`` and ``text_embeds`` (``[B, embed_dim]``) and the scalar ``logit_scale``;
        with ``image_tokens`` also ``image_token_embeds`` (:meth:`encode_image_tokens`)."""
        out = {"text_embeds": self.encode_text(ids), "logit_scale": self.get_logit_scale()}
        if image_tokens:
            out["image_embeds"], out["image_token_embeds"] = self.encode_image_tokens(images)
        else:
            out["image_embeds"] = self.encode_image(images)
        return out


def key_masks(*padding_masks: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
    """The attention key mask ``[B, 1, 1, L]`` (True = may attend) of each padding mask ``[B, L]`` (True =
    padded); None stays None (nothing masked)."""
    return tuple(None if padding is None else key_mask(~padding.bool()) for padding in padding_masks)


class CrossModalFusion(nn.Module):
    """Text tokens attend to image patches: a few pre-norm blocks with self-attention over the text and
    cross-attention to the image, then a final norm and a mean over the non-padded text tokens.

    Inputs are token features from the towers (``TextEncoder.forward_tokens``,
    ``VisionTransformer.forward_tokens``); ``text_dim``/``image_dim`` other than ``dim`` get a linear
    projection. Output: one fused embedding ``[B, dim]`` per image–text pair (e.g. for a matching head).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        layers: int = 1,
        text_dim: int | None = None,
        image_dim: int | None = None,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        norm: str = "layernorm",
    ) -> None:
        super().__init__()
        self.text_in = nn.Linear(text_dim, dim) if text_dim not in (None, dim) else nn.Identity()
        self.image_in = nn.Linear(image_dim, dim) if image_dim not in (None, dim) else nn.Identity()
        self.blocks = nn.ModuleList(
            TransformerBlock(
                dim, num_heads, mlp_ratio=mlp_ratio, dropout=dropout, norm=norm, cross_attention=True
            )
            for _ in range(layers)
        )
        self.norm = build_norm(norm, dim)
        init_transformer_(self, layers, std=dim ** -0.5)  # see init_transformer_ on why not 0.02

    def forward_tokens(
        self,
        text_tokens: torch.Tensor,
        image_tokens: torch.Tensor,
        text_padding_mask: torch.Tensor | None = None,
        image_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Fused text tokens ``[B, L, dim]``; padding masks are bool, True = padded."""
        if text_tokens.shape[0] != image_tokens.shape[0]:
            raise ValueError(
                f"batch sizes differ: text {text_tokens.shape[0]} vs image {image_tokens.shape[0]}"
            )
        x, context = self.text_in(text_tokens), self.image_in(image_tokens)
        text_mask, image_mask = key_masks(text_padding_mask, image_padding_mask)  # once for all blocks
        for block in self.blocks:
            x = block(x, context, mask=text_mask, context_mask=image_mask)
        return self.norm(x)

    def forward(
        self,
        text_tokens: torch.Tensor,
        image_tokens: torch.Tensor,
        text_padding_mask: torch.Tensor | None = None,
        image_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One fused embedding ``[B, dim]``: the mean of the fused non-padded text tokens."""
        fused = self.forward_tokens(text_tokens, image_tokens, text_padding_mask, image_padding_mask)
        if text_padding_mask is None:
            return fused.mean(dim=1)
        keep = (~text_padding_mask.bool()).unsqueeze(-1).to(fused.dtype)
        return (fused * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)
