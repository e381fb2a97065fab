"""Position information for transformers: fixed sinusoids, learned tables and rotary embeddings (RoPE).

Sinusoidal and learned embeddings are *added* to token embeddings; rotary embeddings instead rotate the
query and key vectors inside attention so that their dot product depends only on the relative offset.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_table(num_positions: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    """The ``[num_positions, dim]`` table of "Attention Is All You Need": sin on even, cos on odd dims."""
    if dim % 2 != 0:
        raise ValueError(f"sinusoidal positions need an even dim, got {dim}")
    position = torch.arange(num_positions, dtype=torch.float32)[:, None]
    # base^(-2i/dim) for i in 0..dim/2: the wavelengths form a geometric progression.
    inv_freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(base) / dim))
    table = torch.zeros(num_positions, dim)
    table[:, 0::2] = torch.sin(position * inv_freq)
    table[:, 1::2] = torch.cos(position * inv_freq)
    return table


def _check_length(length: int, offset: int, max_len: int) -> None:
    if offset + length > max_len:
        raise ValueError(
            f"sequence positions {offset}..{offset + length - 1} exceed max_len={max_len}; "
            "truncate the input or build the model with a longer context"
        )


class SinusoidalPositionalEmbedding(nn.Module):
    """Adds fixed sinusoidal positions to ``x`` of shape ``[B, L, dim]`` (no parameters)."""

    def __init__(self, max_len: int, dim: int) -> None:
        super().__init__()
        self.max_len = max_len
        # Not persistent: the table is a pure function of (max_len, dim), so checkpoints need not carry it.
        self.register_buffer("table", sinusoidal_table(max_len, dim), persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """Return ``x + table[offset : offset + L]``."""
        _check_length(x.shape[1], offset, self.max_len)
        return x + self.table[offset : offset + x.shape[1]].to(x.dtype)


class LearnedPositionalEmbedding(nn.Module):
    """Adds a learned ``[max_len, dim]`` table to ``x`` of shape ``[B, L, dim]`` (as in GPT-2 and ViT)."""

    def __init__(self, max_len: int, dim: int, init_std: float = 0.02) -> None:
        super().__init__()
        self.max_len = max_len
        self.weight = nn.Parameter(torch.randn(max_len, dim) * init_std)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """Return ``x + weight[offset : offset + L]``."""
        _check_length(x.shape[1], offset, self.max_len)
        return x + self.weight[offset : offset + x.shape[1]]


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """Map the halves ``(x1, x2)`` of the last dim to ``(-x2, x1)``: a 90-degree turn of each pair."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (Su et al., 2021, "RoFormer") for ``[B, H, L, head_dim]`` tensors.

    Dimension ``i`` is paired with ``i + head_dim/2`` (the GPT-NeoX layout) and each pair is rotated by
    ``position * base^(-2i/head_dim)``. Applied to both queries and keys, it makes ``q_m . k_n`` a function
    of ``m - n`` only. Usage: ``q, k = rope(q, offset), rope(k, offset)``.
    """

    def __init__(self, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 2 != 0:
            raise ValueError(f"rotary embeddings need an even head_dim, got {head_dim}")
        self.head_dim = head_dim
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """Rotate ``x`` (``[..., L, head_dim]``) as if its first position were ``offset``."""
        if x.shape[-1] != self.head_dim:
            raise ValueError(f"expected last dim {self.head_dim}, got shape {tuple(x.shape)}")
        length = x.shape[-2]
        positions = torch.arange(offset, offset + length, device=x.device, dtype=torch.float32)
        angles = torch.outer(positions, self.inv_freq.to(x.device))  # [L, head_dim/2]
        angles = torch.cat((angles, angles), dim=-1)  # [L, head_dim], matches rotate_half's pairing
        # Rotate in float32: low-precision sin/cos at large positions loses the relative-position property.
        out = x.float() * angles.cos() + rotate_half(x.float()) * angles.sin()
        return out.to(x.dtype)
