"""Seq2SeqTask: label smoothing against the written-out formula, padding ignored, whole-set validation
NLL, the inverse square-root schedule; a tiny model learns to copy."""

from __future__ import annotations

import math

import pytest
import torch

from mie.models.seq2seq import EncoderDecoderTransformer, Seq2SeqConfig
from mie.training.config import ScheduleConfig
from mie.training.schedules import lr_multiplier
from mie.training.tasks.seq2seq import Seq2SeqTask, label_smoothed_loss

PAD, BOS, EOS = 0, 2, 3


pytestmark = pytest.mark.usefixtures("one_thread")


def reference_loss(logits: torch.Tensor, targets: torch.Tensor, eps: float, pad: int) -> float:
    """(1 - eps) * -log p(y) + eps / V * sum_j -log p(j), averaged over non-pad targets, by hand."""
    total, count = 0.0, 0
    for row, y in zip(logits.tolist(), targets.tolist()):
        if y == pad:
            continue
        log_z = math.log(sum(math.exp(v) for v in row))
        logp = [v - log_z for v in row]
        total += (1 - eps) * -logp[y] + eps / len(row) * sum(-v for v in logp)
        count += 1
    return total / count


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_label_smoothing_matches_the_formula(eps: float) -> None:
    logits, targets = torch.randn(12, 9), torch.randint(0, 9, (12,))
    targets[[1, 5, 7]] = PAD
    smoothed, nll, count = label_smoothed_loss(logits, targets, eps, PAD)
    assert int(count) == int((targets != PAD).sum())
    assert float(smoothed) / int(count) == pytest.approx(reference_loss(logits, targets, eps, PAD), rel=1e-5)
    assert float(nll) / int(count) == pytest.approx(reference_loss(logits, targets, 0.0, PAD), rel=1e-5)
    torch_ref = torch.nn.functional.cross_entropy(logits, targets, ignore_index=PAD, label_smoothing=eps)
    assert float(smoothed) / int(count) == pytest.approx(float(torch_ref), rel=1e-5)


def _model() -> EncoderDecoderTransformer:
    torch.manual_seed(0)
    return EncoderDecoderTransformer(Seq2SeqConfig(src_vocab_size=12, tgt_vocab_size=12, dim=32, heads=4,
                                                   encoder_layers=1, decoder_layers=1, dropout=0.0, max_len=16))


def test_padding_does_not_change_the_loss_and_validation_is_a_token_mean() -> None:
    task = Seq2SeqTask(_model(), pad_id=PAD, label_smoothing=0.1).eval()
    src = torch.tensor([[5, 6, EOS]])
    tgt = torch.tensor([[BOS, 7, 8, EOS]])
    alone = task.training_forward({"src": src, "tgt": tgt})
    padded = task.training_forward({"src": torch.cat([src, torch.zeros(1, 3, dtype=torch.long)], 1),
                                    "tgt": torch.cat([tgt, torch.zeros(1, 2, dtype=torch.long)], 1)})
    torch.testing.assert_close(padded["loss"], alone["loss"], atol=1e-5, rtol=1e-5)
    long_tgt = torch.tensor([[BOS, 7, 8, 9, 10, 11, EOS]])
    batch = {"src": torch.tensor([[5, 6, EOS], [5, 6, EOS]]),
             "tgt": torch.cat([torch.cat([tgt, torch.zeros(1, 3, dtype=torch.long)], 1), long_tgt])}
    task.validation_forward(batch)
    with torch.no_grad():
        nll_sum = float(task.losses(batch)[1])
    metrics = task.validation_metrics()
    assert metrics["nll"] == pytest.approx(nll_sum / 9, rel=1e-5)  # 3 + 6 target tokens
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["nll"]), rel=1e-6)
    assert task.validation_metrics() == {}
    with pytest.raises(ValueError, match="label_smoothing"):
        Seq2SeqTask(_model(), pad_id=PAD, label_smoothing=1.0)


def test_a_tiny_model_learns_to_copy() -> None:
    task = Seq2SeqTask(_model(), pad_id=PAD, label_smoothing=0.0)
    optimizer = torch.optim.AdamW(task.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(100):
        body = torch.randint(4, 12, (16, 4), generator=g)
        eos = torch.full((16, 1), EOS)
        batch = {"src": torch.cat([body, eos], 1), "tgt": torch.cat([torch.full((16, 1), BOS), body, eos], 1)}
        loss = task.training_forward(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss.detach()) < 0.3


def test_inverse_sqrt_schedule() -> None:
    cfg = ScheduleConfig(name="inverse_sqrt", warmup_steps=100, min_lr_ratio=0.0)
    assert lr_multiplier(0, cfg, 1000) == pytest.approx(0.01)
    assert lr_multiplier(99, cfg, 1000) == pytest.approx(1.0)
    assert lr_multiplier(399, cfg, 1000) == pytest.approx(0.5)  # sqrt(100 / 400)
    assert lr_multiplier(10_000, cfg, 1000) == pytest.approx(math.sqrt(100 / 10_001))  # no end
    floor = ScheduleConfig(name="inverse_sqrt", warmup_steps=100, min_lr_ratio=0.2)
    assert lr_multiplier(100_000, floor, 1000) == pytest.approx(0.2)
