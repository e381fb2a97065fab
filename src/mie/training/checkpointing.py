"""The trainer's state, checkpoints and validation: the part of ``BaseTrainer`` around the loop.

A checkpoint is ``<name>.safetensors`` (the task's model weights) + ``<name>.json`` (config, stage,
step, epoch, metrics) and, for ``last``, ``last_state.pt``: everything an exact resume needs
(weights-only ``torch.load``; see ``mie.io``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from mie.io import load_state, save_state, save_weights
from mie.training.distributed import all_reduce_mean
from mie.training.loop_utils import batch_size_of, move_to_device, to_float
from mie.training.rng import capture_rng_state, restore_rng_state

STATE_FORMAT = "mie-trainer-state-v2"


class TrainerStateMixin:
    """State, checkpoint and validation methods of ``BaseTrainer`` (which sets the attributes)."""

    @torch.no_grad()
    def validate_epoch(self) -> dict[str, float]:
        """Mean ``task.validation_forward`` over the val loader (if any) plus the task's whole-set
        ``validation_metrics()``, as ``val/...`` (rank-averaged); empty when there is neither.

        The bare task runs (not DDP's wrapper, whose collectives ranks with different numbers of
        validation batches could not match).
        """
        self.task.eval()
        try:
            totals: dict[str, float] = {}
            weights: dict[str, float] = {}
            for batch in self.val_loader or []:
                if batch is None:
                    continue
                batch = move_to_device(batch, self.device)
                size = batch_size_of(batch)
                with self._autocast():
                    out = self.task.validation_forward(batch)
                for key, value in out.items():
                    totals[key] = totals.get(key, 0.0) + to_float(value) * size
                    weights[key] = weights.get(key, 0.0) + size
            metrics = {key: totals[key] / weights[key] for key in totals}
            metrics.update(self.task.validation_metrics())
            if metrics:
                metrics = all_reduce_mean(metrics, self.device)
        finally:
            self.task.train()
        self.last_val_metrics = {k if k.startswith("val/") else f"val/{k}": float(v) for k, v in metrics.items()}
        return dict(self.last_val_metrics)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: task, optimizer, scheduler, scaler, counters, RNG."""
        return {
            "format": STATE_FORMAT,
            "task": self.task.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "global_step": self.global_step,
            "stage": self.stage,
            "stage_step": self.stage_step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "epoch_sums": {k: to_float(v) for k, v in self._epoch_sums.items()},
            "epoch_counts": dict(self._epoch_counts),
            "history": [dict(h) for h in self.history],
            "last_val_metrics": dict(self.last_val_metrics),
            "elapsed_seconds": self.elapsed_seconds(),
            "budget_total_steps": self._budget_total,
            "rng": capture_rng_state(),
            "callbacks": self.callbacks.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` into a trainer already in the state's stage (same architecture)."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"not a trainer state of this version (format={state.get('format')!r}, expected "
                             f"{STATE_FORMAT}); start the run again without --resume")
        self.task.load_state_dict(state["task"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(dict(state["scheduler"]))
        if self.scaler is not None and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        for key in ("global_step", "stage", "stage_step", "epoch", "batch_in_epoch"):
            setattr(self, key, int(state[key]))
        self._epoch_sums = dict(state["epoch_sums"])
        self._epoch_counts = dict(state["epoch_counts"])
        self.history = [dict(h) for h in state["history"]]
        self.last_val_metrics = dict(state["last_val_metrics"])
        self._elapsed_before = float(state["elapsed_seconds"])
        self._budget_total = state["budget_total_steps"]
        restore_rng_state(state["rng"])
        self.callbacks.load_state_dict(state["callbacks"])

    def save_checkpoint(self, directory: str | Path, name: str = "last", with_state: bool = True,
                        extra_metadata: Mapping[str, Any] | None = None) -> Path | None:
        """Write ``<name>.safetensors`` + ``<name>.json`` (and ``<name>_state.pt``); rank 0 only."""
        if not self.is_main:
            return None
        directory = Path(directory)
        config = dataclasses.asdict(self.config) if dataclasses.is_dataclass(self.config) else dict(self.config)
        metadata = {"kind": name, "config": config, "stage": self.stage, "step": self.global_step,
                    "epoch": self.epoch, "metrics": dict(self.last_val_metrics), **dict(extra_metadata or {})}
        path = save_weights(directory / f"{name}.safetensors", self.model.state_dict(), metadata)
        if with_state:
            save_state(directory / f"{name}_state.pt", self.state_dict())
        self.callbacks.on_checkpoint(self, path)
        return path

    @staticmethod
    def read_checkpoint(path: str | Path) -> dict[str, Any]:
        """The trainer state at ``path``: a ``*_state.pt`` file, its ``.safetensors`` sibling, or a
        directory holding ``last_state.pt`` (directly or under ``checkpoints/``)."""
        file = Path(path)
        if file.is_dir():
            candidates = [file / "last_state.pt", file / "checkpoints" / "last_state.pt"]
            found = [c for c in candidates if c.is_file()]
            if not found:
                raise FileNotFoundError(f"no last_state.pt in {file} or {file / 'checkpoints'}; "
                                        "pass the *_state.pt file to resume from")
            file = found[0]
        elif file.suffix == ".safetensors":
            file = file.with_name(f"{file.stem}_state.pt")
        return load_state(file, map_location="cpu")
