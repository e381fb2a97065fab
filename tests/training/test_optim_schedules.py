"""Parameter groups of the optimizer and the lr schedules vs their closed forms."""

import math

import pytest
import torch
from torch import nn

from mie.training import (
    OptimizerConfig,
    ScheduleConfig,
    build_scheduler,
    create_optimizer,
    lr_multiplier,
    split_decay_parameters,
)


class Tower(nn.Module):
    def __init__(self):
        super().__init__()
        self.token_embedding = nn.Embedding(10, 6)
        self.wte = nn.Embedding(10, 6)  # an embedding whose name says nothing: caught by module type
        self.pos_embed = nn.Parameter(torch.zeros(1, 5, 6))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 6))
        self.logit_scale = nn.Parameter(torch.tensor(2.0))
        self.norm = nn.LayerNorm(6)
        self.proj = nn.Linear(6, 6)
        self.head = nn.Linear(6, 3, bias=False)
        self.tied = self.head  # the same parameters twice must appear once
        self.frozen = nn.Linear(6, 6)
        self.frozen.requires_grad_(False)
        self.special = nn.Parameter(torch.zeros(3, 3))

    def no_weight_decay(self):
        return {"special"}


def test_decay_groups():
    model = Tower()
    decay, no_decay, names = split_decay_parameters(model)
    decay_ids = {id(p) for p in decay}
    assert decay_ids == {id(model.proj.weight), id(model.head.weight)}
    assert set(names) == {"token_embedding.weight", "wte.weight", "pos_embed", "cls_token", "logit_scale",
                          "norm.weight", "norm.bias", "proj.bias", "special"}
    assert len(decay) + len(no_decay) == len({id(p) for p in model.parameters() if p.requires_grad})


def test_create_optimizer_groups_and_lr_override():
    model = Tower()
    cfg = OptimizerConfig(lr=1e-3, weight_decay=0.2, betas=[0.8, 0.9], eps=1e-7)
    opt = create_optimizer(model, cfg)
    groups = {g["name"]: g for g in opt.param_groups}
    assert groups["decay"]["weight_decay"] == 0.2 and groups["no_decay"]["weight_decay"] == 0.0
    assert groups["decay"]["betas"] == (0.8, 0.9) and groups["decay"]["eps"] == 1e-7
    assert all(g["lr"] == 1e-3 for g in opt.param_groups)
    assert create_optimizer(model, cfg, lr=5e-4).param_groups[0]["lr"] == 5e-4
    assert create_optimizer(model, cfg, lr=0.0).param_groups[0]["lr"] == 1e-3  # 0 = use cfg.lr


def test_create_optimizer_errors():
    with pytest.raises(ValueError, match="'sgd' is not supported"):
        create_optimizer(nn.Linear(2, 2), OptimizerConfig(name="sgd"))
    with pytest.raises(ValueError, match="two numbers"):
        create_optimizer(nn.Linear(2, 2), OptimizerConfig(betas=[0.9]))
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        create_optimizer(frozen, OptimizerConfig())


def _lrs(cfg, total, steps):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=2.0)
    sched = build_scheduler(opt, cfg, total)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_cosine_schedule_matches_closed_form():
    cfg = ScheduleConfig(name="cosine", warmup_steps=4, min_lr_ratio=0.1)
    lrs = _lrs(cfg, total=20, steps=24)
    for s, lr in enumerate(lrs):
        if s < 4:
            expected = 2.0 * (s + 1) / 4
        else:
            p = min(1.0, (s - 4) / 16)
            expected = 2.0 * (0.1 + 0.9 * (1 + math.cos(math.pi * p)) / 2)
        assert lr == pytest.approx(expected, rel=1e-12)
    assert lrs[3] == pytest.approx(2.0) and lrs[20] == pytest.approx(0.2) and lrs[23] == pytest.approx(0.2)


def test_linear_and_constant_schedules():
    lin = _lrs(ScheduleConfig(name="linear", warmup_steps=0, min_lr_ratio=0.0), total=10, steps=11)
    assert lin == pytest.approx([2.0 * (1 - s / 10) for s in range(11)])
    const = _lrs(ScheduleConfig(name="constant", warmup_steps=2), total=10, steps=5)
    assert const == pytest.approx([1.0, 2.0, 2.0, 2.0, 2.0])


def test_schedule_total_may_be_a_callable():
    box = {"total": 100}
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_scheduler(opt, ScheduleConfig(name="linear", warmup_steps=0), lambda: box["total"])
    box["total"] = 2
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(lr_multiplier(1, ScheduleConfig("linear", 0), 2))
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)


def test_schedule_errors_and_warning():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="^schedule.name: unknown schedule 'step'; known schedules: constant, cosine, inverse_sqrt, linear$"):
        build_scheduler(opt, ScheduleConfig(name="step"), 10)
    with pytest.raises(ValueError, match="min_lr_ratio"):
        build_scheduler(opt, ScheduleConfig(min_lr_ratio=1.5), 10)
    with pytest.raises(ValueError, match="total_steps=0"):
        build_scheduler(opt, ScheduleConfig(), 0)
    with pytest.warns(UserWarning, match="never reaches its peak"):
        build_scheduler(opt, ScheduleConfig(warmup_steps=50), 10)
