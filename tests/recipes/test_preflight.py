"""Refused before any training: a batch larger than the training set (0 steps), with a suggestion."""

from __future__ import annotations

import json

import pytest
import yaml
from tests.tiny import TINY_CLIP_MODEL

from mie.cli import main
from mie.recipes.clip.preflight import suggest_batch_size

TINY = {
    "recipe": "clip", "project_name": "pre", "epochs": 1, "device": "cpu",
    "model": TINY_CLIP_MODEL,
    "data": {"format": "synthetic", "batch_size": 8, "test_splits": ["test"],
             "synthetic": {"num_train": 20, "num_val": 4, "num_test": 4, "num_heldout": 4, "image_size": 24}},
    "tokenizer": {"name": "simple"},
}


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    root = tmp_path_factory.mktemp("pre")
    raw = json.loads(json.dumps(TINY))
    raw["data"]["path"] = str(root / "data")
    path = root / "cfg.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


# (A batch past 65,536 is refused earlier, at config load: tests/recipes/test_limits.py.)
@pytest.mark.parametrize("key, value", [("data.batch_size", 256), ("data.batch_size", 5_000)])
def test_a_batch_larger_than_the_training_set_is_refused_before_training(config, tmp_path, capsys, key, value):
    run = tmp_path / "run"
    assert main(["train", str(config), "--output-dir", str(run), "--set", f"{key}={value}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"mie train: error: {key}: {value} is larger than the 20 training images of "
                       f"{config.parent / 'data'}, so training would take 0 steps — set it to at most 20, "
                       f"e.g. --set {key}=4")
    assert not (run / "checkpoints").exists() and not (run / "tokenizer.json").exists()


def test_a_stage_batch_size_is_checked_too(config, tmp_path, capsys):
    args = ["train", str(config), "--output-dir", str(tmp_path / "run"), "--set",
            "stages=[{name: a, steps: 1}, {name: b, steps: 1, batch_size: 64}]"]
    assert main(args) == 1
    assert "stages[1].batch_size: 64 is larger than the 20 training images" in capsys.readouterr().err


@pytest.mark.parametrize("num, size", [(1, 1), (7, 1), (8, 2), (50, 8), (1000, 128), (1024, 256)])
def test_the_suggested_batch_leaves_four_batches(num, size):
    assert suggest_batch_size(num) == size and (num // size >= 4 or size == 1)


def test_a_split_the_data_lacks_is_refused_before_training(config, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(config), "--output-dir", str(run), "--set", "data.test_splits=[test, holdout]"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("mie train: error: data.test_splits: split 'holdout' is not in ")
    assert not (run / "checkpoints").exists() and not (run / "tokenizer.json").exists()


def test_a_failed_resume_leaves_the_run_untouched(config, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(config), "--output-dir", str(run), "-q"]) == 0
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    # another architecture: the checkpoint cannot be loaded, so the resume fails
    assert main(["train", str(config), "--output-dir", str(run), "-q", "--resume", "--set", "model.embed_dim=32"]) == 1
    assert "does not fit this model and trainer" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
