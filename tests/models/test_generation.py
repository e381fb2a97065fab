"""Generation: the KV cache, the logits processors against reference computations, and ``generate``."""

import pytest
import torch

from mie.models.causal_lm import CausalLM, CausalLMConfig
from mie.models.generation import (
    apply_repetition_penalty,
    filter_top_k,
    filter_top_p,
    generate,
    left_pad,
    sample_next,
)
from mie.models.kv_cache import KVCache

LOGITS = torch.tensor([[2.0, -1.0, 0.5, 3.0, -2.0, 1.0], [0.0, 0.1, -0.3, 0.2, 5.0, -1.0]])


def tiny(**overrides) -> CausalLM:
    torch.manual_seed(0)
    config = CausalLMConfig(vocab_size=48, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=64)
    for name, value in overrides.items():
        setattr(config, name, value)
    return CausalLM(config).eval()


# ---- logits processors ----------------------------------------------------------------------------------


def test_repetition_penalty_follows_ctrl():
    seen = torch.zeros_like(LOGITS, dtype=torch.bool)
    seen[0, [0, 1]] = True
    out = apply_repetition_penalty(LOGITS, seen, 2.0)
    expected = LOGITS.clone()
    expected[0, 0] = 2.0 / 2.0  # positive: divided
    expected[0, 1] = -1.0 * 2.0  # negative: multiplied
    torch.testing.assert_close(out, expected)
    assert apply_repetition_penalty(LOGITS, seen, 1.0) is LOGITS


def test_top_k_keeps_the_k_largest():
    out = filter_top_k(LOGITS, 2)
    for row in range(2):
        keep = set(torch.argsort(LOGITS[row], descending=True)[:2].tolist())
        for j in range(6):
            assert (out[row, j] == LOGITS[row, j]) if j in keep else out[row, j] == float("-inf")
    assert filter_top_k(LOGITS, 0) is LOGITS


def reference_top_p(logits: list[float], p: float) -> set[int]:
    """The smallest prefix of tokens by descending probability whose mass reaches p."""
    probs = torch.tensor(logits).softmax(-1).tolist()
    order = sorted(range(len(probs)), key=lambda j: -probs[j])
    kept, mass = set(), 0.0
    for j in order:
        kept.add(j)
        mass += probs[j]
        if mass >= p:
            break
    return kept


@pytest.mark.parametrize("p", [0.05, 0.5, 0.8, 0.95, 0.999])
def test_top_p_keeps_the_nucleus(p):
    out = filter_top_p(LOGITS, p)
    for row in range(2):
        kept = {j for j in range(6) if out[row, j] > float("-inf")}
        assert kept == reference_top_p(LOGITS[row].tolist(), p)
        assert torch.equal(out[row, sorted(kept)], LOGITS[row, sorted(kept)])


def test_greedy_is_argmax_and_temperature_sampling_draws_from_softmax():
    assert sample_next(LOGITS).tolist() == [3, 4]
    temperature = 0.7
    got = sample_next(LOGITS, temperature, generator=torch.Generator().manual_seed(3))
    expected = torch.multinomial((LOGITS / temperature).softmax(-1), 1, generator=torch.Generator().manual_seed(3))
    assert got.tolist() == expected.squeeze(-1).tolist()
    # Empirical frequencies follow softmax(logits / T).
    many = torch.stack([sample_next(LOGITS[:1], 2.0, generator=torch.Generator().manual_seed(s)) for s in range(4000)])
    freq = torch.bincount(many.flatten(), minlength=6).float() / 4000
    torch.testing.assert_close(freq, (LOGITS[0] / 2.0).softmax(-1), atol=0.03, rtol=0)


def test_sampling_never_draws_filtered_tokens():
    gen = torch.Generator().manual_seed(0)
    draws = {int(sample_next(LOGITS[:1], 5.0, top_k=2, generator=gen)) for _ in range(200)}
    assert draws <= {0, 3}
    draws = {int(sample_next(LOGITS[1:], 1.0, top_p=0.5, generator=gen)) for _ in range(200)}
    assert draws == {4}


