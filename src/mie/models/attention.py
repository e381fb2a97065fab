"""The one attention module of ``mie.models``: every family (CLIP towers, causal LMs, the BERT/MiniLM
encoder, the encoder-decoder, fusion cross-attention, reward and value models) builds from it.

:class:`MultiHeadAttention` takes its sizes, its projection layout and its position scheme as arguments:
MHA, GQA (``num_kv_heads < num_heads``) and MQA (``num_kv_heads=1``); self-attention (one fused
``qkv_proj`` or separate ``q_proj``/``k_proj``/``v_proj``) or cross-attention (``q_proj`` and a fused
``kv_proj``, or separate ones; keys/values from a ``context`` or precomputed once with
:meth:`~MultiHeadAttention.project_kv`); positions injected as a :class:`~mie.models.positional.RotaryEmbedding`
or :class:`~mie.models.positional.ALiBi` (learned and sinusoidal tables are added to the embeddings
before the first block); an optional :class:`~mie.models.kv_cache.KVCache`. :func:`attend` is the only
call of ``F.scaled_dot_product_attention`` in ``mie.models``.

**The mask convention** (the only one in ``mie.models``): ``mask`` is a boolean tensor that broadcasts to
``[B, H, L, S]``, ``True`` = this query may attend to this key (as in ``F.scaled_dot_product_attention``).
Build it from :func:`key_mask` (``[B, S]`` of real tokens -> ``[B, 1, 1, S]``) and :func:`causal_mask`
(``[L, S]``, aligned bottom-right so the last of ``S`` keys is the last query) combined with ``&``.
``is_causal=True`` without a mask asks the kernel for its own causal path. A query that may attend to no
key gets an all-zero output, not the NaN of a softmax over nothing.

Parameter names (checkpoints rely on them): ``qkv_proj`` | ``q_proj``, ``k_proj``, ``v_proj`` | ``kv_proj``,
and ``out_proj``. Checkpoints of earlier versions (``wq``/``wk``/``wv``/``wo`` of the causal LM, BERT's
``q``/``k``/``v``/``out``) load through :data:`LEGACY_NAMES`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mie.models.kv_cache import KVCache
from mie.models.positional import ALiBi, RotaryEmbedding

# SDPA groups query heads over shared KV heads itself from torch 2.5 on; copying K/V per query head
# (repeat_interleave) cost about twice the attention time of a batch-8 decode step.
_SDPA_GQA = tuple(int(part) for part in torch.__version__.split(".")[:2]) >= (2, 5)

# Earlier names of the projections -> the names of this module (loaded by a state-dict pre-hook).
LEGACY_NAMES = {"wq": "q_proj", "wk": "k_proj", "wv": "v_proj", "wo": "out_proj",
                "q": "q_proj", "k": "k_proj", "v": "v_proj", "out": "out_proj"}


# The one hook point for attention maps (mie.explain): while :func:`recording_attention` is active, every
# :func:`attend` call appends its weights here. None = off, so the fused kernel runs untouched.
_RECORDED: list[torch.Tensor] | None = None


@contextlib.contextmanager
def recording_attention() -> Iterator[list[torch.Tensor]]:
    """Collect the attention weights ``[B, H, L, S]`` of every :func:`attend` call made inside the block, in
    call order (one per layer and attention kind); the fused kernel returns no weights, so they are computed
    by hand (softmax(QK^T / sqrt(d)) with the same mask and bias) only while recording."""
    global _RECORDED
    previous, _RECORDED = _RECORDED, []
    try:
        yield _RECORDED
    finally:
        _RECORDED = previous


def _record(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None, is_causal: bool,
            has_key: torch.Tensor | None) -> None:
    """Append softmax(QK^T / sqrt(d)) (masked, biased as :func:`attend` does; zero rows for queries with no
    allowed key) to the active recording."""
    if k.shape[1] != q.shape[1]:
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
    scores = (q @ k.transpose(-2, -1)).float() / math.sqrt(q.shape[-1])
    if is_causal:
        scores = scores.masked_fill(~causal_mask(*scores.shape[-2:], q.device), float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask.float()
    weights = torch.nan_to_num(torch.softmax(scores, dim=-1), nan=0.0)
    _RECORDED.append(weights if has_key is None else weights * has_key)  # type: ignore[union-attr]


def key_mask(real: torch.Tensor) -> torch.Tensor:
    """``[B, S]`` (True or 1 = a real token, False or 0 = padding) -> the attention mask ``[B, 1, 1, S]``."""
    return real.bool()[:, None, None, :]


def causal_mask(length: int, source: int, device: torch.device | None = None) -> torch.Tensor:
    """``[L, S]`` True where query ``i`` (at position ``S - L + i``) may see key ``j``: ``j <= S - L + i``."""
    return torch.ones(length, source, dtype=torch.bool, device=device).tril(diagonal=source - length)


def reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
                        is_causal: bool = False, dropout_p: float = 0.0) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d)) V written out by hand; the check for the fused kernel.

    Arguments as :func:`attend` (``k``/``v`` with as many heads as ``q``; a float ``mask`` is added to the
    scores); rows with no allowed key return zeros.
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # [B, H, L, S]
    length, source = scores.shape[-2:]
    if is_causal:
        scores = scores.masked_fill(~causal_mask(length, source, q.device), float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    weights = torch.nan_to_num(torch.softmax(scores.float(), dim=-1), nan=0.0).to(q.dtype)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
           is_causal: bool = False, bias: torch.Tensor | None = None, dropout_p: float = 0.0,
           use_sdpa: bool = True) -> torch.Tensor:
    """Scaled dot-product attention of ``q`` ``[B, H, L, D]`` over ``k``/``v`` ``[B, KV, S, D]`` (``KV``
    divides ``H``: grouped-query heads share keys). ``mask``: bool, True = may attend (see the module
    docstring); ``is_causal``: the causal mask, merged with ``mask`` when one is given; ``bias``: a float
    ``[*, H, L, S]`` term added to the scores (ALiBi). Returns ``[B, H, L, D]``; a query with no allowed key
    gets zeros.
    """
    length, source = q.shape[-2], k.shape[-2]
    if k.shape[1] != q.shape[1] and (not _SDPA_GQA or not use_sdpa):
        repeats = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(repeats, dim=1), v.repeat_interleave(repeats, dim=1)  # (B, H, S, D)
    if is_causal and (mask is not None or bias is not None or length != source):
        causal = causal_mask(length, source, q.device)
        mask = causal if mask is None else mask & causal
        is_causal = False
    has_key = None
    if mask is not None:
        # A query with no allowed key: let it attend everywhere (a finite softmax), then zero its output.
        has_key = mask.any(-1, keepdim=True)
        mask = mask | ~has_key
    if bias is not None:
        bias = bias.to(q.dtype)
        mask = bias if mask is None else bias.masked_fill(~mask, float("-inf"))
    if _RECORDED is not None:
        _record(q, k, mask, is_causal, has_key)
    if use_sdpa:
        grouped = {"enable_gqa": True} if k.shape[1] != q.shape[1] else {}
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, dropout_p=dropout_p,
                                             **grouped)
    else:
        out = reference_attention(q, k, v, mask, is_causal=is_causal, dropout_p=dropout_p)
    return out if has_key is None else out * has_key


class MultiHeadAttention(nn.Module):
    """Multi-head (grouped-query) attention: projections, positions, a KV cache and :func:`attend`.

    ``dim``: width of ``x``; ``num_heads`` query heads of ``head_dim`` (default ``dim // num_heads``);
    ``num_kv_heads`` key/value heads (default ``num_heads``); ``cross``: keys/values from a context of width
    ``context_dim`` (default ``dim``); ``fused``: one ``qkv_proj`` (self) or ``kv_proj`` (cross) linear
    instead of separate ones; ``bias`` on the input projections, ``out_bias`` (default ``bias``) on
    ``out_proj``; ``rope`` or ``alibi`` position schemes (self-attention only); ``dropout`` on the attention
    weights and the output.
    """

    def __init__(self, dim: int, num_heads: int, *, num_kv_heads: int | None = None, head_dim: int | None = None,
                 cross: bool = False, context_dim: int | None = None, fused: bool = True, bias: bool = True,
                 out_bias: bool | None = None, dropout: float = 0.0, rope: RotaryEmbedding | None = None,
                 alibi: ALiBi | None = None) -> None:
        super().__init__()
        num_kv_heads = num_kv_heads or num_heads
        if head_dim is None:
            if dim % num_heads != 0:
                raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads}")
            head_dim = dim // num_heads
        if num_heads % num_kv_heads != 0:
            raise ValueError(f"num_heads={num_heads} must be a multiple of num_kv_heads={num_kv_heads}")
        if cross and (rope is not None or alibi is not None):
            raise ValueError("rope and alibi apply to self-attention only (cross=False)")
        self.dim, self.num_heads, self.num_kv_heads, self.head_dim = dim, num_heads, num_kv_heads, head_dim
        self.cross, self.fused, self.dropout, self.use_sdpa = cross, fused, dropout, True
        self.rope, self.alibi = rope, alibi
        q_width, kv_width, source = num_heads * head_dim, num_kv_heads * head_dim, context_dim or dim
        if fused and not cross:
            self.qkv_proj = nn.Linear(dim, q_width + 2 * kv_width, bias=bias)
        else:
            self.q_proj = nn.Linear(dim, q_width, bias=bias)
            if fused:
                self.kv_proj = nn.Linear(source, 2 * kv_width, bias=bias)
            else:
                self.k_proj = nn.Linear(source, kv_width, bias=bias)
                self.v_proj = nn.Linear(source, kv_width, bias=bias)
        self.out_proj = nn.Linear(q_width, dim, bias=bias if out_bias is None else out_bias)
        self.resid_dropout = nn.Dropout(dropout)
        self._register_load_state_dict_pre_hook(self._load_legacy_names)

    def _load_legacy_names(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        """Rename the projections of earlier checkpoints (:data:`LEGACY_NAMES`) and join split q/k/v into the
        fused layout, so every run written before the one stack keeps loading."""
        for key in [k for k in state_dict if k.startswith(prefix)]:
            name, _, param = key[len(prefix):].partition(".")
            if name in LEGACY_NAMES and param:
                state_dict[f"{prefix}{LEGACY_NAMES[name]}.{param}"] = state_dict.pop(key)
        for param in ("weight", "bias"):
            parts = [f"{prefix}{n}.{param}" for n in ("q_proj", "k_proj", "v_proj")]
            if self.fused and not self.cross and all(p in state_dict for p in parts):
                state_dict[f"{prefix}qkv_proj.{param}"] = torch.cat([state_dict.pop(p) for p in parts])
            if self.fused and self.cross and all(p in state_dict for p in parts[1:]):
                state_dict[f"{prefix}kv_proj.{param}"] = torch.cat([state_dict.pop(p) for p in parts[1:]])

    def _heads(self, x: torch.Tensor, heads: int) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, heads, self.head_dim).transpose(1, 2)  # (B, heads, L, hd)

    def project_kv(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values ``[B, KV, S, hd]`` of a cross-attention ``context`` ``[B, S, context_dim]``: a
        decoder computes them once per source and passes them as ``context_kv`` at every step."""
        if not self.cross:
            raise ValueError("project_kv is for cross-attention (cross=True)")
        if self.fused:
            k, v = self.kv_proj(context).chunk(2, dim=-1)
        else:
            k, v = self.k_proj(context), self.v_proj(context)
        return self._heads(k, self.num_kv_heads), self._heads(v, self.num_kv_heads)

    def project_qkv(self, x: torch.Tensor, x_query: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """Self-attention's queries (of ``x_query`` when given, else of ``x``), keys and values of ``x``, before
        the split into heads (``[..., H * hd]``, ``[..., KV * hd]`` twice): a pooled tower asks for the query of
        its pooled token only."""
        if not self.fused:
            return self.q_proj(x if x_query is None else x_query), self.k_proj(x), self.v_proj(x)
        q_width, kv_width = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        if x_query is None:
            return self.qkv_proj(x).split((q_width, kv_width, kv_width), dim=-1)
        weight, bias = self.qkv_proj.weight, self.qkv_proj.bias  # slices of the one fused projection
        q = F.linear(x_query, weight[:q_width], None if bias is None else bias[:q_width])
        return (q, *F.linear(x, weight[q_width:], None if bias is None else bias[q_width:]).chunk(2, dim=-1))

    def _project(self, x: torch.Tensor, context: torch.Tensor | None,
                 context_kv: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[torch.Tensor, ...]:
        if self.cross:
            if context_kv is None:
                if context is None:
                    raise ValueError("cross-attention needs a context tensor [B, S, dim] (or context_kv)")
                context_kv = self.project_kv(context)
            return (self._heads(self.q_proj(x), self.num_heads), *context_kv)
        if context is not None or context_kv is not None:
            raise ValueError("self-attention got a context; build the module with cross=True")
        q, k, v = self.project_qkv(x)
        return self._heads(q, self.num_heads), self._heads(k, self.num_kv_heads), self._heads(v, self.num_kv_heads)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                is_causal: bool = False, kv_cache: KVCache | None = None, layer: int = 0,
                rope_angles: tuple[torch.Tensor, torch.Tensor] | None = None,
                context_kv: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Attend from ``x`` ``[B, L, dim]`` (to ``context`` ``[B, S, context_dim]`` or ``context_kv`` when
        cross); returns ``[B, L, dim]``.

        ``mask``/``is_causal``: see the module docstring; with ``kv_cache`` (self-attention), ``x`` holds
        the new tokens, which sit after the ``len(kv_cache)`` cached ones; their keys/values are stored as
        layer ``layer`` (the model calls ``kv_cache.advance`` after its last layer) and the mask covers
        every cached and new key. ``rope_angles``: ``rope.cos_sin(positions)`` computed once per forward
        (explicit positions, e.g. of left-padded rows); without it RoPE rotates positions
        ``len(kv_cache)..``.
        """
        q, k, v = self._project(x, context, context_kv)
        if kv_cache is not None and self.cross:
            raise ValueError("kv_cache is for self-attention; cross-attention keys never change")
        offset = len(kv_cache) if kv_cache is not None else 0
        if self.rope is not None:
            if rope_angles is None:
                rope_angles = self.rope.cos_sin(torch.arange(offset, offset + q.shape[-2], device=q.device))
            q, k = self.rope.rotate(q, *rope_angles), self.rope.rotate(k, *rope_angles)
        if kv_cache is not None:
            k, v = kv_cache.update(layer, k, v)  # (B, KV, S, hd): every cached key plus the new ones
        bias = self.alibi.bias(q.shape[-2], k.shape[-2], q.device) if self.alibi is not None else None
        dropout_p = self.dropout if self.training else 0.0
        out = attend(q, k, v, mask, is_causal=is_causal, bias=bias, dropout_p=dropout_p, use_sdpa=self.use_sdpa)
        out = out.transpose(1, 2).reshape(x.shape[0], q.shape[-2], self.num_heads * self.head_dim)
        return self.resid_dropout(self.out_proj(out))
