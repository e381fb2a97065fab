"""A decoder-only causal language model (GPT / LLaMA family) with grouped-query attention and a KV cache.

>>> model = CausalLM(CausalLMConfig(vocab_size=256, dim=128, n_layers=4, n_heads=4))  # doctest: +SKIP
>>> logits = model(ids)  # [B, T, vocab], float32

Conventions (the GGUF loader and the generation code rely on them):

* RoPE is the HF ``transformers`` ``LlamaModel`` convention: within each head, dimension ``i`` is paired
  with ``i + head_dim/2`` (``rotate_half`` on ``[first half | second half]``) and rotated by the angle
  ``position * rope_theta ** (-2i / head_dim)`` for ``i < head_dim/2``. llama.cpp's GGUF files store
  ``wq``/``wk`` rows permuted for its interleaved (adjacent-pair) rotation; a GGUF→HF conversion undoes
  that permutation, after which this module's rotation is exact. So the loader must *un-permute* q/k:
  ``w.reshape(n_heads, head_dim // 2, 2, dim).transpose(1, 2).reshape(n_heads * head_dim, dim)``
  (``n_kv_heads`` for ``wk``).
* Grouped-query attention: query head ``h`` uses KV head ``h // (n_heads // n_kv_heads)`` (SDPA's
  ``enable_gqa`` on torch >= 2.5, which reads the cached K/V in place; ``repeat_interleave`` before).
* ``attention_mask`` is 1/True for real tokens, 0/False for padding (left padding for batched prompts).
  Positions default to ``cumsum(mask) - 1`` over every key seen so far, so a left-padded row gets the
  same positions, hence the same logits, as the unpadded row alone.
* Parameter names: ``tok_embeddings``, ``pos_embeddings`` (learned positions only),
  ``layers.{i}.attn_norm``, ``layers.{i}.attn.{wq,wk,wv,wo}``, ``layers.{i}.mlp_norm``,
  ``layers.{i}.mlp.{w1,w2,w3}`` (w1 gate, w3 up, w2 down; gelu has w1 up, w2 down and no w3), ``norm``,
  ``lm_head`` (only when ``tie_embeddings=False``; tied logits use ``tok_embeddings.weight``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mie.config import POSITIVE, Rule, one_of
from mie.models.blocks import RMSNorm
from mie.models.budget import check_model_size
from mie.models.generation import KVCache
from mie.models.positional import rotate_half

# SDPA groups query heads over shared KV heads itself from torch 2.5 on; copying K/V per query head
# (repeat_interleave) cost about twice the attention time of a batch-8 decode step.
_SDPA_GQA = tuple(int(part) for part in torch.__version__.split(".")[:2]) >= (2, 5)


@dataclass
class CausalLMConfig:
    """Architecture of a ``CausalLM``; the defaults are a tiny LLaMA-style model (SwiGLU, RMSNorm, RoPE)."""

    RULES: ClassVar[dict[str, Rule]] = {
        **{name: POSITIVE for name in ("vocab_size", "dim", "n_layers", "n_heads", "norm_eps", "rope_theta",
                                       "max_seq_len")},
        "n_kv_heads": (lambda v: v is None or v > 0, "> 0 or null (= n_heads)"),
        "mlp_hidden": (lambda v: v is None or v > 0, "> 0 or null (the default width)"),
        "mlp": one_of("swiglu", "gelu"),
        "norm": one_of("rmsnorm", "layernorm"),
        "positions": one_of("rope", "learned"),
        "dropout": (lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
    }

    vocab_size: int = 256
    dim: int = 128  # width of the residual stream
    n_layers: int = 4
    n_heads: int = 4  # query heads; head_dim = dim // n_heads
    n_kv_heads: int | None = None  # key/value heads (GQA); None = n_heads
    mlp_hidden: int | None = None  # None = 4*dim for gelu, int(8/3*dim) rounded up to 64 for swiglu
    mlp: str = "swiglu"  # swiglu | gelu
    norm: str = "rmsnorm"  # rmsnorm | layernorm
    norm_eps: float = 1e-5
    positions: str = "rope"  # rope | learned
    rope_theta: float = 10000.0
    max_seq_len: int = 512  # table size for learned positions; generation's cache length for rope
    tie_embeddings: bool = True  # logits use tok_embeddings.weight (no lm_head parameter)
    bias: bool = False  # biases in the attention and MLP linears
    dropout: float = 0.0

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.dim // self.n_heads

    @property
    def kv_heads(self) -> int:
        """Number of key/value heads (``n_kv_heads`` or ``n_heads``)."""
        return self.n_kv_heads or self.n_heads

    @property
    def hidden_dim(self) -> int:
        """Width of the MLP's hidden layer."""
        if self.mlp_hidden is not None:
            return self.mlp_hidden
        if self.mlp == "gelu":
            return 4 * self.dim
        return 64 * math.ceil(int(8 * self.dim / 3) / 64)

    def check_limits(self, key: str = "model") -> None:
        """Refuse sizes past the hard bounds or this machine's memory before anything is built (see
        :mod:`mie.models.budget`); the config machinery calls it at every load."""
        check_model_size(self, key or "model")


