"""Callbacks: hook order, metrics.jsonl, checkpoints (last / best / periodic), early stopping, progress."""

import io
import json
import re

import pytest
import torch

from mie.io import load_state, load_weights, sha256_file
from mie.training import (
    Callback,
    CallbackList,
    EarlyStopping,
    MetricsLogger,
    ModelCheckpoint,
    ProgressBar,
    ScheduleConfig,
    StageConfig,
)


class Recorder(Callback):
    def __init__(self, log, name="r"):
        self.log, self.name = log, name

    def on_train_begin(self, trainer):
        self.log.append(("train_begin", self.name))

    def on_epoch_begin(self, trainer, epoch):
        self.log.append(("epoch_begin", epoch))

    def on_step_end(self, trainer, step, metrics):
        self.log.append(("step", step) if metrics else ("quiet_step", step))

    def on_stage_end(self, trainer, stage):
        self.log.append(("stage_end", stage))

    def on_validation_end(self, trainer, metrics):
        self.log.append(("val", trainer.epoch))

    def on_checkpoint(self, trainer, path):
        self.log.append(("checkpoint", path.name))

    def on_epoch_end(self, trainer, epoch, metrics):
        self.log.append(("epoch_end", epoch, trainer.epoch))

    def on_train_end(self, trainer, history):
        self.log.append(("train_end", len(history)))


def scored(toys, scores):
    """A regression task whose whole-set validation metrics come from ``scores``, one dict per call."""
    values = iter(scores)

    class Scored(toys.Task):
        def validation_metrics(self):
            return next(values)

    return lambda: Scored(toys.Model())


def test_hook_order(toys, tmp_path):
    log = []
    cfg = toys.config(tmp_path, epochs=2)
    trainer = toys.trainer(toys.Model(), cfg, toys.loader(n=8), val_loader=toys.loader(n=4),
                           callbacks=[Recorder(log, "a"), Recorder(log, "b")])
    trainer.fit()
    assert log[:2] == [("train_begin", "a"), ("train_begin", "b")]
    assert log[2:10] == [("epoch_begin", 0), ("epoch_begin", 0), ("step", 1), ("step", 1), ("step", 2),
                         ("step", 2), ("val", 0), ("val", 0)]
    assert log[10:12] == [("epoch_end", 0, 1), ("epoch_end", 0, 1)]  # trainer.epoch already advanced
    assert log[-2:] == [("train_end", 2), ("train_end", 2)]
    assert sum(1 for entry in log if entry[0] == "step") == 8
    assert not any(entry[0] in ("quiet_step", "stage_end") for entry in log)  # log_every=1, one stage


def test_hook_order_across_stages(toys, tmp_path):
    log = []
    cfg = toys.config(tmp_path, stages=[StageConfig(steps=2), StageConfig(steps=1)],  # 2 steps per epoch
                      schedule=ScheduleConfig(name="constant", warmup_steps=0))
    trainer = toys.trainer(toys.Model(), cfg, toys.loader(n=8), callbacks=[Recorder(log), ModelCheckpoint()])
    trainer.fit()
    assert log == [("train_begin", "r"), ("epoch_begin", 0), ("step", 1), ("step", 2), ("epoch_end", 0, 1),
                   ("checkpoint", "stage0.safetensors"), ("stage_end", 0), ("checkpoint", "last.safetensors"),
                   ("epoch_begin", 0), ("step", 3), ("epoch_end", 0, 0),  # stage 1 ends inside its epoch 0
                   ("checkpoint", "stage1.safetensors"), ("stage_end", 1), ("checkpoint", "last.safetensors"),
                   ("train_end", 2)]


def test_step_metrics_only_on_logged_steps(toys, tmp_path):
    log, seen = [], {}

    class Metrics(Callback):
        def on_step_end(self, trainer, step, metrics):
            seen[step] = dict(metrics)

    trainer = toys.trainer(toys.Model(), toys.config(tmp_path, epochs=1, log_every=3), toys.loader(n=28),
                           callbacks=[Recorder(log), Metrics()])
    trainer.fit()
    assert [e for e in log if "step" in e[0]] == [("quiet_step", 1), ("quiet_step", 2), ("step", 3),
                                                  ("quiet_step", 4), ("quiet_step", 5), ("step", 6),
                                                  ("quiet_step", 7)]
    # A logged step's train/loss is the mean over the steps since the previous log.
    losses = [float(v) for v in trainer.task.seen_losses]
    assert seen[3]["train/loss"] == pytest.approx(sum(losses[:3]) / 3)
    assert seen[6]["train/loss"] == pytest.approx(sum(losses[3:6]) / 3)
    assert trainer.last_step_metrics == seen[6]


