"""Unstructured pruning of linear weights: magnitude (per layer or global) and Wanda; masks that keep the zeros
zero while the model fine-tunes; a sparsity report.

>>> masks = magnitude_prune(model, amount=0.5)                          # doctest: +SKIP
>>> masks = wanda_prune(model, amount=0.5, norms=input_norms(model, calibration_batches, forward))  # doctest: +SKIP
>>> handles = keep_pruned(masks, model)   # fine-tune: the gradients of pruned weights are zeroed
>>> remove_hooks(handles)                 # permanent: the weights hold the zeros, saved like any other

Magnitude ranks ``|W|`` within each layer (``scope="layer"``) or over all pruned layers together
(``scope="global"``). Wanda (Sun et al., 2023, "A Simple and Effective Pruning Approach for Large Language
Models") ranks ``|W_ij| * ||X_j||_2`` within each output row, ``||X_j||`` being the norm of input feature
``j`` over a calibration set: a small weight on a loud input survives, which magnitude alone cannot see.

The pruned weights are zero in the tensors themselves, so a pruned model saves to safetensors and loads into the
model built from the run's config with nothing else to do. Which layers are pruned: every ``nn.Linear`` except
an LM head (``lm_head``), as in the Wanda paper.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

SKIP = ("lm_head",)  # the output layer is left dense (Wanda, SparseGPT)


def prunable(model: nn.Module, skip: tuple[str, ...] = SKIP) -> dict[str, nn.Linear]:
    """The linear layers that pruning touches, by name."""
    return {name: module for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and not any(part in name for part in skip)}


def _check_amount(amount: float) -> None:
    if not 0.0 <= amount < 1.0:
        raise ValueError(f"amount must be in [0, 1), got {amount}")


def _mask_lowest(scores: torch.Tensor, amount: float, dim: int | None = None) -> torch.Tensor:
    """True = keep: everything but the ``amount`` lowest ``scores`` (over all, or within each slice of ``dim``)."""
    if dim is None:
        count = int(scores.numel() * amount)
        mask = torch.ones(scores.numel(), dtype=torch.bool, device=scores.device)
        if count:
            mask[scores.reshape(-1).topk(count, largest=False).indices] = False
        return mask.reshape(scores.shape)
    count = int(scores.shape[dim] * amount)
    mask = torch.ones_like(scores, dtype=torch.bool)
    if count:
        mask.scatter_(dim, scores.topk(count, dim=dim, largest=False).indices, False)
    return mask


@torch.no_grad()
def _apply(layers: dict[str, nn.Linear], masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for name, mask in masks.items():
        layers[name].weight.mul_(mask.to(layers[name].weight.dtype))
    return masks


@torch.no_grad()
def magnitude_prune(model: nn.Module, amount: float, scope: str = "layer",
                    skip: tuple[str, ...] = SKIP) -> dict[str, torch.Tensor]:
    """Zero the ``amount`` smallest-magnitude weights of each linear layer (or of all together with
    ``scope="global"``) in place; returns the keep-masks by layer name."""
    _check_amount(amount)
    if scope not in ("layer", "global"):
        raise ValueError(f"scope must be layer or global, got {scope!r}")
    layers = prunable(model, skip)
    if scope == "layer":
        return _apply(layers, {name: _mask_lowest(layer.weight.abs(), amount) for name, layer in layers.items()})
    flat = torch.cat([layer.weight.detach().abs().reshape(-1).float() for layer in layers.values()])
    count = int(flat.numel() * amount)
    threshold = flat.kthvalue(count).values if count else flat.min() - 1
    return _apply(layers, {name: layer.weight.abs() > threshold for name, layer in layers.items()})


@torch.no_grad()
def wanda_prune(model: nn.Module, amount: float, norms: dict[str, torch.Tensor],
                skip: tuple[str, ...] = SKIP) -> dict[str, torch.Tensor]:
    """Zero, in every output row, the ``amount`` weights of lowest ``|W_ij| * norms[layer][j]`` in place;
    ``norms`` from :func:`mie.optimization.wanda.input_norms`. Returns the keep-masks."""
    _check_amount(amount)
    layers = prunable(model, skip)
    missing = [name for name in layers if name not in norms]
    if missing:
        raise ValueError(f"no calibration norms for {len(missing)} layers (e.g. {missing[0]}); the calibration "
                         "forward must run every layer")
    masks = {name: _mask_lowest(layer.weight.abs().float() * norms[name].to(layer.weight.device)[None, :], amount,
                                dim=1)
             for name, layer in layers.items()}
    return _apply(layers, masks)


def keep_pruned(masks: dict[str, torch.Tensor], model: nn.Module) -> list[Any]:
    """Zero the gradients of pruned weights while the model trains, so no optimizer step revives them
    (AdamW's update of a weight whose gradients were always zero is zero, decoupled decay of zero too).
    Returns the hook handles (:func:`remove_hooks` makes the pruning permanent: the zeros stay in the tensors)."""
    handles = []
    for name, mask in masks.items():
        weight = model.get_submodule(name).weight
        keep = mask.to(weight.device, weight.dtype)
        handles.append(weight.register_hook(lambda grad, keep=keep: grad * keep))
    return handles


def remove_hooks(handles: list[Any]) -> None:
    """Detach the gradient hooks of :func:`keep_pruned`."""
    for handle in handles:
        handle.remove()


def sparsity_report(model: nn.Module, skip: tuple[str, ...] = SKIP) -> dict[str, Any]:
    """Zero fraction per prunable layer and over them all, and over every parameter of the model."""
    layers = prunable(model, skip)
    per_layer = {name: round(float((layer.weight == 0).float().mean()), 4) for name, layer in layers.items()}
    zeros = sum(int((layer.weight == 0).sum()) for layer in layers.values())
    total = sum(layer.weight.numel() for layer in layers.values())
    all_zero = sum(int((p == 0).sum()) for p in model.parameters())
    all_total = sum(p.numel() for p in model.parameters())
    return {"pruned_layers": len(layers), "linear_sparsity": round(zeros / max(total, 1), 4),
            "model_sparsity": round(all_zero / max(all_total, 1), 4), "per_layer": per_layer}
