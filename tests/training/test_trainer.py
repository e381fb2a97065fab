"""BaseTrainer: accumulation, clipping, precision, limits, history and exact resumption."""

import copy
import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

from mie.config import OptimizerConfig, ScheduleConfig
from mie.training import Callback, batch_size_of, move_to_device, resolve_device


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
    def __init__(self):
        self.losses = {}
        self.lrs = {}

    def on_step_end(self, trainer, step, metrics):
        self.losses[step] = metrics["train/loss"]
        self.lrs[step] = metrics["train/lr"]


def test_accumulation_matches_one_big_batch(toys, tmp_path):
    torch.manual_seed(0)
    model = toys.Model(dropout=0.0)
    twin = copy.deepcopy(model)
    schedule = ScheduleConfig(name="constant", warmup_steps=0)
    cfg_small = toys.config(tmp_path, grad_accum_steps=2, epochs=1, schedule=schedule)
    cfg_big = toys.config(tmp_path, grad_accum_steps=1, epochs=1, schedule=schedule)
    small = toys.Trainer(model, cfg_small, toys.loader(n=16, batch_size=4, shuffle=False), callbacks=[])
    big = toys.Trainer(twin, cfg_big, toys.loader(n=16, batch_size=8, shuffle=False), callbacks=[])
    assert small.steps_per_epoch == big.steps_per_epoch == 2
    small.fit()
    big.fit()
    assert small.global_step == big.global_step == 2
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_short_last_window_is_averaged(toys, tmp_path):
    # 3 batches with accum 2: the second step sees one micro-batch; its gradient must be that batch's
    # mean-loss gradient, not half of it. Compare with plain SGD steps done by hand.
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    reference = copy.deepcopy(model)
    cfg = toys.config(tmp_path, grad_accum_steps=2, epochs=1,
                      optimizer=OptimizerConfig(lr=0.1, weight_decay=0.0, grad_clip=0.0),
                      schedule=ScheduleConfig(name="constant", warmup_steps=0))
    loader = toys.loader(n=12, batch_size=4, shuffle=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = toys.Trainer(model, cfg, loader, callbacks=[], optimizer=opt)
    trainer.fit()
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1)
    batches = list(loader)
    for window in (batches[:2], batches[2:]):
        xs = torch.cat([b["x"] for b in window])
        ys = torch.cat([b["y"] for b in window])
        ref_opt.zero_grad()
        nn.functional.mse_loss(reference(xs), ys).backward()
        ref_opt.step()
    for a, b in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b)


def test_gradient_clipping_bounds_the_update(toys, tmp_path):
    model = nn.Linear(4, 1)
    before = [p.detach().clone() for p in model.parameters()]
    cfg = toys.config(tmp_path, epochs=1, max_steps=1,
                      optimizer=OptimizerConfig(lr=1.0, weight_decay=0.0, grad_clip=0.01),
                      schedule=ScheduleConfig(name="constant", warmup_steps=0))
    loader = toys.loader(n=4, batch_size=4, shuffle=False)
    batch = next(iter(loader))
    expected_norm = torch.nn.utils.get_total_norm(
        torch.autograd.grad(nn.functional.mse_loss(model(batch["x"]), batch["y"]), list(model.parameters())))
    rec = RecordSteps()
    trainer = toys.Trainer(model, cfg, loader, callbacks=[rec],
                           optimizer=torch.optim.SGD(model.parameters(), lr=1.0))
    trainer.fit()
    step = torch.cat([(p.detach() - b).flatten() for p, b in zip(model.parameters(), before)])
    assert trainer.last_step_metrics["train/grad_norm"] == pytest.approx(float(expected_norm), rel=1e-5)
    assert float(expected_norm) > 0.01
    assert step.norm().item() == pytest.approx(0.01, rel=1e-4)  # SGD lr 1: update = clipped gradient


