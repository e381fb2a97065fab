"""Figures are written as real PNGs; history parsing and image conversion behave as documented."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from mie.evaluation.plots import (
    CORRECT_RGB,
    WRONG_RGB,
    contact_sheet,
    framed,
    load_metrics_jsonl,
    plot_curves,
    plot_retrieval_grid,
    split_history,
    to_uint8_image,
)

HISTORY = [
    {"step": 1, "epoch": 0, "loss": 4.0},
    {"step": 2, "epoch": 0, "train/loss": 3.5},
    {"step": 2, "split": "val", "mean_R@1": 0.1, "i2t_R@1": 0.12, "t2i_R@1": 0.08, "loss": 9.9},
    {"step": 3, "epoch": 1, "loss": 3.0, "lr": 1e-3},
    {"step": 4, "val/mean_R@1": 0.2, "val/i2t_R@1": 0.25},
    {"note": "no x coordinate, ignored", "loss": 1.0},
]


def _open_png(path):
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as img:
        assert img.format == "PNG"
        return np.asarray(img.convert("RGB"))


def test_split_history_separates_train_and_val():
    train, val, axis = split_history(HISTORY)
    assert train["loss"] == [(1.0, 4.0), (2.0, 3.5), (3.0, 3.0)]  # the val record's loss is not training loss
    assert val["mean_R@1"] == [(2.0, 0.1), (4.0, 0.2)]
    assert val["i2t_R@1"] == [(2.0, 0.12), (4.0, 0.25)]
    assert val["t2i_R@1"] == [(2.0, 0.08)]
    assert axis == "step"
    _, val_epochs, axis = split_history([{"epoch": 3, "split": "val", "mean_R@1": 0.5}])
    assert axis == "epoch" and val_epochs["mean_R@1"] == [(3.0, 0.5)]


def test_plot_curves_from_records_and_from_jsonl(tmp_path):
    pixels = _open_png(plot_curves(HISTORY, tmp_path / "curves.png", title="demo"))
    assert pixels.shape[1] > pixels.shape[0]  # two panels side by side
    jsonl = tmp_path / "metrics.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in HISTORY) + "\n\n")
    assert load_metrics_jsonl(jsonl) == HISTORY
    _open_png(plot_curves(jsonl, tmp_path / "sub" / "from_file.png"))


def test_plot_curves_with_no_data_still_draws(tmp_path):
    _open_png(plot_curves([], tmp_path / "empty.png"))


def test_load_metrics_jsonl_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        load_metrics_jsonl(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"step": 1}\nnot json\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        load_metrics_jsonl(bad)
    bad.write_text("[1, 2]\n")
    with pytest.raises(ValueError, match="JSON object"):
        load_metrics_jsonl(bad)
    with pytest.raises(ValueError, match=".png"):
        plot_curves(HISTORY, tmp_path / "curves.jpg")


def test_to_uint8_image_conversions():
    hwc = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    assert np.array_equal(to_uint8_image(hwc), hwc)
    assert np.array_equal(to_uint8_image(Image.fromarray(hwc)), hwc)
    chw = torch.from_numpy(hwc).permute(2, 0, 1).float() / 255
    assert np.abs(to_uint8_image(chw).astype(int) - hwc).max() <= 1
    gray = to_uint8_image(np.full((4, 5), 0.5))
    assert gray.shape == (4, 5, 3) and (gray == 128).all()
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    assert to_uint8_image(rgba).shape == (2, 2, 3)
    assert to_uint8_image(np.full((2, 2, 1), 2.0)).max() == 255  # floats are clipped to [0, 1]
    with pytest.raises(ValueError, match="shape"):
        to_uint8_image(np.zeros((2, 2, 2, 2)))


def test_framed_adds_a_solid_border():
    img = np.zeros((10, 20, 3), dtype=np.uint8)
    out = framed(img, (1, 2, 3), width=2)
    assert out.shape == (14, 24, 3)
    assert (out[0] == (1, 2, 3)).all() and (out[:, -1] == (1, 2, 3)).all()
    assert (out[2:-2, 2:-2] == 0).all()


def _has_colour(pixels, rgb, tol=30):
    return (np.abs(pixels.astype(int) - np.array(rgb)).max(axis=-1) <= tol).sum() > 50


def test_retrieval_grid_shows_green_and_red_borders(tmp_path):
    grey = np.full((32, 32, 3), 128, dtype=np.uint8)
    out = plot_retrieval_grid(
        ["a red circle on a blue background", "two squares"],
        [[grey] * 5, [Image.fromarray(grey)] * 3],
        [[True, False, False, False, False], [False, False, True]],
        tmp_path / "grid.png",
        title="text -> image",
    )
    pixels = _open_png(out)
    assert _has_colour(pixels, CORRECT_RGB) and _has_colour(pixels, WRONG_RGB)
    only_wrong = _open_png(plot_retrieval_grid(["q"], [[grey]], [[False]], tmp_path / "wrong.png"))
    assert not _has_colour(only_wrong, CORRECT_RGB) and _has_colour(only_wrong, WRONG_RGB)


@pytest.mark.parametrize(
    "queries, images, correct, match",
    [
        ([], [], [], "no queries"),
        (["a"], [[np.zeros((2, 2, 3))]], [], "one entry per query"),
        (["a"], [[np.zeros((2, 2, 3))]], [[True, False]], "1 images but 2"),
        (["a"], [[]], [[]], "zero retrieved"),
    ],
)
def test_retrieval_grid_errors(tmp_path, queries, images, correct, match):
    with pytest.raises(ValueError, match=match):
        plot_retrieval_grid(queries, images, correct, tmp_path / "x.png")


def test_contact_sheet(tmp_path):
    images = [np.full((16, 16, 3), v, dtype=np.uint8) for v in (0, 60, 120, 180, 240)]
    _open_png(contact_sheet(images, [f"caption {i}" for i in range(5)], tmp_path / "sheet.png", ncols=3))
    _open_png(contact_sheet(images[:1], None, tmp_path / "one.png", title="one image"))
    with pytest.raises(ValueError, match="5 images but 2 captions"):
        contact_sheet(images, ["a", "b"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="no images"):
        contact_sheet([], None, tmp_path / "x.png")
    with pytest.raises(ValueError, match="ncols"):
        contact_sheet(images, None, tmp_path / "x.png", ncols=0)
