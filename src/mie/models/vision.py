"""Vision Transformer (Dosovitskiy et al., 2021): image -> patches -> transformer -> one feature vector."""

from __future__ import annotations

import torch
from torch import nn

from mie.models.blocks import TransformerBlock, build_norm, init_transformer_, trunc_normal_
from mie.models.positional import LearnedPositionalEmbedding

POOLS = ("cls", "mean")


class PatchEmbedding(nn.Module):
    """Cut an image into non-overlapping ``patch_size`` squares and project each to ``width``.

    A conv with kernel = stride = patch size is exactly "flatten each patch, apply one linear".
    """

    def __init__(self, image_size: int, patch_size: int, in_channels: int, width: int) -> None:
        super().__init__()
        if image_size % patch_size != 0:
            raise ValueError(f"image_size={image_size} must be a multiple of patch_size={patch_size}")
        self.image_size = image_size
        self.num_patches = (image_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_channels, width, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` -> ``[B, num_patches, width]`` (patches in row-major order)."""
        if images.dim() != 4 or images.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"expected images [B, C, {self.image_size}, {self.image_size}], got {tuple(images.shape)}; "
                "resize them or set model.image_size"
            )
        return self.proj(images).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """ViT image encoder: patch embedding, optional class token, learned positions, pre-norm blocks and
    a final norm, pooled to ``[B, width]`` by the class token (``pool="cls"``) or the patch mean
    (``pool="mean"``)."""

    def __init__(
        self,
        image_size: int = 64,
        patch_size: int = 8,
        in_channels: int = 3,
        width: int = 256,
        layers: int = 4,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        norm: str = "layernorm",
        pool: str = "cls",
    ) -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(
                f"unknown vision pool {pool!r}; choose one of {', '.join(POOLS)} (model.vision_pool)"
            )
        self.pool = pool
        self.width = width
        self.patch_embed = PatchEmbedding(image_size, patch_size, in_channels, width)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width)) if pool == "cls" else None
        num_tokens = self.patch_embed.num_patches + (1 if pool == "cls" else 0)
        self.pos_embed = LearnedPositionalEmbedding(num_tokens, width)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(width, heads, mlp_ratio=mlp_ratio, dropout=dropout, norm=norm)
            for _ in range(layers)
        )
        self.norm = build_norm(norm, width)
        init_transformer_(self, layers)
        if self.cls_token is not None:
            trunc_normal_(self.cls_token, std=0.02)

    def forward_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """All output tokens after the final norm: ``[B, (1 +) num_patches, width]`` (class token first)."""
        x = self.patch_embed(images)
        if self.cls_token is not None:
            x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        x = self.dropout(self.pos_embed(x))
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled image features ``[B, width]``."""
        tokens = self.forward_tokens(images)
        return tokens[:, 0] if self.pool == "cls" else tokens.mean(dim=1)