# ---- KV cache -------------------------------------------------------------------------------------------


def test_kv_cache_preallocates_and_refuses_overflow():
    cache = KVCache(1, max_len=4)
    cache.extend_mask(torch.ones(2, 3))
    keys, _ = cache.update(0, torch.randn(2, 1, 3, 8), torch.randn(2, 1, 3, 8))
    cache.advance(3)
    assert keys.shape == (2, 1, 3, 8) and cache.keys[0].shape == (2, 1, 4, 8) and len(cache) == 3
    with pytest.raises(ValueError, match="max_len=4"):
        cache.extend_mask(torch.ones(2, 2))
    cache.reset()
    assert len(cache) == 0 and cache.keys == [None]


def test_kv_cache_select_keeps_rows_and_room_to_grow():
    for max_len in (5, None):
        cache = KVCache(1, max_len=max_len)
        keys = torch.randn(3, 1, 2, 4)
        cache.extend_mask(torch.tensor([[0, 1], [1, 1], [1, 1]]))
        cache.update(0, keys, -keys)
        cache.advance(2)
        cache.select(torch.tensor([2, 0]))
        assert torch.equal(cache.keys[0][:, :, :2], keys[[2, 0]]) and torch.equal(cache.values[0][:, :, :2], -keys[[2, 0]])
        assert cache.mask[:, :2].tolist() == [[True, True], [False, True]]
        more = torch.randn(2, 1, 1, 4)
        assert cache.extend_mask(torch.ones(2, 1)).shape == (2, 3)
        all_keys, _ = cache.update(0, more, more)
        assert torch.equal(all_keys, torch.cat((keys[[2, 0]], more), 2))


def test_left_pad():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]


# ---- generate ------------------------------------------------------------------------------------------


def test_greedy_equals_argmax_of_a_full_forward():
    model = tiny()
    prompt = [3, 14, 15, 9, 2]
    new = generate(model, [prompt], max_new_tokens=10)[0]
    ids = list(prompt)
    for _ in range(10):
        ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
    assert new == ids[len(prompt):]


@pytest.mark.parametrize("overrides", [{}, {"positions": "learned", "norm": "layernorm", "mlp": "gelu"},
                                       {"positions": "alibi", "n_kv_heads": 2}])
def test_batched_left_padded_generation_equals_one_by_one(overrides):
    model = tiny(**overrides)
    prompts = [[1, 2, 3, 4, 5, 6, 7], [9], [20, 21, 22]]
    batched = generate(model, prompts, max_new_tokens=8, repetition_penalty=1.3, pad_id=0)
    single = [generate(model, [p], max_new_tokens=8, repetition_penalty=1.3)[0] for p in prompts]
    assert batched == single
    assert all(len(row) == 8 for row in batched)


def test_finished_rows_leave_the_batch_and_no_step_is_wasted():
    model = tiny()
    prompts = [[1, 2, 3], [9], [20, 21, 22, 23]]
    kwargs = dict(max_new_tokens=8, repetition_penalty=100.0)  # no row repeats a token: stops are unambiguous
    free = generate(model, prompts, **kwargs)
    stop_at = free[1][2]  # row 1 stops after two tokens; others stop where they produce that token (or not)
    batch_sizes: list[int] = []
    hook = model.register_forward_hook(lambda module, args, out: batch_sizes.append(out.shape[0]))
    batched = generate(model, prompts, stop_ids=(stop_at,), **kwargs)
    hook.remove()
    single = [generate(model, [p], stop_ids=(stop_at,), **kwargs)[0] for p in prompts]
    assert batched == single and batched[1] == free[1][:2]
    assert batch_sizes[0] == 3 and batch_sizes[-1] < 3 and batch_sizes == sorted(batch_sizes, reverse=True)
    # A prefill and one step per new token but the last (whose logits nobody reads).
    assert len(generate(model, [[1, 2]], max_new_tokens=5)[0]) == 5
    calls: list[int] = []
    hook = model.register_forward_hook(lambda module, args, out: calls.append(out.shape[1]))
    generate(model, [[1, 2], [3]], max_new_tokens=5)
    hook.remove()
    assert calls == [1, 1, 1, 1, 1]  # the prefill returns the last position's logits only


