"""BaseTrainer: accumulation, clipping, precision, limits, history and exact resumption."""

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

from mie.config import ConfigError, validate_config
from mie.errors import NonFiniteLossError
from mie.training import (
    BaseTrainer,
    Callback,
    ModelCheckpoint,
    OptimizerConfig,
    ScheduleConfig,
    batch_size_of,
    lr_multiplier,
    move_to_device,
    resolve_device,
)


class StopAfterEpoch(Callback):
    """Simulates an interruption: stops the loop once ``epoch`` is finished."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, trainer, epoch, metrics):
        if epoch == self.epoch:
            trainer.should_stop = True


class StopAtStep(Callback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, trainer, step, metrics):
        if step == self.step:
            trainer.should_stop = True


class RecordSteps(Callback):
    """The logged loss and lr of every step (the configs here log every step)."""

    def __init__(self):
        self.losses, self.lrs, self.steps = {}, {}, []

    def on_step_end(self, trainer, step, metrics):
        self.steps.append(step)
        if metrics:
            self.losses[step] = metrics["train/loss"]
            self.lrs[step] = metrics["train/lr"]


CONSTANT = ScheduleConfig(name="constant", warmup_steps=0)


def _adamw(params, cfg):
    o = cfg.optimizer
    return torch.optim.AdamW(params, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)


def test_accumulation_matches_one_big_batch(toys, tmp_path):
    model = toys.Model(dropout=0.0)
    twin = copy.deepcopy(model)
    cfg_small = toys.config(tmp_path, grad_accum_steps=2, epochs=1, schedule=CONSTANT)
    cfg_big = toys.config(tmp_path, grad_accum_steps=1, epochs=1, schedule=CONSTANT)
    small = toys.trainer(model, cfg_small, toys.loader(n=16, batch_size=4, shuffle=False), callbacks=[])
    big = toys.trainer(twin, cfg_big, toys.loader(n=16, batch_size=8, shuffle=False), callbacks=[])
    assert small.steps_per_epoch == big.steps_per_epoch == 2
    small.fit()
    big.fit()
    assert small.global_step == big.global_step == 2
    assert not torch.equal(model.net[0].weight, toys.Model(dropout=0.0).net[0].weight)
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_short_last_window_is_averaged(toys, tmp_path):
    # 3 batches with accum 2: the second step sees one micro-batch; its gradient must be that batch's
    # mean-loss gradient, not half of it. Compare with AdamW steps done by hand (same hyperparameters).
    model = nn.Linear(4, 1)
    reference, halved = copy.deepcopy(model), copy.deepcopy(model)
    cfg = toys.config(tmp_path, grad_accum_steps=2, epochs=1,
                      optimizer=OptimizerConfig(lr=0.1, weight_decay=0.0, grad_clip=0.0), schedule=CONSTANT)
    loader = toys.loader(n=12, batch_size=4, shuffle=False)
    trainer = toys.trainer(model, cfg, loader, callbacks=[])
    trainer.fit()
    assert trainer.global_step == 2
    batches = list(loader)
    for net, last_scale in ((reference, 1.0), (halved, 0.5)):
        opt = _adamw(net.parameters(), cfg)
        for window, scale in ((batches[:2], 1.0), (batches[2:], last_scale)):
            xs, ys = torch.cat([b["x"] for b in window]), torch.cat([b["y"] for b in window])
            opt.zero_grad()
            (scale * nn.functional.mse_loss(net(xs), ys)).backward()
            opt.step()
    for a, b in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b)
    assert not torch.allclose(model.weight, halved.weight, rtol=1e-4, atol=1e-6)  # the test can tell


def test_gradient_clipping_bounds_the_gradient(toys, tmp_path):
    model = nn.Linear(4, 1)
    cfg = toys.config(tmp_path, epochs=1, max_steps=1,
                      optimizer=OptimizerConfig(lr=1.0, weight_decay=0.0, grad_clip=0.01), schedule=CONSTANT)
    loader = toys.loader(n=4, batch_size=4, shuffle=False)
    batch = next(iter(loader))
    grads = torch.autograd.grad(nn.functional.mse_loss(model(batch["x"]), batch["y"]), list(model.parameters()))
    expected_norm = float(torch.nn.utils.get_total_norm(grads))
    assert expected_norm > 0.01
    trainer = toys.trainer(model, cfg, loader, callbacks=[])
    trainer.fit()
    assert trainer.last_step_metrics["train/grad_norm"] == pytest.approx(expected_norm, rel=1e-5)
    # After one AdamW step exp_avg = (1 - beta1) * (the gradient the optimizer saw): the clipped one.
    beta1 = cfg.optimizer.betas[0]
    for param, grad in zip(model.parameters(), grads):
        seen = trainer.optimizer.state[param]["exp_avg"] / (1 - beta1)
        torch.testing.assert_close(seen, grad * 0.01 / expected_norm, rtol=1e-4, atol=1e-7)


def test_schedule_drives_the_optimizer_lr(toys, tmp_path):
    cfg = toys.config(tmp_path, epochs=2)  # 24 samples / 4 = 6 steps per epoch, 12 total
    rec = RecordSteps()
    trainer = toys.trainer(toys.Model(), cfg, toys.loader(), callbacks=[rec])
    trainer.fit()
    assert trainer.total_steps == 12 and sorted(rec.lrs) == list(range(1, 13))
    for step, lr in rec.lrs.items():
        assert lr == pytest.approx(0.05 * lr_multiplier(step - 1, cfg.schedule, 12))
    assert len(set(rec.lrs.values())) > 5


def test_history_and_validation(toys, tmp_path):
    cfg = toys.config(tmp_path, epochs=3, eval_every_epochs=2)
    trainer = toys.trainer(toys.Model(), cfg, toys.loader(), val_loader=toys.loader(n=10, shuffle=False),
                           callbacks=[])
    history = trainer.fit()
    assert [h["epoch"] for h in history] == [0, 1, 2] and [h["stage"] for h in history] == [0, 0, 0]
    assert [h["step"] for h in history] == [6, 12, 18]
    assert "val/loss" not in history[0] and "val/loss" in history[1] and "val/loss" in history[2]  # last epoch
    assert history[2]["train/loss"] < history[0]["train/loss"]
    # The epoch's train/loss is the mean of the per-batch losses the task computed in that epoch.
    seen = [float(v) for v in trainer.task.seen_losses]
    assert len(seen) == 18
    assert history[0]["train/loss"] == pytest.approx(sum(seen[:6]) / 6)
    assert history[2]["train/loss"] == pytest.approx(sum(seen[12:]) / 6)
    assert set(history[0]) >= {"train/loss", "train/mae"}
    # val/loss is the sample-weighted mean (batches of 4, 4, 2) = MSE over all 10 samples.
    data = toys.Dataset(10)
    with torch.no_grad():
        trainer.model.eval()
        full = nn.functional.mse_loss(trainer.model(data.x), data.y).item()
    assert history[2]["val/loss"] == pytest.approx(full, rel=1e-5)


def test_max_steps_stops_mid_epoch_and_validates(toys, tmp_path):
    cfg = toys.config(tmp_path, epochs=5, max_steps=4)
    trainer = toys.trainer(toys.Model(), cfg, toys.loader(), val_loader=toys.loader(n=8), callbacks=[])
    history = trainer.fit()
    assert trainer.global_step == 4 and trainer.total_steps == 4
    assert trainer.epoch == 0 and trainer.batch_in_epoch == 4  # epoch 0 is unfinished
    assert len(history) == 1 and "val/loss" in history[0]
    assert trainer.fit() == history and trainer.global_step == 4  # already at max_steps: nothing runs


def test_max_minutes_budget_stops_and_resizes_schedule(toys, tmp_path, monkeypatch):
    clock = {"t": 1000.0}
    monkeypatch.setattr("mie.training.base.time.monotonic", lambda: clock["t"])

    class Tick(Callback):
        def on_step_end(self, trainer, step, metrics):
            clock["t"] += 1.0  # every step "takes" one second

    cfg = toys.config(tmp_path, epochs=100, max_minutes=0.5)  # 30 s budget, 600 planned steps
    trainer = toys.trainer(toys.Model(), cfg, toys.loader(), callbacks=[Tick()])
    trainer.budget_calibration_steps = 5
    assert trainer.total_steps == 600
    trainer.fit()
    assert trainer.global_step == 30
    assert trainer.total_steps == 30  # 5 steps measured at 1 s, 25 s left -> 25 more steps
    assert trainer.elapsed_seconds() == pytest.approx(30.0)


def test_max_minutes_refits_the_schedule_when_the_machine_slows_down(toys, tmp_path, monkeypatch):
    clock = {"t": 1000.0}
    monkeypatch.setattr("mie.training.base.time.monotonic", lambda: clock["t"])

    class Tick(Callback):
        def on_step_end(self, trainer, step, metrics):
            clock["t"] += 1.0 if step <= 20 else 3.0  # another job arrives after step 20

    cfg = toys.config(tmp_path, epochs=100, max_minutes=1.0, log_every=2)  # 60 s budget, 600 planned steps
    trainer = toys.trainer(toys.Model(), cfg, toys.loader(), callbacks=[Tick()])
    trainer.budget_calibration_steps = 5
    lrs = []
    monkeypatch.setattr(trainer.scheduler, "step", lambda *a, _s=trainer.scheduler.step: (_s(*a), lrs.append(
        trainer.optimizer.param_groups[0]["lr"]))[0])
    trainer.fit()
    # The first fit (1 s/step) planned ~60 steps; the refits follow the slower steps, so the schedule
    # ends with the budget instead of being cut off half way at a high learning rate.
    assert trainer.global_step == trainer.total_steps < 40
    assert lrs[-1] <= 0.1 * max(lrs)
    shortened = [n for n in trainer.notices if "shortened" in n]
    assert len(shortened) == 1 and f"to {trainer.total_steps} steps" in shortened[0]  # the report holds the last fit


def test_bf16_on_cpu_and_fp16_fallback(toys, tmp_path):
    dtypes = []

    class Spy(toys.Task):
        def training_forward(self, batch):
            dtypes.append(self.model(batch["x"]).dtype)
            return super().training_forward(batch)

    model = toys.Model()
    trainer = toys.trainer(model, toys.config(tmp_path, epochs=1, precision="bf16"), toys.loader(),
                           callbacks=[], task=Spy(model))
    history = trainer.fit()
    assert len(dtypes) == 6 and all(d == torch.bfloat16 for d in dtypes)
    assert next(trainer.model.parameters()).dtype == torch.float32  # master weights stay fp32
    assert torch.isfinite(torch.tensor(history[0]["train/loss"]))
    with pytest.warns(UserWarning, match="falls back to bf16"):
        fp16 = toys.trainer(toys.Model(), toys.config(tmp_path, precision="fp16"), toys.loader(), callbacks=[])
    assert fp16.autocast_dtype == torch.bfloat16 and fp16.scaler is None
    fp32 = toys.trainer(toys.Model(), toys.config(tmp_path), toys.loader(), callbacks=[])
    assert fp32.autocast_dtype is None
    with pytest.raises(ValueError, match="^precision: 'fp8' is unknown — choose one of auto, fp32"):
        toys.trainer(toys.Model(), toys.config(tmp_path, precision="fp8"), toys.loader(), callbacks=[])


def _run(toys, tmp_path, callbacks, resume_from=None, **cfg):
    torch.manual_seed(123)  # identical initial weights for every run
    model = toys.Model(dropout=0.2)
    rec = RecordSteps()
    trainer = toys.trainer(model, toys.config(tmp_path, **cfg), toys.loader(),
                           val_loader=toys.loader(n=8, shuffle=False), callbacks=[rec, *callbacks])
    history = trainer.fit(resume_from=resume_from)
    return trainer, rec, history


def test_resume_at_epoch_boundary_is_exact(toys, tmp_path):
    full, full_rec, full_hist = _run(toys, tmp_path / "a", [], epochs=4)
    ckpt = tmp_path / "b" / "ck"
    _, first_rec, _ = _run(toys, tmp_path / "b", [StopAfterEpoch(1), ModelCheckpoint(ckpt)], epochs=4)
    assert max(first_rec.losses) == 12
    resumed, second_rec, hist = _run(toys, tmp_path / "c", [], resume_from=ckpt / "last_state.pt", epochs=4)
    assert min(second_rec.losses) == 13
    combined = {**first_rec.losses, **second_rec.losses}
    assert combined == full_rec.losses  # bit-identical losses at every step
    assert hist == full_hist
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


def test_resume_mid_epoch_is_exact(toys, tmp_path):
    full, full_rec, full_hist = _run(toys, tmp_path / "a", [], epochs=2, grad_accum_steps=2)
    ckpt = tmp_path / "b" / "ck"
    _, first_rec, _ = _run(toys, tmp_path / "b", [StopAtStep(2), ModelCheckpoint(ckpt, every_n_steps=2)],
                           epochs=2, grad_accum_steps=2)
    assert max(first_rec.losses) == 2  # 3 steps per epoch: stopped inside epoch 0
    resumed, second_rec, hist = _run(toys, tmp_path / "c", [], resume_from=ckpt, epochs=2, grad_accum_steps=2)
    assert min(second_rec.losses) == 3
    assert {**first_rec.losses, **second_rec.losses} == full_rec.losses
    assert hist[-1] == full_hist[-1]
    assert hist[-2]["train/loss"] == full_hist[0]["train/loss"]  # epoch mean kept across the resume
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


def test_state_dict_round_trip_and_errors(toys, tmp_path):
    trainer = toys.trainer(toys.Model(), toys.config(tmp_path, epochs=1), toys.loader(), callbacks=[])
    trainer.fit()
    state = trainer.state_dict()
    assert state["stage"] == 0 and state["stage_step"] == 6
    other = toys.trainer(toys.Model(), toys.config(tmp_path, epochs=1), toys.loader(), callbacks=[])
    other.load_state_dict(state)
    assert other.global_step == 6 and other.epoch == 1 and other.stage_step == 6
    assert other.optimizer.param_groups[0]["lr"] == trainer.optimizer.param_groups[0]["lr"]
    for a, b in zip(other.model.parameters(), trainer.model.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="not a trainer state"):
        other.load_state_dict({"format": "x"})
    with pytest.raises(FileNotFoundError, match="no checkpoint in "):
        other.load_checkpoint(tmp_path)
    path = trainer.save_checkpoint(tmp_path / "ck", "snap")
    assert path.name == "snap.safetensors" and (tmp_path / "ck" / "snap_state.pt").is_file()
    third = toys.trainer(toys.Model(), toys.config(tmp_path, epochs=1), toys.loader(), callbacks=[])
    third.load_checkpoint(path)  # the .safetensors path finds its *_state.pt sibling
    assert third.global_step == 6


class NanOnce(nn.Module):
    """Adds NaN to the loss value of the first call only (the gradient stays finite)."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, loss):
        self.calls += 1
        return loss + float("nan") if self.calls == 1 else loss


