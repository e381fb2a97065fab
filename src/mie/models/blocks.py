"""Transformer building blocks: normalization, the feed-forward MLP and the pre-norm transformer block."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mie.models.attention import MultiHeadAttention
from mie.models.kv_cache import KVCache
from mie.models.positional import RotaryEmbedding
from mie.registry import Registry

# Every norm a model config may name (``model.norm``); a class taking ``(dim)`` or ``(dim, eps=...)``.
NORMS: Registry[type[nn.Module]] = Registry("norm")
NORMS.add("layernorm", nn.LayerNorm)


class RMSNorm(nn.Module):
    """Root-mean-square norm (Zhang & Sennrich, 2019): ``x / sqrt(mean(x^2) + eps) * weight``.

    Like LayerNorm without the mean subtraction and bias; cheaper and as good for transformers.
    """

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize the last dim of ``x``."""
        # Compute in float32 so bf16/fp16 inputs do not lose the mean of squares; return the input dtype.
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (normed * self.weight.float()).to(x.dtype)


NORMS.add("rmsnorm", RMSNorm)


def build_norm(name: str, dim: int, eps: float | None = None) -> nn.Module:
    """The one norm builder of ``mie.models``: ``layernorm`` or ``rmsnorm`` over the last ``dim``.

    ``eps`` defaults to each norm's own (1e-5 for LayerNorm, 1e-6 for RMSNorm), so every model built
    before the argument existed keeps its numbers; pretrained models pass theirs (``norm_eps``).
    """
    norm = NORMS.lookup(name, where="model.norm")
    return norm(dim) if eps is None else norm(dim, eps=eps)