def test_metrics_jsonl(toys, tmp_path):
    cfg = toys.config(tmp_path, epochs=2, log_every=2)
    trainer = toys.trainer(toys.Model(), cfg, toys.loader(n=12), val_loader=toys.loader(n=4),
                           callbacks=[MetricsLogger()])
    history = trainer.fit()
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in lines if r["event"] == "step"]
    epochs = [r for r in lines if r["event"] == "epoch"]
    assert [r["step"] for r in steps] == [2, 4, 6]  # 3 steps per epoch, every 2nd logged
    assert [r["epoch"] for r in steps] == [0, 1, 1]
    assert all({"train/loss", "train/lr", "train/samples_per_sec"} <= set(r) for r in steps)
    assert all(r["stage"] == 0 for r in lines)
    assert [r["epoch"] for r in epochs] == [0, 1]
    assert epochs[1]["val/loss"] == pytest.approx(history[1]["val/loss"])
    assert epochs[0]["train/loss"] == pytest.approx(history[0]["train/loss"])


def test_model_checkpoint_last_best_and_periodic(toys, tmp_path):
    task = scored(toys, [{"score": 0.5}, {"score": 0.2}, {"score": 0.7}])()
    ckpt = ModelCheckpoint(every_n_steps=2, keep_last_n=2, monitor="val/score", mode="max")
    cfg = toys.config(tmp_path, epochs=3)
    trainer = toys.trainer(None, cfg, toys.loader(n=12), val_loader=toys.loader(n=4), callbacks=[ckpt], task=task)
    trainer.fit()
    directory = tmp_path / "run" / "checkpoints"
    names = sorted(p.name for p in directory.iterdir())
    assert names == ["best.json", "best.safetensors", "commits", "last.json", "last.safetensors", "last_state.pt",
                     "manifest.json", "step_000006.json", "step_000006.safetensors", "step_000008.json",
                     "step_000008.safetensors"]
    manifest = json.loads((directory / "manifest.json").read_text())
    committed = directory / "commits" / manifest["commit"]
    assert [p.name for p in (directory / "commits").iterdir()] == [manifest["commit"]]  # older commits removed
    assert sorted(p.name for p in committed.iterdir()) == sorted(manifest["files"]) == [
        "best.json", "best.safetensors", "last.json", "last.safetensors", "last_state.pt"]
    for name, entry in manifest["files"].items():  # the friendly names are the committed files
        assert (directory / name).samefile(committed / name) and entry["sha256"] == sha256_file(committed / name)
    best, meta = load_weights(directory / "best.safetensors")
    assert meta["step"] == 9 and meta["best_score"] == 0.7 and meta["metrics"]["val/score"] == 0.7
    assert meta["config"]["project_name"] == "t" and meta["kind"] == "best"
    for name, tensor in trainer.model.state_dict().items():
        assert torch.equal(best[name], tensor)  # best was the last epoch here
    assert ckpt.best_score == 0.7 and ckpt.best_step == 9
    state = load_state(directory / "last_state.pt")
    assert state["global_step"] == 9 and state["callbacks"]["ModelCheckpoint"]["best_score"] == 0.7


def test_best_is_kept_when_later_epochs_are_worse(toys, tmp_path):
    cfg = toys.config(tmp_path, epochs=3)  # best_metric val/loss, mode min
    snapshots = {}

    class Snap(Callback):
        def on_validation_end(self, trainer, metrics):
            snapshots[trainer.global_step] = {k: v.clone() for k, v in trainer.model.state_dict().items()}

    task = scored(toys, [{"loss": 0.3}, {"loss": 0.9}, {"loss": 0.1}])()
    trainer = toys.trainer(None, cfg, toys.loader(n=8), val_loader=toys.loader(n=4),
                           callbacks=[Snap(), ModelCheckpoint()], task=task)
    trainer.fit()
    best, meta = load_weights(tmp_path / "run" / "checkpoints" / "best.safetensors")
    assert meta["step"] == 6 and meta["best_score"] == 0.1
    out = tmp_path / "second"
    snapshots.clear()
    task = scored(toys, [{"loss": 0.3}, {"loss": 0.9}, {"loss": 0.5}])()
    trainer = toys.trainer(None, toys.config(out, epochs=3), toys.loader(n=8), val_loader=toys.loader(n=4),
                           callbacks=[Snap(), ModelCheckpoint()], task=task)
    trainer.fit()
    best, meta = load_weights(out / "run" / "checkpoints" / "best.safetensors")
    assert meta["step"] == 2 and meta["best_score"] == 0.3
    for name, tensor in snapshots[2].items():
        assert torch.equal(best[name], tensor)


