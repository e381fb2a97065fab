"""Positional encodings: the sinusoid formula, learned tables, and RoPE's relative-position property."""

import math

import pytest
import torch

from mie.models.positional import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEmbedding,
    sinusoidal_table,
)


def test_sinusoidal_table_matches_paper_formula():
    table = sinusoidal_table(6, 8)
    for pos in range(6):
        for i in range(4):
            angle = pos / 10000 ** (2 * i / 8)
            assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-5)
            assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-5)


def test_sinusoidal_module_adds_table_with_offset_and_has_no_state():
    module = SinusoidalPositionalEmbedding(10, 8)
    x = torch.randn(2, 3, 8)
    torch.testing.assert_close(module(x, offset=4), x + sinusoidal_table(10, 8)[4:7])
    assert list(module.state_dict()) == [] and list(module.parameters()) == []
    with pytest.raises(ValueError, match="max_len=10"):
        module(torch.randn(1, 8, 8), offset=3)
    with pytest.raises(ValueError, match="even dim"):
        sinusoidal_table(4, 7)


def test_learned_embedding_adds_its_rows_and_is_trainable():
    module = LearnedPositionalEmbedding(5, 4)
    x = torch.zeros(1, 3, 4)
    torch.testing.assert_close(module(x, offset=2), module.weight[2:5][None])
    module(x).sum().backward()
    assert module.weight.grad[:3].abs().sum() > 0 and module.weight.grad[3:].abs().sum() == 0
    with pytest.raises(ValueError, match="exceed"):
        module(torch.zeros(1, 6, 4))


def test_rotary_dot_product_depends_only_on_relative_position():
    rope = RotaryEmbedding(16)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(m, n):
        return float((rope(q, offset=m) * rope(k, offset=n)).sum())

    assert score(3, 1) == pytest.approx(score(10, 8), abs=1e-4)
    assert score(0, 5) == pytest.approx(score(20, 25), abs=1e-4)
    assert score(3, 1) != pytest.approx(score(3, 2), abs=1e-3)


def test_rotary_preserves_norms_is_identity_at_zero_and_offsets_are_consistent():
    rope = RotaryEmbedding(8)
    x = torch.randn(2, 3, 5, 8)
    rotated = rope(x)
    torch.testing.assert_close(rotated.norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close(rotated[..., 0, :], x[..., 0, :])
    torch.testing.assert_close(rope(x[..., 2:, :], offset=2), rotated[..., 2:, :])
    assert rope(x.to(torch.bfloat16)).dtype == torch.bfloat16


def test_rotary_rotates_pair_i_with_i_plus_half_by_position_times_frequency():
    rope = RotaryEmbedding(4, base=100.0)
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    out = rope(x.view(1, 1, 1, 4), offset=3).flatten()
    for i, (a, b) in enumerate([(1.0, 3.0), (2.0, 4.0)]):
        angle = 3 * 100.0 ** (-2 * i / 4)
        assert out[i].item() == pytest.approx(a * math.cos(angle) - b * math.sin(angle), abs=1e-5)
        assert out[i + 2].item() == pytest.approx(b * math.cos(angle) + a * math.sin(angle), abs=1e-5)


def test_rotary_errors():
    with pytest.raises(ValueError, match="even head_dim"):
        RotaryEmbedding(5)
    with pytest.raises(ValueError, match="last dim 8"):
        RotaryEmbedding(8)(torch.randn(1, 2, 6))
