"""The one MultiHeadAttention: the SDPA path against the hand-written reference, the one mask convention
(bool, True = may attend), cross-attention, fully-masked rows, GQA/MQA, fused and separate projections,
legacy parameter names, RoPE, ALiBi and incremental decoding with the one KVCache."""

import math

import pytest
import torch

from mie.models.attention import (
    MultiHeadAttention,
    attend,
    causal_mask,
    key_mask,
    reference_attention,
)
from mie.models.blocks import TransformerBlock
from mie.models.kv_cache import KVCache
from mie.models.positional import ALiBi, RotaryEmbedding


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


def test_mask_helpers_follow_the_one_convention():
    real = torch.tensor([[True, True, False], [True, False, False]])
    assert key_mask(real).shape == (2, 1, 1, 3) and key_mask(real.long()).dtype == torch.bool
    # Query i is the (S - L + i)-th key: two new queries after three cached keys see keys 0..3 and 0..4.
    assert causal_mask(2, 5).tolist() == [[True, True, True, True, False], [True] * 5]
    assert torch.equal(causal_mask(4, 4), torch.ones(4, 4, dtype=torch.bool).tril())


def test_attend_with_a_mask_equals_the_reference_and_merges_is_causal():
    q, k, v = torch.randn(2, 4, 5, 8), torch.randn(2, 4, 5, 8), torch.randn(2, 4, 5, 8)
    mask = key_mask(torch.tensor([[True] * 5, [True, True, True, False, False]]))
    merged = mask & causal_mask(5, 5)
    expected = reference_attention(q, k, v, merged)
    torch.testing.assert_close(attend(q, k, v, mask, is_causal=True), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(attend(q, k, v, merged), expected, atol=1e-5, rtol=1e-5)


def test_self_attention_fast_equals_reference_without_mask():
    attn = MultiHeadAttention(16, 4).eval()
    x = torch.randn(2, 5, 16)
    fast, slow = both_paths(attn, x)
    assert fast.shape == (2, 5, 16)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)


def test_key_mask_fast_equals_reference_and_ignores_padded_keys():
    attn = MultiHeadAttention(16, 2).eval()
    x = torch.randn(2, 6, 16)
    mask = key_mask(torch.tensor([[True] * 6, [True] * 3 + [False] * 3]))
    fast, slow = both_paths(attn, x, mask=mask)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    changed = x.clone()
    changed[1, 3:] = torch.randn(3, 16)  # only padded positions of row 1
    after = attn(changed, mask=mask)
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


def test_causal_with_a_key_mask_and_a_blocked_key_fast_equals_reference():
    attn = MultiHeadAttention(16, 4).eval()
    x = torch.randn(3, 5, 16)
    real = torch.tensor([[True] * 5, [True] * 4 + [False], [True] * 2 + [False] * 3])
    allowed = torch.ones(5, 5, dtype=torch.bool)
    allowed[:, 1] = False  # nobody may look at key 1
    mask = key_mask(real) & allowed
    fast, slow = both_paths(attn, x, mask=mask, is_causal=True)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    # Key 1 is blocked for every query: changing token 1 changes only its own query row.
    changed = x.clone()
    changed[:, 1] = torch.randn(3, 16)
    after = attn(changed, mask=mask, is_causal=True)
    torch.testing.assert_close(after[:, [0, 2, 3, 4]], fast[:, [0, 2, 3, 4]], atol=1e-5, rtol=1e-5)


def test_cross_attention_different_lengths_fast_equals_reference_and_context_kv():
    attn = MultiHeadAttention(16, 4, cross=True, context_dim=12).eval()
    x, context = torch.randn(2, 3, 16), torch.randn(2, 9, 12)
    real = torch.ones(2, 9, dtype=torch.bool)
    real[0, 5:] = False
    fast, slow = both_paths(attn, x, context, mask=key_mask(real))
    assert fast.shape == (2, 3, 16)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    # Keys/values projected once (a decoder's cache) give the same output.
    torch.testing.assert_close(attn(x, mask=key_mask(real), context_kv=attn.project_kv(context)), fast)
    # The output depends on the context, not on x's own other tokens.
    other = x.clone()
    other[:, 1:] = torch.randn(2, 2, 16)
    torch.testing.assert_close(attn(other, context, mask=key_mask(real))[:, 0], fast[:, 0])


