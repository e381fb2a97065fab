"""Stages: freezing and lr multipliers by name, multistage runs, limits, exact resume, the hot path."""

import io
import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import mie.training.base
from mie.io import load_weights
from mie.training import (
    Callback,
    MetricsLogger,
    ModelCheckpoint,
    ProgressBar,
    ScheduleConfig,
    StageConfig,
    lr_multiplier,
)
from mie.training.stages import matches


class Towers(nn.Module):
    """Two small towers and a head, with names like a dual encoder's (``visual.*``, ``text.*``)."""

    def __init__(self):
        super().__init__()
        self.visual = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 4))
        self.text = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 4))
        self.head = nn.Linear(8, 1)

    def forward(self, x):
        return self.head(torch.cat([self.visual(x), self.text(x)], dim=-1))


class Snapshots(Callback):
    """The model's weights at each stage's end, and the stages seen at every step."""

    def __init__(self):
        self.at_stage_end, self.step_stages, self.lrs, self.losses, self.used = {}, [], {}, {}, {}

    def on_step_end(self, trainer, step, metrics):
        self.step_stages.append(trainer.stage)
        self.lrs[step] = [g["lr"] for g in trainer.optimizer.param_groups]
        if metrics:
            self.losses[step] = metrics["train/loss"]
            self.used[step] = (trainer.stage, trainer.stage_step, metrics["train/lr"])

    def on_stage_end(self, trainer, stage):
        self.at_stage_end[stage] = {k: v.clone() for k, v in trainer.model.state_dict().items()}


def _stages(toys, tmp_path, stages, **cfg):
    return toys.config(tmp_path, stages=stages, schedule=ScheduleConfig(name="constant", warmup_steps=0), **cfg)


def test_matches_globs_and_plain_prefixes():
    assert matches("visual.0.weight", "visual.*") and matches("visual.0.weight", "visual")
    assert matches("text.0.bias", "text.0") and matches("text.0.bias", "text.0.") and matches("head", "head")
    assert not matches("text.01.bias", "text.0") and not matches("textual.0.bias", "text")
    assert matches("a.b_projection.weight", "*_projection.*") and matches("anything", "*")


def test_freeze_patterns_freeze_exactly_the_matched_parameters(toys, tmp_path):
    torch.manual_seed(1)
    model = Towers()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    snaps = Snapshots()
    stages = [StageConfig(steps=3, freeze=["visual.*", "text.0"]), StageConfig(steps=3, freeze=["head"])]
    trainer = toys.trainer(model, _stages(toys, tmp_path, stages), toys.loader(), callbacks=[snaps])
    in_optimizer = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    frozen0 = {"visual.0.weight", "visual.0.bias", "visual.2.weight", "visual.2.bias", "text.0.weight", "text.0.bias"}
    for name, param in model.named_parameters():
        assert param.requires_grad == (name not in frozen0), name
        assert (id(param) in in_optimizer) == (name not in frozen0), name
    trainer.fit()
    after0, after1 = snaps.at_stage_end[0], snaps.at_stage_end[1]
    for name in start:
        assert torch.equal(after0[name], start[name]) == (name in frozen0), name  # stage 0
        assert torch.equal(after1[name], after0[name]) == name.startswith("head."), name  # stage 1
    assert not model.head.weight.requires_grad and model.visual[0].weight.requires_grad


def test_bad_patterns_are_one_line_errors_naming_the_stage(toys, tmp_path):
    def build(stages):
        return toys.trainer(Towers(), _stages(toys, tmp_path, stages), toys.loader(), callbacks=[])

    with pytest.raises(ValueError, match=r"^stages\[1\]\.freeze: pattern 'visul\.\*' matches no parameter") as e:
        build([StageConfig(steps=1), StageConfig(steps=1, freeze=["visul.*"])])
    assert "\n" not in str(e.value) and "visual" in str(e.value)  # the roots are named
    with pytest.raises(ValueError, match=r"^stages\[0\]\.lr_multipliers: pattern 'txt' matches no") as e:
        build([StageConfig(steps=1, lr_multipliers={"txt": 0.1})])
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=r"stages\[0\]\.freeze: every model parameter is frozen"):
        build([StageConfig(steps=1, freeze=["*"])])
    with pytest.raises(ValueError, match=r"stages\[0\]\.batch_size is set but the trainer got a fixed loader"):
        build([StageConfig(steps=1, batch_size=8)])


