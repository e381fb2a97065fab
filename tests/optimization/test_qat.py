"""Quantization-aware training: fake-quantized linears compute with the integer grid's values, pass gradients
straight through, keep the checkpoint layout, and the trainer's ``qat`` option turns them on."""

from __future__ import annotations

import torch
from tests.training.conftest import RegressionTask, ToyRegression, make_config, make_loader
from torch import nn

from mie.optimization.int_linear import WeightOnlyLinear
from mie.optimization.qat import FakeQuantLinear, fake_quantize, prepare_qat, strip_qat
from mie.training import BaseTrainer


def test_fake_quantized_forward_uses_the_stored_grid_and_gradients_pass_straight_through() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(64, 16)
    keys = set(layer.state_dict())
    assert prepare_qat(nn.Sequential(layer), "int4-weight") == 1
    assert isinstance(layer, FakeQuantLinear) and set(layer.state_dict()) == keys
    x = torch.randn(5, 64)
    stored = WeightOnlyLinear.from_weight(layer.weight, layer.bias, 4, 32)  # what `mie optimize` would store
    assert torch.allclose(fake_quantize(layer.weight.detach(), 4, 32), stored.dequantize(), atol=1e-6)
    out = layer(x)
    assert torch.allclose(out, nn.functional.linear(x, stored.dequantize(), layer.bias), atol=1e-5)
    out.sum().backward()
    assert torch.allclose(layer.weight.grad, torch.ones(5, 16).T @ x)  # d(sum)/dW of a plain linear
    strip_qat(layer)
    assert type(layer) is nn.Linear and torch.allclose(layer(x), x @ layer.weight.T + layer.bias)


def test_trainer_qat_option_trains_fake_quantized_linears(tmp_path) -> None:
    model = ToyRegression(dropout=0.0)
    config = make_config(tmp_path, qat="int8-weight", epochs=2)
    trainer = BaseTrainer(RegressionTask(model), config, make_loader(), callbacks=[])
    assert all(isinstance(m, FakeQuantLinear) for m in model.modules() if isinstance(m, nn.Linear))
    before = model.net[0].weight.detach().clone()
    trainer.fit()
    assert not torch.equal(before, model.net[0].weight)