def test_fully_masked_rows_give_zero_attention_not_nan():
    attn = MultiHeadAttention(8, 2).eval()
    x = torch.randn(2, 3, 8)
    mask = key_mask(torch.tensor([[False, False, False], [True, False, False]]))
    fast, slow = both_paths(attn, x, mask=mask)
    assert torch.isfinite(fast).all() and torch.isfinite(slow).all()
    torch.testing.assert_close(fast, slow, atol=1e-6, rtol=1e-6)
    # Row 0 attends to nothing: only the output projection's bias is left.
    torch.testing.assert_close(fast[0], attn.out_proj.bias.expand(3, 8))
    rows = torch.ones(3, 3, dtype=torch.bool)
    rows[1] = False  # query 1 may attend to no key
    out = attn(x, mask=rows)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[:, 1], attn.out_proj.bias.expand(2, 8))


def test_fully_masked_rows_have_finite_gradients():
    attn = MultiHeadAttention(8, 2)
    x = torch.randn(1, 3, 8, requires_grad=True)
    attn(x, mask=key_mask(torch.zeros(1, 3, dtype=torch.bool))).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in attn.parameters() if p.grad is not None)


def test_fused_and_separate_projections_compute_the_same_and_legacy_names_load():
    torch.manual_seed(0)
    separate = MultiHeadAttention(16, 4, fused=False).eval()
    x = torch.randn(2, 5, 16)
    expected = separate(x, is_causal=True)
    legacy = {k.replace("q_proj", "wq").replace("k_proj", "wk").replace("v_proj", "wv").replace("out_proj", "wo"): v
              for k, v in separate.state_dict().items()}
    fused = MultiHeadAttention(16, 4).eval()
    fused.load_state_dict(legacy, strict=True)  # renamed and joined into qkv_proj by the pre-hook
    assert set(fused.state_dict()) == {"qkv_proj.weight", "qkv_proj.bias", "out_proj.weight", "out_proj.bias"}
    torch.testing.assert_close(fused(x, is_causal=True), expected, atol=1e-6, rtol=1e-5)
    bert_names = {k.replace("_proj", ""): v for k, v in separate.state_dict().items()}  # q/k/v/out
    again = MultiHeadAttention(16, 4, fused=False).eval()
    again.load_state_dict(bert_names, strict=True)
    torch.testing.assert_close(again(x, is_causal=True), expected)


def test_cross_attention_separate_keys_load_into_the_fused_kv_proj():
    separate = MultiHeadAttention(8, 2, cross=True, fused=False).eval()
    fused = MultiHeadAttention(8, 2, cross=True).eval()
    fused.load_state_dict(separate.state_dict(), strict=True)
    x, context = torch.randn(2, 3, 8), torch.randn(2, 4, 8)
    torch.testing.assert_close(fused(x, context), separate(x, context), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("kv_heads", [2, 1])
def test_grouped_and_multi_query_attention_equal_mha_with_shared_heads(kv_heads):
    torch.manual_seed(0)
    gqa = MultiHeadAttention(16, 4, num_kv_heads=kv_heads, fused=False).eval()
    assert gqa.k_proj.weight.shape == (kv_heads * 4, 16)
    mha = MultiHeadAttention(16, 4, fused=False).eval()
    group = 4 // kv_heads
    with torch.no_grad():
        mha.q_proj.load_state_dict(gqa.q_proj.state_dict())
        mha.out_proj.load_state_dict(gqa.out_proj.state_dict())
        for name in ("k_proj", "v_proj"):  # query head h reads key head h // group
            source, target = getattr(gqa, name), getattr(mha, name)
            target.weight.copy_(source.weight.view(kv_heads, 4, 16).repeat_interleave(group, 0).reshape(16, 16))
            target.bias.copy_(source.bias.view(kv_heads, 4).repeat_interleave(group, 0).reshape(16))
    x = torch.randn(2, 5, 16)
    mask = key_mask(torch.tensor([[True] * 5, [True] * 3 + [False] * 2]))
    fast, slow = both_paths(gqa, x, mask=mask, is_causal=True)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast, mha(x, mask=mask, is_causal=True), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="multiple of num_kv_heads"):
        MultiHeadAttention(16, 4, num_kv_heads=3)


