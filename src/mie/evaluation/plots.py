"""Figures for run reports: training curves, retrieval grids and image contact sheets.

Everything draws on a bare :class:`matplotlib.figure.Figure` rendered by the Agg canvas, so no
display, no pyplot global state and no backend selection are involved; figures are written as
PNG. Import this module only where figures are made (matplotlib takes a moment to import).

Training history format (what :func:`plot_curves` reads, e.g. the lines of ``metrics.jsonl``):
each record is a dict with ``step`` (and/or ``epoch``). A record is a *validation* record when
``record["split"] == "val"`` or it has any key starting with ``val/``; otherwise it is a
*training* record. Training loss is read from ``loss`` or ``train/loss``; validation recalls
from ``mean_R@1``, ``i2t_R@1``, ``t2i_R@1``, each optionally prefixed with ``val/``.
"""

from __future__ import annotations

import json
import math
import os
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from mie.io.atomic import atomic_path

CORRECT_RGB = (30, 170, 60)
WRONG_RGB = (210, 40, 40)
VAL_CURVES = ("mean_R@1", "i2t_R@1", "t2i_R@1")


# ---- history ----------------------------------------------------------------------------------------


def load_metrics_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read one JSON object per line (blank lines skipped); errors name the file and line."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"metrics file not found: {file}")
    records = []
    for lineno, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{file}:{lineno} is not valid JSON ({err})") from err
        if not isinstance(record, dict):
            raise ValueError(f"{file}:{lineno} must hold a JSON object, got {type(record).__name__}")
        records.append(record)
    return records


def _is_val(record: Mapping[str, Any]) -> bool:
    return record.get("split") == "val" or any(str(k).startswith("val/") for k in record)


def _get(record: Mapping[str, Any], name: str, prefix: str) -> float | None:
    """``record[name]`` or ``record[prefix + name]`` as a float, or None if absent / not a number."""
    for key in (name, prefix + name):
        value = record.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    return None


def _x(record: Mapping[str, Any]) -> tuple[str, float] | None:
    """The x coordinate of a record: its step if it has one, else its epoch."""
    for axis in ("step", "epoch"):
        value = _get(record, axis, "")
        if value is not None:
            return axis, value
    return None


def split_history(
    history: Iterable[Mapping[str, Any]],
) -> tuple[dict[str, list[tuple[float, float]]], dict[str, list[tuple[float, float]]], str]:
    """Extract ``(train_series, val_series, val_x_axis)`` from records; each series is [(x, y), ...]."""
    train: dict[str, list[tuple[float, float]]] = {"loss": []}
    val: dict[str, list[tuple[float, float]]] = {name: [] for name in VAL_CURVES}
    val_axis = "step"
    for record in history:
        where = _x(record)
        if where is None:
            continue
        axis, x = where
        if _is_val(record):
            val_axis = axis
            for name in VAL_CURVES:
                y = _get(record, name, "val/")
                if y is not None:
                    val[name].append((x, y))
        else:
            y = _get(record, "loss", "train/")
            if y is not None and axis == "step":
                train["loss"].append((x, y))
    return train, val, val_axis


# ---- saving -----------------------------------------------------------------------------------------


def _save(fig: Figure, out_png: str | os.PathLike[str], dpi: int = 100) -> Path:
    """Render ``fig`` to PNG atomically (parents created) and return the path."""
    out = Path(out_png)
    if out.suffix.lower() != ".png":
        raise ValueError(f"figure path must end in .png; got {out}")
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    return out


def plot_curves(
    history: Iterable[Mapping[str, Any]] | str | os.PathLike[str],
    out_png: str | os.PathLike[str],
    title: str | None = None,
) -> Path:
    """Two panels: training loss vs step, and validation R@1 (mean, i2t, t2i) vs step or epoch.

    ``history`` is a list of records or the path of a ``metrics.jsonl`` file (format in the module
    docstring). A panel with no data says so instead of failing, so early runs still get a figure.
    """
    records = load_metrics_jsonl(history) if isinstance(history, (str, os.PathLike)) else list(history)
    train, val, val_axis = split_history(records)
    fig = Figure(figsize=(11, 4))
    ax_loss, ax_val = fig.subplots(1, 2)

    if train["loss"]:
        xs, ys = zip(*train["loss"])
        ax_loss.plot(xs, ys, color="tab:blue", linewidth=1.2, label="train loss")
        ax_loss.legend(loc="upper right")
    else:
        ax_loss.text(0.5, 0.5, "no training loss logged", ha="center", va="center", transform=ax_loss.transAxes)
    ax_loss.set(xlabel="step", ylabel="loss", title="Training loss")
    ax_loss.grid(alpha=0.3)

    styles = {"mean_R@1": ("black", "-"), "i2t_R@1": ("tab:orange", "--"), "t2i_R@1": ("tab:green", "--")}
    plotted = False
    for name, points in val.items():
        if points:
            xs, ys = zip(*points)
            color, style = styles[name]
            ax_val.plot(xs, ys, color=color, linestyle=style, marker="o", markersize=3, label=name)
            plotted = True
    if plotted:
        ax_val.legend(loc="lower right")
    else:
        ax_val.text(0.5, 0.5, "no validation recall logged", ha="center", va="center", transform=ax_val.transAxes)
    ax_val.set(xlabel=val_axis, ylabel="recall", title="Validation R@1")
    ax_val.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return _save(fig, out_png)


