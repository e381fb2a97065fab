"""Issue 27, recipe skeleton: a run directory opens and closes as a context manager (a body that raises
still leaves the process group), and one function writes every recipe's training summary."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch.distributed as dist

from mie.io.ownership import read_marker
from mie.recipes import run_dir as run_dir_module
from mie.recipes.run_dir import Run, run_directory, training_summary


def _config(folder: Path) -> SimpleNamespace:
    return SimpleNamespace(output_dir=str(folder), ddp_timeout_s=30.0, recipe="lm")


@pytest.fixture
def one_process_group(tmp_path, monkeypatch):
    """``init_distributed`` joins a real one-process gloo group, as it would under torchrun."""
    def join(timeout_s: float) -> None:
        dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)

    monkeypatch.setattr(run_dir_module, "init_distributed", join)
    yield
    if dist.is_initialized():  # only when the test failed: leave no group for the next test
        dist.destroy_process_group()


def test_a_body_that_raises_still_leaves_the_process_group(tmp_path, one_process_group):
    folder = tmp_path / "run"
    with pytest.raises(RuntimeError, match="boom"), run_directory(_config(folder), None) as run:
        assert dist.is_initialized() and run.main and run.resume is None and run.dir == folder
        raise RuntimeError("boom")
    assert not dist.is_initialized()
    assert read_marker(folder) is not None  # the folder was claimed before the body ran


def test_a_body_that_returns_leaves_the_process_group(tmp_path, one_process_group):
    with run_directory(_config(tmp_path / "run"), None):
        assert dist.is_initialized()
    assert not dist.is_initialized()


def test_a_refused_folder_leaves_the_process_group(tmp_path, one_process_group):
    folder = tmp_path / "theirs"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine\n")
    with pytest.raises(Exception, match="output_dir"), run_directory(_config(folder), None):
        pytest.fail("the body of a refused folder must not run")
    assert not dist.is_initialized()


class _Trainer:
    def __init__(self, notices: list[str]) -> None:
        self.global_step, self.epoch, self.notices, self.fitted_from = 40, 2, notices, "unset"

    def fit(self, resume_from=None) -> None:
        self.fitted_from = resume_from

    def elapsed_seconds(self) -> float:
        return 8.0


def test_training_summary_has_the_shared_fields_first_then_rates_fields_and_notes():
    summary = training_summary(_Trainer(["stopped at max_minutes."]), 8.0,
                               {"tokens_per_s": (4000, None), "images_per_s": (100, 1)}, epochs=1.5, extra="x")
    assert summary == {"steps": 40, "epochs": 1.5, "wall_time_s": 8.0, "tokens_per_s": 500,
                       "images_per_s": 12.5, "extra": "x", "notes": "stopped at max_minutes."}
    assert list(summary) == ["steps", "epochs", "wall_time_s", "tokens_per_s", "images_per_s", "extra", "notes"]
    assert isinstance(summary["tokens_per_s"], int)
    assert "notes" not in training_summary(_Trainer(["x"]), 1.0, notes=False)
    assert "notes" not in training_summary(_Trainer([]), 1.0)


def test_run_fit_times_a_fresh_run_by_the_trainer_and_records_a_resumed_runs_config(tmp_path, monkeypatch):
    saved = []
    monkeypatch.setattr(run_dir_module, "save_run_config", lambda config, folder: saved.append((config, folder)))
    trainer = _Trainer([])
    assert Run(tmp_path, None, True).fit(trainer, "config") == 8.0 and trainer.fitted_from is None and not saved
    seconds = Run(tmp_path, tmp_path / "last", True).fit(trainer, "config")
    assert trainer.fitted_from == tmp_path / "last" and seconds < 8.0 and saved == [("config", tmp_path)]
    Run(tmp_path, tmp_path / "last", False).fit(trainer, "config")  # only rank 0 writes
    assert len(saved) == 1
