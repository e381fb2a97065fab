"""Classification metrics from logits: top-k accuracy, per-class accuracy and the confusion matrix.

    metrics = classification_metrics(logits, labels, ks=(1, 5), classnames=["cat", "dog", ...])
    metrics["accuracy"], metrics["top5_accuracy"], metrics["confusion_matrix"]  # rows = true class
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def confusion_matrix(labels: torch.Tensor, predictions: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``[C, C]`` counts: row = true class, column = predicted class."""
    matrix = torch.zeros(num_classes, num_classes, dtype=torch.long)
    labels, predictions = labels.long().cpu().flatten(), predictions.long().cpu().flatten()
    matrix.index_put_((labels, predictions), torch.ones_like(labels), accumulate=True)
    return matrix


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor | Sequence[int], *, ks: Sequence[int] = (1, 5),
                           classnames: Sequence[str] | None = None) -> dict[str, Any]:
    """Score ``[N, C]`` logits (or any scores) against ``labels``.

    Returns ``accuracy`` (top-1), ``top{k}_accuracy`` for each ``1 < k <= C`` in ``ks``,
    ``balanced_accuracy`` (mean over classes that occur), ``per_class_accuracy`` (``None`` for a class
    with no sample), ``confusion_matrix`` (nested lists), ``num_samples``, ``num_classes`` and
    ``classnames`` when given. Ties go to the lower class index (stable sort, as ``argmax``).
    """
    scores = logits.detach().float().cpu()
    y = torch.as_tensor(labels).long().cpu().flatten()
    if scores.dim() != 2 or y.numel() != scores.shape[0] or y.numel() == 0:
        raise ValueError(f"need [N, C] scores and N labels (N > 0); got {tuple(scores.shape)} and {y.numel()} labels")
    num_classes = scores.shape[1]
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes - 1}]; found {int(y.min())}..{int(y.max())}")
    if classnames is not None and len(classnames) != num_classes:
        raise ValueError(f"{len(classnames)} classnames for {num_classes} classes")
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    confusion = confusion_matrix(y, order[:, 0], num_classes)
    support = confusion.sum(dim=1)
    per_class = [float(confusion[c, c] / support[c]) if support[c] > 0 else None for c in range(num_classes)]
    present = [a for a in per_class if a is not None]
    out: dict[str, Any] = {
        "accuracy": float((order[:, 0] == y).double().mean()),
        "balanced_accuracy": sum(present) / len(present),
        "per_class_accuracy": per_class,
        "confusion_matrix": confusion.tolist(),
        "num_samples": int(y.numel()),
        "num_classes": int(num_classes),
    }
    for k in ks:
        if 1 < k <= num_classes:
            out[f"top{k}_accuracy"] = float((order[:, :k] == y[:, None]).any(dim=1).double().mean())
    if classnames is not None:
        out["classnames"] = list(classnames)
    return out