def rope_cos_sin(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin ``[B, 1, T, head_dim]`` of the rotation angles for integer ``positions`` ``[B, T]``."""
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device) / head_dim)
    angles = positions.float()[..., None] * inv_freq  # [B, T, head_dim/2]
    angles = torch.cat((angles, angles), dim=-1)[:, None]  # [B, 1, T, head_dim], pairs (i, i + head_dim/2)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` ``[B, H, T, head_dim]`` (HF ``rotate_half`` convention), in float32."""
    return (x.float() * cos + rotate_half(x.float()) * sin).to(x.dtype)


def _norm(config: CausalLMConfig) -> nn.Module:
    if config.norm == "rmsnorm":
        return RMSNorm(config.dim, eps=config.norm_eps)
    return nn.LayerNorm(config.dim, eps=config.norm_eps)


class Attention(nn.Module):
    """Causal self-attention with grouped-query KV heads, RoPE and an optional KV cache."""

    def __init__(self, config: CausalLMConfig) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.kv_heads, config.head_dim
        self.dropout = config.dropout
        self.wq = nn.Linear(config.dim, self.n_heads * self.head_dim, bias=config.bias)
        self.wk = nn.Linear(config.dim, self.n_kv_heads * self.head_dim, bias=config.bias)
        self.wv = nn.Linear(config.dim, self.n_kv_heads * self.head_dim, bias=config.bias)
        self.wo = nn.Linear(self.n_heads * self.head_dim, config.dim, bias=config.bias)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        mask: torch.Tensor | None,
        cache: KVCache | None = None,
        layer: int = 0,
    ) -> torch.Tensor:
        """``x`` ``[B, T, dim]``; ``mask`` bool ``[B, 1, T, S]`` (True = may attend) or None for plain causal."""
        B, T, _ = x.shape
        q = self.wq(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hd)
        k = self.wk(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, nkv, T, hd)
        v = self.wv(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, nkv, T, hd)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, nkv, S, hd): every cached key plus the new ones
        grouped = self.n_kv_heads != self.n_heads
        if grouped and not _SDPA_GQA:
            repeats = self.n_heads // self.n_kv_heads
            k, v = k.repeat_interleave(repeats, dim=1), v.repeat_interleave(repeats, dim=1)  # (B, nh, S, hd)
        dropout_p = self.dropout if self.training else 0.0
        kwargs = {"enable_gqa": True} if grouped and _SDPA_GQA else {}
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None, dropout_p=dropout_p,
                                           **kwargs)  # (B, nh, T, hd)
        return self.wo(y.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim))


