"""configs/shapes_multistage.yaml and configs/flickr30k_multistage.yaml: three stages that really run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mie.cli import main
from mie.io import load_weights
from mie.recipes import load_recipe_config
from mie.training import BaseTrainer

REPO = Path(__file__).resolve().parents[2]
TINY = [
    "data.synthetic.num_train=48", "data.synthetic.num_val=8", "data.synthetic.num_test=8",
    "data.synthetic.num_heldout=8", "data.synthetic.image_size=24", "data.test_splits=[test]",
    "data.batch_size=8", "model.image_size=16", "model.embed_dim=16", "model.vision_width=16",
    "model.vision_layers=1", "model.vision_heads=2", "model.text_width=16", "model.text_layers=1",
    "model.text_heads=2", "tokenizer.name=simple", "schedule.warmup_steps=1", "log_every=1",
    "stages.0.steps=3", "stages.1.steps=4", "stages.2.steps=5", "stages.1.loss.kwargs.losses.0.queue_size=32",
]


def _args(run: Path, shapes: Path, *extra: str) -> list[str]:
    args = ["train", str(REPO / "configs" / "shapes_multistage.yaml"), "--output-dir", str(run),
            "--set", f"data.path={shapes}"]
    for item in (*TINY, *extra):
        args += ["--set", item]
    return args


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("shapes") / "data"


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_three_stages_run_in_order_with_their_own_losses_and_freezing(tmp_path, shapes, monkeypatch):
    seen = []
    enter = BaseTrainer._enter_stage

    def spy(self, index):
        enter(self, index)
        trainable = {n.split(".")[0] for n, p in self.model.named_parameters() if p.requires_grad}
        seen.append((index, type(self.task.loss).__name__, sorted(trainable),
                     sorted({g["lr"] / self.stages[index].lr for g in self.optimizer.param_groups})))

    monkeypatch.setattr(BaseTrainer, "_enter_stage", spy)
    run = tmp_path / "run"
    assert main(_args(run, shapes)) == 0
    stages = seen  # stage 0 is entered by the constructor, the others by fit
    assert [s[0] for s in stages] == [0, 1, 2]
    assert stages[0][2] == stages[1][2] == ["image_projection", "logit_scale", "text_projection"]
    assert stages[1][3] == pytest.approx([0.5, 1.0])  # projections x 0.5, the logit scale x 1
    assert stages[2][2] == ["image_projection", "logit_scale", "text", "text_projection", "visual"]
    assert stages[2][3] == pytest.approx([0.01, 0.1, 0.5])
    steps = [r for r in _rows(run) if r["event"] == "step"]
    assert [r["stage"] for r in steps] == [0] * 3 + [1] * 4 + [2] * 5
    assert {"train/clip/loss", "train/decorrelation/loss"} <= set(steps[0])
    assert {"train/ema_moco/loss"} <= set(steps[3]) and {"train/hard_negative/loss"} <= set(steps[-1])
    for i, step in enumerate((3, 7, 12)):
        _, meta = load_weights(run / "checkpoints" / f"stage{i}.safetensors")
        assert (meta["stage"], meta["step"]) == (i, step)
    report = (run / "report.md").read_text()
    assert "## Stages" in report and "end_to_end" in report and "1 x hard_negative + 0.5 x feature_consistency" in report


def test_resume_mid_stage_continues_that_stage_exactly(tmp_path, shapes, monkeypatch):
    straight = tmp_path / "a"
    assert main(_args(straight, shapes)) == 0
    crashed = tmp_path / "b"
    finish = BaseTrainer._finish_step

    def crash(self, *args, **kwargs):
        if self.global_step == 9:  # stage 2, two of its five steps done (checkpoint at step 8)
            raise RuntimeError("simulated crash")
        return finish(self, *args, **kwargs)

    monkeypatch.setattr(BaseTrainer, "_finish_step", crash)
    assert main(_args(crashed, shapes, "checkpoint_every_steps=4")) == 1  # reported in one line, run kept
    monkeypatch.undo()
    assert main(_args(crashed, shapes, "checkpoint_every_steps=4") + ["--resume"]) == 0
    after = [r for r in _rows(crashed) if r["event"] == "step" and r["step"] > 8]
    assert after[0]["stage"] == 2 and [r["step"] for r in after][-4:] == [9, 10, 11, 12]
    a, _ = load_weights(straight / "checkpoints" / "last.safetensors")
    b, _ = load_weights(crashed / "checkpoints" / "last.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)


def test_the_flickr30k_recipe_loads_and_checks(tmp_path):
    _, config = load_recipe_config(REPO / "configs" / "flickr30k_multistage.yaml")
    assert [s.name for s in config.stages] == ["projections", "momentum", "end_to_end"]
    assert config.stages[2].lr_multipliers == {"visual.*": 0.01, "text.*": 0.01, "*_projection.*": 0.1, "*": 0.5}
    losses = [[t["name"] for t in s.loss.kwargs["losses"]] for s in config.stages]
    assert losses == [["clip", "decorrelation"], ["ema_moco", "decorrelation"],
                      ["hard_negative", "feature_consistency", "decorrelation"]]
