"""End to end: the clip recipe's `mie train` / `mie eval` / resume on a tiny shapes set and model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from mie.cli import main
from mie.config import config_from_dict as _from_dict
from mie.io import load_weights
from mie.recipes.clip import ClipConfig
from mie.recipes.clip import evaluate as evaluate_run
from mie.recipes.clip import train as train_from_config
from mie.recipes.clip.evaluate import EvalSet, _any_object_accuracy, load_eval_set


def config_from_dict(raw):
    """A clip recipe config from a mapping."""
    return _from_dict(ClipConfig, raw)


TINY = {
    "project_name": "tiny",
    "epochs": 2,
    "eval_every_epochs": 1,
    "best_metric": "val/mean_R@1",
    "log_every": 1,
    "model": {"embed_dim": 32, "image_size": 32, "patch_size": 8, "vision_width": 32, "vision_layers": 1,
              "vision_heads": 2, "text_width": 32, "text_layers": 1, "text_heads": 2, "context_length": 32},
    "data": {"format": "synthetic", "batch_size": 16, "test_splits": ["test", "test_heldout"],
             "synthetic": {"num_train": 48, "num_val": 12, "num_test": 16, "num_heldout": 12, "image_size": 32}},
    "schedule": {"warmup_steps": 2},
}


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory) -> Path:
    """One tiny generated shapes dataset shared by the tests of this module."""
    return tmp_path_factory.mktemp("shapes") / "data"


def _config(tmp: Path, shapes: Path, **top) -> dict:
    raw = json.loads(json.dumps(TINY))
    raw["output_dir"] = str(tmp / "run")
    raw["data"]["path"] = str(shapes)
    raw.update(top)
    return raw


def _write(tmp: Path, raw: dict) -> Path:
    path = tmp / "cfg.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_train_writes_a_complete_run_and_eval_reproduces_it(tmp_path, shapes_dir, capsys):
    result = train_from_config(config_from_dict(_config(tmp_path, shapes_dir)), quiet=True)
    run = result.run_dir
    for name in ("config.yaml", "tokenizer.json", "metrics.jsonl", "report.md", "results.json",
                 "checkpoints/best.safetensors", "checkpoints/last_state.pt", "plots/curves.png",
                 "plots/retrieval_grid.png"):
        assert (run / name).is_file(), name
    assert set(result.results) == {"test", "test_heldout"}
    test = result.results["test"]
    assert test["num_images"] == 16 and test["num_texts"] == 80
    assert test["mean_R@1"] == pytest.approx((test["i2t_R@1"] + test["t2i_R@1"]) / 2)
    report = (run / "report.md").read_text()
    assert f"{100 * test['i2t_R@1']:.2f}" in report
    # every epoch was validated with retrieval on the val split and logged
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
              if json.loads(line).get("event") == "epoch"]
    assert [e["epoch"] for e in epochs] == [0, 1] and all("val/mean_R@1" in e for e in epochs)

    again, comparison = evaluate_run(run)
    assert comparison.differences == [] and comparison.compared == ["test", "test_heldout"]
    for split, metrics in result.results.items():
        assert again.results[split] == pytest.approx(metrics)

    assert main(["eval", str(run)]) == 0
    assert "reproduces" in capsys.readouterr().out


def test_eval_reports_a_tampered_result(tmp_path, shapes_dir, capsys):
    raw = _config(tmp_path, shapes_dir, epochs=1)
    assert main(["train", str(_write(tmp_path, raw)), "--set", "log_every=5"]) == 0
    results = tmp_path / "run" / "results.json"
    data = json.loads(results.read_text())
    data["retrieval"]["test"]["i2t_R@1"] += 0.5
    results.write_text(json.dumps(data))
    assert main(["eval", str(tmp_path / "run")]) == 1
    assert "test.i2t_R@1" in capsys.readouterr().out


def test_resume_after_a_crash_continues_exactly(tmp_path, shapes_dir, monkeypatch):
    """A run that crashes after its step-3 checkpoint, resumed with `--resume`, ends with the same
    weights as the same run left uninterrupted."""
    from mie.training.base import BaseTrainer

    straight = _config(tmp_path / "a", shapes_dir)
    assert main(["train", str(_write(tmp_path, straight))]) == 0

    crashed = _config(tmp_path / "b", shapes_dir, checkpoint_every_steps=3)
    finish_step = BaseTrainer._finish_step

    def crash_at_step_4(self, *args, **kwargs):
        if self.global_step == 4:
            raise RuntimeError("simulated crash")
        return finish_step(self, *args, **kwargs)

    monkeypatch.setattr(BaseTrainer, "_finish_step", crash_at_step_4)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_from_config(config_from_dict(crashed), quiet=True)
    monkeypatch.undo()
    assert main(["train", str(_write(tmp_path, crashed)), "--resume"]) == 0

    a, _ = load_weights(tmp_path / "a" / "run" / "checkpoints" / "last.safetensors")
    b, meta = load_weights(tmp_path / "b" / "run" / "checkpoints" / "last.safetensors")
    assert meta["step"] == 2 * (48 // 16)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)


def test_eval_set_keeps_all_captions_and_attributes(tmp_path, shapes_dir):
    cfg = config_from_dict(_config(tmp_path, shapes_dir))
    from mie.data.synthetic import ensure_shapes_dataset

    ensure_shapes_dataset(cfg.data.synthetic, cfg.data.path)
    evalset = load_eval_set(cfg, "test")
    texts, owner = evalset.flat_captions
    assert evalset.images.shape == (16, 3, 32, 32)
    assert len(texts) == 5 * 16 and owner.tolist() == [i for i in range(16) for _ in range(5)]
    assert all(a and a["objects"] for a in evalset.attributes)


def test_missing_run_directory_is_a_clear_error(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nope")]) == 1
    assert "config.yaml" in capsys.readouterr().err


def test_any_object_zero_shot_counts_a_hit_on_any_object_and_reports_chance():
    def objects(*shapes):
        return {"objects": [{"shape": s, "color": "red"} for s in shapes]}

    classnames = ["circle", "square", "star"]
    classes = torch.eye(3)  # class k's embedding is the k-th axis
    # Predictions (argmax over axes): star, circle, square, circle.
    images = torch.tensor([[0.0, 0.1, 1.0], [1.0, 0.0, 0.0], [0.2, 0.9, 0.0], [0.9, 0.5, 0.0]])
    attributes = [objects("star"), objects("square", "circle"), objects("star"), objects("circle", "square", "star")]
    evalset = EvalSet("test", torch.zeros(4, 3, 8, 8), [["c"]] * 4, ["a", "b", "c", "d"], attributes)
    result = _any_object_accuracy(evalset, "shape", classnames, images, classes)
    assert result["accuracy"] == pytest.approx(3 / 4)  # only image 2 (a star, predicted square) misses
    assert result["chance"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 3 + 3 / 3) / 4)
    assert (result["num_samples"], result["num_classes"]) == (4, 3)
