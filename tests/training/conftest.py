"""Toy model, data, task and config shared by the training tests (tiny, deterministic, CPU)."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mie.training import BaseTrainer, OptimizerConfig, ScheduleConfig, Task, TrainerConfig


class ToyRegression(nn.Module):
    """A 2-layer MLP with dropout, so resumption must also restore the torch RNG."""

    def __init__(self, dropout: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Dropout(dropout), nn.Linear(8, 1))

    def forward(self, x):
        return self.net(x)


class DictDataset(Dataset):
    """``{"x": [4], "y": [1]}`` samples of a fixed random linear target."""

    def __init__(self, n: int = 24, seed: int = 1):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(n, 1, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.y[i]}


class RegressionTask(Task):
    """Mean squared error; keeps every training loss it computes (detached, no host sync)."""

    def __init__(self, model: nn.Module):
        super().__init__(model)
        self.seen_losses: list[torch.Tensor] = []

    def training_forward(self, batch):
        pred = self.model(batch["x"])
        loss = nn.functional.mse_loss(pred, batch["y"])
        self.seen_losses.append(loss.detach().clone())
        return {"loss": loss, "mae": (pred - batch["y"]).abs().mean().detach()}

    def validation_forward(self, batch):
        return {"loss": nn.functional.mse_loss(self.model(batch["x"]), batch["y"])}


def make_config(tmp_path, **overrides) -> TrainerConfig:
    """A small CPU config writing into ``tmp_path / "run"``."""
    cfg = TrainerConfig(project_name="t", output_dir=str(tmp_path / "run"), seed=3, epochs=3, device="cpu",
                        log_every=1, best_metric="val/loss", best_mode="min",
                        optimizer=OptimizerConfig(lr=0.05, weight_decay=0.01, grad_clip=0.0),
                        schedule=ScheduleConfig(name="cosine", warmup_steps=2, min_lr_ratio=0.1))
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def make_loader(n=24, batch_size=4, shuffle=True, seed=0):
    """A shuffling loader driven by its own generator (re-seeded per epoch by the trainer)."""
    return DataLoader(DictDataset(n), batch_size=batch_size, shuffle=shuffle,
                      generator=torch.Generator().manual_seed(seed))


def make_trainer(model, config, loader, **kwargs) -> BaseTrainer:
    """``BaseTrainer`` over ``RegressionTask(model)``; pass ``task=`` to use another task."""
    task = kwargs.pop("task", None) or RegressionTask(model)
    return BaseTrainer(task, config, loader, **kwargs)


@pytest.fixture
def toys():
    """The toy pieces, as a namespace."""

    class Toys:
        Model = ToyRegression
        Dataset = DictDataset
        Task = RegressionTask
        config = staticmethod(make_config)
        loader = staticmethod(make_loader)
        trainer = staticmethod(make_trainer)

    return Toys
