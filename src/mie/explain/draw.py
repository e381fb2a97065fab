"""PNGs of explanations: a heat map over its image, an attention matrix, an embedding scatter, a similarity
matrix. Everything draws on a bare matplotlib ``Figure`` (Agg) and is saved atomically; import this module
only where a figure is made (matplotlib takes a moment to import)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from PIL import Image

from mie.io.atomic import atomic_path


def _save(fig: Figure, out: str | os.PathLike[str], dpi: int = 100) -> Path:
    path = Path(out)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    return path


def overlay(image: Image.Image, heat: torch.Tensor, alpha: float = 0.5) -> Image.Image:
    """``image`` with ``heat`` (any ``[h, w]``, values in [0, 1]) resized over it in the jet colour map."""
    rgb = image.convert("RGB")
    values = np.clip(heat.detach().float().cpu().numpy(), 0.0, 1.0)
    small = Image.fromarray((values * 255).astype(np.uint8), mode="L").resize(rgb.size, Image.BILINEAR)
    coloured = colormaps["jet"](np.asarray(small) / 255.0)[..., :3]
    mixed = (1 - alpha) * np.asarray(rgb, dtype=np.float32) / 255.0 + alpha * coloured
    return Image.fromarray((np.clip(mixed, 0, 1) * 255).astype(np.uint8))


def save_heatmap(image: Image.Image, heat: torch.Tensor, out: str | os.PathLike[str], title: str,
                 peak: tuple[int, int] | None = None) -> Path:
    """The image and its overlaid heat map side by side, the peak marked with a cross, as a PNG."""
    fig = Figure(figsize=(6.4, 3.4))
    left, right = fig.subplots(1, 2)
    left.imshow(image.convert("RGB"))
    left.set_title("image")
    right.imshow(overlay(image, heat))
    right.set_title("heat map")
    if peak is not None:
        right.plot([peak[0]], [peak[1]], marker="x", color="white", markersize=10, mew=2)
    for ax in (left, right):
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    return _save(fig, out)


def save_matrix(matrix: torch.Tensor, out: str | os.PathLike[str], title: str, rows: Sequence[str] | None = None,
                cols: Sequence[str] | None = None, xlabel: str = "", ylabel: str = "") -> Path:
    """A labelled matrix (attention weights, similarities) as a PNG with a colour bar."""
    values = matrix.detach().float().cpu().numpy()
    side = max(4.0, min(12.0, 0.35 * max(values.shape) + 2))
    fig = Figure(figsize=(side, side * 0.85))
    ax = fig.subplots()
    shown = ax.imshow(values, cmap="viridis", aspect="auto")
    fig.colorbar(shown, ax=ax)
    if rows is not None and len(rows) <= 60:
        ax.set_yticks(range(len(rows)), list(rows), fontsize=7)
    if cols is not None and len(cols) <= 60:
        ax.set_xticks(range(len(cols)), list(cols), fontsize=7, rotation=90)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    return _save(fig, out)


def save_scatter(points: torch.Tensor, labels: Sequence[str], out: str | os.PathLike[str], title: str,
                 markers: Sequence[str] | None = None) -> Path:
    """2-D points coloured by label (one legend entry per label); ``markers`` (e.g. image/text) per point."""
    fig = Figure(figsize=(6.4, 5.2))
    ax = fig.subplots()
    xy = points.detach().float().cpu().numpy()
    names = sorted(set(labels))
    palette = colormaps["tab10" if len(names) <= 10 else "tab20"]
    kinds = sorted(set(markers)) if markers is not None else [None]
    shapes = dict(zip(kinds, "ox^sv", strict=False))
    for i, name in enumerate(names):
        # images whose objects disagree on the attribute are context, drawn grey beneath the rest
        colour = (0.8, 0.8, 0.8) if name in ("mixed", "unknown") else palette(i % palette.N)
        for kind in kinds:
            rows = [j for j, label in enumerate(labels) if label == name and (kind is None or markers[j] == kind)]
            if rows:
                shown = name if kind is None or len(kinds) == 1 else f"{name} ({kind})"
                ax.scatter(xy[rows, 0], xy[rows, 1], s=14, color=colour,
                           marker=shapes.get(kind) or "o", label=shown, alpha=0.8)
    ax.legend(fontsize=7, loc="best", markerscale=1.2)
    ax.set_title(title, fontsize=9)
    return _save(fig, out)
