"""Figures of a classification run: the confusion matrix and the loss / accuracy curves (Agg, no pyplot)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from mie.evaluation.plots import _save, load_metrics_jsonl


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], classnames: Sequence[str], out_png: str | os.PathLike[str],
                          title: str = "Confusion matrix") -> Path:
    """Row-normalised confusion matrix (rows = true class) with the counts written in each cell."""
    counts = np.asarray(matrix, dtype=np.int64)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    n = len(classnames)
    side = max(4.0, 0.55 * n + 2.0)
    fig = Figure(figsize=(side + 1.0, side))
    ax = fig.subplots()
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ax.set(xticks=range(n), yticks=range(n), xlabel="predicted", ylabel="true", title=title)
    ax.set_xticklabels(classnames, rotation=45, ha="right")
    ax.set_yticklabels(classnames)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if rates[i, j] > 0.5 else "black")
    return _save(fig, out_png)


def plot_classification_curves(metrics_jsonl: str | os.PathLike[str], out_png: str | os.PathLike[str],
                               title: str | None = None) -> Path:
    """Training loss per logged step, and validation top-1 / top-5 per evaluation, from ``metrics.jsonl``."""
    records = load_metrics_jsonl(metrics_jsonl)
    fig = Figure(figsize=(11, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    train = [(r["step"], r["train/loss"]) for r in records if "train/loss" in r and r.get("event") != "epoch"]
    if train:
        ax_loss.plot(*zip(*train), color="tab:blue", linewidth=1.2, label="train loss")
        ax_loss.legend(loc="upper right")
    ax_loss.set(xlabel="step", ylabel="loss", title="Training loss")
    ax_loss.grid(alpha=0.3)
    for key, color in (("val/top1", "black"), ("val/top5", "tab:green")):
        points = [(r["step"], r[key]) for r in records if key in r and "step" in r]
        if points:
            ax_acc.plot(*zip(*points), color=color, marker="o", markersize=3, label=key)
    if ax_acc.lines:
        ax_acc.legend(loc="lower right")
    ax_acc.set(xlabel="step", ylabel="accuracy", title="Validation accuracy")
    ax_acc.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return _save(fig, out_png)
