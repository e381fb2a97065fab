"""The ``DualEncoder`` architecture rebuilt from ``torch.nn.TransformerEncoder`` layers.

A peer for benchmarks (``benchmarks/train_throughput.py``): the same patch/token embeddings, pooling and
projections, with PyTorch's own pre-norm encoder layers in place of ``mie.models.blocks``. PyTorch's layer
only offers LayerNorm, so ``model.norm`` is ignored here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mie.models.multimodal import DualEncoderConfig
from mie.models.positional import LearnedPositionalEmbedding
from mie.models.text import eot_positions
from mie.models.vision import POOLS, ConvStem, PatchEmbedding


def _encoder(width: int, layers: int, heads: int, config: DualEncoderConfig) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        width,
        heads,
        dim_feedforward=int(width * config.mlp_ratio),
        dropout=config.dropout,
        activation="gelu",
        batch_first=True,
        norm_first=True,
    )
    # Nested tensors only apply to padding masks in eval mode; keep both models on the same dense path.
    return nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(width), enable_nested_tensor=False)


class TorchReferenceDualEncoder(nn.Module):
    """Same interface and outputs as ``DualEncoder``; built by ``build_torch_reference_model``."""

    def __init__(self, config: DualEncoderConfig, eos_id: int, pad_id: int) -> None:
        super().__init__()
        if config.vocab_size <= 0:
            raise ValueError(f"model.vocab_size is {config.vocab_size}; set it from the tokenizer")
        if config.vision_pool not in POOLS:
            raise ValueError(f"unknown vision pool {config.vision_pool!r}; choose one of {', '.join(POOLS)}")
        self.config, self.eos_id, self.pad_id = config, eos_id, pad_id
        stem = ConvStem if config.vision_stem == "conv" else PatchEmbedding  # the same stem as ours
        self.patch_embed = stem(config.image_size, config.patch_size, config.in_channels, config.vision_width)
        use_cls = config.vision_pool == "cls"
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.vision_width)) if use_cls else None
        num_image_tokens = self.patch_embed.num_patches + int(use_cls)
        self.image_pos = LearnedPositionalEmbedding(num_image_tokens, config.vision_width)
        self.vision = _encoder(config.vision_width, config.vision_layers, config.vision_heads, config)
        self.token_embed = nn.Embedding(config.vocab_size, config.text_width)
        self.text_pos = LearnedPositionalEmbedding(config.context_length, config.text_width)
        self.text = _encoder(config.text_width, config.text_layers, config.text_heads, config)
        self.image_projection = nn.Linear(config.vision_width, config.embed_dim, bias=False)
        self.text_projection = nn.Linear(config.text_width, config.embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.init_logit_scale)))

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Image embeddings ``[B, embed_dim]``."""
        x = self.patch_embed(images)
        if self.cls_token is not None:
            x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        x = self.vision(self.image_pos(x))
        pooled = x[:, 0] if self.cls_token is not None else x.mean(dim=1)
        embeds = self.image_projection(pooled)
        return F.normalize(embeds, dim=-1) if normalize else embeds

    def encode_text(self, ids: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Text embeddings ``[B, embed_dim]`` pooled at each row's first ``eos_id``."""
        positions = eot_positions(ids, self.eos_id)
        length = ids.shape[1]
        causal = nn.Transformer.generate_square_subsequent_mask(length, device=ids.device)
        x = self.text(self.text_pos(self.token_embed(ids)), mask=causal, is_causal=True)
        embeds = self.text_projection(x[torch.arange(ids.shape[0], device=ids.device), positions])
        return F.normalize(embeds, dim=-1) if normalize else embeds

    def forward(self, images: torch.Tensor, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """Same keys as ``DualEncoder.forward``."""
        return {
            "image_embeds": self.encode_image(images),
            "text_embeds": self.encode_text(ids),
            "logit_scale": self.logit_scale.clamp(max=math.log(self.config.max_logit_scale)).exp(),
        }
