"""``Seq2SeqTask``: teacher-forced, label-smoothed cross-entropy of an encoder-decoder model.

A batch is ``{"src": [B, S], "tgt": [B, T]}`` (``mie.data.translation.collate_translation``), each
target row ``[bos, y_1, ..., y_n, eos, pad...]``; the model reads ``tgt[:, :-1]`` and is scored on
``tgt[:, 1:]``, padding excluded. With smoothing ``eps`` over ``V`` classes the loss of one token is
(Szegedy et al., 2016; Vaswani et al., 2017)::

    (1 - eps) * -log p(y) + eps / V * sum_j -log p(j)

    task = Seq2SeqTask(model, pad_id=0, label_smoothing=0.1)
    task.training_forward({"src": src, "tgt": tgt})  # {"loss": ..., "nll": ...}
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from mie.training.task import Task


def label_smoothed_loss(logits: torch.Tensor, targets: torch.Tensor, epsilon: float, pad_id: int
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Summed smoothed loss, summed plain NLL and the number of scored (non-pad) targets.

    ``logits`` ``[N, V]``, ``targets`` ``[N]``; targets equal to ``pad_id`` count nowhere. One
    log-softmax serves both sums (the smoothed loss equals ``F.cross_entropy(..., label_smoothing=eps)``).
    """
    logp = logits.float().log_softmax(-1)  # (N, V)
    keep = targets != pad_id
    nll = -logp.gather(-1, targets[:, None]).squeeze(-1)  # (N,)
    if epsilon:
        loss = (1.0 - epsilon) * nll - epsilon * logp.mean(-1)
    else:
        loss = nll
    return loss.masked_fill(~keep, 0.0).sum(), nll.masked_fill(~keep, 0.0).sum(), keep.sum()


class Seq2SeqTask(Task):
    """Translation training: ``{"loss": label-smoothed token mean, "nll": plain token mean}``.

    Validation sums the plain NLL over every target token, so :meth:`validation_metrics` gives the
    exact token-mean ``nll`` and its ``perplexity`` of the whole set.
    """

    def __init__(self, model: nn.Module, pad_id: int, label_smoothing: float = 0.1) -> None:
        super().__init__(model)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must lie in [0, 1), got {label_smoothing}")
        self.pad_id = pad_id
        self.label_smoothing = label_smoothing
        self._val_nll = 0.0
        self._val_tokens = 0

    def losses(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Summed smoothed loss, summed NLL and token count of one batch."""
        src, tgt = batch["src"], batch["tgt"]
        logits = self.model(src, tgt[:, :-1])  # (B, T-1, vocab)
        return label_smoothed_loss(logits.flatten(0, 1), tgt[:, 1:].flatten(), self.label_smoothing, self.pad_id)

    def training_forward(self, batch: Any) -> dict[str, Any]:
        """Mean smoothed loss per target token (and the plain NLL, detached, on logged steps)."""
        smoothed, nll, count = self.losses(batch)
        count = count.clamp_min(1)
        out = {"loss": smoothed / count}
        if self.logging_step:
            out["nll"] = (nll / count).detach()
        return out

    @torch.no_grad()
    def validation_forward(self, batch: Any) -> dict[str, Any]:
        """The batch's mean losses; its NLL sum also feeds :meth:`validation_metrics`."""
        smoothed, nll, count = self.losses(batch)
        tokens = float(count)
        self._val_nll += float(nll)
        self._val_tokens += int(tokens)
        return {"loss": smoothed / max(tokens, 1.0)}

    def validation_metrics(self) -> dict[str, float]:
        """Token-mean ``nll`` and ``perplexity`` of the validation pass since the last call."""
        if not self._val_tokens:
            return {}
        nll = self._val_nll / self._val_tokens
        self._val_nll, self._val_tokens = 0.0, 0
        return {"nll": nll, "perplexity": math.exp(min(nll, 700.0))}