class FeedForward(nn.Module):
    """The position-wise MLP of a transformer block.

    ``activation="gelu"``: ``fc_out(gelu(fc_in(x)))`` (GPT-2, ViT). ``activation="swiglu"``:
    ``fc_out(silu(gate) * value)`` with ``gate, value = fc_in(x)`` (Shazeer, 2020, "GLU Variants Improve
    Transformer"). Dropout is applied to the output, which then joins the residual stream.
    """

    def __init__(
        self, dim: int, hidden_dim: int, dropout: float = 0.0, activation: str = "gelu", bias: bool = True
    ) -> None:
        super().__init__()
        if activation not in ("gelu", "swiglu"):
            raise ValueError(f"unknown feed-forward activation {activation!r}; choose gelu or swiglu")
        self.activation = activation
        # SwiGLU computes the gate and the value from the same input: one fused linear of twice the width.
        fan_out = 2 * hidden_dim if activation == "swiglu" else hidden_dim
        self.fc_in = nn.Linear(dim, fan_out, bias=bias)
        self.fc_out = nn.Linear(hidden_dim, dim, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the MLP to ``[..., dim]``."""
        hidden = self.fc_in(x)
        if self.activation == "swiglu":
            gate, value = hidden.chunk(2, dim=-1)
            hidden = F.silu(gate) * value
        else:
            hidden = F.gelu(hidden)
        return self.dropout(self.fc_out(hidden))


class TransformerBlock(nn.Module):
    """Pre-norm block: ``x += attn(norm(x))``, optionally ``x += cross_attn(norm(x), context)``, then
    ``x += ff(norm(x))``. Pre-norm keeps the residual stream un-normalized, which trains stably without
    warmup tricks (Xiong et al., 2020).

    Both attentions are :class:`~mie.models.attention.MultiHeadAttention` with fused projections
    (``attn.qkv_proj``; ``cross_attn.q_proj`` / ``cross_attn.kv_proj``) and ``out_proj``; masks follow its
    one convention (bool, True = may attend).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        norm: str = "layernorm",
        cross_attention: bool = False,
        activation: str = "gelu",
        bias: bool = True,
        rotary: RotaryEmbedding | None = None,
    ) -> None:
        super().__init__()
        self.norm_attn = build_norm(norm, dim)
        self.attn = MultiHeadAttention(dim, num_heads, dropout=dropout, bias=bias, rope=rotary)
        self.norm_cross = build_norm(norm, dim) if cross_attention else None
        self.cross_attn = (
            MultiHeadAttention(dim, num_heads, dropout=dropout, bias=bias, cross=True)
            if cross_attention
            else None
        )
        self.norm_ff = build_norm(norm, dim)
        self.ff = FeedForward(dim, int(dim * mlp_ratio), dropout=dropout, activation=activation, bias=bias)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        context_mask: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        layer: int = 0,
        context_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Transform ``x`` ``[B, L, dim]``. A block with cross-attention needs ``context`` ``[B, S, dim]``
        or its keys/values ``context_kv`` (``cross_attn.project_kv(context)``, computed once per source).

        ``mask`` (bool, broadcasts to ``[B, H, L, S]``, True = may attend; e.g. ``key_mask(real)``),
        ``is_causal``, ``kv_cache`` and ``layer`` (this block's index in the cache) go to self-attention;
        ``context_mask`` (same convention over the context's keys) to cross-attention.
        """
        x = x + self.attn(self.norm_attn(x), mask=mask, is_causal=is_causal, kv_cache=kv_cache, layer=layer)
        if self.cross_attn is not None and self.norm_cross is not None:
            if context is None and context_kv is None:
                raise ValueError("this block has cross-attention and needs a context tensor [B, S, dim]")
            x = x + self.cross_attn(self.norm_cross(x), context, mask=context_mask, context_kv=context_kv)
        elif context is not None or context_kv is not None:
            raise ValueError("got a context but this block has no cross-attention (cross_attention=False)")
        return x + self.ff(self.norm_ff(x))


RESIDUAL_PROJECTIONS = ("attn.out_proj.weight", "cross_attn.out_proj.weight", "ff.fc_out.weight")


@torch.no_grad()
def trunc_normal_(tensor: torch.Tensor, std: float = 0.02) -> torch.Tensor:
    """Fill ``tensor`` in place from normal(0, ``std``) truncated to ``[-2 std, 2 std]``.

    One pass of inverse-CDF sampling: uniform draws between the CDF values of the bounds mapped back
    through the inverse normal CDF. (``nn.init.trunc_normal_`` resamples until all values fall inside,
    several full passes over big matrices.)
    """
    low = 0.5 * (1.0 + math.erf(-2.0 / math.sqrt(2.0)))  # Phi(-2)
    tensor.uniform_(2 * low - 1, 1 - 2 * low)  # 2u - 1 for u in [Phi(-2), Phi(2)]
    tensor.erfinv_().mul_(std * math.sqrt(2.0))
    return tensor.clamp_(-2 * std, 2 * std)


def init_transformer_(module: nn.Module, num_layers: int, std: float = 0.02) -> None:
    """GPT-2 initialization, in place: truncated normal(``std``) for linear, conv and embedding weights,
    zero biases, and ``std / sqrt(2 * num_layers)`` for projections that write into the residual stream,
    so the stream's variance does not grow with depth. Norm layers keep their ones/zeros.

    The encoders pass ``std = width ** -0.5`` (as OpenCLIP does) rather than GPT-2's 0.02, which was
    chosen for width 768: at width 128, 0.02 leaves the attention and MLP branches so small that a
    from-scratch dual encoder's embeddings start almost identical and, at a usual learning rate,
    collapse to a constant (loss stuck at log(batch)) for hundreds of steps.
    """
    for submodule in module.modules():
        if isinstance(submodule, (nn.Linear, nn.Conv2d, nn.Embedding)):
            trunc_normal_(submodule.weight, std=std)
            if getattr(submodule, "bias", None) is not None:
                nn.init.zeros_(submodule.bias)
    residual_std = std / (2 * max(num_layers, 1)) ** 0.5
    for name, param in module.named_parameters():
        if name.endswith(RESIDUAL_PROJECTIONS):
            trunc_normal_(param, std=residual_std)
