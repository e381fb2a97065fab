"""The trainer's state, checkpoints and validation: the part of ``BaseTrainer`` around the loop.

A checkpoint is ``<name>.safetensors`` (the task's model weights) + ``<name>.json`` (config, stage,
step, epoch, metrics) and, for ``last``, ``last_state.pt``: everything an exact resume needs
(weights-only ``torch.load``; see ``mie.io``). ``ModelCheckpoint`` publishes them as one transaction
per step (:class:`mie.io.store.CheckpointStore`); :meth:`~TrainerStateMixin.save_checkpoint` writes
one checkpoint directly (stage ends, ad-hoc saves).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from mie.errors import CheckpointError
from mie.io import load_state, save_state, save_weights
from mie.io.store import CheckpointStore
from mie.models.lora import merged_state_dict
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
            "epoch_open": self._epoch_open,
            "epoch_sums": {k: to_float(v) for k, v in self._epoch_sums.items()},
            "epoch_counts": dict(self._epoch_counts),
            "history": [dict(h) for h in self.history],
            "notices": list(self.notices),
            "last_val_metrics": dict(self.last_val_metrics),
            "elapsed_seconds": self.elapsed_seconds(),
            "budget_total_steps": self._budget_total,
            "rng": capture_rng_state(),
            "callbacks": self.callbacks.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any], where: str | Path = "trainer state") -> None:
        """Restore :meth:`state_dict` into a trainer already in the state's stage (same architecture).

        A state of another version, another model or another optimizer set-up is a
        :class:`~mie.errors.CheckpointError` naming ``where``.
        """
        fix = "resume with the config of the run that wrote it, or start the run again without --resume"
        if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
            found = state.get("format") if isinstance(state, Mapping) else type(state).__name__
            raise CheckpointError(f"not a trainer state of this version (format={found!r}, expected "
                                  f"{STATE_FORMAT})", where=where, fix="start the run again without --resume")
        try:
            self.task.load_state_dict(state["task"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(dict(state["scheduler"]))
            if self.scaler is not None and state["scaler"]:
                self.scaler.load_state_dict(state["scaler"])
            for key in ("global_step", "stage", "stage_step", "epoch", "batch_in_epoch"):
                setattr(self, key, int(state[key]))
            self._epoch_open = bool(state.get("epoch_open", self.batch_in_epoch > 0))
            self._epoch_sums = dict(state["epoch_sums"])
            self._epoch_counts = dict(state["epoch_counts"])
            self.history = [dict(h) for h in state["history"]]
            self.notices = [str(n) for n in state.get("notices", [])]
            self.last_val_metrics = dict(state["last_val_metrics"])
            self._elapsed_before = float(state["elapsed_seconds"])
            self._budget_total = state["budget_total_steps"]
            restore_rng_state(state["rng"])
            self.callbacks.load_state_dict(state["callbacks"])
        except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as exc:
            detail = " ".join(str(exc).split()) or type(exc).__name__
            if isinstance(exc, KeyError):
                detail = f"missing entry {exc}"
            raise CheckpointError(f"does not fit this model and trainer ({detail[:300]})", where=where,
                                  fix=fix) from None

    def _checkpoint_metadata(self, name: str, extra_metadata: Mapping[str, Any] | None) -> dict[str, Any]:
        config = dataclasses.asdict(self.config) if dataclasses.is_dataclass(self.config) else dict(self.config)
        return {"kind": name, "config": config, "stage": self.stage, "step": self.global_step,
                "epoch": self.epoch, "metrics": dict(self.last_val_metrics), **dict(extra_metadata or {})}

    def checkpoint_writers(self, name: str, with_state: bool = True,
                           extra_metadata: Mapping[str, Any] | None = None) -> dict[str, Callable[[Path], Any]]:
        """File name -> writer for checkpoint ``name``: what :class:`~mie.io.store.CheckpointStore` commits.

        The weights and state are captured now (copies), so the writers may run after more training.
        """
        metadata = self._checkpoint_metadata(name, extra_metadata)
        # LoRA adapters are folded in: a checkpoint has the plain architecture (resume uses the state file)
        weights = {k: v.detach().to("cpu").clone() for k, v in merged_state_dict(self.model).items()}

        def write_weights(path: Path) -> None:
            save_weights(path.with_name(f"{name}.safetensors"), weights, metadata)

        writers: dict[str, Callable[[Path], Any]] = {f"{name}.safetensors": write_weights,
                                                     f"{name}.json": lambda path: None}  # written with the weights
        if with_state:
            state = self.state_dict()
            writers[f"{name}_state.pt"] = lambda path: save_state(path, state)
        return writers

    def save_checkpoint(self, directory: str | Path, name: str = "last", with_state: bool = True,
                        extra_metadata: Mapping[str, Any] | None = None) -> Path | None:
        """Write ``<name>.safetensors`` + ``<name>.json`` (and ``<name>_state.pt``) directly; rank 0 only."""
        if not self.is_main:
            return None
        directory = Path(directory)
        path = save_weights(directory / f"{name}.safetensors", merged_state_dict(self.model),
                            self._checkpoint_metadata(name, extra_metadata))
        if with_state:
            save_state(directory / f"{name}_state.pt", self.state_dict())
        self.callbacks.on_checkpoint(self, path)
        return path

    @staticmethod
    def find_resume_state(path: str | Path) -> Path | None:
        """The state file to resume from at ``path`` (a run or checkpoints folder, or a file), or None.

        A folder with a manifest resolves through it (checksums verified); an older run's bare
        ``last_state.pt`` is used as it is. None means the folder holds no checkpoint yet.
        """
        file = Path(path)
        if not file.is_dir():
            return file.with_name(f"{file.stem}_state.pt") if file.suffix == ".safetensors" else file
        for folder in (file / "checkpoints", file):
            store = CheckpointStore(folder)
            if store.manifest() is not None:
                return store.resolve("last_state.pt")
        legacy = [c for c in (file / "last_state.pt", file / "checkpoints" / "last_state.pt") if c.is_file()]
        return legacy[0] if legacy else None

    @staticmethod
    def read_checkpoint(path: str | Path) -> dict[str, Any]:
        """The trainer state at ``path``: a ``*_state.pt`` file, its ``.safetensors`` sibling, or a
        directory holding a checkpoint (directly or under ``checkpoints/``)."""
        file = TrainerStateMixin.find_resume_state(path)
        if file is None:
            raise FileNotFoundError(f"no checkpoint in {path} or {Path(path) / 'checkpoints'}; "
                                    "pass the *_state.pt file to resume from")
        return load_state(file, map_location="cpu")
