"""Static int8: a calibrated layer against its float reference (bound from the two grids' half steps), the
kernel against the same function computed in float, the whole model close to float and reloaded bit for bit."""

from __future__ import annotations

import pytest
import torch
from tests.optimization.test_quantize import _ids, tiny_dual_encoder, tiny_lm

from mie.errors import ConfigError
from mie.io.checkpoint import load_weights, save_weights
from mie.optimization.int_linear import DynamicInt8Linear
from mie.optimization.quantize import quantize_model
from mie.optimization.scheme import apply_optimization
from mie.optimization.static_int8 import StaticInt8Linear, activation_ranges, range_to_qparams


def test_qparams_cover_the_range_and_keep_zero_exact() -> None:
    scale, zero_point = range_to_qparams(-1.0, 3.0)
    assert scale == pytest.approx(4.0 / 255) and zero_point == round(1.0 / scale)
    scale, zero_point = range_to_qparams(0.5, 2.0)  # widened to [0, 2]: zero is a grid point
    assert zero_point == 0 and scale == pytest.approx(2.0 / 255)


def test_layer_is_within_the_quantization_bound_of_float() -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(96, 40)
    x = torch.randn(64, 96) * 2 + 0.5
    layer = StaticInt8Linear.from_linear_range(linear, float(x.min()), float(x.max()))
    scale, _ = layer.qparams()
    with torch.no_grad():
        out, reference = layer(x), linear(x)
        # |error| <= half an input step x ||w_row||_1 + half a weight step x ||x||_1 (both grids round to nearest)
        bound = 0.5 * scale * linear.weight.abs().sum(1)[None, :] + 0.5 * layer.scales[None, :] * x.abs().sum(1)[:, None]
    assert ((out - reference).abs() <= bound * 1.01 + 1e-5).all()
    assert (out - reference).abs().max() > 0  # it really is quantized
    with torch.enable_grad():  # the float path (fake-quantized input, dequantized weight) computes the same
        emulated = layer(x.requires_grad_())
    tie = scale * layer.dequantize().abs().max()  # one input rounding the other way at a tie
    assert torch.allclose(out, emulated.detach(), atol=2 * tie.item())


def test_values_outside_the_calibrated_range_clamp() -> None:
    linear = torch.nn.Linear(8, 4, bias=False)
    layer = StaticInt8Linear.from_linear_range(linear, -1.0, 1.0)
    with torch.no_grad():
        assert torch.allclose(layer(torch.full((1, 8), 10.0)), layer(torch.ones(1, 8)))


def test_dual_encoder_calibrated_stays_close_and_reloads_identically(tmp_path) -> None:
    model = tiny_dual_encoder()
    images = torch.randn(8, 3, 16, 16)
    ids = torch.tensor([[5, 6, 7, 2] + [0] * 8, [9, 10, 11, 12, 13, 2] + [0] * 6] * 4)
    with torch.no_grad():
        image_ref, text_ref = model.encode_image(images), model.encode_text(ids)
    ranges = activation_ranges(model, [(images, ids)], lambda m, b: (m.encode_image(b[0]), m.encode_text(b[1])))
    scheme = quantize_model(model, "static-int8", activation_ranges=ranges)
    static = [m for m in model.modules() if isinstance(m, StaticInt8Linear)]
    assert len(static) >= 8 and not any(isinstance(m, torch.nn.Linear) for m in model.modules())
    spec = next(v for v in scheme["modules"].values() if v["kind"] == "static-int8")
    assert {"input_scale", "input_zero_point", "observed"} <= set(spec)
    with torch.no_grad():
        image, text = model.encode_image(images), model.encode_text(ids)
    assert torch.nn.functional.cosine_similarity(image, image_ref).min() > 0.98
    assert torch.nn.functional.cosine_similarity(text, text_ref).min() > 0.98
    path = save_weights(tmp_path / "s.safetensors", model.state_dict(), {"optimization": {"quantization": scheme}})
    state, meta = load_weights(path)
    fresh = apply_optimization(tiny_dual_encoder(), meta["optimization"])
    fresh.load_state_dict(state)
    with torch.no_grad():
        assert torch.equal(fresh.encode_image(images), image) and torch.equal(fresh.encode_text(ids), text)


def test_causal_lm_static_int8_and_uncalibrated_linears() -> None:
    model = tiny_lm()
    ids = _ids()
    with torch.no_grad():
        reference = model(ids)
    ranges = activation_ranges(model, [ids], lambda m, b: m(b))
    ranges.pop("layers.1.mlp.w2")  # never observed: falls back to dynamic int8
    scheme = quantize_model(model, "static-int8", activation_ranges=ranges)
    assert isinstance(model.layers[1].mlp.w2, DynamicInt8Linear)
    assert not isinstance(model.layers[1].mlp.w2, StaticInt8Linear)
    assert scheme["modules"]["layers.0.mlp.w2"]["kind"] == "static-int8"
    with torch.no_grad():
        logits = model(ids)
    assert (logits - reference).norm() / reference.norm() < 0.1


def test_static_int8_needs_calibration_and_takes_no_groups() -> None:
    with pytest.raises(ValueError, match="static-int8 needs activation ranges"):
        quantize_model(tiny_lm(), "static-int8")
    with pytest.raises(ConfigError, match="--group-size: static-int8 keeps one scale per output row"):
        quantize_model(tiny_lm(), "static-int8", group_size=32, activation_ranges={"x": {}})
