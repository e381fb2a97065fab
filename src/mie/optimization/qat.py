"""Quantization-aware training: linears that compute with their weights rounded to the integer grid they will be
stored on, so training adapts the weights to it (Jacob et al., 2018; a straight-through estimator passes the
gradient of the rounded weight to the float one).

A trainer config's ``qat: int8-weight`` or ``qat: int4-weight`` (``mie.training.config.TrainerConfig``) makes
``BaseTrainer`` call :func:`prepare_qat` on the model. :class:`FakeQuantLinear` is an ``nn.Linear`` with the
same ``weight`` and ``bias`` parameters, so checkpoints, optimizers and LoRA see an ordinary linear; the run's
checkpoints hold float weights that sit near the grid, and ``mie optimize quantize RUN --method <same>``
stores them as integers with the same scheme (:mod:`mie.optimization.int_linear`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mie.optimization.int_linear import fitting_group_size, quantize_int4, quantize_int8
from mie.optimization.quantize import DEFAULT_GROUP

QAT_METHODS = ("int8-weight", "int4-weight")


def fake_quantize(weight: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    """``weight`` rounded to the int8 / int4 grid and back to float (the values the integer layer computes with)."""
    n, k = weight.shape
    if bits == 8:
        q, scales = quantize_int8(weight, group_size)
        return (q.float().reshape(n, scales.shape[1], -1) * scales[..., None]).reshape(n, k).to(weight.dtype)
    q, scales, zeros = quantize_int4(weight, group_size)
    values = (q.float().reshape(n, scales.shape[1], -1) - 8.0) * scales[..., None] + zeros[..., None]
    return values.reshape(n, k).to(weight.dtype)


class FakeQuantLinear(nn.Linear):
    """An ``nn.Linear`` whose forward uses ``fake_quantize(weight)``; the gradient flows to ``weight`` unchanged."""

    bits: int = 8
    group_size: int = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x W_q^T + b`` with the straight-through estimator ``W + (W_q - W).detach()``."""
        weight = self.weight
        rounded = fake_quantize(weight.detach(), self.bits, self.group_size)
        return F.linear(x, weight + (rounded - weight.detach()), self.bias)


def prepare_qat(model: nn.Module, method: str, group_size: int | None = None) -> int:
    """Turn ``model``'s plain linears into :class:`FakeQuantLinear` in place (same parameters, no copy);
    returns how many. ``method``: ``int8-weight`` | ``int4-weight`` (group sizes as :func:`quantize_model`)."""
    if method not in QAT_METHODS:
        raise ValueError(f"qat method must be one of {', '.join(QAT_METHODS)}, got {method!r}")
    group = DEFAULT_GROUP[method] if group_size is None else group_size
    bits = 8 if method == "int8-weight" else 4
    count = 0
    for module in model.modules():
        if type(module) is nn.Linear and not (bits == 4 and module.in_features % 2):
            module.__class__ = FakeQuantLinear  # keeps the very same parameters and hooks
            module.bits, module.group_size = bits, fitting_group_size(module.in_features, group) if group else 0
            count += 1
    return count


def strip_qat(model: nn.Module) -> nn.Module:
    """Turn every :class:`FakeQuantLinear` back into a plain ``nn.Linear`` (before :func:`quantize_model`)."""
    for module in model.modules():
        if isinstance(module, FakeQuantLinear):
            module.__class__ = nn.Linear
            for name in ("bits", "group_size"):
                module.__dict__.pop(name, None)
    return model
