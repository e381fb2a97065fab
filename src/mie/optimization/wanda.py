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
def observe_linear_inputs(model: nn.Module, batches: Iterable[Any], forward: Callable[[nn.Module, Any], Any],
                          observe: Callable[[str, torch.Tensor], None]) -> None:
    """Call ``observe(linear name, its input)`` for every ``nn.Linear`` call while ``forward(model, batch)``
    runs each of ``batches`` in eval mode without gradients (the calibration pass of Wanda and static int8);
    the hooks are removed and the model's mode restored afterwards, whatever happens."""
    def hook(name: str) -> Callable[..., None]:
        def record(_module: nn.Module, inputs: tuple[torch.Tensor, ...], _output: Any) -> None:
            observe(name, inputs[0].detach())
        return record

    handles = [module.register_forward_hook(hook(name))
               for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            forward(model, batch)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)


@torch.no_grad()
def input_norms(model: nn.Module, batches: Iterable[Any], forward: Callable[[nn.Module, Any], Any],
                squared: bool = False) -> dict[str, torch.Tensor]:
    """``{layer name: ||X_j||_2 per input feature}`` over ``batches`` (``forward(model, batch)`` runs one);
    ``squared`` returns the sums of squares instead."""
    sums: dict[str, torch.Tensor] = {}

    def record(name: str, x: torch.Tensor) -> None:
        x = x.float()
        total = x.reshape(-1, x.shape[-1]).pow(2).sum(0)
        sums[name] = sums[name] + total if name in sums else total

    observe_linear_inputs(model, batches, forward, record)
    return sums if squared else {name: total.sqrt() for name, total in sums.items()}
