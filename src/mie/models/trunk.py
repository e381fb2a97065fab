"""The transformer trunk both towers share: a stack of pre-norm blocks and a final norm.

Each tower (``VisionTransformer``, ``TextEncoder``) owns its embeddings and pooling and calls one
``Transformer`` in between, so its parameters are named ``<tower>.trunk.blocks.<i>.*`` and
``<tower>.trunk.norm.*``.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from mie.models.attention import attend
from mie.models.blocks import TransformerBlock, build_norm

try:  # torch >= 2.3
    from torch.nn.attention import SDPBackend, sdpa_kernel
except ImportError:  # pragma: no cover - older torch keeps its own choice
    sdpa_kernel = None

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

        Why: a pooled tower reads one token per row, so two kinds of work are skipped, with the same numbers
        up to float rounding. (1) A token's last-block output depends on the other tokens only through that
        block's keys and values: the last block projects keys and values of all tokens but runs the query,
        attention output, MLP and final norm on the pooled token alone (about 20% of a 4-block trunk).
        (2) Causal (on the CPU): the tokens after ``positions[b]`` (a caption's padding) can never reach it,
        so every per-token layer (norms, projections, MLP) runs on the packed ``positions[b] + 1`` first
        tokens of each row and only attention sees the padded ``[B, L]`` layout.
        """
        rows = torch.arange(x.shape[0], device=x.device)
        if not self.blocks:
            return self.norm(x[rows, positions])
        if any(b.cross_attn is not None or b.attn.rope is not None or b.attn.alibi is not None
               or "forward" in vars(b) for b in self.blocks):  # a compiled block (compile: true) runs whole
            return self.forward(x, is_causal=is_causal)[rows, positions]
        layout = _Layout(x.shape, positions if is_causal and x.device.type == "cpu" else None)
        tokens = layout.pack(x)
        *rest, last = self.blocks
        for block in rest:
            tokens = _block_tokens(block, tokens, layout, is_causal)
        return self.norm(_block_at(last, tokens, layout, positions, is_causal))


class _Layout:
    """The token rows that a pooled causal trunk computes: all ``B * L`` (``keep=None``) or, given the pooled
    ``positions``, the first ``positions[b] + 1`` of each row, packed into ``[N, width]``."""

    def __init__(self, shape: torch.Size, positions: torch.Tensor | None) -> None:
        self.batch, self.length = shape[0], shape[1]
        self.index: torch.Tensor | None = None
        if positions is not None:
            keep = torch.arange(self.length, device=positions.device)[None] <= positions[:, None]
            index = keep.flatten().nonzero().squeeze(1)  # a host sync: CPU only (see forward_at)
            if index.numel() < 0.9 * keep.numel():  # packing pays when a tenth or more is padding
                self.index = index

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, L, C]`` -> the computed rows ``[N, C]``."""
        flat = x.reshape(self.batch * self.length, x.shape[-1])
        return flat if self.index is None else flat.index_select(0, self.index)

    def pad(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[N, C]`` -> ``[B, L, C]`` (zeros where a row was not computed: after its pooled token)."""
        if self.index is not None:
            tokens = tokens.new_zeros(self.batch * self.length, tokens.shape[-1]).index_copy(0, self.index, tokens)
        return tokens.view(self.batch, self.length, tokens.shape[-1])

    def rows_of(self, positions: torch.Tensor) -> torch.Tensor:
        """Row of token ``(b, positions[b])`` in the computed ``[N, C]``: the last of row ``b`` when packed."""
        if self.index is None:
            return torch.arange(self.batch, device=positions.device) * self.length + positions
        return torch.cumsum(positions + 1, dim=0) - 1


def _attend(attn: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
            is_causal: bool) -> torch.Tensor:
    """``attend`` over ``[B, L|1, C]`` projections with the block's heads and dropout; ``[B, L|1, H * hd]``."""
    with _backend(q):
        out = attend(attn._heads(q, attn.num_heads), attn._heads(k, attn.num_kv_heads),
                     attn._heads(v, attn.num_kv_heads), mask, is_causal=is_causal,
                     dropout_p=attn.dropout if attn.training else 0.0, use_sdpa=attn.use_sdpa)
    return out.transpose(1, 2).reshape(q.shape[0], q.shape[1], attn.num_heads * attn.head_dim)


def _backend(q: torch.Tensor) -> contextlib.AbstractContextManager:
    """The SDPA kernel for a tower's short sequences: the math one for bf16/fp16 on the CPU, where the flash
    kernel's backward cost 1.16x the whole CLIP step (measured with torch 2.14, batch 128, L=65/32; in fp32
    flash is faster and stays)."""
    if sdpa_kernel is not None and q.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float16):
        return sdpa_kernel([SDPBackend.MATH])
    return contextlib.nullcontext()


def _block_tokens(block: TransformerBlock, tokens: torch.Tensor, layout: _Layout, is_causal: bool) -> torch.Tensor:
    """``block`` over the computed rows ``[N, width]`` of ``layout``: attention in the padded layout, the rest
    per token."""
    attn = block.attn
    qkv = attn.project_qkv(block.norm_attn(tokens))
    widths = [t.shape[-1] for t in qkv]
    q, k, v = layout.pad(torch.cat(qkv, dim=-1)).split(widths, dim=-1)  # one scatter for all three
    out = layout.pack(_attend(attn, q, k, v, None, is_causal))
    tokens = tokens + attn.resid_dropout(attn.out_proj(out))
    return tokens + block.ff(block.norm_ff(tokens))


def _block_at(block: TransformerBlock, tokens: torch.Tensor, layout: _Layout, positions: torch.Tensor,
              is_causal: bool) -> torch.Tensor:
    """``block``'s output ``[B, width]`` at token ``positions[b]`` of each row, the query side computed there only."""
    attn, at = block.attn, layout.rows_of(positions)
    h = block.norm_attn(tokens)
    q, k, v = attn.project_qkv(h, h[at])
    mask = None
    if is_causal:  # the pooled token sees the keys up to its own position
        mask = (torch.arange(layout.length, device=tokens.device)[None] <= positions[:, None])[:, None, None, :]
    out = _attend(attn, q[:, None], layout.pad(k), layout.pad(v), mask, False)
    y = tokens[at] + attn.resid_dropout(attn.out_proj(out[:, 0]))
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
