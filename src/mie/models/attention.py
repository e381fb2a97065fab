"""Multi-head attention (self and cross) with a fused fast path, a readable reference path and a KV cache.

Mask conventions (the same as ``torch.nn.MultiheadAttention``):

* ``key_padding_mask``: bool ``[B, S]``, ``True`` = that key is padding and is ignored.
* ``attn_mask``: bool ``[L, S]``, ``[B, L, S]`` or ``[B, H, L, S]`` with ``True`` = this query may NOT
  attend to this key; or a float mask of the same shapes that is *added* to the attention scores.

A query whose every key is masked gets an all-zero output (instead of the NaN of a softmax over -inf).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mie.models.positional import RotaryEmbedding


def reference_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d)) V written out by hand; the check for the fused kernel.

    ``q`` is ``[B, H, L, D]``, ``k``/``v`` are ``[B, H, S, D]``. ``mask`` and ``is_causal`` follow
    ``F.scaled_dot_product_attention``: a bool mask is ``True`` where attention is *allowed*, a float mask
    is added to the scores, and ``is_causal`` lets query ``i`` see keys ``0..i`` (top-left aligned).
    Rows with no allowed key return zeros.
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # [B, H, L, S]
    length, source = scores.shape[-2:]
    if is_causal:
        causal = torch.ones(length, source, dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    weights = torch.softmax(scores.float(), dim=-1)
    # softmax over an all -inf row is NaN; such a query attends to nothing, so its weights are zero.
    weights = torch.nan_to_num(weights, nan=0.0).to(q.dtype)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v


class KVCache:
    """Keys and values of the tokens seen so far, for incremental (token-by-token) causal decoding.

    One cache per self-attention layer. ``MultiHeadAttention`` appends the new keys/values each call and
    attends over everything cached, so decoding ``L`` tokens one at a time equals one causal pass.
    """

    def __init__(self) -> None:
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None

    def __len__(self) -> int:
        """Number of cached positions."""
        return 0 if self.keys is None else self.keys.shape[-2]

    def update(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append ``[B, H, L, D]`` keys/values and return all cached keys and values."""
        if self.keys is None or self.values is None:
            self.keys, self.values = keys, values
        else:
            self.keys = torch.cat((self.keys, keys), dim=-2)
            self.values = torch.cat((self.values, values), dim=-2)
        return self.keys, self.values

    def reset(self) -> None:
        """Forget every cached position (start a new sequence)."""
        self.keys = self.values = None


def _expand_mask(mask: torch.Tensor) -> torch.Tensor:
    """Lift an ``[L, S]`` or ``[B, L, S]`` mask to broadcast against ``[B, H, L, S]`` scores."""
    if mask.dim() == 2:
        return mask[None, None]
    if mask.dim() == 3:
        return mask[:, None]
    if mask.dim() == 4:
        return mask
    raise ValueError(f"attn_mask must be [L, S], [B, L, S] or [B, H, L, S], got shape {tuple(mask.shape)}")


