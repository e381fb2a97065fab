"""LanguageModelTask: cross-entropy of next tokens, token-exact validation means, perplexity, bits per byte."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mie.training.tasks import LanguageModelTask, bits_per_byte, lm_metrics


class Bigram(nn.Module):
    """A stand-in causal LM: logits of the next token from the current one."""

    def __init__(self, vocab: int = 11) -> None:
        super().__init__()
        self.table = nn.Embedding(vocab, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table(ids)  # (B, T, vocab)


def test_training_loss_is_next_token_cross_entropy():
    torch.manual_seed(0)
    model = Bigram()
    x, y = torch.randint(0, 11, (3, 7)), torch.randint(0, 11, (3, 7))
    loss = LanguageModelTask(model).training_forward((x, y))["loss"]
    assert loss.item() == pytest.approx(F.cross_entropy(model(x).reshape(-1, 11), y.reshape(-1)).item(), rel=1e-6)
    loss.backward()
    assert model.table.weight.grad is not None


def test_bits_per_byte_matches_a_hand_computation():
    # 2.0 nats/token at 4 bytes/token: 2.0 / ln 2 = 2.885 bits/token, / 4 = 0.7213 bits/byte
    assert bits_per_byte(2.0, 4.0) == pytest.approx(2.0 / 0.6931471805599453 / 4.0)
    assert bits_per_byte(math.log(2) * 8, 1.0) == pytest.approx(8.0)  # a uniform byte model: 8 bits
    assert lm_metrics(1.0, 2.0) == pytest.approx({"perplexity": math.e, "bits_per_byte": 1 / math.log(2) / 2})
    assert "bits_per_byte" not in lm_metrics(1.0)


def test_validation_metrics_are_exact_token_means_over_batches():
    torch.manual_seed(1)
    model = Bigram()
    task = LanguageModelTask(model, bytes_per_token=3.0, ignore_index=-100)
    batches = [(torch.randint(0, 11, (2, 5)), torch.randint(0, 11, (2, 5))) for _ in range(3)]
    batches[1][1][0, :3] = -100  # unscored targets (padding) do not count
    losses = [task.validation_forward(b)["loss"] for b in batches]
    metrics = task.validation_metrics()
    logits = torch.cat([model(x).reshape(-1, 11) for x, _ in batches])
    targets = torch.cat([y.reshape(-1) for _, y in batches])
    mean = F.cross_entropy(logits, targets, ignore_index=-100).item()
    assert metrics["perplexity"] == pytest.approx(math.exp(mean), rel=1e-5)
    assert metrics["bits_per_byte"] == pytest.approx(mean / math.log(2) / 3.0, rel=1e-5)
    assert all(torch.isfinite(v) for v in losses)
    assert task.validation_metrics() == {}  # reset after each validation pass