def test_schedule_drives_the_optimizer_lr(toys, tmp_path):
    cfg = toys.config(tmp_path, epochs=2)  # 24 samples / 4 = 6 steps per epoch, 12 total
    rec = RecordSteps()
    trainer = toys.Trainer(toys.Model(), cfg, toys.loader(), callbacks=[rec])
    trainer.fit()
    from mie.training import lr_multiplier

    assert trainer.total_steps == 12
    for step, lr in rec.lrs.items():
        assert lr == pytest.approx(0.05 * lr_multiplier(step - 1, cfg.schedule, 12))


def test_history_and_validation(toys, tmp_path):
    cfg = toys.config(tmp_path, epochs=3, eval_every_epochs=2)
    trainer = toys.Trainer(toys.Model(), cfg, toys.loader(), val_loader=toys.loader(n=10, shuffle=False),
                           callbacks=[])
    history = trainer.fit()
    assert [h["epoch"] for h in history] == [0, 1, 2]
    assert [h["step"] for h in history] == [6, 12, 18]
    assert "val/loss" not in history[0] and "val/loss" in history[1] and "val/loss" in history[2]  # last epoch
    assert history[2]["train/loss"] < history[0]["train/loss"]
    # The epoch's train/loss is the mean of the per-batch losses the trainer saw in that epoch.
    assert history[0]["train/loss"] == pytest.approx(sum(trainer.seen_losses[:6]) / 6)
    assert set(history[0]) >= {"train/loss", "train/mae"}
    # val/loss is the sample-weighted mean (batches of 4, 4, 2) = MSE over all 10 samples.
    data = toys.Dataset(10)
    with torch.no_grad():
        trainer.raw_model.eval()
        full = nn.functional.mse_loss(trainer.raw_model(data.x), data.y).item()
    assert history[2]["val/loss"] == pytest.approx(full, rel=1e-5)


def test_max_steps_stops_mid_epoch_and_validates(toys, tmp_path):
    cfg = toys.config(tmp_path, epochs=5, max_steps=4)
    trainer = toys.Trainer(toys.Model(), cfg, toys.loader(), val_loader=toys.loader(n=8), callbacks=[])
    history = trainer.fit()
    assert trainer.global_step == 4 and trainer.total_steps == 4
    assert trainer.epoch == 0 and trainer.batch_in_epoch == 4  # epoch 0 is unfinished
    assert len(history) == 1 and "val/loss" in history[0]
    assert trainer.fit() == history  # already at max_steps: nothing more runs


def test_max_minutes_budget_stops_and_resizes_schedule(toys, tmp_path, monkeypatch):
    clock = {"t": 1000.0}
    monkeypatch.setattr("mie.training.base.time.monotonic", lambda: clock["t"])

    class Tick(Callback):
        def on_step_end(self, trainer, step, metrics):
            clock["t"] += 1.0  # every step "takes" one second

    cfg = toys.config(tmp_path, epochs=100, max_minutes=0.5)  # 30 s budget, 600 planned steps
    trainer = toys.Trainer(toys.Model(), cfg, toys.loader(), callbacks=[Tick()])
    trainer.budget_calibration_steps = 5
    assert trainer.total_steps == 600
    trainer.fit()
    assert trainer.global_step == 30
    assert trainer.total_steps == 30  # 5 steps measured at 1 s, 25 s left -> 25 more steps
    assert trainer.elapsed_seconds() == pytest.approx(30.0)


def test_bf16_on_cpu_and_fp16_fallback(toys, tmp_path):
    cfg = toys.config(tmp_path, epochs=1, precision="bf16")
    trainer = toys.Trainer(toys.Model(), cfg, toys.loader(), callbacks=[])
    dtypes = []
    original = trainer.training_step

    def spy(batch):
        out = original(batch)
        dtypes.append(trainer.model(batch["x"]).dtype)
        return out

    trainer.training_step = spy
    history = trainer.fit()
    assert dtypes and all(d == torch.bfloat16 for d in dtypes)
    assert next(trainer.raw_model.parameters()).dtype == torch.float32  # master weights stay fp32
    assert torch.isfinite(torch.tensor(history[0]["train/loss"]))
    with pytest.warns(UserWarning, match="falls back to bf16"):
        fp16 = toys.Trainer(toys.Model(), toys.config(tmp_path, precision="fp16"), toys.loader(), callbacks=[])
    assert fp16.autocast_dtype == torch.bfloat16 and fp16.scaler is None
    with pytest.raises(ValueError, match="precision='fp8'"):
        toys.Trainer(toys.Model(), toys.config(tmp_path, precision="fp8"), toys.loader(), callbacks=[])


