"""The clip recipe with NegCLIP word-swap negatives (``data.negative_word_groups``) on tiny shapes data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tests.recipes.test_clip import _config

from mie.config import config_from_dict
from mie.data.shapes_drawing import SHAPES
from mie.io import load_weights
from mie.recipes.clip import ClipConfig
from mie.recipes.clip import train as train_from_config
from mie.recipes.clip.config import check_config


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("shapes") / "data"


def _first_step(run: Path) -> dict:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return next(r for r in rows if r.get("step") == 1 and "train/loss_i2t" in r)


def test_swapped_shape_captions_are_extra_image_to_text_negatives(tmp_path, shapes_dir):
    plain = _config(tmp_path / "plain", shapes_dir, epochs=1)
    negatives = _config(tmp_path / "neg", shapes_dir, epochs=1)
    negatives["data"]["negative_word_groups"] = [list(SHAPES)]
    runs = [train_from_config(config_from_dict(ClipConfig, raw), quiet=True).run_dir for raw in (plain, negatives)]
    first = [_first_step(run) for run in runs]
    # the same first batch and weights: 16 more keys raise only the image->text term
    assert first[1]["train/loss_i2t"] > first[0]["train/loss_i2t"] + 0.1
    assert first[1]["train/loss_t2i"] == pytest.approx(first[0]["train/loss_t2i"], abs=1e-5)
    a, _ = load_weights(runs[0] / "checkpoints" / "last.safetensors")
    b, _ = load_weights(runs[1] / "checkpoints" / "last.safetensors")
    assert any(not torch.equal(a[name], b[name]) for name in a)


def test_negatives_without_a_loss_that_reads_them_are_named_in_a_warning(tmp_path, shapes_dir, caplog):
    raw = _config(tmp_path, shapes_dir, loss={"name": "siglip"})
    raw["data"]["negative_word_groups"] = [list(SHAPES)]
    check_config(config_from_dict(ClipConfig, raw))
    assert "data.negative_word_groups: loss 'siglip' does not take hard-negative captions" in caplog.text
