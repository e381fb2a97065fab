"""A ViT image classifier: the dual encoder's ``VisionTransformer`` and one linear head (Dosovitskiy et al., 2021)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from mie.config import NON_NEGATIVE, POSITIVE, Rule, one_of
from mie.models.blocks import NORMS, build_norm
from mie.models.budget import check_model_size
from mie.models.vision import VisionTransformer


@dataclass
class ViTClassifierConfig:
    """Architecture of a ViT classifier; ``num_classes = 0`` means "take it from the data"."""

    RULES: ClassVar[dict[str, Rule]] = {
        **{name: POSITIVE for name in ("image_size", "patch_size", "in_channels", "width", "layers", "heads",
                                       "mlp_ratio")},
        "num_classes": NON_NEGATIVE,
        "pool": one_of("cls", "mean"),
        "stem": one_of("patch", "conv"),
        "norm": one_of(*NORMS),
        "dropout": (lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
        "head_dropout": (lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
    }

    image_size: int = 28
    patch_size: int = 4  # 28 / 4 = a 7 x 7 grid of patch tokens
    in_channels: int = 1
    width: int = 128
    layers: int = 6
    heads: int = 4
    mlp_ratio: float = 2.0
    dropout: float = 0.0
    head_dropout: float = 0.0
    pool: str = "mean"  # cls | mean
    stem: str = "patch"  # patch | conv
    norm: str = "layernorm"
    num_classes: int = 0

    def check_limits(self, key: str = "model") -> None:
        """Refuse sizes past the hard bounds or this machine's memory before anything is built (see
        :mod:`mie.models.budget`); the config machinery calls it at every load."""
        check_model_size(self, key or "model")


class ViTClassifier(nn.Module):
    """``images [B, C, H, W] -> logits [B, num_classes]``: ViT features, a norm, dropout and a linear head.

    The head starts at zero (as in the ViT paper's fine-tuning), so the first loss is exactly log(C).
    """

    def __init__(self, config: ViTClassifierConfig) -> None:
        super().__init__()
        if config.num_classes < 2:
            raise ValueError(f"model.num_classes is {config.num_classes}; a classifier needs at least 2 classes "
                             "(the recipe sets it from the data)")
        check_model_size(config)  # before any weight is allocated
        self.config = config
        self.visual = VisionTransformer(image_size=config.image_size, patch_size=config.patch_size,
                                        in_channels=config.in_channels, width=config.width, layers=config.layers,
                                        heads=config.heads, mlp_ratio=config.mlp_ratio, dropout=config.dropout,
                                        norm=config.norm, pool=config.pool, stem=config.stem)
        self.head_norm = build_norm(config.norm, config.width)
        self.head_dropout = nn.Dropout(config.head_dropout)
        self.head = nn.Linear(config.width, config.num_classes)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits ``[B, num_classes]``."""
        return self.head(self.head_dropout(self.head_norm(self.visual(images))))