def _run(toys, tmp_path, callbacks, resume_from=None, **cfg):
    torch.manual_seed(123)  # identical initial weights for every run
    model = toys.Model(dropout=0.2)
    rec = RecordSteps()
    trainer = toys.Trainer(model, toys.config(tmp_path, **cfg), toys.loader(), val_loader=toys.loader(n=8),
                           callbacks=[rec, *callbacks])
    history = trainer.fit(resume_from=resume_from)
    return trainer, rec, history


def test_resume_at_epoch_boundary_is_exact(toys, tmp_path):
    from mie.training import ModelCheckpoint

    full, full_rec, full_hist = _run(toys, tmp_path / "a", [], epochs=4)
    ckpt = tmp_path / "b" / "ck"
    _, first_rec, _ = _run(toys, tmp_path / "b", [StopAfterEpoch(1), ModelCheckpoint(ckpt)], epochs=4)
    assert max(first_rec.losses) == 12
    resumed, second_rec, hist = _run(toys, tmp_path / "c", [], resume_from=ckpt / "last_state.pt", epochs=4)
    assert min(second_rec.losses) == 13
    combined = {**first_rec.losses, **second_rec.losses}
    assert combined == full_rec.losses  # bit-identical losses at every step
    assert hist == full_hist
    for a, b in zip(full.raw_model.parameters(), resumed.raw_model.parameters()):
        assert torch.equal(a, b)


def test_resume_mid_epoch_is_exact(toys, tmp_path):
    from mie.training import ModelCheckpoint

    _, full_rec, full_hist = _run(toys, tmp_path / "a", [], epochs=2, grad_accum_steps=2)
    ckpt = tmp_path / "b" / "ck"
    _, first_rec, _ = _run(toys, tmp_path / "b", [StopAtStep(2), ModelCheckpoint(ckpt, every_n_steps=2)],
                           epochs=2, grad_accum_steps=2)
    assert max(first_rec.losses) == 2  # 3 steps per epoch: stopped inside epoch 0
    resumed, second_rec, hist = _run(toys, tmp_path / "c", [], resume_from=ckpt, epochs=2, grad_accum_steps=2)
    assert {**first_rec.losses, **second_rec.losses} == full_rec.losses
    assert hist[-1] == full_hist[-1]
    assert hist[-2]["train/loss"] == full_hist[0]["train/loss"]  # epoch mean kept across the resume


def test_state_dict_round_trip_and_errors(toys, tmp_path):
    trainer = toys.Trainer(toys.Model(), toys.config(tmp_path, epochs=1), toys.loader(), callbacks=[])
    trainer.fit()
    state = trainer.state_dict()
    other = toys.Trainer(toys.Model(), toys.config(tmp_path, epochs=1), toys.loader(), callbacks=[])
    other.load_state_dict(state)
    assert other.global_step == 6 and other.epoch == 1
    assert other.optimizer.param_groups[0]["lr"] == trainer.optimizer.param_groups[0]["lr"]
    with pytest.raises(ValueError, match="not a trainer state"):
        other.load_state_dict({"format": "x"})
    with pytest.raises(FileNotFoundError, match="no last_state.pt"):
        other.load_checkpoint(tmp_path)
    path = trainer.save_checkpoint(tmp_path / "ck", "snap")
    assert path.name == "snap.safetensors" and (tmp_path / "ck" / "snap_state.pt").is_file()
    third = toys.Trainer(toys.Model(), toys.config(tmp_path, epochs=1), toys.loader(), callbacks=[])
    third.load_checkpoint(path)  # the .safetensors path finds its *_state.pt sibling
    assert third.global_step == 6


