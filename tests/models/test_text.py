"""Text encoder: pooling at the first end-of-text id, causal masking, clear errors."""

import pytest
import torch

from mie.models.text import TextEncoder, eot_positions

EOS, PAD = 5, 0  # deliberately not the largest id: pooling must not be "argmax of ids"


def tiny_text(**kwargs):
    options = dict(vocab_size=50, eos_id=EOS, pad_id=PAD, context_length=8, width=16, layers=2, heads=2)
    options.update(kwargs)
    return TextEncoder(**options).eval()


def make_ids():
    return torch.tensor(
        [
            [2, 40, 41, EOS, PAD, PAD, PAD, PAD],
            [2, 49, 30, 31, 32, EOS, PAD, PAD],
            [2, EOS, 45, EOS, PAD, PAD, PAD, PAD],  # two eos: the first one counts
        ]
    )


def test_eot_positions_are_first_eos_not_max_id():
    ids = make_ids()
    assert eot_positions(ids, EOS).tolist() == [3, 5, 1]
    assert ids.argmax(dim=1).tolist() != [3, 5, 1]


def test_missing_eos_raises_naming_the_rows():
    ids = make_ids()
    ids[1, 5] = 7
    with pytest.raises(ValueError, match=r"rows \[1\].*end-of-text id 5"):
        tiny_text()(ids)


def test_pooled_feature_is_the_token_feature_at_eos():
    model = tiny_text()
    ids = make_ids()
    tokens = model.forward_tokens(ids)
    torch.testing.assert_close(model(ids), tokens[[0, 1, 2], [3, 5, 1]])


def test_tokens_after_eos_do_not_change_the_output_but_tokens_before_do():
    model = tiny_text()
    ids = make_ids()
    base = model(ids)
    after = ids.clone()
    after[0, 5] = 33  # after eos (row 0 pools at 3)
    after[1, 7] = 12
    torch.testing.assert_close(model(after), base)
    before = ids.clone()
    before[0, 1] = 33
    out = model(before)
    assert not torch.allclose(out[0], base[0])
    torch.testing.assert_close(out[1:], base[1:])


def test_padding_mask_marks_positions_after_eos():
    mask = tiny_text().padding_mask(make_ids())
    assert mask[0].tolist() == [False] * 4 + [True] * 4
    assert mask[2].tolist() == [False, False] + [True] * 6


def test_text_encoder_errors():
    with pytest.raises(ValueError, match="vocab_size must be positive"):
        tiny_text(vocab_size=0)
    with pytest.raises(ValueError, match="eos_id=60"):
        TextEncoder(50, eos_id=60, pad_id=0)
    with pytest.raises(ValueError, match="context_length is 8"):
        tiny_text()(torch.full((1, 9), EOS))
    with pytest.raises(ValueError, match=r"\[B, L\]"):
        tiny_text().forward_tokens(torch.zeros(4, dtype=torch.long))


def test_trailing_padding_is_trimmed_without_changing_features():
    # forward() drops the columns after the batch's last eos; with causal attention the features at
    # each eos must equal those from the full-length pass.
    torch.manual_seed(0)
    model = tiny_text()
    ids = make_ids()
    full = model.forward_tokens(ids)[torch.arange(3), eot_positions(ids, EOS)]
    torch.testing.assert_close(model(ids), full)
    assert eot_positions(ids, EOS).max() + 1 < ids.shape[1]  # the example really has columns to drop