def build_attention_mask(
    length: int,
    source: int,
    attn_mask: torch.Tensor | None = None,
    key_padding_mask: torch.Tensor | None = None,
    is_causal: bool = False,
    device: torch.device | None = None,
) -> torch.Tensor | None:
    """Merge the module-level masks into one SDPA mask (bool ``True`` = allowed, or float additive).

    The causal part is aligned bottom-right: with ``S > L`` (cached keys), query ``i`` sits at position
    ``S - L + i`` and sees keys ``0..S - L + i``. Returns None when nothing is masked.
    """
    allowed: torch.Tensor | None = None
    if key_padding_mask is not None:
        if key_padding_mask.dim() != 2 or key_padding_mask.shape[-1] != source:
            raise ValueError(
                f"key_padding_mask must be [B, {source}] (True = padded), got {tuple(key_padding_mask.shape)}"
            )
        allowed = ~key_padding_mask.bool()[:, None, None, :]
    if is_causal:
        causal = torch.ones(length, source, dtype=torch.bool, device=device).tril(diagonal=source - length)
        allowed = causal[None, None] if allowed is None else allowed & causal
    if attn_mask is None:
        return allowed
    attn_mask = _expand_mask(attn_mask)
    if attn_mask.dtype == torch.bool:
        return ~attn_mask if allowed is None else allowed & ~attn_mask
    if allowed is None:
        return attn_mask
    return attn_mask.masked_fill(~allowed, float("-inf"))


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention.

    Self-attention (``cross=False``) projects q, k, v from ``x`` with one fused linear; cross-attention
    (``cross=True``) takes queries from ``x`` and keys/values from ``context`` (which may have another
    length). ``use_sdpa`` picks ``F.scaled_dot_product_attention`` (default) or ``reference_attention``.
    ``rotary`` (self-attention only) rotates q and k by their positions.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        cross: bool = False,
        rotary: RotaryEmbedding | None = None,
    ) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads}")
        if cross and rotary is not None:
            raise ValueError("rotary embeddings apply to self-attention only (cross=False)")
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.cross = cross
        self.dropout = dropout
        self.use_sdpa = True
        self.rotary = rotary
        if cross:
            self.q_proj = nn.Linear(dim, dim, bias=bias)
            self.kv_proj = nn.Linear(dim, 2 * dim, bias=bias)
        else:
            self.qkv_proj = nn.Linear(dim, 3 * dim, bias=bias)
        self.out_proj = nn.Linear(dim, dim, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)

    def _project(
        self, x: torch.Tensor, context: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.cross:
            if context is None:
                raise ValueError("cross-attention needs a context tensor [B, S, dim]")
            q = self.q_proj(x)
            k, v = self.kv_proj(context).split(self.dim, dim=-1)
        else:
            if context is not None:
                raise ValueError("self-attention got a context; build the module with cross=True")
            q, k, v = self.qkv_proj(x).split(self.dim, dim=-1)
        return self._split_heads(q), self._split_heads(k), self._split_heads(v)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        kv_cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Attend from ``x`` ``[B, L, dim]`` (to ``context`` ``[B, S, dim]`` if cross); returns ``[B, L, dim]``.

        With ``kv_cache`` (self-attention only) ``x`` holds the new tokens, their keys/values are appended
        to the cache and masks must cover all cached + new keys.
        """
        q, k, v = self._project(x, context)
        if kv_cache is not None and self.cross:
            raise ValueError("kv_cache is for causal self-attention; cross-attention keys never change")
        offset = len(kv_cache) if kv_cache is not None else 0
        if self.rotary is not None:
            q, k = self.rotary(q, offset), self.rotary(k, offset)
        if kv_cache is not None:
            k, v = kv_cache.update(k, v)
        length, source = q.shape[-2], k.shape[-2]

        # The plain causal square case goes to the kernel as is_causal (lets SDPA pick flash attention);
        # anything else is merged into one explicit mask.
        plain_causal = is_causal and attn_mask is None and key_padding_mask is None and length == source
        mask = None
        if not plain_causal:
            mask = build_attention_mask(length, source, attn_mask, key_padding_mask, is_causal, x.device)
        has_key = None
        if mask is not None:
            # A query with no allowed key: let it attend everywhere (finite softmax), then zero its output.
            if mask.dtype == torch.bool:
                has_key = mask.any(-1, keepdim=True)
                mask = mask | ~has_key
            else:
                has_key = (mask > float("-inf")).any(-1, keepdim=True)
                mask = mask.masked_fill(~has_key, 0.0).to(q.dtype)

        attend = F.scaled_dot_product_attention if self.use_sdpa else reference_attention
        dropout_p = self.dropout if self.training else 0.0
        out = attend(q, k, v, mask, is_causal=plain_causal, dropout_p=dropout_p)
        if has_key is not None:
            out = out * has_key
        out = out.transpose(1, 2).reshape(x.shape[0], length, self.dim)
        return self.resid_dropout(self.out_proj(out))
