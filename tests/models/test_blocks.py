"""Norms, feed-forward layers, the pre-norm transformer block and GPT-2 initialization."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mie.errors import ConfigError
from mie.models.attention import key_mask
from mie.models.blocks import (
    FeedForward,
    RMSNorm,
    TransformerBlock,
    build_norm,
    init_transformer_,
    trunc_normal_,
)


def test_rmsnorm_matches_formula():
    norm = RMSNorm(6, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(torch.arange(1.0, 7.0))
    x = torch.randn(3, 6)
    for row in range(3):
        rms = (sum(float(v) ** 2 for v in x[row]) / 6 + 1e-6) ** 0.5
        torch.testing.assert_close(norm(x)[row], x[row] / rms * torch.arange(1.0, 7.0))


def test_rmsnorm_keeps_dtype_and_is_scale_invariant():
    norm = RMSNorm(8)
    x = torch.randn(2, 8)
    torch.testing.assert_close(norm(5 * x), norm(x), atol=1e-5, rtol=1e-5)
    assert norm(x.to(torch.bfloat16)).dtype == torch.bfloat16


def test_build_norm():
    assert isinstance(build_norm("layernorm", 4), nn.LayerNorm)
    assert isinstance(build_norm("rmsnorm", 4), RMSNorm)
    # eps: each norm's own default unless given (models built before the argument keep their numbers).
    assert build_norm("layernorm", 4).eps == 1e-5 and build_norm("rmsnorm", 4).eps == 1e-6
    assert build_norm("layernorm", 4, eps=1e-12).eps == 1e-12 and build_norm("rmsnorm", 4, eps=1e-5).eps == 1e-5
    # An unknown name is the registry's one-line ConfigError, naming the config key and every norm.
    with pytest.raises(ConfigError, match=r"^model\.norm: unknown norm 'batchnorm'; known norms: layernorm, rmsnorm"):
        build_norm("batchnorm", 4)


def test_feedforward_gelu_matches_manual():
    ff = FeedForward(4, 10)
    x = torch.randn(2, 3, 4)
    expected = F.linear(F.gelu(F.linear(x, ff.fc_in.weight, ff.fc_in.bias)), ff.fc_out.weight, ff.fc_out.bias)
    torch.testing.assert_close(ff(x), expected)


def test_feedforward_swiglu_matches_manual():
    ff = FeedForward(4, 6, activation="swiglu", bias=False)
    assert ff.fc_in.weight.shape == (12, 4) and ff.fc_out.weight.shape == (4, 6)
    x = torch.randn(5, 4)
    gate, value = x @ ff.fc_in.weight[:6].T, x @ ff.fc_in.weight[6:].T
    expected = (gate * torch.sigmoid(gate) * value) @ ff.fc_out.weight.T
    torch.testing.assert_close(ff(x), expected)
    with pytest.raises(ValueError, match="gelu or swiglu"):
        FeedForward(4, 6, activation="relu")


def test_transformer_block_is_pre_norm_residual():
    block = TransformerBlock(8, 2, norm="rmsnorm").eval()
    x = torch.randn(2, 5, 8)
    h = x + block.attn(block.norm_attn(x))
    torch.testing.assert_close(block(x), h + block.ff(block.norm_ff(h)))
    # With both branches' output projections zeroed the block is the identity.
    for linear in (block.attn.out_proj, block.ff.fc_out):
        nn.init.zeros_(linear.weight)
        nn.init.zeros_(linear.bias)
    torch.testing.assert_close(block(x), x)


def test_transformer_block_cross_attention_uses_context_and_its_padding():
    block = TransformerBlock(8, 2, cross_attention=True).eval()
    x, context = torch.randn(2, 3, 8), torch.randn(2, 4, 8)
    real = key_mask(torch.tensor([[True, True, False, False], [True] * 4]))
    out = block(x, context, context_mask=real)
    changed = context.clone()
    changed[0, 2:] = torch.randn(2, 8)  # padded context tokens of row 0
    torch.testing.assert_close(block(x, changed, context_mask=real), out)
    changed[1, 0] += 1.0
    assert not torch.allclose(block(x, changed, context_mask=real)[1], out[1])
    with pytest.raises(ValueError, match="needs a context"):
        block(x)
    with pytest.raises(ValueError, match="no cross-attention"):
        TransformerBlock(8, 2)(x, context)


def test_init_transformer_scales_residual_projections():
    blocks = nn.ModuleList(TransformerBlock(64, 4) for _ in range(8))
    init_transformer_(blocks, num_layers=8)
    block = blocks[0]
    residual_std = 0.02 / 16**0.5
    assert block.ff.fc_out.weight.std().item() == pytest.approx(residual_std, rel=0.2)
    assert block.attn.out_proj.weight.std().item() == pytest.approx(residual_std, rel=0.2)
    assert block.ff.fc_in.weight.std().item() == pytest.approx(0.02, rel=0.2)
    assert block.ff.fc_in.weight.abs().max().item() <= 0.04 + 1e-6
    assert block.ff.fc_in.bias.abs().sum() == 0
    torch.testing.assert_close(block.norm_attn.weight, torch.ones(64))


def test_trunc_normal_matches_truncated_normal_moments():
    values = trunc_normal_(torch.empty(200_000), std=0.5)
    assert values.abs().max().item() <= 1.0
    # A normal truncated at +-2 sigma has mean 0 and std 0.8796 sigma.
    assert values.mean().item() == pytest.approx(0.0, abs=0.01)
    assert values.std().item() == pytest.approx(0.8796 * 0.5, rel=0.01)
    assert (values.abs() > 0.9).float().mean().item() > 0.01  # mass reaches near the bounds