def test_lr_multipliers_set_each_group_and_the_schedule_scales_them(toys, tmp_path):
    class Tempered(toys.Task):
        """A task parameter outside the model, named ``temperature`` in patterns."""

        def __init__(self, model):
            super().__init__(model)
            self.temperature = nn.Parameter(torch.tensor(1.0))

        def training_forward(self, batch):
            loss = nn.functional.mse_loss(self.model(batch["x"]) * self.temperature, batch["y"])
            return {"loss": loss}

    multipliers = {"visual.2.*": 3.0, "visual.*": 0.1, "text.0": 0.0, "temperature": 10.0, "*": 0.5}
    factor = {"visual.0.weight": 0.1, "visual.0.bias": 0.1, "visual.2.weight": 3.0, "visual.2.bias": 3.0,
              "text.0.weight": 0.0, "text.0.bias": 0.0, "text.2.weight": 0.5, "text.2.bias": 0.5,
              "head.weight": 0.5, "head.bias": 0.5, "temperature": 10.0}
    schedule = ScheduleConfig(name="cosine", warmup_steps=2, min_lr_ratio=0.1)
    stage = StageConfig(steps=6, lr=0.02, lr_multipliers=multipliers, schedule=schedule)
    model = Towers()
    task = Tempered(model)
    snaps = Snapshots()
    trainer = toys.trainer(model, toys.config(tmp_path, stages=[stage]), toys.loader(), callbacks=[snaps],
                           task=task)
    names = {id(p): n.removeprefix("model.") for n, p in task.named_parameters()}
    groups = trainer.optimizer.param_groups
    assert sorted(names[id(p)] for g in groups for p in g["params"]) == sorted(factor)
    group_factor = []
    for group in groups:
        factors = {factor[names[id(p)]] for p in group["params"]}
        assert len(factors) == 1, group["name"]
        group_factor.append(factors.pop())
        assert group["lr"] == pytest.approx(0.02 * group_factor[-1] * 0.5)  # warmup: step 0 at 1/2
        no_decay = group["name"].endswith("/no_decay")
        assert group["weight_decay"] == (0.0 if no_decay else trainer.config.optimizer.weight_decay)
        assert no_decay == all(p.ndim < 2 for p in group["params"])
    start = {k: v.clone() for k, v in model.state_dict().items()}
    trainer.fit()
    for step, lrs in snaps.lrs.items():  # after `step` optimizer steps
        expected = [0.02 * f * lr_multiplier(step, schedule, 6) for f in group_factor]
        assert lrs == pytest.approx(expected)
    for name, value in model.state_dict().items():
        assert torch.equal(value, start[name]) == name.startswith("text.0."), name  # lr 0 leaves text.0 alone
    assert task.temperature.item() != 1.0


def _factory(toys, calls=None):
    def make(batch_size):
        if calls is not None:
            calls.append(batch_size)
        return toys.loader(n=24, batch_size=batch_size)

    return make


