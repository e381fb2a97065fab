"""Calibration statistics for activation-aware pruning: the L2 norm of every input feature of every linear layer.

>>> norms = input_norms(model, batches, lambda model, batch: model(batch))  # doctest: +SKIP

Forward hooks sum ``x_j^2`` over every row that reaches each ``nn.Linear`` (all tokens of all calibration
batches); the result is ``sqrt(sum)``, Wanda's ``||X_j||_2``. The model runs in eval mode without gradients,
so calibration costs one forward pass per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn


@torch.no_grad()
def input_norms(model: nn.Module, batches: Iterable[Any], forward: Callable[[nn.Module, Any], Any],
                squared: bool = False) -> dict[str, torch.Tensor]:
    """``{layer name: ||X_j||_2 per input feature}`` over ``batches`` (``forward(model, batch)`` runs one);
    ``squared`` returns the sums of squares instead."""
    sums: dict[str, torch.Tensor] = {}
    handles = []

    def hook(name: str) -> Callable[..., None]:
        def record(_module: nn.Module, inputs: tuple[torch.Tensor, ...], _output: Any) -> None:
            x = inputs[0].detach().float()
            total = x.reshape(-1, x.shape[-1]).pow(2).sum(0)
            sums[name] = sums[name] + total if name in sums else total
        return record

    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            forward(model, batch)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return sums if squared else {name: total.sqrt() for name, total in sums.items()}