def test_generate_inside_inference_mode_and_autocast():
    model = tiny()
    plain = generate(model, [[1, 2, 3], [4]], 6)
    with torch.inference_mode():
        assert generate(model, [[1, 2, 3], [4]], 6) == plain
        with torch.autocast("cpu", dtype=torch.bfloat16):  # weights cast once (autocast's cache), not per step
            assert [len(row) for row in generate(model, [[1, 2, 3], [4]], 6)] == [6, 6]


def test_tensor_input_and_returns_only_new_tokens():
    model = tiny()
    ids = torch.tensor([[4, 5, 6], [7, 8, 9]])
    assert generate(model, ids, 4) == generate(model, ids.tolist(), 4)
    assert all(len(row) == 4 for row in generate(model, ids, 4))


def test_stop_ids_end_generation_and_are_not_returned():
    model = tiny()
    free = generate(model, [[1, 2, 3]], max_new_tokens=10)[0]
    stop_at = free[4]
    first = free.index(stop_at)
    assert generate(model, [[1, 2, 3]], max_new_tokens=10, stop_ids=(stop_at,))[0] == free[:first]


def test_stop_strings_end_generation():
    model = tiny()
    decode = lambda ids: "".join(chr(ord("a") + i % 26) for i in ids)  # noqa: E731
    free = generate(model, [[1, 2, 3], [4, 5]], max_new_tokens=12)
    target = decode(free[0][3:5])
    out = generate(model, [[1, 2, 3], [4, 5]], max_new_tokens=12, stop_strings=(target,), decode=decode)
    end = next(n for n in range(1, 13) if target in decode(free[0][:n]))
    assert out[0] == free[0][:end]
    with pytest.raises(ValueError, match="decode"):
        generate(model, [[1]], 2, stop_strings=("x",))


def test_seeded_sampling_is_reproducible():
    model = tiny()
    kwargs = dict(max_new_tokens=12, temperature=1.5, top_k=20, top_p=0.95)
    a = generate(model, [[1, 2], [3]], seed=7, **kwargs)
    assert a == generate(model, [[1, 2], [3]], seed=7, **kwargs)
    assert a == generate(model, [[1, 2], [3]], seed=torch.Generator().manual_seed(7), **kwargs)
    assert a != generate(model, [[1, 2], [3]], seed=8, **kwargs)


def test_on_token_streams_every_kept_token():
    model = tiny()
    streamed: list[tuple[int, int]] = []
    out = generate(model, [[1, 2], [3]], 6, on_token=lambda row, tok: streamed.append((row, tok)))
    assert [t for r, t in streamed if r == 0] == out[0] and [t for r, t in streamed if r == 1] == out[1]


def test_repetition_penalty_changes_greedy_output_away_from_repeats():
    model = tiny()
    plain = generate(model, [[1, 2, 3]], 16)[0]
    penalized = generate(model, [[1, 2, 3]], 16, repetition_penalty=100.0)[0]
    assert len(set(penalized)) >= len(set(plain))
    assert len(set(penalized)) == len(penalized)  # a huge penalty never repeats a token (vocab 48 > 19)


def test_generate_restores_training_mode_and_checks_lengths():
    model = tiny(positions="learned").train()
    generate(model, [[1]], 2)
    assert model.training
    with pytest.raises(ValueError, match="max_seq_len"):
        generate(model, [[1] * 60], 10)
    with pytest.raises(ValueError, match="at least one token"):
        generate(model, [[]], 2)
