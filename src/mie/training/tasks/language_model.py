"""``LanguageModelTask``: next-token cross-entropy over ``(x, y)`` blocks, with perplexity and bits per byte.

A batch is ``(x, y)``, two ``[B, T]`` LongTensors where ``y[:, t]`` is the token after ``x[:, t]``;
the model maps ``x`` to ``[B, T, vocab]`` logits. Validation accumulates the summed loss over every
target token, so the whole-set metrics are exact token means, not means of batch means::

    task = LanguageModelTask(model, bytes_per_token=2.8)
    loss = task.training_forward((x, y))["loss"]
    # after a validation pass: {"perplexity": e^loss, "bits_per_byte": loss / ln 2 / 2.8, ...}
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mie.training.task import Task


def bits_per_byte(loss: float, bytes_per_token: float) -> float:
    """Bits per byte of a mean loss in nats per token: ``loss / ln 2 * tokens / bytes``."""
    return loss / math.log(2) / bytes_per_token


def lm_metrics(loss: float, bytes_per_token: float | None = None) -> dict[str, float]:
    """``perplexity`` (and ``bits_per_byte`` when the bytes per token are known) of a mean token loss."""
    metrics = {"perplexity": math.exp(min(loss, 700.0))}
    if bytes_per_token:
        metrics["bits_per_byte"] = bits_per_byte(loss, bytes_per_token)
    return metrics


class LanguageModelTask(Task):
    """Causal language modelling: ``{"loss": cross_entropy(model(x), y)}`` per batch.

    ``bytes_per_token`` is the mean number of text bytes per target token of the validation set;
    with it :meth:`validation_metrics` reports bits per byte besides perplexity. Targets equal to
    ``ignore_index`` are not scored.
    """

    def __init__(self, model: nn.Module, bytes_per_token: float | None = None, ignore_index: int = -100) -> None:
        super().__init__(model)
        self.bytes_per_token = bytes_per_token
        self.ignore_index = ignore_index
        self._val_nats = 0.0
        self._val_tokens = 0

    def token_losses(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed loss (nats) over the batch's scored targets, and how many there were."""
        x, y = batch
        logits = self.model(x)  # (B, T, vocab)
        total = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), ignore_index=self.ignore_index,
                                reduction="sum")
        return total, (y != self.ignore_index).sum()

    def training_forward(self, batch: Any) -> dict[str, Any]:
        """Mean next-token cross-entropy of the batch."""
        total, count = self.token_losses(batch)
        return {"loss": total / count.clamp_min(1)}

    @torch.no_grad()
    def validation_forward(self, batch: Any) -> dict[str, Any]:
        """The batch's mean loss; its token sums also feed :meth:`validation_metrics`."""
        total, count = self.token_losses(batch)
        count_f = float(count)
        self._val_nats += float(total)
        self._val_tokens += int(count_f)
        return {"loss": total / max(count_f, 1.0)}

    def validation_metrics(self) -> dict[str, float]:
        """Perplexity and bits per byte (of the token-mean loss) of the validation pass since the last call."""
        if not self._val_tokens:
            return {}
        loss = self._val_nats / self._val_tokens
        self._val_nats, self._val_tokens = 0.0, 0
        return lm_metrics(loss, self.bytes_per_token)