def test_nan_loss_and_missing_loss_raise(toys, tmp_path):
    class NanTrainer(toys.Trainer):
        def training_step(self, batch):
            return {"loss": self.model(batch["x"]).sum() * float("nan")}

    with pytest.raises(FloatingPointError, match="loss is nan at step 1"):
        NanTrainer(toys.Model(), toys.config(tmp_path), toys.loader(), callbacks=[]).fit()

    class NoLoss(toys.Trainer):
        def training_step(self, batch):
            return {"mae": 1.0}

    with pytest.raises(ValueError, match="must return a dict with 'loss'"):
        NoLoss(toys.Model(), toys.config(tmp_path), toys.loader(), callbacks=[]).fit()
    with pytest.raises(ValueError, match="grad_accum_steps=0"):
        toys.Trainer(toys.Model(), toys.config(tmp_path, grad_accum_steps=0), toys.loader(), callbacks=[])


class Stream(IterableDataset):
    """A loader without a length: the trainer must be given max_steps."""

    def __iter__(self):
        g = torch.Generator().manual_seed(0)
        for _ in range(10):
            x = torch.randn(4, generator=g)
            yield {"x": x, "y": x.sum(0, keepdim=True)}


def test_loader_without_length(toys, tmp_path):
    loader = DataLoader(Stream(), batch_size=3)  # 4 batches: 3, 3, 3, 1
    with pytest.raises(ValueError, match="set training.max_steps"):
        toys.Trainer(toys.Model(), toys.config(tmp_path), loader, callbacks=[])
    trainer = toys.Trainer(toys.Model(), toys.config(tmp_path, max_steps=100, epochs=2, grad_accum_steps=3),
                           loader, callbacks=[])
    trainer.fit()
    assert trainer.global_step == 4  # per epoch: one full window of 3 + the leftover batch


def test_logit_scale_is_clamped_after_each_step(toys, tmp_path):
    class Clamped(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 1)
            self.calls = 0

        def forward(self, x):
            return self.lin(x)

        def clamp_logit_scale_(self):
            self.calls += 1

    model = Clamped()
    toys.Trainer(model, toys.config(tmp_path, epochs=1), toys.loader(), callbacks=[]).fit()
    assert model.calls == 6


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


def test_mid_epoch_resume_without_generator_warns(toys, tmp_path):
    cfg = toys.config(tmp_path, epochs=1, schedule=ScheduleConfig(name="constant", warmup_steps=0))
    trainer = toys.Trainer(toys.Model(), cfg, DataLoader(toys.Dataset(8), batch_size=4, shuffle=True), callbacks=[])
    trainer.batch_in_epoch = 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit()
    assert any("mid-epoch" in str(w.message) for w in caught)
    assert trainer.global_step == 1  # only the second batch was left in the epoch


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fp16_with_grad_scaler_on_cuda(toys, tmp_path):
    cfg = toys.config(tmp_path, epochs=3, precision="fp16", device="cuda",
                      optimizer=OptimizerConfig(lr=0.05, weight_decay=0.0, grad_clip=1.0))
    trainer = toys.Trainer(toys.Model(), cfg, toys.loader(), val_loader=toys.loader(n=8), callbacks=[])
    assert trainer.scaler is not None and trainer.autocast_dtype is torch.float16
    history = trainer.fit()
    assert history[-1]["train/loss"] < history[0]["train/loss"]
    state = trainer.state_dict()
    assert state["scaler"]["scale"] > 0 and "cuda" in state["rng"]
    path = trainer.save_checkpoint(tmp_path / "ck")
    other = toys.Trainer(toys.Model(), cfg, toys.loader(), callbacks=[])
    other.load_checkpoint(path)
    assert other.scaler.get_scale() == trainer.scaler.get_scale()
