"""`mie train --resume` after a kill at the worst moments of a real clip run finishes the interrupted
work (final validation, evaluation and report included) with the results of an uninterrupted run."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import yaml
from tests.tiny import TINY_CLIP_MODEL, strip_wall_clock

from mie.cli import main
from mie.io import load_weights
from mie.io.faults import SimulatedKill, inject

TINY = {
    "recipe": "clip", "project_name": "kill", "epochs": 3, "log_every": 1, "checkpoint_every_steps": 2,
    "best_metric": "val/mean_R@1", "device": "cpu",
    "model": TINY_CLIP_MODEL,
    "data": {"format": "synthetic", "batch_size": 8, "test_splits": ["test"],
             "synthetic": {"num_train": 24, "num_val": 8, "num_test": 8, "num_heldout": 4, "image_size": 24}},
    "tokenizer": {"name": "simple"},
    "schedule": {"warmup_steps": 1},
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The config file and the outcome of one uninterrupted run (and the fault points it passed)."""
    root = tmp_path_factory.mktemp("kill")
    raw = json.loads(json.dumps(TINY))
    raw["data"]["path"] = str(root / "data")
    config = root / "cfg.yaml"
    config.write_text(yaml.safe_dump(raw))
    with inject("never") as seen:
        assert main(["train", str(config), "--output-dir", str(root / "ref"), "-q"]) == 0
    return config, _outcome(root / "ref"), list(seen)


def _outcome(run: Path) -> dict:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    last, _ = load_weights(run / "checkpoints" / "last.safetensors")
    best, _ = load_weights(run / "checkpoints" / "best.safetensors")
    return {"results": strip_wall_clock(json.loads((run / "results.json").read_text())), "rows": strip_wall_clock(rows),
            "last": last, "best": best}


def _assert_same(a: dict, b: dict) -> None:
    assert a["results"] == b["results"]
    assert a["rows"] == b["rows"]
    steps = [r["step"] for r in a["rows"] if r["event"] == "step"]
    assert steps == sorted(set(steps))  # no duplicate step lines after the resume
    for key in ("last", "best"):
        assert a[key].keys() == b[key].keys()
        assert all((a[key][k] == b[key][k]).all() for k in a[key])


def _nth_from_end(seen: list[str], point: str, back: int = 0) -> tuple[str, int]:
    return point, seen.count(point) - back


@pytest.mark.parametrize("case", [
    "best sidecar of the final save",   # weights written, sidecar not: issue 11 item 2
    "state of the final save unpublished",
    "after the final publish",          # state at max_steps: issue 11 item 3
    "during the report",
])
def test_resume_after_a_kill_ends_like_an_uninterrupted_run(setup, tmp_path, monkeypatch, case):
    config, reference, seen = setup
    run = tmp_path / "run"
    argv = ["train", str(config), "--output-dir", str(run), "-q"]
    if case == "during the report":
        clip_run = importlib.import_module("mie.recipes.clip.run")

        def killed(*args, **kwargs):
            raise SimulatedKill("killed while writing the report")

        monkeypatch.setattr(clip_run, "write_report", killed)
        with pytest.raises(SimulatedKill):
            main(argv)
        monkeypatch.undo()
    else:
        point = {"best sidecar of the final save": "save_weights:sidecar",
                 "state of the final save unpublished": "commit:write:last_state.pt",
                 "after the final publish": "commit:published"}[case]
        name, n = _nth_from_end(seen, point)
        if case == "best sidecar of the final save":  # the last commit that wrote best.safetensors
            writes = [i for i, p in enumerate(seen) if p == "commit:write:best.safetensors"]
            n = seen[:writes[-1] + 2].count(name)
        with pytest.raises(SimulatedKill), inject(name, times=n):
            main(argv)
    assert not (run / "results.json").exists()
    assert main([*argv, "--resume"]) == 0
    _assert_same(_outcome(run), reference)
    assert main(["eval", str(run), "-q"]) == 0  # the resumed run evaluates like any other


def test_resume_before_any_checkpoint_starts_fresh(setup, tmp_path):
    config, reference, _ = setup
    run = tmp_path / "run"
    with pytest.raises(SimulatedKill), inject("commit:manifest", times=1):
        main(["train", str(config), "--output-dir", str(run), "-q"])
    assert not (run / "checkpoints" / "manifest.json").exists()
    (run / ".results.json.mie-tmp-x1y2z3w4").write_text("left by a killed write")
    assert main(["train", str(config), "--output-dir", str(run), "-q", "--resume"]) == 0
    _assert_same(_outcome(run), reference)
    assert not list(run.glob(".*.mie-tmp-*"))


def test_a_nan_loss_is_one_line_naming_the_step_and_the_run_stays_resumable(setup, tmp_path, monkeypatch, capsys):
    from mie.training.tasks import ContrastiveTask

    config, reference, _ = setup
    run = tmp_path / "run"
    forward = ContrastiveTask.training_forward
    calls = []

    def poisoned(self, batch):
        out = forward(self, batch)
        calls.append(1)
        return {**out, "loss": out["loss"] * float("nan")} if len(calls) == 5 else out

    monkeypatch.setattr(ContrastiveTask, "training_forward", poisoned)
    assert main(["train", str(config), "--output-dir", str(run), "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"mie train: error: training of {run}: loss is nan at step 5 (stage 0, epoch 1) — lower the "
                   "learning rate, use fp32/bf16 or check the data; the last checkpoint is kept"]
    monkeypatch.undo()
    assert main(["train", str(config), "--output-dir", str(run), "-q", "--resume"]) == 0
    _assert_same(_outcome(run), reference)  # the poisoned step is recomputed from the step-4 checkpoint


def test_a_read_only_output_directory_is_one_line_and_the_run_is_kept(setup, tmp_path, monkeypatch, capsys):
    import errno
    import tempfile

    config, reference, _ = setup
    run = tmp_path / "run"
    assert main(["train", str(config), "--output-dir", str(run), "-q"]) == 0
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    mkstemp = tempfile.mkstemp

    def read_only(*args, **kwargs):  # root ignores chmod, so the file system's answer is injected
        if str(kwargs.get("dir", "")).startswith(str(run)):
            raise OSError(errno.EROFS, "Read-only file system", str(kwargs["dir"]))
        return mkstemp(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    capsys.readouterr()
    assert main(["train", str(config), "--output-dir", str(run), "-q", "--resume"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mie train: error: ") and "Traceback" not in err[0]
    assert err[0].endswith(": the file system is read-only — choose a writable output_dir")
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_a_second_fresh_run_into_a_trained_run_is_refused_untouched(setup, tmp_path, capsys):
    config, reference, _ = setup
    run = tmp_path / "run"
    argv = ["train", str(config), "--output-dir", str(run), "-q"]
    assert main(argv) == 0
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(argv) == 1
    step = json.loads((run / "checkpoints" / "manifest.json").read_text())["step"]
    assert capsys.readouterr().err.strip() == (
        f"mie train: error: output_dir {run}: already holds a trained run (checkpoint at step {step}) — pass "
        "--resume to continue it, --overwrite to train it again from scratch, or choose another output_dir")
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    assert main([*argv, "--overwrite"]) == 0
    _assert_same(_outcome(run), reference)  # a clean restart: no line or best left from the first run