def test_missing_monitor_warns_once(toys, tmp_path):
    cfg = toys.config(tmp_path, epochs=2, best_metric="val/mean_r1")
    trainer = toys.trainer(toys.Model(), cfg, toys.loader(n=8), val_loader=toys.loader(n=4),
                           callbacks=[ModelCheckpoint()])
    with pytest.warns(UserWarning, match="'val/mean_r1' not among validation metrics") as caught:
        trainer.fit()
    assert len([w for w in caught if "val/mean_r1" in str(w.message)]) == 1
    assert not (tmp_path / "run" / "checkpoints" / "best.safetensors").exists()
    assert (tmp_path / "run" / "checkpoints" / "last.safetensors").exists()


def test_early_stopping(toys, tmp_path):
    task = scored(toys, [{"loss": v} for v in (1.0, 0.5, 0.6, 0.55, 0.4, 0.3)])()
    stopper = EarlyStopping(monitor="val/loss", mode="min", patience=2)
    trainer = toys.trainer(None, toys.config(tmp_path, epochs=6), toys.loader(n=8),
                           val_loader=toys.loader(n=4), callbacks=[stopper], task=task)
    history = trainer.fit()
    assert len(history) == 4 and stopper.best == 0.5 and stopper.bad_epochs == 2
    assert trainer.notices == ["early stopping: val/loss has not improved for 2 validations; stopped at step 8"]
    clone = EarlyStopping()
    clone.load_state_dict(stopper.state_dict())
    assert clone.best == 0.5 and clone.bad_epochs == 2
    with pytest.raises(ValueError, match="'val/nope'"):
        EarlyStopping(monitor="val/nope").on_validation_end(trainer, {"val/loss": 1.0})
    with pytest.raises(ValueError, match="mode='up'"):
        EarlyStopping(mode="up")


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_rewrites_a_terminal_line_and_prints_plain_lines_to_a_log(toys, tmp_path):
    tty, pipe, quiet = FakeTTY(), io.StringIO(), FakeTTY()
    cfg = toys.config(tmp_path, epochs=2, log_every=1)  # 12 steps
    toys.trainer(toys.Model(), cfg, toys.loader(n=24), callbacks=[
        ProgressBar(tty), ProgressBar(pipe, every_fraction=0.25), ProgressBar(quiet, quiet=True)]).fit()
    text = tty.getvalue()
    assert text.count("\r") == 12 and "\repoch 1 step 1/12 (8%) loss" in text
    assert re.search(r"\repoch 2 step 12/12 \(100%\) loss \d+\.\d{4} lr [\d.e+-]+ \d+ samples/s elapsed 0:0\d ETA 0:00",
                     text)
    assert "epoch 1 done: train/loss" in text and "epoch 2 done: train/loss" in text
    lines = pipe.getvalue().splitlines()  # a log: no carriage returns, a line every quarter of the stage
    assert "\r" not in pipe.getvalue()
    steps = [int(re.search(r"step (\d+)/12", line).group(1)) for line in lines if " step " in line]
    assert steps == [3, 6, 9, 12]
    assert [line for line in lines if "done" in line] == [line for line in lines if line.startswith("epoch ") and
                                                          "done:" in line]
    assert quiet.getvalue() == ""


def test_progress_bar_plain_lines_also_come_by_time(toys, tmp_path):
    pipe = io.StringIO()
    cfg = toys.config(tmp_path, epochs=1, log_every=1)
    toys.trainer(toys.Model(), cfg, toys.loader(n=24), callbacks=[
        ProgressBar(pipe, every_fraction=1.0, every_seconds=0.0)]).fit()
    assert [line.split(" (")[0] for line in pipe.getvalue().splitlines() if " step " in line] == [
        f"epoch 1 step {i}/6" for i in range(1, 7)]


def test_callback_list_state_keys():
    a, b = EarlyStopping(), EarlyStopping()
    a.best, b.best = 1.0, 2.0
    callbacks = CallbackList([a, b, Callback()])
    state = callbacks.state_dict()
    assert set(state) == {"EarlyStopping", "EarlyStopping_2"}
    fresh = CallbackList([EarlyStopping(), EarlyStopping()])
    fresh.load_state_dict(state)
    assert [cb.best for cb in fresh] == [1.0, 2.0]
    fresh.append(Callback())
    assert len(fresh) == 3
