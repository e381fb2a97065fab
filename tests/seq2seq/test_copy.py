"""The pointer-generator output of EncoderDecoderTransformer (model.copy): a normalised distribution, the
same step by step through the cache as in one teacher-forced pass, and all on source tokens when the gate
says copy."""

from __future__ import annotations

import pytest
import torch

from mie.models.seq2seq import EncoderDecoderTransformer, Seq2SeqConfig
from mie.models.seq2seq_decoding import beam_search, start_cache


def _model() -> EncoderDecoderTransformer:
    torch.manual_seed(0)
    return EncoderDecoderTransformer(Seq2SeqConfig(src_vocab_size=30, tgt_vocab_size=30, dim=16, encoder_layers=1,
                                                   decoder_layers=2, heads=2, dropout=0.0, max_len=20,
                                                   copy=True)).eval()


def test_copy_output_is_a_distribution_and_the_cache_matches_a_full_pass() -> None:
    model = _model()
    src = torch.tensor([[5, 6, 7, 2], [8, 9, 2, 0]])
    tgt = torch.tensor([[1, 6, 5, 7], [1, 9, 9, 8]])
    full = model(src, tgt)  # (B, T, vocab) log-probabilities
    assert torch.allclose(full.logsumexp(-1), torch.zeros(2, 4), atol=1e-5)
    cache, _ = start_cache(model, src)
    steps = [model.decode_step(tgt[:, t:t + 1], cache) for t in range(4)]
    assert torch.allclose(torch.cat(steps, 1), full, atol=1e-5)
    assert len(beam_search(model, src, 1, 2, beam=3, max_len=6)) == 2


def test_a_closed_gate_copies_only_source_tokens() -> None:
    model = _model()
    with torch.no_grad():
        model.copy_gate.bias.fill_(-30.0)  # g ~ 0: all mass on the copy attention
    src = torch.tensor([[5, 6, 7, 2, 0, 0]])
    probs = model(src, torch.tensor([[1, 5]])).exp()[0]  # (T, vocab)
    assert torch.allclose(probs[:, [2, 5, 6, 7]].sum(-1), torch.ones(2), atol=1e-4)  # padding gets nothing


def test_copy_needs_one_vocabulary() -> None:
    with pytest.raises(ValueError, match="copy needs share_embeddings"):
        EncoderDecoderTransformer(Seq2SeqConfig(src_vocab_size=30, tgt_vocab_size=30, dim=16, heads=2,
                                                share_embeddings=False, copy=True))
