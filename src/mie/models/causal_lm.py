"""A decoder-only causal language model (GPT / LLaMA family) built from the one attention module.

>>> model = CausalLM(CausalLMConfig(vocab_size=256, dim=128, n_layers=4, n_heads=4))  # doctest: +SKIP
>>> logits = model(ids)  # [B, T, vocab], float32

Conventions (the GGUF loader and the generation code rely on them):

* Attention is :class:`~mie.models.attention.MultiHeadAttention` with separate ``q_proj``/``k_proj``/
  ``v_proj`` (grouped-query: query head ``h`` uses KV head ``h // (n_heads // n_kv_heads)``), its masks
  (bool, True = may attend) and the one :class:`~mie.models.kv_cache.KVCache`.
* RoPE is :class:`~mie.models.positional.RotaryEmbedding`, the HF ``transformers`` ``LlamaModel``
  convention: within each head, dimension ``i`` is paired with ``i + head_dim/2`` and rotated by the angle
  ``position * rope_theta ** (-2i / head_dim)``. llama.cpp's GGUF files store the q/k rows permuted for its
  interleaved (adjacent-pair) rotation, so the loader *un-permutes* them
  (:func:`mie.pretrained.gguf_llama.unpermute_rows`). ``positions: alibi`` uses no position embedding
  but ALiBi's per-head distance biases (:class:`~mie.models.positional.ALiBi`).
* ``attention_mask`` is 1/True for real tokens, 0/False for padding (left padding for batched prompts).
  Positions default to ``cumsum(mask) - 1`` over every key seen so far, so a left-padded row gets the
  same positions, hence the same logits, as the unpadded row alone.
* Parameter names: ``tok_embeddings``, ``pos_embeddings`` (learned positions only),
  ``layers.{i}.attn_norm``, ``layers.{i}.attn.{q_proj,k_proj,v_proj,out_proj}`` (``attn.qkv_proj`` with
  ``fused_qkv``), ``layers.{i}.mlp_norm``,
  ``layers.{i}.mlp.{w1,w2,w3}`` (w1 gate, w3 up, w2 down; gelu has w1 up, w2 down and no w3), ``norm``,
  ``lm_head`` (only when ``tie_embeddings=False``; tied logits use ``tok_embeddings.weight``). ``qkv_bias``
  (Qwen2) adds biases to ``q_proj``/``k_proj``/``v_proj`` alone. Checkpoints
  written before the one attention module name the projections ``attn.{wq,wk,wv,wo}``; they load
  unchanged (``MultiHeadAttention`` renames them, LoRA-wrapped ``attn.wq.base.weight`` included).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mie.config import POSITIVE, Rule, one_of
from mie.models.attention import MultiHeadAttention, causal_mask, key_mask
from mie.models.blocks import build_norm
from mie.models.budget import check_model_size
from mie.models.kv_cache import KVCache
from mie.models.positional import ALiBi, RotaryEmbedding


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
        "positions": one_of("rope", "learned", "alibi"),
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
    positions: str = "rope"  # rope | learned | alibi (no embedding: per-head distance biases)
    rope_theta: float = 10000.0
    max_seq_len: int = 512  # table size for learned positions; generation's cache length for rope
    tie_embeddings: bool = True  # logits use tok_embeddings.weight (no lm_head parameter)
    bias: bool = False  # biases in the attention and MLP linears
    qkv_bias: bool = False  # biases on q/k/v only (Qwen2); out_proj and the MLP follow ``bias``
    # One qkv_proj linear instead of q/k/v_proj (one matmul, not three; pretrained loaders and LoRA targets
    # name the separate ones, so False stays the default; earlier separate checkpoints load into fused models)
    fused_qkv: bool = False
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

    def __init__(self, config: CausalLMConfig, rope: RotaryEmbedding | None = None,
                 alibi: ALiBi | None = None) -> None:
        super().__init__()
        self.attn_norm = build_norm(config.norm, config.dim, eps=config.norm_eps)
        # The attention's own output dropout is the residual dropout of this branch.
        self.attn = MultiHeadAttention(config.dim, config.n_heads, num_kv_heads=config.kv_heads,
                                       fused=config.fused_qkv,
                                       bias=config.bias or config.qkv_bias, out_bias=config.bias,
                                       dropout=config.dropout, rope=rope, alibi=alibi)
        self.mlp_norm = build_norm(config.norm, config.dim, eps=config.norm_eps)
        self.mlp = MLP(config)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, rope_angles: tuple[torch.Tensor, torch.Tensor] | None,
                mask: torch.Tensor | None, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        """Transform ``x`` ``[B, T, dim]``; ``mask`` bool ``[B, 1, T, S]`` (True = may attend) or None for
        plain causal; ``rope_angles`` the model's ``rope.cos_sin(positions)``."""
        x = x + self.attn(self.attn_norm(x), mask=mask, is_causal=mask is None, kv_cache=cache, layer=layer,
                          rope_angles=rope_angles)
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
        # One rotary table (or ALiBi slope set) shared by every layer; neither has saved state.
        self.rope = RotaryEmbedding(config.head_dim, config.rope_theta) if config.positions == "rope" else None
        alibi = ALiBi(config.n_heads) if config.positions == "alibi" else None
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(DecoderLayer(config, self.rope, alibi) for _ in range(config.n_layers))
        self.norm = build_norm(config.norm, config.dim, eps=config.norm_eps)
        self.lm_head = None if config.tie_embeddings else nn.Linear(config.dim, config.vocab_size, bias=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """nanoGPT init: normal(0, 0.02) weights, zero biases, residual projections (``out_proj``, ``w2``) scaled
        by ``1 / sqrt(2 * n_layers)``; norms keep their ones/zeros."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
        for layer in self.layers:
            for proj in (layer.attn.out_proj, layer.mlp.w2):
                nn.init.normal_(proj.weight, mean=0.0, std=0.02 / math.sqrt(2 * self.config.n_layers))

    def num_parameters(self) -> int:
        """Number of scalar parameters (tied embeddings counted once)."""
        return sum(p.numel() for p in self.parameters())

    def _masks(
        self, ids: torch.Tensor, cache: KVCache | None, attention_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The attention mask ``[B, 1, T, S]`` (True = may attend, :mod:`mie.models.attention`'s convention;
        None = plain causal) and the key mask ``[B, S]`` over all keys."""
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
        itself = torch.eye(T, S, dtype=torch.bool, device=ids.device).roll(S - T, dims=1)  # query i at slot S-T+i
        # A padded query sees no real key; letting it see itself keeps its output that of before the one
        # attention module (which would give it zeros; either way the output is unused).
        mask = (key_mask(keys) & causal_mask(T, S, ids.device)) | itself  # (B, 1, T, S)
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
        plain = positions is None and keys is None  # positions arange(T): the largest is T - 1, known unread
        if positions is None:
            if keys is None:
                positions = torch.arange(T, device=ids.device).expand(B, T)
            else:
                positions = (keys.long().cumsum(-1) - 1).clamp(min=0)[:, -T:]
        x = self.tok_embeddings(ids)  # (B, T, dim)
        rope_angles = None
        if self.pos_embeddings is not None:
            # Reading other positions back is a host sync on an accelerator: there only outside training.
            top = T - 1 if plain else int(positions.max()) if T > 0 and (
                ids.device.type == "cpu" or not self.training) else -1
            if top >= self.config.max_seq_len:
                raise ValueError(f"position {top} exceeds max_seq_len={self.config.max_seq_len}; "
                                 "shorten the input or build the model with a larger max_seq_len")
            x = x + self.pos_embeddings(positions)
        elif self.rope is not None:
            rope_angles = self.rope.cos_sin(positions)  # (B, 1, T, head_dim), once for every layer
        x = self.dropout(x)
        for i, layer in enumerate(self.layers):
            x = layer(x, rope_angles, mask, cache, i)
        if cache is not None:
            cache.advance(T)
        if last_only:
            x = x[:, -1:]
        x = self.norm(x)
        if self.lm_head is not None and not hasattr(self.lm_head, "weight"):  # an integer head (mie.optimization)
            return self.lm_head(x).float()
        weight = self.tok_embeddings.weight if self.lm_head is None else self.lm_head.weight
        return F.linear(x, weight).float()  # (B, T, vocab)
