"""Issue 30 item 3: ``mie train CONFIG --resume RUN_DIR`` continues RUN_DIR with its own saved config (and
says so), so a CONFIG of other shapes no longer fails on the first tensor; ``mie train RUN_DIR --resume``
reads the same saved config."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml
from tests.tiny import TINY as TINY_CLIP
from tests.tiny import TINY_CLIP_MODEL

from mie.cli import main
from mie.cli.train import resume_run_dir

TINY = {**TINY_CLIP, "epochs": 1}  # the tiny clip config of tests/api, one epoch (3 steps)


def _write(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def _steps(run: Path) -> list[int]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [row["step"] for row in rows if "val/loss" in row or "val/mean_R@1" in row]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A one-epoch tiny run (3 steps) and the config that trained it."""
    root = tmp_path_factory.mktemp("resume")
    raw = json.loads(json.dumps(TINY))
    raw["output_dir"], raw["data"]["path"] = str(root / "run"), str(root / "data")
    config = _write(root / "tiny.yaml", raw)
    assert main(["train", str(config), "-q"]) == 0
    return root / "run", config


def test_resume_with_another_config_uses_the_runs_saved_config_and_says_so(trained, tmp_path, caplog):
    run, _ = trained
    other = json.loads(json.dumps(TINY))
    other["model"] = {**TINY_CLIP_MODEL, "embed_dim": 32, "text_width": 32}  # other shapes: its tensors cannot load
    other["output_dir"] = str(tmp_path / "elsewhere")
    config = _write(tmp_path / "other.yaml", other)
    with caplog.at_level(logging.INFO, logger="mie"):
        assert main(["train", str(config), "--resume", str(run), "--set", "epochs=2"]) == 0
    assert (f"resuming {run} with its saved config {run / 'config.yaml'} ({config} is not used; --set overrides "
            "apply on top)") in caplog.messages
    assert any(m.startswith("resumed from step 3 (stage 0, epoch 2)") for m in caplog.messages)
    assert _steps(run)[-1] == 6  # the second epoch trained in the run's own folder
    assert not (tmp_path / "elsewhere").exists()
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["embed_dim"] == TINY_CLIP_MODEL["embed_dim"] and saved["epochs"] == 2


def test_a_run_directory_as_the_config_reads_its_saved_config(trained, caplog):
    run, _ = trained
    with caplog.at_level(logging.INFO, logger="mie"):
        assert main(["train", str(run), "--resume", "--set", "epochs=3"]) == 0
    assert f"resuming {run} with its saved config" in caplog.messages
    assert _steps(run)[-1] == 9


def test_a_state_file_names_its_run(tmp_path):
    assert resume_run_dir(tmp_path / "run" / "checkpoints" / "last_state.pt") == tmp_path / "run"
    assert resume_run_dir(tmp_path) == tmp_path