def test_nan_loss_is_reported_at_the_next_logged_step(toys, tmp_path):
    class NanTask(toys.Task):
        def __init__(self, model):
            super().__init__(model)
            self.poison = NanOnce()

        def training_forward(self, batch):
            out = super().training_forward(batch)
            return {**out, "loss": self.poison(out["loss"])}

    with pytest.raises(FloatingPointError, match="loss is nan at step 1 "):  # a NonFiniteLossError
        toys.trainer(toys.Model(), toys.config(tmp_path), toys.loader(), callbacks=[],
                     task=NanTask(toys.Model())).fit()
    rec = RecordSteps()
    trainer = toys.trainer(toys.Model(), toys.config(tmp_path, log_every=3), toys.loader(), callbacks=[rec],
                           task=NanTask(toys.Model()))
    with pytest.raises(NonFiniteLossError, match=r"run: loss is nan in steps 1..3 \(stage 0, epoch 0\) — lower"):
        trainer.fit()
    assert rec.steps == [1, 2] and trainer.global_step == 3  # steps 1, 2 were not logged nor checked


def test_missing_loss_and_bad_accumulation_raise(toys, tmp_path):
    class NoLoss(toys.Task):
        def training_forward(self, batch):
            return {"mae": torch.tensor(1.0)}

    with pytest.raises(ValueError, match="NoLoss.training_forward must return a dict with 'loss'"):
        toys.trainer(toys.Model(), toys.config(tmp_path), toys.loader(), callbacks=[],
                     task=NoLoss(toys.Model())).fit()
    with pytest.raises(ConfigError, match="grad_accum_steps: got 0"):
        validate_config(toys.config(tmp_path, grad_accum_steps=0))


