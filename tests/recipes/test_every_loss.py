"""Every image–text loss in LOSSES trains through `mie train`; any other loss is refused in one line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from mie.cli import main
from mie.io import load_weights
from mie.losses import LOSSES, build_loss
from mie.training import BaseTrainer
from mie.training.tasks import IMAGE_TEXT_INPUTS

REPO = Path(__file__).resolve().parents[2]
# Losses that need arguments to say what they combine; the values below are what a user writes.
KWARGS = {
    "combined": "loss.kwargs.losses=[{name: clip}, {name: vicreg, weight: 0.1}]",
    "multitask": "loss.kwargs.tasks={retrieval: {name: clip}, redundancy: {name: barlow_twins, weight: 0.01}}",
}
NOT_IMAGE_TEXT = {"cross_entropy"}  # token / class logits and targets: language-model and classifier tasks
TINY = [
    "data.synthetic.num_train=32", "data.synthetic.num_val=0", "data.synthetic.num_test=0",
    "data.synthetic.num_heldout=0", "data.synthetic.image_size=24", "data.val_split=''", "data.test_splits=[]",
    "data.batch_size=8", "model.image_size=16", "model.embed_dim=16", "model.vision_width=16",
    "model.vision_layers=1", "model.vision_heads=2", "model.text_width=16", "model.text_layers=1",
    "model.text_heads=2", "tokenizer.name=simple", "schedule.warmup_steps=0", "log_every=1", "max_steps=2",
    "stages=[]", "data.caption_tags=[]",  # the demo's tag stage aside: every step trains the loss under test
]


def image_text_losses() -> list[str]:
    """Names the contrastive task can feed, decided by what each loss declares it consumes."""
    names = []
    for name in sorted(LOSSES):
        if name in KWARGS:
            names.append(name)
            continue
        sizes = {"embed_dim": 16, "num_tags": 2}
        loss = build_loss(name, **{k: v for k, v in sizes.items() if k in _init_args(name)})
        if loss.required_inputs() <= IMAGE_TEXT_INPUTS:
            names.append(name)
    return names


def _init_args(name: str) -> set[str]:
    import inspect

    return set(inspect.signature(LOSSES[name].__init__).parameters)


def test_the_split_of_losses_is_the_expected_one():
    assert set(LOSSES) - set(image_text_losses()) == NOT_IMAGE_TEXT
    assert len(image_text_losses()) >= 20


def _train(tmp_path: Path, shapes: Path, *extra: str) -> int:
    args = ["train", str(REPO / "configs" / "demo.yaml"), "--output-dir", str(tmp_path / "run"),
            "--set", f"data.path={shapes}"]
    for item in (*TINY, *extra):
        args += ["--set", item]
    return main(args)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("shapes") / "data"


@pytest.mark.parametrize("name", image_text_losses())
def test_every_image_text_loss_trains_two_steps(name, tmp_path, shapes, monkeypatch, capsys):
    start: dict[str, torch.Tensor] = {}
    fit = BaseTrainer.fit

    def remember_start(self, *args, **kwargs):
        start.update({k: v.detach().clone() for k, v in self.model.state_dict().items()})
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(BaseTrainer, "fit", remember_start)
    extra = [f"loss.name={name}"] + ([KWARGS[name]] if name in KWARGS else [])
    if name in ("caption_tags", "tag_match", "tag_ground"):  # they score the image against these words of its captions
        extra.append("data.caption_tags=[circle, square]")
    assert _train(tmp_path, shapes, *extra) == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in rows if r["event"] == "step"]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    end, meta = load_weights(tmp_path / "run" / "checkpoints" / "last.safetensors")
    assert meta["step"] == 2
    changed = {k.split(".")[0] for k in start if not torch.equal(start[k], end[k])}
    if name == "feature_consistency":
        # Alone, it pulls the model towards its own copy from the stage's start, so from the start
        # the distance is zero up to rounding (which AdamW's normalised steps may still act on).
        assert all(abs(v) < 1e-5 for v in losses)
    elif name == "caption_tags":  # the image tower alone learns to see what the captions name
        assert {"visual", "image_projection"} <= changed and "text" not in changed
    elif name in ("moco", "ema_moco"):
        # MoCo keys carry no gradient (the text side, or its momentum copy, gives them): only images learn.
        assert {"visual", "image_projection"} <= changed and "text" not in changed
    else:  # every tower trained (a loss that ignores the logit scale leaves that one alone)
        assert {"visual", "text", "image_projection", "text_projection"} <= changed


@pytest.mark.parametrize("name", sorted(NOT_IMAGE_TEXT))
def test_a_loss_that_does_not_fit_is_refused_in_one_line(name, tmp_path, shapes, capsys):
    assert _train(tmp_path, shapes, f"loss.name={name}") == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert f"loss {name!r} does not fit image–text training" in err and "logits" in err
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before anything trained


@pytest.mark.parametrize("extra, message", [
    (["loss.name=clipp"], "unknown loss 'clipp'"),
    (["loss.name=combined"], "combined"),
    (["loss.name=vicreg", "loss.kwargs.sim_coef=3"], "sim_coef"),
])
def test_bad_loss_configs_are_one_line(extra, message, tmp_path, shapes, capsys):
    assert _train(tmp_path, shapes, *extra) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err and message in err
    assert err.startswith("mie train: error: loss")
