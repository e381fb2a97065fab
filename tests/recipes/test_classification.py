"""End to end: the classification recipe on the shapes classes and an ImageFolder (tiny ViT, seconds)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from PIL import Image
from tests.tiny import TINY_CLIP_MODEL

from mie.cli import main
from mie.data.shapes_classes import render_shape_classes, shape_pairs
from mie.data.shapes_drawing import SHAPES
from mie.errors import ConfigError

TINY = {"recipe": "classification", "project_name": "tiny", "epochs": 2, "log_every": 2, "device": "cpu",
        "schedule": {"warmup_steps": 2},
        "model": {"image_size": 16, "patch_size": 4, "in_channels": 3, "width": 16, "layers": 1, "heads": 2},
        "data": {"source": "shapes", "num_train": 96, "num_val": 32, "num_test": 32, "num_heldout": 16,
                 "batch_size": 32, "test_splits": ["test", "test_heldout"]},
        "mixup_alpha": 0.8, "cutmix_alpha": 1.0}


def _write(tmp_path, raw):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_shapes_classes_are_the_drawn_shape_and_heldout_pairs_stay_out():
    images, labels = render_shape_classes("train", 20, image_size=24, seed=0)
    assert images.shape == (20, 24, 24, 3) and set(labels.tolist()) <= set(range(len(SHAPES)))
    again, _ = render_shape_classes("train", 20, image_size=24, seed=0)
    assert np.array_equal(images, again)
    assert not set(shape_pairs("test_heldout", 0)) & set(shape_pairs("train", 0))


def test_train_writes_the_report_and_eval_reproduces_it(tmp_path, capsys):
    raw = {**TINY, "output_dir": str(tmp_path / "run")}
    assert main(["train", str(_write(tmp_path, raw))]) == 0
    out = capsys.readouterr().out
    assert "test: top-1" in out and "test_heldout: top-1" in out
    run = tmp_path / "run"
    results = json.loads((run / "results.json").read_text())
    test = results["classification"]["test"]
    assert {"accuracy", "top5_accuracy", "per_class_accuracy", "confusion_matrix"} <= set(test)
    assert test["classnames"] == list(SHAPES) and test["num_samples"] == 32
    report = (run / "report.md").read_text()
    assert "Per-class accuracy (test)" in report and "plots/confusion_test.png" in report
    assert (run / "plots" / "confusion_test.png").is_file() and (run / "plots" / "curves.png").is_file()
    assert main(["eval", str(run)]) == 0
    assert "reproduces the numbers" in capsys.readouterr().out


def test_image_folder_source(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for name, value in (("dark", 30), ("light", 220)):
        (tmp_path / "images" / name).mkdir(parents=True)
        for i in range(20):
            pixels = np.clip(rng.normal(value, 10, (20, 20, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "images" / name / f"{i}.png")
    (tmp_path / "images" / "dark" / "broken.png").write_bytes(b"not a png")
    raw = {**TINY, "output_dir": str(tmp_path / "run"), "epochs": 3,
           "data": {"source": "imagefolder", "path": str(tmp_path / "images"), "batch_size": 8,
                    "val_fraction": 0.2, "test_fraction": 0.2}}
    assert main(["train", str(_write(tmp_path, raw))]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())["classification"]["test"]
    assert results["classnames"] == ["dark", "light"] and results["num_samples"] == 8


def test_config_errors_are_one_line(tmp_path):
    raw = {**TINY, "data": {"source": "imagefolder"}}
    with pytest.raises(ConfigError, match="data.path"):
        from mie.recipes import load_recipe_config

        load_recipe_config(_write(tmp_path, raw))


@pytest.mark.slow
def test_clip_recipe_reports_r_at_1_with_and_without_reranking(tmp_path, capsys):
    raw = {"project_name": "tiny", "output_dir": str(tmp_path / "run"), "epochs": 1, "log_every": 1,
           "device": "cpu", "model": TINY_CLIP_MODEL, "schedule": {"warmup_steps": 2},
           "data": {"format": "synthetic", "path": str(tmp_path / "data"), "batch_size": 16,
                    "test_splits": ["test", "test_heldout"],
                    "synthetic": {"num_train": 48, "num_val": 12, "num_test": 16, "num_heldout": 12,
                                  "image_size": 32}}}
    raw["rerank"] = {"enabled": True, "k": 4, "epochs": 1, "batch_size": 16,
                     "fusion": {"type": "bidirectional", "dim": 16, "heads": 2, "layers": 1}}
    assert main(["train", str(_write(tmp_path, raw))]) == 0
    assert "re-ranked" in capsys.readouterr().out
    rerank = json.loads((tmp_path / "run" / "results.json").read_text())["rerank"]["results"]
    assert set(rerank) == {"test", "test_heldout"} and {"without", "with"} == set(rerank["test"])
    assert "Re-ranking with an image-text matching head" in (tmp_path / "run" / "report.md").read_text()
    assert (tmp_path / "run" / "checkpoints" / "reranker.safetensors").is_file()
    assert main(["eval", str(tmp_path / "run")]) == 0  # re-scores the re-ranker too, and agrees
    out = capsys.readouterr().out
    assert "re-ranked" in out and "reproduces the numbers" in out
