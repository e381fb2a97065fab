"""MultiHeadAttention: the SDPA fast path against the hand-written reference, masks, cross-attention,
fully-masked rows and incremental decoding with a KV cache."""

import math

import pytest
import torch

from mie.models.attention import KVCache, MultiHeadAttention, build_attention_mask, reference_attention
from mie.models.blocks import TransformerBlock
from mie.models.positional import RotaryEmbedding


def both_paths(module, *args, **kwargs):
    """Outputs of the module with the fused kernel and with the reference path."""
    module.use_sdpa = True
    fast = module(*args, **kwargs)
    module.use_sdpa = False
    slow = module(*args, **kwargs)
    module.use_sdpa = True
    return fast, slow


def test_reference_attention_matches_naive_loops():
    q, k, v = torch.randn(1, 2, 3, 4), torch.randn(1, 2, 5, 4), torch.randn(1, 2, 5, 4)
    allowed = torch.rand(1, 1, 3, 5) > 0.3
    allowed[..., 0] = True
    out = reference_attention(q, k, v, allowed)
    for h in range(2):
        for i in range(3):
            scores = [float(q[0, h, i] @ k[0, h, j]) / math.sqrt(4) for j in range(5)]
            weights = [math.exp(s) if allowed[0, 0, i, j] else 0.0 for j, s in enumerate(scores)]
            total = sum(weights)
            expected = sum(w / total * v[0, h, j] for j, w in enumerate(weights))
            torch.testing.assert_close(out[0, h, i], expected, atol=1e-5, rtol=1e-5)


def test_reference_attention_causal_and_float_mask_match_sdpa():
    q, k, v = torch.randn(2, 2, 4, 8), torch.randn(2, 2, 4, 8), torch.randn(2, 2, 4, 8)
    torch.testing.assert_close(
        reference_attention(q, k, v, is_causal=True),
        torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True),
    )
    bias = torch.randn(4, 4)
    torch.testing.assert_close(
        reference_attention(q, k, v, bias), torch.nn.functional.scaled_dot_product_attention(q, k, v, bias)
    )


def test_self_attention_fast_equals_reference_without_mask():
    attn = MultiHeadAttention(16, 4).eval()
    x = torch.randn(2, 5, 16)
    fast, slow = both_paths(attn, x)
    assert fast.shape == (2, 5, 16)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)


def test_padding_mask_fast_equals_reference_and_ignores_padded_keys():
    attn = MultiHeadAttention(16, 2).eval()
    x = torch.randn(2, 6, 16)
    padding = torch.tensor([[False] * 6, [False] * 3 + [True] * 3])
    fast, slow = both_paths(attn, x, key_padding_mask=padding)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    changed = x.clone()
    changed[1, 3:] = torch.randn(3, 16)  # only padded positions of row 1
    after = attn(changed, key_padding_mask=padding)
    torch.testing.assert_close(after[1, :3], fast[1, :3], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(after[0], fast[0])


def test_causal_fast_equals_reference_and_ignores_the_future():
    attn = MultiHeadAttention(16, 4).eval()
    x = torch.randn(2, 7, 16)
    fast, slow = both_paths(attn, x, is_causal=True)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    changed = x.clone()
    changed[:, 4:] = torch.randn(2, 3, 16)
    torch.testing.assert_close(attn(changed, is_causal=True)[:, :4], fast[:, :4], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(attn(changed, is_causal=True)[:, 4:], fast[:, 4:])


def test_causal_with_padding_and_bool_attn_mask_fast_equals_reference():
    attn = MultiHeadAttention(16, 4).eval()
    x = torch.randn(3, 5, 16)
    padding = torch.tensor([[False] * 5, [False] * 4 + [True], [False] * 2 + [True] * 3])
    blocked = torch.zeros(5, 5, dtype=torch.bool)
    blocked[:, 1] = True  # nobody may look at key 1
    fast, slow = both_paths(attn, x, attn_mask=blocked, key_padding_mask=padding, is_causal=True)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    # Key 1 is blocked for every query: changing token 1 changes only its own query row.
    changed = x.clone()
    changed[:, 1] = torch.randn(3, 16)
    after = attn(changed, attn_mask=blocked, key_padding_mask=padding, is_causal=True)
    torch.testing.assert_close(after[:, [0, 2, 3, 4]], fast[:, [0, 2, 3, 4]], atol=1e-5, rtol=1e-5)


def test_float_attn_mask_per_batch_combined_with_padding():
    attn = MultiHeadAttention(8, 2).eval()
    x = torch.randn(2, 4, 8)
    bias = torch.randn(2, 4, 4)
    padding = torch.tensor([[False, False, False, True], [False] * 4])
    fast, slow = both_paths(attn, x, attn_mask=bias, key_padding_mask=padding)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    merged = build_attention_mask(4, 4, bias, padding)
    assert merged.shape == (2, 1, 4, 4)
    assert torch.isinf(merged[0, 0, :, 3]).all() and torch.isfinite(merged[1]).all()


def test_cross_attention_different_lengths_fast_equals_reference():
    attn = MultiHeadAttention(16, 4, cross=True).eval()
    x, context = torch.randn(2, 3, 16), torch.randn(2, 9, 16)
    context_padding = torch.zeros(2, 9, dtype=torch.bool)
    context_padding[0, 5:] = True
    fast, slow = both_paths(attn, x, context, key_padding_mask=context_padding)
    assert fast.shape == (2, 3, 16)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    # The output depends on the context, not on x's own other tokens.
    other = x.clone()
    other[:, 1:] = torch.randn(2, 2, 16)
    torch.testing.assert_close(attn(other, context, key_padding_mask=context_padding)[:, 0], fast[:, 0])


def test_fully_masked_rows_give_zero_attention_not_nan():
    attn = MultiHeadAttention(8, 2).eval()
    x = torch.randn(2, 3, 8)
    padding = torch.tensor([[True, True, True], [False, True, True]])
    fast, slow = both_paths(attn, x, key_padding_mask=padding)
    assert torch.isfinite(fast).all() and torch.isfinite(slow).all()
    torch.testing.assert_close(fast, slow, atol=1e-6, rtol=1e-6)
    # Row 0 attends to nothing: only the output projection's bias is left.
    torch.testing.assert_close(fast[0], attn.out_proj.bias.expand(3, 8))
    float_mask = torch.zeros(3, 3)
    float_mask[1] = float("-inf")
    out = attn(x, attn_mask=float_mask)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[:, 1], attn.out_proj.bias.expand(2, 8))


def test_fully_masked_rows_have_finite_gradients():
    attn = MultiHeadAttention(8, 2)
    x = torch.randn(1, 3, 8, requires_grad=True)
    attn(x, key_padding_mask=torch.ones(1, 3, dtype=torch.bool)).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in attn.parameters() if p.grad is not None)


