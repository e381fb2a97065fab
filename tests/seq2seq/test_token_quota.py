"""Constrained decoding: with a TokenQuota, greedy and beam search put every required token in exactly
as often as asked and no token of the quota that was not asked for, whatever the (random) model prefers."""

from __future__ import annotations

import torch

from mie.models.seq2seq import EncoderDecoderTransformer, Seq2SeqConfig
from mie.models.seq2seq_decoding import TokenQuota, beam_search, greedy_decode

BOS, EOS, SENTINELS = 1, 2, [5, 6, 7]


def _model() -> EncoderDecoderTransformer:
    torch.manual_seed(0)
    model = EncoderDecoderTransformer(Seq2SeqConfig(src_vocab_size=12, tgt_vocab_size=12, dim=16, encoder_layers=1,
                                                    decoder_layers=1, heads=2, dropout=0.0, max_len=40))
    with torch.no_grad():  # make the sentinels and eos tempting everywhere, so the quota has work to do
        model.output = None
        model.tgt_embed.weight[SENTINELS[2]] += 3.0 * model.decoder_norm(model.tgt_embed.weight).mean(0)
    return model.eval()


def _quota(counts: list[list[int]]) -> TokenQuota:
    return TokenQuota(torch.tensor(SENTINELS), torch.tensor(counts), EOS)


def test_apply_masks_spent_tokens_and_eos_until_done() -> None:
    quota = _quota([[1, 0, 0], [0, 0, 0]])
    logp = quota.apply(torch.zeros(2, 12))
    assert torch.isinf(logp[0, [6, 7, EOS]]).all() and logp[0, 5] == 0  # row 0: 5 still owed, so no eos
    assert torch.isinf(logp[1, SENTINELS]).all() and logp[1, EOS] == 0
    quota.advance(torch.tensor([5, 3]))
    assert quota.remaining.tolist() == [[0, 0, 0], [0, 0, 0]]
    quota.reorder(torch.tensor([1, 1, 0]))
    assert quota.remaining.shape == (3, 3)


def test_greedy_and_beam_meet_the_quota() -> None:
    model = _model()
    src = torch.tensor([[3, 5, 4, 6, 2], [4, 4, 3, 2, 0], [7, 7, 3, 4, 2]])
    counts = [[1, 1, 0], [0, 0, 0], [0, 0, 2]]
    for decode in (lambda q: greedy_decode(model, src, BOS, EOS, max_len=30, quota=q),
                   lambda q: beam_search(model, src, BOS, EOS, beam=3, max_len=30, length_penalty_alpha=0.6, quota=q)):
        free = decode(None)
        constrained = decode(_quota(counts))
        for row, want in zip(constrained, counts):
            assert [row.count(t) for t in SENTINELS] == want, row
        assert any([r.count(t) for t in SENTINELS] != w for r, w in zip(free, counts))  # unconstrained differs