class Stream(IterableDataset):
    """A loader without a length: the trainer must be given max_steps."""

    def __iter__(self):
        g = torch.Generator().manual_seed(0)
        for _ in range(10):
            x = torch.randn(4, generator=g)
            yield {"x": x, "y": x.sum(0, keepdim=True)}


def test_loader_without_length(toys, tmp_path):
    loader = DataLoader(Stream(), batch_size=3)  # 4 batches: 3, 3, 3, 1
    with pytest.raises(ValueError, match="no length.*set max_steps"):
        toys.trainer(toys.Model(), toys.config(tmp_path), loader, callbacks=[])
    rec = RecordSteps()
    trainer = toys.trainer(toys.Model(), toys.config(tmp_path, max_steps=5, epochs=2, grad_accum_steps=3),
                           loader, callbacks=[rec])
    history = trainer.fit()
    # Per pass: one full window of 3 batches + the leftover batch; max_steps ends the third pass early.
    assert trainer.global_step == 5 and rec.steps == [1, 2, 3, 4, 5]
    assert [(h["epoch"], h["step"]) for h in history] == [(0, 2), (1, 4), (2, 5)]
    assert set(rec.losses) == {1, 2, 3, 4, 5}  # a window closed by the end of the stream is logged


def test_after_optimizer_step_is_called_once_per_step(toys, tmp_path):
    class Counting(toys.Task):
        calls = 0

        def after_optimizer_step(self):
            self.calls += 1

    model = toys.Model()
    trainer = toys.trainer(model, toys.config(tmp_path, epochs=1, grad_accum_steps=2), toys.loader(),
                           callbacks=[], task=Counting(model))
    trainer.fit()
    assert trainer.task.calls == trainer.global_step == 3