def test_three_stages_run_in_order(toys, tmp_path):
    seen = []

    class Recording(toys.Task):
        def on_stage_start(self, index, stage):
            seen.append((index, stage.name))
            self.stage = index

        def training_forward(self, batch):
            seen.append((self.stage, len(batch["x"])))
            return super().training_forward(batch)

    stages = [StageConfig(name="warm", steps=4, batch_size=4),  # 6 batches: stops inside epoch 0
              StageConfig(name="mid", epochs=2, batch_size=6, grad_accum_steps=2, lr=0.02),  # 2 x 2 steps
              StageConfig(name="end", epochs=1, batch_size=8, lr=0.01)]  # 3 steps
    calls, snaps, tty = [], Snapshots(), FakeTTY()
    model = toys.Model()
    cfg = toys.config(tmp_path, stages=stages, schedule=ScheduleConfig(name="cosine", warmup_steps=1))
    trainer = toys.trainer(model, cfg, _factory(toys, calls), task=Recording(model), batch_size=4,
                           callbacks=[snaps, MetricsLogger(), ModelCheckpoint(), ProgressBar(tty)])
    history = trainer.fit()
    assert [s.name for s in trainer.stages] == ["warm", "mid", "end"]
    assert calls == [4, 6, 8]
    assert [e for e in seen if isinstance(e[1], str)] == [(0, "warm"), (1, "mid"), (2, "end")]
    micro = [e for e in seen if isinstance(e[1], int)]
    assert micro == [(0, 4)] * 4 + [(1, 6)] * 8 + [(2, 8)] * 3
    assert snaps.step_stages == [0] * 4 + [1] * 4 + [2] * 3 and trainer.global_step == 11
    assert [(h["stage"], h["epoch"], h["step"]) for h in history] == [(0, 0, 4), (1, 0, 6), (1, 1, 8), (2, 0, 11)]
    # Each stage's schedule starts over from its own lr (warmup of one step, then cosine over the stage).
    lengths, lrs = [4, 4, 3], [0.05, 0.02, 0.01]
    assert [trainer.stages[i].lr for i in range(3)] == lrs
    for stage, stage_step, lr in snaps.used.values():
        assert lr == pytest.approx(lrs[stage] * lr_multiplier(stage_step - 1, cfg.schedule, lengths[stage]))
    assert [u[2] for u in snaps.used.values()][::4] == pytest.approx(lrs)  # steps 1, 5, 9
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in lines if r["event"] == "step"] == snaps.step_stages
    assert [r["stage"] for r in lines if r["event"] == "epoch"] == [0, 1, 1, 2]
    for index in range(3):
        weights, meta = load_weights(tmp_path / "run" / "checkpoints" / f"stage{index}.safetensors")
        assert meta["stage"] == index and meta["stage_name"] == stages[index].name
        for name, tensor in snaps.at_stage_end[index].items():
            assert torch.equal(weights[name], tensor), (index, name)
    assert not torch.equal(snaps.at_stage_end[0]["net.0.weight"], snaps.at_stage_end[1]["net.0.weight"])
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in snaps.at_stage_end[2].items())
    assert "stage 3/3 epoch 1 step 3/3 (100%) loss" in tty.getvalue()


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_max_steps_caps_all_stages_together(toys, tmp_path):
    started, snaps = [], Snapshots()

    class Recording(toys.Task):
        def on_stage_start(self, index, stage):
            started.append(index)

    stages = [StageConfig(steps=4), StageConfig(steps=4), StageConfig(epochs=1)]
    model = toys.Model()
    trainer = toys.trainer(model, _stages(toys, tmp_path, stages, max_steps=6), toys.loader(),
                           task=Recording(model), callbacks=[snaps, ModelCheckpoint()])
    trainer.fit()
    assert trainer.global_step == 6 and snaps.step_stages == [0] * 4 + [1] * 2
    assert started == [0, 1] and trainer.stage == 1 and trainer.total_steps == 2  # stage 1's schedule: 2 steps
    assert not (tmp_path / "run" / "checkpoints" / "stage2.safetensors").exists()
    # Stage 1 was cut short by max_steps: it is not checkpointed as a finished stage.
    assert (tmp_path / "run" / "checkpoints" / "stage0.safetensors").exists()
    assert not (tmp_path / "run" / "checkpoints" / "stage1.safetensors").exists()


def test_zero_accumulation_is_refused(toys, tmp_path):
    with pytest.raises(ValueError, match="grad_accum_steps of stage 0 is 0"):
        toys.trainer(toys.Model(), toys.config(tmp_path, grad_accum_steps=0), toys.loader())


def _staged_run(toys, out, callbacks=(), resume_from=None):
    """Three stages over a dropout model: 4 steps (batch 4), 2 epochs of 4 steps (batch 6), 3 steps."""
    torch.manual_seed(7)
    model = toys.Model(dropout=0.3)
    stages = [StageConfig(steps=4), StageConfig(epochs=2, batch_size=6, lr=0.02),
              StageConfig(epochs=1, batch_size=8, grad_accum_steps=1, lr=0.01)]
    cfg = toys.config(out, stages=stages, schedule=ScheduleConfig(name="cosine", warmup_steps=1))
    snaps = Snapshots()
    trainer = toys.trainer(model, cfg, _factory(toys), batch_size=4, callbacks=[snaps, *callbacks],
                           val_loader=toys.loader(n=8, shuffle=False))
    trainer.fit(resume_from=resume_from)
    return trainer, snaps


class StopAt(Callback):
    def __init__(self, step=None, stage=None):
        self.step, self.stage = step, stage

    def on_step_end(self, trainer, step, metrics):
        if step == self.step:
            trainer.should_stop = True

    def on_stage_end(self, trainer, stage):
        if stage == self.stage:
            trainer.should_stop = True