@pytest.mark.parametrize("use_rotary", [False, True])
def test_kv_cache_incremental_decode_equals_full_causal_pass(use_rotary):
    rotary = RotaryEmbedding(4) if use_rotary else None
    attn = MultiHeadAttention(16, 4, rotary=rotary).eval()
    x = torch.randn(2, 6, 16)
    full = attn(x, is_causal=True)
    cache = KVCache()
    first = attn(x[:, :2], is_causal=True, kv_cache=cache)  # a prompt of two tokens, then one at a time
    steps = [first] + [attn(x[:, t : t + 1], is_causal=True, kv_cache=cache) for t in range(2, 6)]
    assert len(cache) == 6
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    cache.reset()
    assert len(cache) == 0


def test_kv_cache_through_transformer_block():
    block = TransformerBlock(16, 4).eval()
    x = torch.randn(1, 5, 16)
    full = block(x, is_causal=True)
    cache = KVCache()
    steps = [block(x[:, t : t + 1], is_causal=True, kv_cache=cache) for t in range(5)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_attention_dropout_only_in_training():
    attn = MultiHeadAttention(16, 2, dropout=0.5)
    x = torch.randn(2, 4, 16)
    attn.train()
    assert not torch.allclose(attn(x), attn(x))
    attn.eval()
    torch.testing.assert_close(attn(x), attn(x))


def test_attention_errors():
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match="self-attention only"):
        MultiHeadAttention(8, 2, cross=True, rotary=RotaryEmbedding(4))
    x = torch.randn(1, 3, 8)
    with pytest.raises(ValueError, match="needs a context"):
        MultiHeadAttention(8, 2, cross=True)(x)
    with pytest.raises(ValueError, match="cross=True"):
        MultiHeadAttention(8, 2)(x, context=x)
    with pytest.raises(ValueError, match="kv_cache"):
        MultiHeadAttention(8, 2, cross=True)(x, x, kv_cache=KVCache())
    with pytest.raises(ValueError, match="key_padding_mask"):
        MultiHeadAttention(8, 2)(x, key_padding_mask=torch.zeros(1, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="attn_mask"):
        MultiHeadAttention(8, 2)(x, attn_mask=torch.zeros(3, dtype=torch.bool))


def test_reference_path_dropout_and_per_head_mask():
    attn = MultiHeadAttention(8, 2, dropout=0.5)
    attn.use_sdpa = False
    x = torch.randn(1, 4, 8)
    assert not torch.allclose(attn(x), attn(x))  # training: dropout on the attention weights
    attn.eval()
    per_head = torch.zeros(1, 2, 4, 4, dtype=torch.bool)
    per_head[:, 1, :, 0] = True  # head 1 may not look at key 0
    fast, slow = both_paths(attn, x, attn_mask=per_head)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(fast, attn(x))
