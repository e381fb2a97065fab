"""Vision Transformer (Dosovitskiy et al., 2021): image -> patches -> transformer -> one feature vector."""

from __future__ import annotations

import torch
from torch import nn

from mie.models.blocks import init_transformer_, trunc_normal_
from mie.models.positional import LearnedPositionalEmbedding
from mie.models.trunk import Transformer, rename_legacy_trunk_keys

POOLS = ("cls", "mean")
STEMS = ("patch", "conv")


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


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of each pixel of a ``[B, C, H, W]`` map (as in ConvNeXt).

    Unlike GroupNorm(1, C) it keeps each output position a function of its own receptive field only,
    and unlike BatchNorm it never mixes the images of a (contrastive) batch.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` over dimension 1."""
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvStem(PatchEmbedding):
    """Patch tokens from a few 3x3 stride-2 convolutions instead of one linear map per patch.

    "Early convolutions help transformers see better" (Xiao et al., 2021): a conv stem with the same
    output grid as the patchify stem makes small ViTs learn faster and more stably, which matters most
    when training from scratch on little data. Each stage halves the resolution (so ``patch_size``
    must be a power of two), normalises over channels and applies GELU; a 1x1 conv maps to ``width``.

    Measured on the shapes data (issue 28): given the shapes as labels, a width-128 ViT with this stem
    found an image's set of shapes in 92% of images after 400 steps at lr 2e-3, with the patchify stem in
    44%, and the demo (``configs/demo.yaml``) uses it. Caveat: per-pixel normalisation maps every flat
    background pixel to the same unit vector, so fresh embeddings are nearly identical across images
    (mean cosine ~0.93 against ~0.5 for the patchify stem), and contrastive training from scratch can
    start slowly; the patchify stem stays the default of other presets.
    """

    def __init__(self, image_size: int, patch_size: int, in_channels: int, width: int) -> None:
        super().__init__(image_size, patch_size, in_channels, width)
        stages = patch_size.bit_length() - 1
        if patch_size < 2 or 2**stages != patch_size:
            raise ValueError(f"a conv stem needs patch_size to be a power of two >= 2, got {patch_size}")
        layers: list[nn.Module] = []
        channels = in_channels
        for stage in range(stages):
            out = max(16, width >> (stages - 1 - stage))  # widths grow to `width` at the last stage
            layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1, bias=False), ChannelLayerNorm(out), nn.GELU()]
            channels = out
        layers.append(nn.Conv2d(channels, width, kernel_size=1))
        self.proj = nn.Sequential(*layers)


class VisionTransformer(nn.Module):
    """ViT image encoder: patch embedding, optional class token, learned positions and a ``Transformer``
    trunk (pre-norm blocks, final norm), pooled to ``[B, width]`` by the class token (``pool="cls"``) or
    the patch mean (``pool="mean"``)."""

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
        stem: str = "patch",
    ) -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(
                f"unknown vision pool {pool!r}; choose one of {', '.join(POOLS)} (model.vision_pool)"
            )
        if stem not in STEMS:
            raise ValueError(f"unknown vision stem {stem!r}; choose one of {', '.join(STEMS)} (model.vision_stem)")
        self.pool = pool
        self.width = width
        stem_class = ConvStem if stem == "conv" else PatchEmbedding
        self.patch_embed = stem_class(image_size, patch_size, in_channels, width)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width)) if pool == "cls" else None
        num_tokens = self.patch_embed.num_patches + (1 if pool == "cls" else 0)
        self.pos_embed = LearnedPositionalEmbedding(num_tokens, width)
        self.dropout = nn.Dropout(dropout)
        self.trunk = Transformer(width, layers, heads, mlp_ratio=mlp_ratio, dropout=dropout, norm=norm)
        init_transformer_(self, layers, std=width ** -0.5)  # see init_transformer_ on why not 0.02
        if self.cls_token is not None:
            trunc_normal_(self.cls_token, std=0.02)
        # The private registration: the public register_load_state_dict_pre_hook needs torch >= 2.5.
        self._register_load_state_dict_pre_hook(rename_legacy_trunk_keys, with_module=True)

    def _embed(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(images)
        if self.cls_token is not None:
            x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        return self.dropout(self.pos_embed(x))

    def forward_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """All output tokens after the final norm: ``[B, (1 +) num_patches, width]`` (class token first)."""
        return self.trunk(self._embed(images))

    def pool_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Pooled features ``[B, width]`` of the output tokens ``[B, (1 +) num_patches, width]``
        (:meth:`forward_tokens`): the class token, or the mean of all tokens."""
        return tokens[:, 0] if self.pool == "cls" else tokens.mean(dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled image features ``[B, width]``: the class token (the trunk's last block runs its query side
        on that token only, ``Transformer.forward_at``) or the mean of all tokens."""
        x = self._embed(images)
        if self.pool == "cls":
            return self.trunk.forward_at(x, torch.zeros(x.shape[0], dtype=torch.long, device=x.device))
        return self.pool_tokens(self.trunk(x))
