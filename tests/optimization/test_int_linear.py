"""Integer linear layers against their float reference: per-element error bounds of each scheme, the layer
output bound that follows from them, the packed CPU kernels against the dequantized matmul, and dynamic int8
against torch's own ``quantize_dynamic``."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from mie.optimization.int_linear import (
    DynamicInt8Linear,
    WeightOnlyLinear,
    fitting_group_size,
    pack_nibbles,
    quantize_int4,
    quantize_int8,
    unpack_nibbles,
)


def _linear(in_features: int = 128, out_features: int = 96, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    layer = nn.Linear(in_features, out_features)
    layer.weight.data.normal_(0, 0.05)
    return layer


def _step(layer: WeightOnlyLinear) -> torch.Tensor:
    """Each weight's quantization step, broadcast to ``[out, in]``."""
    scales = layer.scales.float().repeat_interleave(layer.in_features // layer.scales.shape[1], dim=1)
    return scales


@pytest.mark.parametrize(("bits", "group"), [(8, 0), (8, 32), (4, 32), (4, 64), (4, 0)])
def test_weight_error_is_at_most_half_a_step(bits: int, group: int) -> None:
    linear = _linear()
    layer = WeightOnlyLinear.from_linear(linear, bits, group)
    error = (layer.dequantize() - linear.weight).abs()
    # round-to-nearest: half a step; int4's fp16 zero point adds its own rounding (< 1e-3 relative)
    slack = 1e-6 if bits == 8 else 2e-3 * linear.weight.abs().max().item()
    assert bool((error <= 0.5 * _step(layer) + slack).all())
    assert error.max() > 0  # the weights really were rounded


@pytest.mark.parametrize(("bits", "group"), [(8, 0), (8, 32), (4, 32), (4, 128)])
def test_layer_output_within_the_bound_of_its_weight_error(bits: int, group: int) -> None:
    """|y - y_ref| <= sum_j |x_j| * |W_ij - Wq_ij| (dequantized path: many rows)."""
    linear = _linear()
    layer = WeightOnlyLinear.from_linear(linear, bits, group)
    x = torch.randn(40, 128)
    with torch.no_grad():
        reference, out = linear(x), layer(x)
        bound = x.abs() @ (layer.dequantize() - linear.weight).abs().T
    assert bool(((out - reference).abs() <= bound + 1e-5).all())
    relative = (out - reference).norm() / reference.norm()
    assert relative < (0.01 if bits == 8 else 0.12)


@pytest.mark.parametrize(("bits", "group"), [(8, 0), (4, 32), (4, 64)])
def test_packed_kernel_matches_the_dequantized_matmul(bits: int, group: int) -> None:
    """Small batches run torch's packed int8/int4 kernels in bf16: within bf16 rounding of the exact product."""
    layer = WeightOnlyLinear.from_linear(_linear(), bits, group)
    x = torch.randn(3, 128)
    with torch.no_grad():
        kernel = layer(x)
        exact = nn.functional.linear(x, layer.dequantize(), layer.bias)
    assert layer._kernel, "the CPU kernel should be used for this layout"
    assert (kernel - exact).abs().max() <= 0.02 * exact.abs().max()


def test_kernel_is_skipped_where_no_kernel_takes_the_layout() -> None:
    layer = WeightOnlyLinear.from_linear(_linear(), 8, 32)  # grouped int8: no packed kernel
    with torch.no_grad():
        layer(torch.randn(2, 128))
    assert layer._kernel == ()
    odd = WeightOnlyLinear.from_linear(_linear(64, 24), 4, 32)  # the int4 kernel packs 16 output rows a tile
    with torch.no_grad():
        out = odd(torch.randn(1, 64))
    assert odd._kernel == () and out.shape == (1, 24)


def test_dynamic_int8_tracks_torch_quantize_dynamic() -> None:
    linear = _linear(256, 64)
    ours = DynamicInt8Linear.from_linear(linear)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = torch.ao.quantization.quantize_dynamic(nn.Sequential(linear), {nn.Linear}, dtype=torch.qint8)
    x = torch.randn(16, 256)
    with torch.no_grad():
        reference, out, torch_out = linear(x), ours(x), theirs(x)
    scale = reference.abs().max()
    assert (out - reference).abs().max() < 0.03 * scale
    assert (out - torch_out).abs().max() < 0.03 * scale
    # per-channel int8 weights: exactly what the buffers hold
    assert ours.qweight.dtype == torch.int8 and ours.qweight.abs().max() <= 127


def test_int8_and_int4_quantizers_and_packing() -> None:
    weight = torch.tensor([[0.0, 1.0, -2.0, 0.5]])
    q, scales = quantize_int8(weight)
    assert scales.item() == pytest.approx(2.0 / 127)
    assert q.tolist() == [[0, 64, -127, 32]]
    q4, scale4, zero4 = quantize_int4(torch.linspace(-1, 2, 16)[None, :], group_size=16)
    assert q4.tolist() == [list(range(16))]  # evenly spaced values land on every level once
    assert scale4.item() == pytest.approx(0.2, rel=1e-3)
    assert zero4.item() == pytest.approx(-1 + 8 * 0.2, rel=1e-3)
    values = torch.randint(0, 16, (5, 12), dtype=torch.uint8)
    assert torch.equal(unpack_nibbles(pack_nibbles(values)), values)


def test_group_sizes() -> None:
    assert fitting_group_size(576, 128) == 64  # SmolLM2's width
    assert fitting_group_size(1536, 128) == 128
    assert fitting_group_size(30, 32) == 0  # nothing divides: one group per row
    with pytest.raises(ValueError, match="does not divide"):
        WeightOnlyLinear(100, 8, bits=4, group_size=32)