def test_device_helpers():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")).type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    if not torch.backends.mps.is_available():
        with pytest.raises(ValueError, match="MPS is not available"):
            resolve_device("mps")
    batch = {"a": torch.zeros(5, 2), "b": [torch.ones(5), "text"], "c": (torch.zeros(1),), "n": 3}
    moved = move_to_device(batch, torch.device("meta"))
    assert moved["a"].device.type == "meta" and moved["b"][1] == "text" and moved["n"] == 3
    assert isinstance(moved["c"], tuple) and moved["c"][0].device.type == "meta"
    assert batch_size_of(batch) == 5 and batch_size_of({"s": "x"}) == 1 and batch_size_of(torch.tensor(1.0)) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fp16_with_grad_scaler_on_cuda(toys, tmp_path):
    cfg = toys.config(tmp_path, epochs=3, precision="fp16", device="cuda",
                      optimizer=OptimizerConfig(lr=0.05, weight_decay=0.0, grad_clip=1.0))
    trainer = toys.trainer(toys.Model(), cfg, toys.loader(), val_loader=toys.loader(n=8), callbacks=[])
    assert trainer.scaler is not None and trainer.autocast_dtype is torch.float16
    history = trainer.fit()
    assert history[-1]["train/loss"] < history[0]["train/loss"]
    state = trainer.state_dict()
    assert state["scaler"]["scale"] > 0 and "cuda" in state["rng"]
    path = trainer.save_checkpoint(tmp_path / "ck")
    other = toys.trainer(toys.Model(), cfg, toys.loader(), callbacks=[])
    other.load_checkpoint(path)
    assert other.scaler.get_scale() == trainer.scaler.get_scale()


def test_the_trainer_itself_refuses_a_loader_without_batches(toys, tmp_path):
    with pytest.raises(ConfigError, match=r"training \(batch size 4\): the training data gives no batch, so training "
                                          r"would take 0 optimizer steps — lower data.batch_size"):
        BaseTrainer(toys.Task(toys.Model()), toys.config(tmp_path), [], batch_size=4)


def test_threads_sets_torch_cpu_threads(toys, tmp_path):
    before = torch.get_num_threads()
    try:
        toys.trainer(toys.Model(), toys.config(tmp_path, threads=3), toys.loader(), callbacks=[])
        assert torch.get_num_threads() == 3
        torch.set_num_threads(2)
        toys.trainer(toys.Model(), toys.config(tmp_path), toys.loader(), callbacks=[])
        assert torch.get_num_threads() == 2  # 0 (the default) leaves torch as it is
    finally:
        torch.set_num_threads(before)
