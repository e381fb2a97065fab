"""The transformer trunk both towers share: a stack of pre-norm blocks and a final norm.

Each tower (``VisionTransformer``, ``TextEncoder``) owns its embeddings and pooling and calls one
``Transformer`` in between, so its parameters are named ``<tower>.trunk.blocks.<i>.*`` and
``<tower>.trunk.norm.*``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mie.models.attention import attend
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

    def forward_at(self, x: torch.Tensor, positions: torch.Tensor, is_causal: bool = False) -> torch.Tensor:
        """Normed features ``[B, width]`` of token ``positions[b]`` of each row: ``forward(x)[b, positions[b]]``.

        Why: a pooled tower reads one token, and a token's last-block output depends on every token only
        through that block's keys and values. So the last block projects keys and values of all tokens but
        runs the query, attention output, MLP and final norm on the pooled token alone: about 20% less work
        for a 4-block trunk, the same numbers up to float rounding.
        """
        rows = torch.arange(x.shape[0], device=x.device)
        if not self.blocks:
            return self.norm(x[rows, positions])
        *rest, last = self.blocks
        for block in rest:
            x = block(x, is_causal=is_causal)
        if last.cross_attn is not None or last.attn.rope is not None or last.attn.alibi is not None:
            return self.norm(last(x, is_causal=is_causal)[rows, positions])
        return self.norm(_block_at(last, x, rows, positions, is_causal))


def _block_at(block: TransformerBlock, x: torch.Tensor, rows: torch.Tensor, positions: torch.Tensor,
              is_causal: bool) -> torch.Tensor:
    """``block(x, is_causal)[rows, positions]`` (``[B, width]``) with the query side computed at those tokens only."""
    attn = block.attn
    h = block.norm_attn(x)
    h_at = h[rows, positions][:, None]  # [B, 1, width]
    q_width = attn.num_heads * attn.head_dim
    if attn.fused:  # slices of the one qkv_proj: queries of the pooled token, keys and values of all
        weight, bias = attn.qkv_proj.weight, attn.qkv_proj.bias
        q = F.linear(h_at, weight[:q_width], None if bias is None else bias[:q_width])
        k, v = F.linear(h, weight[q_width:], None if bias is None else bias[q_width:]).chunk(2, dim=-1)
    else:
        q, k, v = attn.q_proj(h_at), attn.k_proj(h), attn.v_proj(h)
    mask = None
    if is_causal:  # the pooled token sees the keys up to its own position
        mask = (torch.arange(x.shape[1], device=x.device)[None] <= positions[:, None])[:, None, None, :]
    out = attend(attn._heads(q, attn.num_heads), attn._heads(k, attn.num_kv_heads),
                 attn._heads(v, attn.num_kv_heads), mask, dropout_p=attn.dropout if attn.training else 0.0,
                 use_sdpa=attn.use_sdpa)
    y = x[rows, positions] + attn.resid_dropout(attn.out_proj(out.reshape(x.shape[0], q_width)))
    return y + block.ff(block.norm_ff(y))


def rename_legacy_trunk_keys(
    module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
) -> None:
    """A ``load_state_dict`` pre-hook for a tower: ``<prefix>blocks.*`` / ``<prefix>norm.*`` (names from
    before the trunk existed) become ``<prefix>trunk.blocks.*`` / ``<prefix>trunk.norm.*``, in place.

    Checkpoints written before the trunk keep loading, with identical numbers.
    """
    for key in [k for k in state_dict if k.startswith(tuple(prefix + p for p in _LEGACY_PREFIXES))]:
        state_dict[prefix + "trunk." + key[len(prefix):]] = state_dict.pop(key)