# ---- images -----------------------------------------------------------------------------------------


def to_uint8_image(image: Any) -> np.ndarray:
    """Convert a PIL image, an HWC/HW array (uint8, or float in [0, 1]) or a CHW tensor to uint8 HWC RGB."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    array = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3, 4):
        array = np.transpose(array, (1, 2, 0))  # CHW (torch layout) -> HWC
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise ValueError(f"cannot read an image of shape {array.shape}; expected HxW, HxWx3/4 or 3xHxW")
    array = array[..., :3]
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating):
            array = np.clip(array, 0.0, 1.0) * 255.0  # float images are taken to be in [0, 1]
        array = np.clip(np.rint(array), 0, 255).astype(np.uint8)
    return array


def framed(image: np.ndarray, rgb: tuple[int, int, int], width: int | None = None) -> np.ndarray:
    """Return ``image`` (uint8 HWC) inside a solid border of colour ``rgb`` (default ~6% of its size)."""
    if width is None:
        width = max(2, round(0.06 * max(image.shape[:2])))
    out = np.empty((image.shape[0] + 2 * width, image.shape[1] + 2 * width, 3), dtype=np.uint8)
    out[:] = np.asarray(rgb, dtype=np.uint8)
    out[width:-width, width:-width] = image
    return out


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width=width)) or " "


def plot_retrieval_grid(
    queries: Sequence[str],
    topk_images: Sequence[Sequence[Any]],
    correct: Sequence[Sequence[bool]],
    out_png: str | os.PathLike[str],
    title: str | None = None,
) -> Path:
    """One row per text query: the query text, then its top-K retrieved images best first.

    Each image gets a green border when it is a correct match for the query and a red one when not.
    """
    if not queries:
        raise ValueError("no queries to draw")
    if len(topk_images) != len(queries) or len(correct) != len(queries):
        raise ValueError(
            f"queries ({len(queries)}), topk_images ({len(topk_images)}) and correct ({len(correct)}) "
            "must have one entry per query"
        )
    for row, (imgs, marks) in enumerate(zip(topk_images, correct)):
        if len(imgs) != len(marks):
            raise ValueError(f"query {row}: {len(imgs)} images but {len(marks)} correct flags")
    k = max(len(imgs) for imgs in topk_images)
    if k == 0:
        raise ValueError("every query has zero retrieved images")

    fig = Figure(figsize=(2.0 * k + 3.0, 2.0 * len(queries)))
    axes = np.atleast_2d(fig.subplots(len(queries), k + 1, gridspec_kw={"width_ratios": [1.5] + [1] * k}))
    for row, (query, imgs, marks) in enumerate(zip(queries, topk_images, correct)):
        text_ax = axes[row, 0]
        text_ax.axis("off")
        text_ax.text(0.0, 0.5, _wrap(query, 28), ha="left", va="center", fontsize=9, transform=text_ax.transAxes)
        for col in range(k):
            ax = axes[row, col + 1]
            ax.axis("off")
            if col < len(imgs):
                ax.imshow(framed(to_uint8_image(imgs[col]), CORRECT_RGB if marks[col] else WRONG_RGB))
                if row == 0:
                    ax.set_title(f"#{col + 1}", fontsize=9)
    if title:
        fig.suptitle(title)
    return _save(fig, out_png)


def contact_sheet(
    images: Sequence[Any],
    captions: Sequence[str] | None,
    out_png: str | os.PathLike[str],
    ncols: int = 6,
    title: str | None = None,
) -> Path:
    """A grid of images with their (wrapped) captions underneath, e.g. to inspect a dataset."""
    if not images:
        raise ValueError("no images for the contact sheet")
    if captions is not None and len(captions) != len(images):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1; got {ncols}")
    ncols = min(ncols, len(images))
    nrows = math.ceil(len(images) / ncols)
    fig = Figure(figsize=(2.2 * ncols, 2.6 * nrows))
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).reshape(-1)
    for index, ax in enumerate(axes):
        ax.axis("off")
        if index < len(images):
            ax.imshow(to_uint8_image(images[index]))
            if captions is not None:
                ax.text(0.5, -0.04, _wrap(captions[index], 26), fontsize=7, ha="center", va="top",
                        transform=ax.transAxes)
    if title:
        fig.suptitle(title)
    return _save(fig, out_png)
