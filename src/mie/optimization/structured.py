"""Structured pruning that really shrinks the matrices: attention heads (whole key/value groups) and MLP neurons.

>>> scheme = prune_heads(model, amount=0.25)        # doctest: +SKIP
>>> scheme = prune_mlp_neurons(model, amount=0.5)   # doctest: +SKIP

Each layer keeps the same number of its most important units (a regular shape): a neuron's importance is
``||w_in[j]|| * ||w_out[:, j]||`` (SwiGLU: the gate's and the value's rows multiplied), a key/value group's is
the product of the norms of its value rows and its output-projection columns (with ``scores`` from a
calibration pass, e.g. :func:`mie.optimization.wanda.input_norms`, the output columns are weighted by the
activations that reach them). The kept rows and columns are copied into smaller ``nn.Linear`` modules under the
same names and the attention module's head counts are lowered; the scheme records the new sizes per module, so
:func:`apply_structure` shrinks a model built from the run's unchanged config before its checkpoint loads.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mie.models.attention import MultiHeadAttention
from mie.models.blocks import FeedForward
from mie.models.causal_lm import MLP


def _linear(old: nn.Linear, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None) -> nn.Linear:
    """A new ``nn.Linear`` holding ``old``'s kept output ``rows`` and input ``cols`` (None = all)."""
    weight = old.weight.detach()
    bias = old.bias.detach() if old.bias is not None else None
    if rows is not None:
        weight = weight[rows]
        bias = bias[rows] if bias is not None else None
    if cols is not None:
        weight = weight[:, cols]
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device=weight.device,
                    dtype=weight.dtype)
    new.weight.data.copy_(weight)
    if bias is not None:
        new.bias.data.copy_(bias)
    return new


def _empty_linear(old: nn.Linear, out_features: int, in_features: int) -> nn.Linear:
    return nn.Linear(in_features, out_features, bias=old.bias is not None, device=old.weight.device,
                     dtype=old.weight.dtype)


def _mlp_parts(module: nn.Module) -> tuple[str, str | None, str, bool] | None:
    """``(in, gate-or-None, out, fused_swiglu)`` attribute names of an MLP module, None for other modules."""
    if isinstance(module, MLP):
        return "w1", ("w3" if module.w3 is not None else None), "w2", False
    if isinstance(module, FeedForward):
        return "fc_in", None, "fc_out", module.activation == "swiglu"
    return None


def _keep(scores: torch.Tensor, amount: float) -> torch.Tensor:
    """Sorted indices of the ``1 - amount`` highest ``scores`` (at least one)."""
    count = max(1, round(scores.numel() * (1.0 - amount)))
    return scores.topk(count).indices.sort().values


def _check_amount(amount: float) -> None:
    if not 0.0 <= amount < 1.0:
        raise ValueError(f"amount must be in [0, 1), got {amount}")


@torch.no_grad()
def prune_mlp_neurons(model: nn.Module, amount: float, scores: dict[str, torch.Tensor] | None = None
                      ) -> dict[str, Any]:
    """Remove the ``amount`` least important hidden neurons of every MLP in place; returns the scheme part
    ``{"mlp": {module name: hidden width}}``. ``scores``: optional per-module importance of each neuron."""
    _check_amount(amount)
    sizes: dict[str, int] = {}
    for name, module in list(model.named_modules()):
        parts = _mlp_parts(module)
        if parts is None:
            continue
        first, gate, last, fused = parts
        w_in, w_out = getattr(module, first).weight, getattr(module, last).weight
        hidden = w_out.shape[1]
        in_norm = w_in.float().norm(dim=1)
        in_norm = in_norm[:hidden] * in_norm[hidden:] if fused else in_norm
        if gate is not None:
            in_norm = in_norm * getattr(module, gate).weight.float().norm(dim=1)
        importance = scores[name] if scores and name in scores else in_norm * w_out.float().norm(dim=0)
        kept = _keep(importance, amount)
        rows = torch.cat((kept, kept + hidden)) if fused else kept
        setattr(module, first, _linear(getattr(module, first), rows=rows))
        if gate is not None:
            setattr(module, gate, _linear(getattr(module, gate), rows=kept))
        setattr(module, last, _linear(getattr(module, last), cols=kept))
        sizes[name] = int(kept.numel())
    return {"mlp": sizes}


