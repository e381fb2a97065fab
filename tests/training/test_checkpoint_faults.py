"""Kills, full disks and NaNs at every phase of a checkpoint save: a resumed run ends exactly where an
uninterrupted one does, and nothing half-written is ever loaded."""

from __future__ import annotations

import errno
import json

import pytest
import torch

from mie.errors import CheckpointError, NonFiniteLossError
from mie.io import load_weights
from mie.io.faults import SimulatedKill, inject
from mie.io.store import CheckpointStore
from mie.training import BaseTrainer, MetricsLogger, ModelCheckpoint

VOLATILE = ("time", "train/samples_per_sec")


def _train(toys, run, resume: bool = False):
    """Three epochs of 6 steps, a checkpoint every 4 steps, validation (and best) every epoch."""
    cfg = toys.config(run, epochs=3, checkpoint_every_steps=4)
    torch.manual_seed(0)  # a fresh process: the model starts from the same initial weights
    trainer = toys.trainer(toys.Model(), cfg, toys.loader(), val_loader=toys.loader(n=8, shuffle=False),
                           callbacks=[MetricsLogger(), ModelCheckpoint()])
    start = BaseTrainer.find_resume_state(run / "run") if resume else None
    trainer.fit(resume_from=start)
    return trainer


def _rows(run):
    rows = [json.loads(line) for line in (run / "run" / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in VOLATILE} for row in rows]


def _outcome(toys, run, trainer):
    best, _ = load_weights(run / "run" / "checkpoints" / "best.safetensors")
    return {"weights": {k: v.clone() for k, v in trainer.model.state_dict().items()}, "best": best,
            "history": trainer.history, "rows": _rows(run)}


def _same(a, b):
    assert a["history"] == b["history"]
    assert a["rows"] == b["rows"]  # no duplicate or missing metrics lines after the resume
    for key in ("weights", "best"):
        assert a[key].keys() == b[key].keys()
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key])


@pytest.fixture(scope="module")
def phases(tmp_path_factory):
    """Every fault point one run passes, in order (with repeats)."""
    import tests.training.conftest as toys_module

    class Toys:
        Model, config, loader, trainer = (toys_module.ToyRegression, staticmethod(toys_module.make_config),
                                          staticmethod(toys_module.make_loader),
                                          staticmethod(toys_module.make_trainer))

    with inject("never") as seen:
        _train(Toys, tmp_path_factory.mktemp("phases"))
    return list(seen)


def test_a_save_goes_through_named_phases(phases):
    one_commit = phases[:phases.index("commit:cleanup") + 1]
    assert one_commit == ["commit:write:last.safetensors", "save_weights:sidecar", "commit:write:last.json",
                          "commit:write:last_state.pt", "commit:manifest", "commit:published",
                          "commit:link:last.safetensors", "commit:link:last.json", "commit:link:last_state.pt",
                          "commit:cleanup"]
    assert "commit:write:best.safetensors" in phases and "commit:carry:best.safetensors" in phases


def _cases(phases):
    """(point, n): each phase at its first and its last arrival, so the final step's saves are killed too."""
    cases = []
    for point in dict.fromkeys(phases):
        total = phases.count(point)
        cases += [(point, 1)] + ([(point, total)] if total > 1 else [])
    return cases


def test_a_kill_at_any_phase_of_any_save_resumes_to_the_same_end(toys, tmp_path, phases):
    reference = _outcome(toys, tmp_path / "ref", _train(toys, tmp_path / "ref"))
    cases = _cases(phases)
    assert len(cases) >= 20
    for i, (point, n) in enumerate(cases):
        run = tmp_path / f"kill{i}"
        with pytest.raises(SimulatedKill), inject(point, times=n):
            _train(toys, run)
        store = CheckpointStore(run / "run" / "checkpoints")
        store.manifest()  # whatever the moment, the published manifest is readable (or absent)
        resumed = _train(toys, run, resume=True)
        try:
            _same(_outcome(toys, run, resumed), reference)
        except AssertionError as exc:
            raise AssertionError(f"killed at {point} #{n}: {exc}") from None
        leftovers = [p.name for p in (run / "run" / "checkpoints").rglob(".*.mie-tmp-*")]
        assert leftovers == [] and len(list((run / "run" / "checkpoints" / "commits").iterdir())) == 1


def test_a_kill_leaves_the_previous_commit_complete(toys, tmp_path):
    with pytest.raises(SimulatedKill), inject("commit:manifest", times=2):  # the second save, unpublished
        _train(toys, tmp_path)
    store = CheckpointStore(tmp_path / "run" / "checkpoints")
    assert store.manifest()["step"] == 4
    state = BaseTrainer.read_checkpoint(tmp_path / "run")
    assert state["global_step"] == 4  # every file checksummed against the manifest on the way


def test_the_last_save_at_the_final_step_includes_the_final_validation(toys, tmp_path):
    trainer = _train(toys, tmp_path)
    state = BaseTrainer.read_checkpoint(tmp_path / "run")
    assert state["global_step"] == 18 and not state["epoch_open"] and len(state["history"]) == 3
    assert state["history"] == trainer.history


def test_a_corrupt_state_file_is_refused_not_loaded(toys, tmp_path):
    _train(toys, tmp_path)
    state = tmp_path / "run" / "checkpoints" / "last_state.pt"
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit (the friendly name is a link to the committed file)
    state.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"last_state.pt: does not match the checksum in .*manifest.json — "):
        BaseTrainer.read_checkpoint(tmp_path / "run")


def test_a_state_from_another_architecture_is_one_clear_error(toys, tmp_path):
    _train(toys, tmp_path)
    wider = toys.trainer(torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Linear(16, 1)),
                         toys.config(tmp_path), toys.loader(), callbacks=[])
    with pytest.raises(CheckpointError, match=r"does not fit this model and trainer \(.*Missing key\(s\) in state_dict: \"model.0.weight\""):
        wider.fit(resume_from=tmp_path / "run")


def test_a_full_disk_during_a_save_keeps_the_previous_checkpoint(toys, tmp_path, monkeypatch):
    import mie.io.faults as faults

    def disk_full(name):
        if name == "commit:write:last_state.pt" and faults_seen.append(name) is None and len(faults_seen) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", "last_state.pt")

    faults_seen: list[str] = []
    monkeypatch.setattr(faults, "_hook", disk_full)
    with pytest.raises(OSError, match="No space left"):
        _train(toys, tmp_path)
    monkeypatch.setattr(faults, "_hook", None)
    assert CheckpointStore(tmp_path / "run" / "checkpoints").manifest()["step"] == 4
    reference = _outcome(toys, tmp_path / "ref", _train(toys, tmp_path / "ref"))
    _same(_outcome(toys, tmp_path, _train(toys, tmp_path, resume=True)), reference)


def test_a_nan_batch_stops_with_the_steps_named_and_the_checkpoint_kept(toys, tmp_path):
    class NanAfter(toys.Task):
        def training_forward(self, batch):
            out = super().training_forward(batch)
            if self.training and self.calls >= 6:
                out["loss"] = out["loss"] * float("nan")
            self.calls += 1
            return out

    task = NanAfter(toys.Model())
    task.calls = 0
    trainer = toys.trainer(None, toys.config(tmp_path, checkpoint_every_steps=4), toys.loader(),
                           callbacks=[ModelCheckpoint()], task=task)
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 7 \(stage 0, epoch 1\) — "):
        trainer.fit()
    assert BaseTrainer.read_checkpoint(tmp_path / "run")["global_step"] == 4  # the last periodic commit
