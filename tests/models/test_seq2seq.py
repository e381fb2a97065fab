"""EncoderDecoderTransformer and its decoding: cached = uncached logits, a reordered cache = the full pass
of the reordered rows, padding invariance, shared and tied embeddings, checkpoints of the pre-port model
(its own attention code) load strictly with the same logits, beam 1 = greedy, beam search beats greedy
where greedy is myopic, length penalty."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mie.models.seq2seq import EncoderDecoderTransformer, Seq2SeqConfig
from mie.models.seq2seq_decoding import beam_search, greedy_decode, length_penalty, sequence_log_prob

BOS, EOS, PAD = 2, 3, 0
# Written by the model before the one attention stack (issue 27: its decoder called SDPA itself and kept
# one cache per layer): a 1+1-layer model (dim 8, 2 heads, mlp_ratio 2, separate embeddings, an output
# matrix) under "model.*", its inputs under "input.*" and its logits under "expected.logits".
PRE_PORT = Path(__file__).parent / "fixtures" / "seq2seq_pre_port.safetensors"


pytestmark = pytest.mark.usefixtures("one_thread")


def _model(**overrides) -> EncoderDecoderTransformer:
    config = Seq2SeqConfig(**{"src_vocab_size": 40, "tgt_vocab_size": 40, "dim": 32, "heads": 4, "encoder_layers": 2,
                              "decoder_layers": 2, "dropout": 0.0, "max_len": 32, **overrides})
    torch.manual_seed(0)
    return EncoderDecoderTransformer(config).eval()


def _src() -> torch.Tensor:
    src = torch.randint(4, 40, (3, 7))
    src[1, 5:] = PAD  # a shorter source, right-padded
    return src


def test_cached_decoding_equals_one_full_pass() -> None:
    model = _model()
    src, tgt = _src(), torch.randint(4, 40, (3, 6))
    tgt[:, 0] = BOS
    full = model(src, tgt)  # (3, 6, 40)
    memory, mask = model.encode(src)
    cache = model.start_cache(memory, mask)
    steps = torch.cat([model.decode_step(tgt[:, i:i + 1], cache) for i in range(6)], dim=1)
    assert len(cache) == 6
    torch.testing.assert_close(steps, full, atol=1e-5, rtol=1e-5)
    cache = model.start_cache(memory, mask)  # a prefix of several tokens at once, then single steps
    chunked = torch.cat([model.decode_step(tgt[:, :4], cache), model.decode_step(tgt[:, 4:], cache)], dim=1)
    torch.testing.assert_close(chunked, full, atol=1e-5, rtol=1e-5)


def test_reordered_cache_equals_the_full_pass_of_the_reordered_rows() -> None:
    model = _model()
    src, tgt = _src(), torch.randint(4, 40, (4, 5))
    tgt[:, 0] = BOS
    memory, mask = model.encode(src)
    cache = model.start_cache(memory, mask)
    model.decode_step(tgt[:3, :2], cache)
    prefix, sources = tgt[:3, :2], torch.arange(3)
    for t, rows in enumerate(([2, 0, 0, 1], [0, 2, 1, 3], [3, 1, 2, 2]), start=2):
        rows = torch.tensor(rows)  # new sources, then the same sources (beams swap), then new ones again
        kept = cache.cross
        cache.reorder(rows)
        assert (cache.cross is kept) == torch.equal(sources[rows], sources)  # re-gathered only when needed
        sources = sources[rows]
        assert cache.sources.tolist() == sources.tolist() and cache.cross[0][0].shape[0] == 4
        prefix = torch.cat([prefix[rows], tgt[:, t:t + 1]], dim=1)  # the rows' prefixes now all differ
        step = model.decode_step(prefix[:, t:], cache)
        torch.testing.assert_close(step[:, -1], model(src[sources], prefix)[:, -1], atol=1e-5, rtol=1e-5)


def test_a_checkpoint_of_the_pre_port_model_loads_strictly_with_the_same_logits() -> None:
    saved = load_file(PRE_PORT)
    state = {key[len("model."):]: value for key, value in saved.items() if key.startswith("model.")}
    config = Seq2SeqConfig(src_vocab_size=12, tgt_vocab_size=12, dim=8, heads=2, encoder_layers=1, decoder_layers=1,
                           mlp_ratio=2.0, dropout=0.0, max_len=8, share_embeddings=False, tie_output=False)
    model = EncoderDecoderTransformer(config).eval()
    assert set(model.state_dict()) == set(state)  # the parameter names did not change
    model.load_state_dict(state, strict=True)
    src, tgt = saved["input.src"], saved["input.tgt"]
    assert bool((src == PAD).any())  # the padding mask is part of what is compared
    torch.testing.assert_close(model(src, tgt), saved["expected.logits"], atol=1e-6, rtol=1e-6)
    memory, mask = model.encode(src)
    cache = model.start_cache(memory, mask)
    steps = torch.cat([model.decode_step(tgt[:, i:i + 1], cache) for i in range(tgt.shape[1])], dim=1)
    torch.testing.assert_close(steps, saved["expected.logits"], atol=1e-5, rtol=1e-5)


def test_source_padding_does_not_change_the_output() -> None:
    model = _model()
    src = torch.randint(4, 40, (1, 5))
    tgt = torch.tensor([[BOS, 7, 9]])
    padded = torch.cat([src, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    torch.testing.assert_close(model(padded, tgt), model(src, tgt), atol=1e-5, rtol=1e-5)


def test_shared_and_separate_embeddings_and_tied_output() -> None:
    shared = _model()
    assert shared.src_embed is shared.tgt_embed and shared.output is None
    separate = _model(share_embeddings=False, tgt_vocab_size=50, tie_output=False)
    assert separate.src_embed is not separate.tgt_embed and separate.output is not None
    assert separate(_src(), torch.tensor([[BOS]] * 3)).shape == (3, 1, 50)
    assert shared.num_parameters() < _model(share_embeddings=False).num_parameters()
    with pytest.raises(ValueError, match="share_embeddings needs one vocabulary"):
        _model(tgt_vocab_size=50)
    loss = shared(_src(), torch.tensor([[BOS, 5]] * 3)).sum()
    loss.backward()
    assert shared.src_embed.weight.grad is not None


def test_beam_of_one_is_greedy_and_beam_scores_are_real_log_probs() -> None:
    model = _model()
    src = _src()
    greedy = greedy_decode(model, src, BOS, EOS, max_len=12)
    assert beam_search(model, src, BOS, EOS, beam=1, max_len=12) == greedy
    for hyp, score in beam_search(model, src[:1], BOS, EOS, beam=3, max_len=12, length_penalty_alpha=0.0,
                                  return_scores=True):
        if len(hyp) < 12:  # ended with eos: its score is the model's log-probability of hyp + eos
            assert score == pytest.approx(sequence_log_prob(model, src[:1], hyp, BOS, EOS), abs=1e-4)


class TableModel:
    """A fake seq2seq model whose next-token distribution depends only on the previous target token."""

    def __init__(self, table: dict[int, dict[int, float]], vocab: int = 8) -> None:
        self.table, self.vocab = table, vocab

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(src.shape[0], 1, 1), torch.ones(src.shape[0], 1, dtype=torch.bool)

    def start_cache(self, memory: torch.Tensor, src_mask: torch.Tensor) -> TableCache:
        return TableCache()

    def decode_step(self, new: torch.Tensor, cache: TableCache) -> torch.Tensor:
        logits = torch.full((new.shape[0], new.shape[1], self.vocab), -1e9)
        for row, token in enumerate(new[:, -1].tolist()):
            for nxt, p in self.table.get(token, {EOS: 1.0}).items():
                logits[row, -1, nxt] = math.log(p)
        return logits


class TableCache:
    """A cache that needs nothing but must accept reordering."""

    def reorder(self, rows: torch.Tensor) -> None:
        pass


def test_beam_search_finds_a_better_sequence_than_greedy() -> None:
    # greedy takes 4 (0.6) and then must end with 0.5 * 0.5: total 0.15; 5 (0.4) then eos (0.9) gives 0.36
    table = {BOS: {4: 0.6, 5: 0.4}, 4: {6: 0.5, 7: 0.5}, 6: {EOS: 0.5, 7: 0.5}, 7: {EOS: 0.5, 6: 0.5},
             5: {EOS: 0.9, 6: 0.1}}
    model = TableModel(table)
    src = torch.zeros(2, 3, dtype=torch.long)
    greedy = greedy_decode(model, src, BOS, EOS, max_len=6)
    assert greedy[0][:2] == [4, 6]
    best = beam_search(model, src, BOS, EOS, beam=2, max_len=6, length_penalty_alpha=0.0, return_scores=True)
    assert [hyp for hyp, _ in best] == [[5], [5]]
    assert best[0][1] == pytest.approx(math.log(0.36), abs=1e-6)
    greedy_score = math.log(0.6) + math.log(0.5) + math.log(0.5)
    assert best[0][1] > greedy_score


def test_length_penalty_prefers_longer_hypotheses() -> None:
    assert length_penalty(7, 0.0) == 1.0 and length_penalty(1, 1.0) == 1.0
    # short: eos at once (0.5); long: three tokens then eos (0.5 * 0.9^3): better per token
    table = {BOS: {EOS: 0.5, 4: 0.5}, 4: {5: 0.9, EOS: 0.1}, 5: {6: 0.9, EOS: 0.1}, 6: {EOS: 0.9, 4: 0.1}}
    src = torch.zeros(1, 2, dtype=torch.long)
    assert beam_search(TableModel(table), src, BOS, EOS, beam=3, max_len=8, length_penalty_alpha=0.0) == [[]]
    assert beam_search(TableModel(table), src, BOS, EOS, beam=3, max_len=8, length_penalty_alpha=2.0) == [[4, 5, 6]]
    with pytest.raises(ValueError, match="beam must be >= 1"):
        beam_search(TableModel(table), src, BOS, EOS, beam=0)