class MLP(nn.Module):
    """SwiGLU ``w2(silu(w1 x) * w3 x)`` (LLaMA) or GELU ``w2(gelu(w1 x))`` (GPT-2)."""

    def __init__(self, config: CausalLMConfig) -> None:
        super().__init__()
        hidden = config.hidden_dim
        self.w1 = nn.Linear(config.dim, hidden, bias=config.bias)
        self.w2 = nn.Linear(hidden, config.dim, bias=config.bias)
        self.w3 = nn.Linear(config.dim, hidden, bias=config.bias) if config.mlp == "swiglu" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the MLP to ``[..., dim]``."""
        if self.w3 is None:
            return self.w2(F.gelu(self.w1(x)))
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class DecoderLayer(nn.Module):
    """Pre-norm block: ``x += attn(attn_norm(x))``, then ``x += mlp(mlp_norm(x))``."""

    def __init__(self, config: CausalLMConfig) -> None:
        super().__init__()
        self.attn_norm = _norm(config)
        self.attn = Attention(config)
        self.mlp_norm = _norm(config)
        self.mlp = MLP(config)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x, rope, mask, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        """Transform ``x`` ``[B, T, dim]``."""
        x = x + self.resid_dropout(self.attn(self.attn_norm(x), rope, mask, cache, layer))
        return x + self.resid_dropout(self.mlp(self.mlp_norm(x)))


class CausalLM(nn.Module):
    """Token embeddings, ``n_layers`` pre-norm decoder layers, a final norm and the LM head."""

    def __init__(self, config: CausalLMConfig) -> None:
        super().__init__()
        if config.dim % config.n_heads != 0:
            raise ValueError(f"dim={config.dim} must be divisible by n_heads={config.n_heads}")
        if config.n_heads % config.kv_heads != 0:
            raise ValueError(f"n_heads={config.n_heads} must be a multiple of n_kv_heads={config.kv_heads}")
        if config.positions == "rope" and config.head_dim % 2 != 0:
            raise ValueError(f"rope needs an even head_dim, got {config.head_dim}")
        check_model_size(config)  # before any weight is allocated
        self.config = config
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.pos_embeddings = (
            nn.Embedding(config.max_seq_len, config.dim) if config.positions == "learned" else None
        )
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.n_layers))
        self.norm = _norm(config)
        self.lm_head = None if config.tie_embeddings else nn.Linear(config.dim, config.vocab_size, bias=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """nanoGPT init: normal(0, 0.02) weights, zero biases, residual projections (``wo``, ``w2``) scaled
        by ``1 / sqrt(2 * n_layers)``; norms keep their ones/zeros."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
        for layer in self.layers:
            for proj in (layer.attn.wo, layer.mlp.w2):
                nn.init.normal_(proj.weight, mean=0.0, std=0.02 / math.sqrt(2 * self.config.n_layers))

    def num_parameters(self) -> int:
        """Number of scalar parameters (tied embeddings counted once)."""
        return sum(p.numel() for p in self.parameters())

    def _masks(
        self, ids: torch.Tensor, cache: KVCache | None, attention_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The SDPA mask ``[B, 1, T, S]`` (None = plain causal) and the key mask ``[B, S]`` over all keys."""
        B, T = ids.shape
        past = len(cache) if cache is not None else 0
        if attention_mask is not None:
            if attention_mask.shape not in ((B, T), (B, past + T)):
                raise ValueError(f"attention_mask must be [B, T] or [B, past + T] = [{B}, {past + T}], "
                                 f"got {tuple(attention_mask.shape)}")
            attention_mask = attention_mask[:, -T:].bool()
        if cache is not None:
            keys = cache.extend_mask(attention_mask if attention_mask is not None
                                     else torch.ones(B, T, dtype=torch.bool, device=ids.device))
        elif attention_mask is not None:
            keys = attention_mask
        else:
            return None, None
        S = keys.shape[1]
        if T == 1:  # a decode step: the one query sees every real key, and itself (see below)
            mask = keys.clone()
            mask[:, -1] = True
            return mask[:, None, None, :], keys  # (B, 1, 1, S)
        causal = torch.ones(T, S, dtype=torch.bool, device=ids.device).tril(diagonal=S - T)  # query i at slot S-T+i
        itself = torch.eye(T, S, dtype=torch.bool, device=ids.device).roll(S - T, dims=1)
        # A padded query sees no real key; letting it see itself keeps SDPA finite (its output is unused).
        mask = (keys[:, None, None, :] & causal) | itself  # (B, 1, T, S)
        return mask, keys

    def forward(
        self,
        ids: torch.Tensor,
        cache: KVCache | None = None,
        attention_mask: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        last_only: bool = False,
    ) -> torch.Tensor:
        """Float logits ``[B, T, vocab]`` for token ids ``[B, T]`` (``[B, 1, vocab]``, the last position's,
        with ``last_only``: generation's prefill needs no more, and the LM head is the largest matmul).

        ``cache`` holds earlier tokens' keys/values (and key mask) and is extended in place.
        ``attention_mask`` ``[B, T]`` (or ``[B, past + T]``) is 1 for real tokens, 0 for left padding.
        ``positions`` ``[B, T]`` default to ``cumsum(mask) - 1`` over all keys (``past + arange(T)`` unpadded).
        """
        B, T = ids.shape
        mask, keys = self._masks(ids, cache, attention_mask)
        if positions is None:
            if keys is None:
                positions = torch.arange(T, device=ids.device).expand(B, T)
            else:
                positions = (keys.long().cumsum(-1) - 1).clamp(min=0)[:, -T:]
        x = self.tok_embeddings(ids)  # (B, T, dim)
        rope = None
        if self.pos_embeddings is not None:
            if T > 0 and int(positions.max()) >= self.config.max_seq_len:
                raise ValueError(f"position {int(positions.max())} exceeds max_seq_len={self.config.max_seq_len}; "
                                 "shorten the input or build the model with a larger max_seq_len")
            x = x + self.pos_embeddings(positions)
        else:
            rope = rope_cos_sin(positions, self.config.head_dim, self.config.rope_theta)
        x = self.dropout(x)
        for i, layer in enumerate(self.layers):
            x = layer(x, rope, mask, cache, i)
        if cache is not None:
            cache.advance(T)
        if last_only:
            x = x[:, -1:]
        x = self.norm(x)
        weight = self.tok_embeddings.weight if self.lm_head is None else self.lm_head.weight
        return F.linear(x, weight).float()  # (B, T, vocab)
