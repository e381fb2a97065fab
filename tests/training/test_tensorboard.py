"""TensorBoard event files hold the same numbers as metrics.jsonl, with no duplicate step after a resume."""

from __future__ import annotations

import json

import pytest
import torch

from mie.errors import ConfigError
from mie.training.tensorboard import TensorBoardLogger

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def _scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    acc = event_accumulator.EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _trainer(toys, tmp_path, epochs=2):
    torch.manual_seed(0)
    cfg = toys.config(tmp_path, epochs=epochs, tensorboard=True, checkpoint_every_steps=3)
    return toys.trainer(toys.Model(), cfg, toys.loader(), val_loader=toys.loader(n=8, shuffle=False), callbacks=None,
                        quiet=True)


def test_tensorboard_matches_metrics_jsonl(toys, tmp_path):
    trainer = _trainer(toys, tmp_path)
    assert any(isinstance(cb, TensorBoardLogger) for cb in trainer.callbacks)  # switched on by the config
    trainer.fit()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    scalars = _scalars(tmp_path / "run" / "tensorboard")
    steps = [r for r in rows if r["event"] == "step"]
    assert [s for s, _ in scalars["train/loss"]] == [r["step"] for r in steps] == list(range(1, 13))
    assert [v for _, v in scalars["train/loss"]] == pytest.approx([r["train/loss"] for r in steps], rel=1e-6)
    epochs = [r for r in rows if r["event"] == "epoch"]
    assert scalars["val/loss"] == [(r["step"], pytest.approx(r["val/loss"], rel=1e-6)) for r in epochs]


def test_a_resume_leaves_no_duplicate_steps(toys, tmp_path):
    _trainer(toys, tmp_path, epochs=1).fit()  # 6 steps, checkpoint at 3 and 6
    resumed = _trainer(toys, tmp_path, epochs=2)
    resumed.fit(resume_from=tmp_path / "run")
    steps = [s for s, _ in _scalars(tmp_path / "run" / "tensorboard")["train/loss"]]
    assert steps == list(range(1, 13))


def test_without_the_package_it_is_one_config_error(toys, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ConfigError, match=r"tensorboard: needs the tensorboard package — pip install tensorboard"):
        _trainer(toys, tmp_path).fit()