def _head_slices(attn: MultiHeadAttention, groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Query-row and key/value-row indices of the kept key/value ``groups``."""
    hd, per_group = attn.head_dim, attn.num_heads // attn.num_kv_heads
    kv_rows = (groups[:, None] * hd + torch.arange(hd)).reshape(-1)
    heads = (groups[:, None] * per_group + torch.arange(per_group)).reshape(-1)
    q_rows = (heads[:, None] * hd + torch.arange(hd)).reshape(-1)
    return q_rows, kv_rows


@torch.no_grad()
def prune_heads(model: nn.Module, amount: float, scores: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """Remove the ``amount`` least important key/value groups (with their query heads) of every self-attention
    in place; returns ``{"attention": {module name: {"num_heads": h, "num_kv_heads": kv}}}``. ``scores``:
    optional per-module importance of each input of ``out_proj`` (e.g. its mean squared activation)."""
    _check_amount(amount)
    sizes: dict[str, dict[str, int]] = {}
    for name, attn in list(model.named_modules()):
        if not isinstance(attn, MultiHeadAttention) or attn.cross or attn.alibi is not None:
            continue
        hd, kv, per_group = attn.head_dim, attn.num_kv_heads, attn.num_heads // attn.num_kv_heads
        q_width, kv_width = attn.num_heads * hd, kv * hd
        out_w = attn.out_proj.weight.float()
        if scores and name in scores:
            out_w = out_w * scores[name].float().sqrt()
        v_w = attn.qkv_proj.weight[q_width + kv_width:] if attn.fused else attn.v_proj.weight
        out_norm = out_w.reshape(out_w.shape[0], kv, per_group * hd).norm(dim=(0, 2))
        importance = out_norm * v_w.float().reshape(kv, -1).norm(dim=1)
        groups = _keep(importance, amount)
        q_rows, kv_rows = _head_slices(attn, groups)
        if attn.fused:
            rows = torch.cat((q_rows, q_width + kv_rows, q_width + kv_width + kv_rows))
            attn.qkv_proj = _linear(attn.qkv_proj, rows=rows)
        else:
            attn.q_proj = _linear(attn.q_proj, rows=q_rows)
            attn.k_proj = _linear(attn.k_proj, rows=kv_rows)
            attn.v_proj = _linear(attn.v_proj, rows=kv_rows)
        attn.out_proj = _linear(attn.out_proj, cols=q_rows)
        attn.num_kv_heads, attn.num_heads = int(groups.numel()), int(groups.numel()) * per_group
        sizes[name] = {"num_heads": attn.num_heads, "num_kv_heads": attn.num_kv_heads}
    return {"attention": sizes}


def apply_structure(model: nn.Module, scheme: dict[str, Any]) -> nn.Module:
    """Shrink a freshly built ``model`` to the sizes of a structured scheme (empty weights, for loading)."""
    for name, hidden in scheme.get("mlp", {}).items():
        module = model.get_submodule(name)
        parts = _mlp_parts(module)
        if parts is None:
            raise ValueError(f"{name} is not an MLP module; the checkpoint does not fit this model")
        first, gate, last, fused = parts
        old_in, old_out = getattr(module, first), getattr(module, last)
        setattr(module, first, _empty_linear(old_in, 2 * hidden if fused else hidden, old_in.in_features))
        if gate is not None:
            setattr(module, gate, _empty_linear(getattr(module, gate), hidden, old_in.in_features))
        setattr(module, last, _empty_linear(old_out, old_out.out_features, hidden))
    for name, heads in scheme.get("attention", {}).items():
        attn = model.get_submodule(name)
        if not isinstance(attn, MultiHeadAttention):
            raise ValueError(f"{name} is not an attention module; the checkpoint does not fit this model")
        attn.num_heads, attn.num_kv_heads = heads["num_heads"], heads["num_kv_heads"]
        q_width, kv_width = attn.num_heads * attn.head_dim, attn.num_kv_heads * attn.head_dim
        if attn.fused:
            attn.qkv_proj = _empty_linear(attn.qkv_proj, q_width + 2 * kv_width, attn.qkv_proj.in_features)
        else:
            attn.q_proj = _empty_linear(attn.q_proj, q_width, attn.q_proj.in_features)
            attn.k_proj = _empty_linear(attn.k_proj, kv_width, attn.k_proj.in_features)
            attn.v_proj = _empty_linear(attn.v_proj, kv_width, attn.v_proj.in_features)
        attn.out_proj = _empty_linear(attn.out_proj, attn.out_proj.out_features, q_width)
    return model