def test_resume_mid_stage_and_mid_epoch_is_exact(toys, tmp_path):
    full, full_snaps = _staged_run(toys, tmp_path / "a")
    assert full.global_step == 4 + 8 + 3 and len(full_snaps.losses) == 15
    first, first_snaps = _staged_run(toys, tmp_path / "b", [StopAt(step=6), ModelCheckpoint()])
    assert (first.stage, first.stage_step, first.epoch, first.batch_in_epoch) == (1, 2, 0, 2)
    resumed, second_snaps = _staged_run(toys, tmp_path / "c", resume_from=tmp_path / "b" / "run")
    assert sorted(second_snaps.losses) == list(range(7, 16))
    assert {**first_snaps.losses, **second_snaps.losses} == full_snaps.losses  # bit-identical losses
    for name, value in full.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], value), name
    # The stopped run's partial epoch row is kept; after it, the rows are the uninterrupted run's.
    assert resumed.history[: len(first.history)] == first.history
    assert first.history[:-1] + resumed.history[len(first.history):] == full.history


def test_resume_from_a_stage_boundary_is_exact(toys, tmp_path):
    full, full_snaps = _staged_run(toys, tmp_path / "a")
    first, first_snaps = _staged_run(toys, tmp_path / "b", [StopAt(stage=0), ModelCheckpoint()])
    assert first.global_step == 4 and (first.stage, first.stage_step) == (0, 4)
    state_meta = json.loads((tmp_path / "b" / "run" / "checkpoints" / "last.json").read_text())
    assert state_meta["stage"] == 0 and state_meta["step"] == 4
    resumed, second_snaps = _staged_run(toys, tmp_path / "c",
                                        resume_from=tmp_path / "b" / "run" / "checkpoints" / "last_state.pt")
    assert min(second_snaps.losses) == 5 and second_snaps.step_stages[0] == 1
    assert {**first_snaps.losses, **second_snaps.losses} == full_snaps.losses
    assert resumed.history == full.history
    for name, value in full.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], value), name


def test_hot_path_syncs_only_on_logged_steps(toys, tmp_path, monkeypatch):
    """With log_every=4 the trainer turns no tensor into a Python value on steps 1-3, 5-7, 9-11."""
    training_dir = str(Path(mie.training.base.__file__).parent)
    syncs = {"n": 0}

    def counting(original):
        def wrapper(self, *args, **kwargs):
            if sys._getframe(1).f_code.co_filename.startswith(training_dir):  # called by mie.training
                syncs["n"] += 1
            return original(self, *args, **kwargs)

        return wrapper

    for name in ("item", "__float__", "__bool__", "__int__"):
        monkeypatch.setattr(torch.Tensor, name, counting(getattr(torch.Tensor, name)))

    class Flags(toys.Task):
        def __init__(self, model):
            super().__init__(model)
            self.flags = []

        def training_forward(self, batch):
            self.flags.append(self.logging_step)
            return super().training_forward(batch)

    class PerStep(Callback):
        def on_train_begin(self, trainer):
            self.before, self.counts = syncs["n"], {}

        def on_step_end(self, trainer, step, metrics):
            self.counts[step], self.before = syncs["n"] - self.before, syncs["n"]

    model, per_step = toys.Model(), PerStep()
    cfg = toys.config(tmp_path, epochs=1, log_every=4, grad_accum_steps=2)
    cfg.optimizer.grad_clip = 1.0
    trainer = toys.trainer(model, cfg, toys.loader(n=48, batch_size=2), callbacks=[per_step], task=Flags(model))
    trainer.fit()
    assert trainer.global_step == 12
    logged = [4, 8, 12]
    assert trainer.task.flags == [step in logged for step in range(1, 13) for _ in range(2)]
    assert {s for s, n in per_step.counts.items() if n} == set(logged)  # the counter sees the logged syncs
    assert all(per_step.counts[s] == 0 for s in range(1, 13) if s not in logged)


def test_budget_is_measured_after_a_slow_first_epoch(toys, tmp_path, monkeypatch):
    """A first epoch three times slower (caches filling) must not cut the schedule to a third."""
    clock = {"t": 0.0}
    monkeypatch.setattr("mie.training.base.time.monotonic", lambda: clock["t"])

    class Tick(Callback):
        def on_step_end(self, trainer, step, metrics):
            clock["t"] += 3.0 if trainer.epoch == 0 else 1.0

    cfg = toys.config(tmp_path, epochs=100, max_minutes=1.0)  # 60 s; 6 steps per epoch
    trainer = toys.trainer(toys.Model(), cfg, toys.loader(), callbacks=[Tick()])
    trainer.budget_calibration_steps = 4
    trainer.fit()
    # Epoch 0: 6 steps, 18 s. Measured from step 7 to 11 at 1 s/step, 60 - 23 = 37 s left -> 48 steps
    # (measuring the first 4 steps at 3 s/step would have planned 4 + 48 / 3 = 20).
    assert trainer.total_steps == 11 + 37 and trainer.global_step == 48
