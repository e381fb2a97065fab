"""The transformer trunk both towers share: a stack of pre-norm blocks and a final norm.

Each tower (``VisionTransformer``, ``TextEncoder``) owns its embeddings and pooling and calls one
``Transformer`` in between, so its parameters are named ``<tower>.trunk.blocks.<i>.*`` and
``<tower>.trunk.norm.*``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mie.models.blocks import TransformerBlock, build_norm

# Where the towers kept these modules before the trunk existed; ``rename_legacy_trunk_keys`` maps them.
_LEGACY_PREFIXES = ("blocks.", "norm.")


class Transformer(nn.Module):
    """``layers`` pre-norm ``TransformerBlock``s of ``width``, then a final norm: ``[B, L, width]`` in and out.

    It does not initialise itself: the tower that owns it calls ``init_transformer_`` over the whole
    tower, so the embeddings get the same width-scaled init as the blocks.

    Example::

        trunk = Transformer(width=64, layers=2, heads=4)
        tokens = trunk(torch.randn(8, 10, 64), is_causal=True)  # [8, 10, 64]
    """

    def __init__(
        self,
        width: int,
        layers: int,
        heads: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        norm: str = "layernorm",
    ) -> None:
        super().__init__()
        self.width, self.layers = width, layers
        self.blocks = nn.ModuleList(
            TransformerBlock(width, heads, mlp_ratio=mlp_ratio, dropout=dropout, norm=norm)
            for _ in range(layers)
        )
        self.norm = build_norm(norm, width)

    def forward(self, x: torch.Tensor, is_causal: bool = False) -> torch.Tensor:
        """Normed tokens ``[B, L, width]``; ``is_causal`` lets each position attend only to earlier ones."""
        for block in self.blocks:
            x = block(x, is_causal=is_causal)
        return self.norm(x)


def rename_legacy_trunk_keys(
    module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
) -> None:
    """A ``load_state_dict`` pre-hook for a tower: ``<prefix>blocks.*`` / ``<prefix>norm.*`` (names from
    before the trunk existed) become ``<prefix>trunk.blocks.*`` / ``<prefix>trunk.norm.*``, in place.

    Checkpoints written before the trunk keep loading, with identical numbers.
    """
    for key in [k for k in state_dict if k.startswith(tuple(prefix + p for p in _LEGACY_PREFIXES))]:
        state_dict[prefix + "trunk." + key[len(prefix):]] = state_dict.pop(key)
