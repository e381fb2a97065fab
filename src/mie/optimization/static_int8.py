"""Static post-training int8: activation ranges calibrated once on the task's own data, then fixed.

>>> ranges = activation_ranges(model, batches, lambda model, batch: model(batch))  # doctest: +SKIP
>>> scheme = quantize_model(model, "static-int8", activation_ranges=ranges)  # doctest: +SKIP

Calibration runs the float model over a few batches with a forward hook on every ``nn.Linear`` that keeps the
running minimum and maximum of its input (a min/max observer, per tensor). Each range becomes an asymmetric
uint8 grid: ``scale = (max - min) / 255`` and ``zero_point = round(-min / scale)``, the range first widened to
hold 0 so that zero padding stays exact. Weights are int8 per output channel (symmetric, as dynamic int8).

:class:`StaticInt8Linear` then quantizes its input with those fixed numbers and runs fbgemm's int8 GEMM with
an fp32 output (``quantized.linear_with_input_q_dq_qweight_dq_output_fp32``): unlike dynamic int8 it computes
no min/max of the activations per call. The layer's outputs stay float, so each linear quantizes its own input
and nothing else in the model (norms, softmax, GELU) changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mie.optimization.int_linear import DynamicInt8Linear
from mie.optimization.wanda import observe_linear_inputs

QMAX = 255  # uint8 activations; this CPU's VNNI multiplies u8 x s8 without the int16 saturation of AVX2


def range_to_qparams(low: float, high: float) -> tuple[float, int]:
    """The uint8 ``(scale, zero_point)`` of the observed range ``[low, high]`` (widened to include 0)."""
    low, high = min(low, 0.0), max(high, 0.0)
    scale = max((high - low) / QMAX, 1e-8)
    zero_point = int(min(max(round(-low / scale), 0), QMAX))
    return scale, zero_point


@torch.no_grad()
def activation_ranges(model: nn.Module, batches: Iterable[Any], forward: Callable[[nn.Module, Any], Any]
                      ) -> dict[str, dict[str, float]]:
    """``{linear name: {"min", "max", "rows"}}`` of every ``nn.Linear``'s input over ``batches``
    (``forward(model, batch)`` runs one, in eval mode, without gradients). Linears never called are absent."""
    seen: dict[str, dict[str, float]] = {}

    def record(name: str, x: torch.Tensor) -> None:
        low, high, rows = float(x.min()), float(x.max()), x.numel() // x.shape[-1]
        if name in seen:
            entry = seen[name]
            entry["min"], entry["max"] = min(entry["min"], low), max(entry["max"], high)
            entry["rows"] += rows
        else:
            seen[name] = {"min": low, "max": high, "rows": rows}

    observe_linear_inputs(model, batches, forward, record)
    return seen


class StaticInt8Linear(DynamicInt8Linear):
    """Static int8: per-channel int8 weights and an input quantized with a calibrated, fixed ``input_scale`` and
    ``input_zero_point`` (buffers, saved with the weights); fp32 output.

    With gradients, off the CPU or for non-fp32 inputs it computes the same function in float: the input is
    fake-quantized to the same grid (straight-through gradient) and multiplied by the dequantized weight.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias)
        self.register_buffer("input_scale", torch.ones(()))
        self.register_buffer("input_zero_point", torch.zeros((), dtype=torch.int32))

    @classmethod
    def from_linear_range(cls, linear: nn.Linear, low: float, high: float) -> StaticInt8Linear:
        """The static-int8 counterpart of ``linear`` whose inputs were observed in ``[low, high]``."""
        dynamic = DynamicInt8Linear.from_linear(linear)
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None)
        layer.load_state_dict(dynamic.state_dict(), strict=False)
        scale, zero_point = range_to_qparams(low, high)
        layer.input_scale.fill_(scale)
        layer.input_zero_point.fill_(zero_point)
        return layer

    def qparams(self) -> tuple[float, int]:
        """The input's ``(scale, zero_point)``."""
        return float(self.input_scale), int(self.input_zero_point)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[..., in]`` -> ``[..., out]``."""
        scale, zero_point = self.qparams()
        if torch.is_grad_enabled() or x.device.type != "cpu" or x.dtype != torch.float32:
            fake = torch.fake_quantize_per_tensor_affine(x.float(), scale, zero_point, 0, QMAX)
            return F.linear(fake, self.dequantize(), self.bias).to(x.dtype)
        flat = x.reshape(-1, self.in_features)
        out = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(flat, scale, zero_point,
                                                                                self._prepack())
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        """Shown by ``print(model)``."""
        scale, zero_point = self.qparams()
        return (f"in_features={self.in_features}, out_features={self.out_features}, static int8 "
                f"(input scale={scale:.4g}, zero point={zero_point})")