def test_alibi_adds_minus_slope_times_distance_to_the_scores():
    attn = MultiHeadAttention(8, 2, alibi=ALiBi(2), fused=False).eval()
    x = torch.randn(1, 4, 8)
    q, k, v = (attn._heads(proj(x), 2) for proj in (attn.q_proj, attn.k_proj, attn.v_proj))
    distance = (torch.arange(4)[:, None] - torch.arange(4)[None, :]).clamp(min=0).float()
    scores = q @ k.transpose(-2, -1) / 2.0 - ALiBi(2).slopes[:, None, None] * distance
    scores = scores.masked_fill(~causal_mask(4, 4), float("-inf"))
    expected = attn.out_proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(1, 4, 8))
    fast, slow = both_paths(attn, x, is_causal=True)
    torch.testing.assert_close(fast, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(slow, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("position", ["none", "rope", "alibi"])
def test_kv_cache_incremental_decode_equals_full_causal_pass(position):
    rope = RotaryEmbedding(4) if position == "rope" else None
    alibi = ALiBi(4) if position == "alibi" else None
    attn = MultiHeadAttention(16, 4, rope=rope, alibi=alibi).eval()
    x = torch.randn(2, 6, 16)
    full = attn(x, is_causal=True)
    cache = KVCache(1)

    def step(chunk):
        out = attn(chunk, is_causal=True, kv_cache=cache, layer=0)
        cache.advance(chunk.shape[1])
        return out

    steps = [step(x[:, :2])] + [step(x[:, t : t + 1]) for t in range(2, 6)]  # a prompt, then one at a time
    assert len(cache) == 6
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_kv_cache_through_transformer_block():
    block = TransformerBlock(16, 4, rotary=RotaryEmbedding(4)).eval()
    x = torch.randn(1, 5, 16)
    full = block(x, is_causal=True)
    cache = KVCache(1, max_len=5)
    steps = []
    for t in range(5):
        steps.append(block(x[:, t : t + 1], is_causal=True, kv_cache=cache, layer=0))
        cache.advance(1)
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
        MultiHeadAttention(8, 2, cross=True, rope=RotaryEmbedding(4))
    x = torch.randn(1, 3, 8)
    with pytest.raises(ValueError, match="needs a context"):
        MultiHeadAttention(8, 2, cross=True)(x)
    with pytest.raises(ValueError, match="cross=True"):
        MultiHeadAttention(8, 2)(x, context=x)
    with pytest.raises(ValueError, match="kv_cache"):
        MultiHeadAttention(8, 2, cross=True)(x, x, kv_cache=KVCache(1))
    with pytest.raises(ValueError, match="project_kv is for cross-attention"):
        MultiHeadAttention(8, 2).project_kv(x)


def test_reference_path_dropout_and_per_head_mask():
    attn = MultiHeadAttention(8, 2, dropout=0.5)
    attn.use_sdpa = False
    x = torch.randn(1, 4, 8)
    assert not torch.allclose(attn(x), attn(x))  # training: dropout on the attention weights
    attn.eval()
    per_head = torch.ones(1, 2, 4, 4, dtype=torch.bool)
    per_head[:, 1, :, 0] = False  # head 1 may not look at key 0
    fast, slow = both_paths(attn, x, mask=per_head)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(fast, attn(x))
