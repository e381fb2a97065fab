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
    """Rotary position embedding (Su et al., 2021, "RoFormer") for ``[B, H, L, head_dim]`` tensors; the one
    RoPE of ``mie.models`` (CLIP towers, causal LMs and the GGUF models alike).

    Dimension ``i`` is paired with ``i + head_dim/2`` (the GPT-NeoX / HF ``LlamaModel`` layout) and each pair
    is rotated by ``position * base^(-2i/head_dim)``. Applied to both queries and keys, it makes
    ``q_m . k_n`` a function of ``m - n`` only. ``rope(q, offset)`` rotates positions ``offset..``;
    ``cos, sin = rope.cos_sin(positions)`` for explicit positions ``[B, T]`` (left-padded rows), computed
    once per forward and handed to every layer's :meth:`rotate`.
    """

    def __init__(self, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 2 != 0:
            raise ValueError(f"rotary embeddings need an even head_dim, got {head_dim}")
        self.head_dim, self.base = head_dim, base
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def cos_sin(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin of the angles for integer ``positions`` ``[T]`` (-> ``[T, hd]``) or ``[B, T]``
        (-> ``[B, 1, T, hd]``, broadcasting over heads)."""
        inv_freq = self.inv_freq.to(positions.device)
        if inv_freq.dtype != torch.float32:  # a model cast to bf16 casts this buffer too: recompute it in fp32
            inv_freq = self.base ** (-torch.arange(0, self.head_dim, 2, dtype=torch.float32,
                                                   device=positions.device) / self.head_dim)
        angles = positions.float()[..., None] * inv_freq  # [..., T, head_dim/2]
        angles = torch.cat((angles, angles), dim=-1)  # [..., T, head_dim], pairs (i, i + head_dim/2)
        if angles.dim() == 3:
            angles = angles[:, None]  # [B, 1, T, head_dim]
        return angles.cos(), angles.sin()

    @staticmethod
    def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Rotate ``x`` ``[B, H, T, head_dim]`` by precomputed angles. In float32: low-precision sin/cos at
        large positions loses the relative-position property."""
        return (x.float() * cos + rotate_half(x.float()) * sin).to(x.dtype)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """Rotate ``x`` (``[..., L, head_dim]``) as if its first position were ``offset``."""
        if x.shape[-1] != self.head_dim:
            raise ValueError(f"expected last dim {self.head_dim}, got shape {tuple(x.shape)}")
        positions = torch.arange(offset, offset + x.shape[-2], device=x.device)
        return self.rotate(x, *self.cos_sin(positions))


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """ALiBi's per-head slopes (Press et al., 2022, "Train Short, Test Long"): the geometric sequence
    ``2^(-8/n), 2^(-16/n), ...`` for ``n`` heads; for a head count that is not a power of two, the slopes of
    the next lower power of two, then every other slope of the next higher one (the paper's recipe)."""
    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    lower = 2 ** math.floor(math.log2(num_heads))
    slopes = power_of_two(lower)
    if lower != num_heads:
        slopes += power_of_two(2 * lower)[0::2][: num_heads - lower]
    return torch.tensor(slopes, dtype=torch.float32)


class ALiBi(nn.Module):
    """Attention with Linear Biases: no position embedding; each head adds ``-slope * distance`` to its
    attention scores, so far keys count less. ``bias(L, S)`` is the additive ``[1, H, L, S]`` term for ``L``
    queries that are the last ``L`` of ``S`` keys (a KV cache puts earlier keys first). ``causal=False``
    uses ``|i - j|`` (both directions, for encoders)."""

    def __init__(self, num_heads: int, causal: bool = True) -> None:
        super().__init__()
        self.causal = causal
        self.register_buffer("slopes", alibi_slopes(num_heads), persistent=False)

    def bias(self, length: int, source: int, device: torch.device | None = None) -> torch.Tensor:
        """The additive bias ``[1, H, L, S]`` (float32); ``0`` on the diagonal."""
        query = torch.arange(source - length, source, device=device)[:, None]
        key = torch.arange(source, device=device)[None, :]
        distance = (query - key).float()
        distance = distance.clamp(min=0) if self.causal else distance.abs()  # future keys: the causal mask's job
        return -self.slopes.to(device)[None, :, None, None] * distance
