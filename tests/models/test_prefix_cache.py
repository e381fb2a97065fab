"""A shared prefix run once (prefill, then one branch per row) gives the logits and tokens of the full prompts."""

from __future__ import annotations

import torch

from mie.models.causal_lm import CausalLM, CausalLMConfig
from mie.models.generation import generate, next_token_logits, prefill


def tiny(qkv_bias: bool = True) -> CausalLM:
    torch.manual_seed(0)
    model = CausalLM(CausalLMConfig(vocab_size=97, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, mlp_hidden=48,
                                    max_seq_len=128, qkv_bias=qkv_bias, tie_embeddings=False)).eval()
    with torch.no_grad():
        for p in model.parameters():  # biases away from zero so a lost bias would show
            p.add_(torch.randn_like(p) * 0.05)
    return model


PREFIX = [5, 17, 3, 88, 41, 2, 9]
SUFFIXES = [[11, 12, 13], [40], [7, 8, 9, 10, 60, 61], [33, 34]]


def test_next_token_logits_with_a_shared_prefix_equal_the_full_prompts():
    model = tiny()
    with torch.no_grad():
        full = torch.cat([model(torch.tensor([PREFIX + s]))[:, -1] for s in SUFFIXES])
    shared = next_token_logits(model, SUFFIXES, prefix=PREFIX, batch_size=3)
    torch.testing.assert_close(shared, full, atol=1e-5, rtol=1e-5)
    whole = next_token_logits(model, [PREFIX + s for s in SUFFIXES], batch_size=4)  # no prefix: padded rows
    torch.testing.assert_close(whole, full, atol=1e-5, rtol=1e-5)


def test_a_prefill_is_reusable_and_left_unchanged():
    model = tiny()
    cache = prefill(model, PREFIX)
    keys = [k.clone() for k in cache.keys]
    first = next_token_logits(model, SUFFIXES, prefix_cache=cache)
    second = next_token_logits(model, SUFFIXES[::-1], prefix_cache=cache)
    torch.testing.assert_close(second, first.flip(0))
    assert len(cache) == len(PREFIX) and all(torch.equal(a, b) for a, b in zip(cache.keys, keys))


def test_generate_with_a_prefix_gives_the_tokens_of_the_full_prompts():
    model = tiny()
    for penalty in (1.0, 1.3):
        alone = [generate(model, [PREFIX + s], 12, repetition_penalty=penalty)[0] for s in SUFFIXES]
        shared = generate(model, SUFFIXES, 12, prefix=PREFIX, repetition_penalty=penalty)
        assert shared == alone
        reused = generate(model, SUFFIXES, 12, prefix=PREFIX, prefix_cache=prefill(model, PREFIX),
                          repetition_penalty=penalty)
        assert reused == alone
    greedy = generate(model, [PREFIX + SUFFIXES[0]], 12)[0]
    stopped = generate(model, SUFFIXES[:1], 12, prefix=PREFIX, stop_ids=[greedy[3]])[0]
    assert stopped == greedy[:greedy.index(greedy[3])]


def test_shared_prefix_splits_batches_and_reuses_its_prefill():
    from mie.models.generation import SharedPrefix, common_prefix

    assert common_prefix([[1, 2, 3], [1, 2, 4]]) == 2 and common_prefix([[1, 2], [1, 2, 3]]) == 1
    model = tiny()
    shared = SharedPrefix(min_tokens=4)
    first = [PREFIX + s for s in SUFFIXES[:2]]
    prefix, rows, cache = shared.split(model, first)
    assert prefix == PREFIX and rows == SUFFIXES[:2] and len(cache) == len(PREFIX)
    again = shared.split(model, [PREFIX + s for s in SUFFIXES[2:]])
    assert again[0] == PREFIX and again[2] is cache  # the same prefix: its prefill is reused
    assert generate(model, rows, 8, prefix=prefix, prefix_cache=cache) == generate(model, first, 8)
    assert shared.split(model, [[1, 2, 3], [1, 2, 4]]) == ([], [[1, 2, 3], [1, 2, 4]], None)  # too short to share
