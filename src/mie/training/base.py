"""``BaseTrainer``: the training loop, written once (template method).

Subclasses fill in what one batch means (:meth:`BaseTrainer.training_step`,
:meth:`BaseTrainer.validation_step`, optionally :meth:`BaseTrainer.validation_epoch_end`); the base
class owns everything around it: device placement, seeding, gradient accumulation, clipping,
mixed precision, the lr schedule, step / epoch / wall-clock limits, distributed data parallel,
callbacks, checkpoints and exact resumption.

Schedule length: ``total_steps = min(max_steps, epochs * steps_per_epoch)`` (whichever is set).
With ``max_minutes`` the loop stops once the budget is spent, and after
``budget_calibration_steps`` optimizer steps the schedule is shrunk to the number of steps that fit
the remaining time (measured speed, never longer than planned), so cosine decay ends near the
budget's end. ``fit(num_epochs=N)`` stops the loop after epoch ``N`` (counted from 0, so a resumed
run continues to the same ``N``) but does not resize the schedule, which follows the config.

Exact resumption: each epoch reshuffles with ``seed + epoch`` (the loader's ``torch.Generator`` is
re-seeded, or its sampler's ``set_epoch`` is called), and the state holds model, optimizer,
scheduler, grad scaler, counters, running epoch sums, all RNG states and callback states. A run
resumed from any checkpoint (epoch boundary or mid-epoch: the already-seen batches are skipped)
therefore computes the same losses as an uninterrupted one on a deterministic device.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import IterableDataset

from mie.config import TrainingConfig
from mie.io import load_state, save_state, save_weights
from mie.training.callbacks import Callback, CallbackList, MetricsLogger, ModelCheckpoint, ProgressBar
from mie.training.distributed import (
    all_reduce_mean,
    broadcast_int,
    get_world_size,
    is_distributed,
    is_main_process,
    rank_seed,
    wrap_ddp,
)
from mie.training.optim import create_optimizer
from mie.training.rng import capture_rng_state, restore_rng_state, set_seed
from mie.training.schedules import build_scheduler

_STATE_FORMAT = "mie-trainer-state-v1"
PRECISIONS = ("fp32", "bf16", "fp16")


def resolve_device(spec: str | torch.device) -> torch.device:
    """``"auto"`` picks CUDA, then Apple MPS, then CPU; an explicit but absent device is an error."""
    if isinstance(spec, torch.device):
        return spec
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={spec!r} but CUDA is not available; use device=auto or cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={spec!r} but MPS is not available; use device=auto or cpu")
    return device


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a (nested) dict / list / tuple batch to ``device``; leave the rest as is."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=device.type == "cuda")
    if isinstance(batch, Mapping):
        return {key: move_to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(value, device) for value in batch)
    return batch


def batch_size_of(batch: Any) -> int:
    """Number of samples in a batch: the first dimension of its first tensor (1 if none)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.ndim else 1
    values = batch.values() if isinstance(batch, Mapping) else batch if isinstance(batch, (list, tuple)) else ()
    for value in values:
        if isinstance(value, (torch.Tensor, Mapping, list, tuple)):
            return batch_size_of(value)
    return 1


def _to_float(value: Any) -> float:
    return float(value.detach().float().mean()) if isinstance(value, torch.Tensor) else float(value)


def _safe_len(loader: Iterable) -> int | None:
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:  # an IterableDataset without __len__
        return None


class BaseTrainer(ABC):
    """The loop; subclasses implement ``training_step`` and ``validation_step``.

    ``callbacks=None`` installs ``ProgressBar``, ``MetricsLogger`` and ``ModelCheckpoint``; pass a
    list (possibly empty) to choose exactly. ``optimizer=None`` builds AdamW from
    ``config.optimizer`` over :meth:`optimized_module`. ``device=None`` uses ``config.device``.
    """

    #: optimizer steps measured before a wall-clock budget resizes the schedule
    budget_calibration_steps: int = 20

    def __init__(self, model: nn.Module, config: TrainingConfig, train_loader: Iterable,
                 val_loader: Iterable | None = None, callbacks: Iterable[Callback] | None = None,
                 optimizer: torch.optim.Optimizer | None = None, device: str | torch.device | None = None,
                 quiet: bool = False) -> None:
        if config.grad_accum_steps < 1:
            raise ValueError(f"grad_accum_steps={config.grad_accum_steps} must be >= 1")
        self.config = config
        self.device = resolve_device(device if device is not None else config.device)
        self.is_main = is_main_process()
        set_seed(rank_seed(config.seed))
        self.raw_model = model.to(self.device)
        self.model = wrap_ddp(self.raw_model, self.device)
        self.train_loader = train_loader
        self.val_loader = val_loader
        self.autocast_dtype = self._resolve_precision(config.precision)
        self.scaler = torch.amp.GradScaler("cuda") if self.autocast_dtype is torch.float16 else None
        self.optimizer = optimizer or create_optimizer(self.optimized_module(), config.optimizer)
        n_batches = _safe_len(train_loader)
        self.steps_per_epoch = None if n_batches is None else math.ceil(n_batches / config.grad_accum_steps)
        self.num_epochs = config.epochs
        self._planned_total = self._plan_total_steps()
        self._budget_total: int | None = None
        self.scheduler = build_scheduler(self.optimizer, config.schedule, lambda: self.total_steps)
        default = [ProgressBar(quiet=quiet), MetricsLogger(), ModelCheckpoint()]
        self.callbacks = CallbackList(default if callbacks is None else callbacks)
        self.global_step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.history: list[dict[str, float]] = []
        self.should_stop = False
        self.last_step_metrics: dict[str, float] = {}
        self.last_val_metrics: dict[str, float] = {}
        self._epoch_sums: dict[str, float] = {}
        self._epoch_counts: dict[str, int] = {}
        self._elapsed_before = 0.0
        self._fit_start: float | None = None
        self._fit_start_step = 0
        self._val_batch_sizes: list[int] = []

    # ----------------------------------------------------------------- what subclasses write
    @abstractmethod
    def training_step(self, batch: Any) -> dict[str, Any]:
        """Forward one (device-placed) batch; return ``{"loss": scalar tensor, ...other scalars}``."""

    @abstractmethod
    def validation_step(self, batch: Any) -> dict[str, Any]:
        """Evaluate one batch without gradients; return scalar metrics (floats or 0-d tensors)."""

    def validation_epoch_end(self, outputs: list[dict[str, float]]) -> dict[str, float]:
        """Combine per-batch outputs; default: the mean of each key weighted by batch size.

        Override it for metrics over the whole set (retrieval recall, BLEU) that are not means.
        """
        totals: dict[str, float] = {}
        weights: dict[str, float] = {}
        sizes = self._val_batch_sizes if len(self._val_batch_sizes) == len(outputs) else [1] * len(outputs)
        for out, size in zip(outputs, sizes):
            for key, value in out.items():
                totals[key] = totals.get(key, 0.0) + value * size
                weights[key] = weights.get(key, 0.0) + size
        return {key: totals[key] / weights[key] for key in totals}

    def optimized_module(self) -> nn.Module:
        """The module whose parameters the default optimizer trains (the bare model)."""
        return self.raw_model

    def extra_state_dict(self) -> dict[str, Any]:
        """Subclass state to checkpoint besides the model (e.g. a loss with parameters)."""
        return {}

    def load_extra_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state_dict` returned."""
        return None

    # ----------------------------------------------------------------- set-up helpers
    def _resolve_precision(self, precision: str) -> torch.dtype | None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision={precision!r} is unknown; choose one of {', '.join(PRECISIONS)}")
        if precision == "fp32":
            return None
        if precision == "fp16" and self.device.type != "cuda":
            warnings.warn(f"precision=fp16 needs CUDA (a GradScaler); on {self.device.type} training "
                          "falls back to bf16", stacklevel=3)
            return torch.bfloat16
        return torch.float16 if precision == "fp16" else torch.bfloat16

    def _plan_total_steps(self) -> int:
        limits = []
        if self.config.max_steps > 0:
            limits.append(self.config.max_steps)
        if self.steps_per_epoch is not None:
            limits.append(self.config.epochs * self.steps_per_epoch)
        if not limits:
            raise ValueError("the training loader has no length, so the schedule cannot be sized; "
                             "set training.max_steps")
        return max(1, min(limits))

    @property
    def total_steps(self) -> int:
        """Optimizer steps the lr schedule spans (shrunk to fit ``max_minutes`` once measured)."""
        return self._budget_total or self._planned_total

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def _seed_epoch(self, loader: Iterable, epoch: int) -> None:
        """Make the epoch's shuffle a function of ``seed + epoch`` (the key to exact resumption)."""
        for sampler in (getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
        dataset = getattr(loader, "dataset", None)
        if isinstance(dataset, IterableDataset) and hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)  # a stream's shard order (WebDataset)
        generator = getattr(loader, "generator", None)
        if isinstance(generator, torch.Generator):
            generator.manual_seed(self.config.seed + epoch)

    def _parameters(self) -> list[nn.Parameter]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def elapsed_seconds(self) -> float:
        """Training wall-clock time, summed over resumed runs."""
        running = time.monotonic() - self._fit_start if self._fit_start is not None else 0.0
        return self._elapsed_before + running

    # ----------------------------------------------------------------- the loop
    def fit(self, num_epochs: int | None = None, resume_from: str | Path | None = None) -> list[dict[str, float]]:
        """Train until epoch ``num_epochs`` (default ``config.epochs``) or a limit; return the history.

        The history is a list with one dict per (possibly partial) epoch: ``epoch``, ``step``,
        ``train/...`` means and, when validated, ``val/...`` metrics. ``resume_from`` is a
        ``*_state.pt`` file, its ``.safetensors`` sibling, or a directory holding ``last_state.pt``.
        """
        if resume_from is not None:
            self.load_checkpoint(resume_from)
        self.num_epochs = num_epochs or self.config.epochs
        self.should_stop = False
        self._fit_start, self._fit_start_step = time.monotonic(), self.global_step
        self._check_limits()  # a resumed run may already be at max_steps
        self.callbacks.on_train_begin(self)
        while self.epoch < self.num_epochs and not self.should_stop:
            epoch = self.epoch
            self.callbacks.on_epoch_begin(self, epoch)
            train_metrics, completed = self._run_train_epoch()
            metrics: dict[str, float] = {"epoch": epoch, "step": self.global_step, **train_metrics}
            periodic = (epoch + 1) % max(1, self.config.eval_every_epochs) == 0 or epoch + 1 == self.num_epochs
            if self.val_loader is not None and ((completed and periodic) or self.should_stop):
                val_metrics = self.validate_epoch()
                metrics.update(val_metrics)
                self.callbacks.on_validation_end(self, val_metrics)
            if completed:
                self.epoch, self.batch_in_epoch = epoch + 1, 0
                self._epoch_sums, self._epoch_counts = {}, {}
            self.history.append(metrics)
            self.callbacks.on_epoch_end(self, epoch, metrics)
        self._elapsed_before, self._fit_start = self.elapsed_seconds(), None
        self.callbacks.on_train_end(self, self.history)
        return self.history

    def train_epoch(self) -> dict[str, float]:
        """Run (the rest of) the current epoch; returns its ``train/...`` means."""
        return self._run_train_epoch()[0]

    def _run_train_epoch(self) -> tuple[dict[str, float], bool]:
        self.model.train()
        self._seed_epoch(self.train_loader, self.epoch)
        accum = self.config.grad_accum_steps
        n_batches = _safe_len(self.train_loader)
        skip = self.batch_in_epoch
        if skip and not isinstance(getattr(self.train_loader, "generator", None), torch.Generator) \
                and not hasattr(getattr(self.train_loader, "sampler", None), "set_epoch"):
            warnings.warn("resuming mid-epoch with a loader that has no torch.Generator or set_epoch sampler: "
                          "the skipped batches may differ from those already trained on", stacklevel=3)
        window: list[dict[str, float]] = []
        samples, window_start = 0, time.perf_counter()
        completed = True
        for index, batch in enumerate(self.train_loader):
            if index < skip:
                continue  # mid-epoch resume: these batches were trained on before the checkpoint
            batch = move_to_device(batch, self.device)
            closes = (index + 1) % accum == 0 or (n_batches is not None and index + 1 == n_batches)
            # Inside an accumulation window DDP need not all-reduce; with an unknown length we cannot
            # tell which batch closes the window, so every backward synchronises.
            skip_sync = isinstance(self.model, DistributedDataParallel) and not closes and n_batches is not None
            with self.model.no_sync() if skip_sync else contextlib.nullcontext():
                with self._autocast():
                    out = self.training_step(batch)
                if "loss" not in out:
                    raise ValueError(f"{type(self).__name__}.training_step must return a dict with 'loss'")
                loss = out["loss"]
                if not torch.isfinite(loss.detach()).all():
                    raise FloatingPointError(f"loss is {loss.item()} at step {self.global_step + 1} (epoch "
                                             f"{self.epoch}); lower the learning rate or use fp32/bf16")
                scaled = loss / accum
                (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            window.append({key: _to_float(value) for key, value in out.items()})
            samples += batch_size_of(batch)
            if closes:
                self._finish_step(window, samples, time.perf_counter() - window_start, index + 1)
                window, samples, window_start = [], 0, time.perf_counter()
                if self.should_stop:
                    completed = n_batches is not None and index + 1 >= n_batches
                    break
        if window:  # a loader without length ended inside a window
            self._finish_step(window, samples, time.perf_counter() - window_start, self.batch_in_epoch + len(window))
        means = {key: self._epoch_sums[key] / self._epoch_counts[key] for key in self._epoch_sums}
        return {f"train/{key}": value for key, value in means.items()}, completed

    def _finish_step(self, window: list[dict[str, float]], samples: int, seconds: float, batches_done: int) -> None:
        lr, grad_norm = self._optimizer_step(len(window))
        self.global_step += 1
        self.batch_in_epoch = batches_done
        metrics: dict[str, float] = {}
        for key in dict.fromkeys(k for out in window for k in out):
            values = [out[key] for out in window if key in out]
            metrics[f"train/{key}"] = sum(values) / len(values)
            self._epoch_sums[key] = self._epoch_sums.get(key, 0.0) + sum(values)
            self._epoch_counts[key] = self._epoch_counts.get(key, 0) + len(values)
        metrics["train/lr"] = lr
        metrics["train/samples_per_sec"] = samples * get_world_size() / max(seconds, 1e-9)
        if grad_norm is not None:
            metrics["train/grad_norm"] = grad_norm
        self.last_step_metrics = metrics
        self.callbacks.on_step_end(self, self.global_step, metrics)
        self._check_limits()

    def _optimizer_step(self, micro_batches: int) -> tuple[float, float | None]:
        """Step on the accumulated gradients; returns ``(lr used, grad norm before clipping)``."""
        params = self._parameters()
        accum = self.config.grad_accum_steps
        if micro_batches != accum:  # a short last window: turn the sum of loss/accum into a mean
            for p in params:
                if p.grad is not None:
                    p.grad.mul_(accum / micro_batches)
        self._sync_extra_grads(params)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        grad_norm = None
        if self.config.optimizer.grad_clip > 0:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, self.config.optimizer.grad_clip))
        lr = float(self.optimizer.param_groups[0]["lr"])
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        clamp = getattr(self.raw_model, "clamp_logit_scale_", None)
        if callable(clamp):
            clamp()
        return lr, grad_norm

    def _sync_extra_grads(self, params: list[nn.Parameter]) -> None:
        """Average gradients of trained parameters outside the DDP model (e.g. in the loss)."""
        if not is_distributed():
            return
        inside = {id(p) for p in self.raw_model.parameters()}
        for p in params:
            if id(p) not in inside and p.grad is not None:
                torch.distributed.all_reduce(p.grad)
                p.grad /= get_world_size()

    def _check_limits(self) -> None:
        cfg = self.config
        if cfg.max_steps > 0 and self.global_step >= cfg.max_steps:
            self.should_stop = True
        if cfg.max_minutes <= 0:
            return
        budget, elapsed = cfg.max_minutes * 60.0, self.elapsed_seconds()
        # Rank 0's clock decides, so every process stops (and resizes) at the same step.
        if broadcast_int(int(elapsed >= budget), self.device):
            self.should_stop = True
            return
        steps_this_fit = self.global_step - self._fit_start_step
        if self._budget_total is None and steps_this_fit >= self.budget_calibration_steps:
            per_step = (time.monotonic() - self._fit_start) / steps_this_fit
            fits = self.global_step + int((budget - elapsed) / per_step)
            self._budget_total = broadcast_int(max(self.global_step + 1, min(self._planned_total, fits)),
                                               self.device)

    @torch.no_grad()
    def validate_epoch(self) -> dict[str, float]:
        """Run ``validation_step`` over the val loader; returns ``val/...`` metrics (rank-averaged).

        During validation ``self.model`` is the bare model: DDP's forward would run collectives
        that ranks with different numbers of validation batches could not match.
        """
        if self.val_loader is None:
            return {}
        wrapped, self.model = self.model, self.raw_model
        self.raw_model.eval()
        try:
            outputs, self._val_batch_sizes = [], []
            for batch in self.val_loader:
                batch = move_to_device(batch, self.device)
                with self._autocast():
                    out = self.validation_step(batch)
                outputs.append({key: _to_float(value) for key, value in out.items()})
                self._val_batch_sizes.append(batch_size_of(batch))
            metrics = all_reduce_mean(self.validation_epoch_end(outputs), self.device)
        finally:
            self.model = wrapped
            self.raw_model.train()
        self.last_val_metrics = {k if k.startswith("val/") else f"val/{k}": float(v) for k, v in metrics.items()}
        return dict(self.last_val_metrics)

    # ----------------------------------------------------------------- state and checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: model, optimizer, scheduler, scaler, counters, RNG."""
        return {
            "format": _STATE_FORMAT,
            "model": self.raw_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "global_step": self.global_step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "epoch_sums": dict(self._epoch_sums),
            "epoch_counts": dict(self._epoch_counts),
            "history": [dict(h) for h in self.history],
            "last_val_metrics": dict(self.last_val_metrics),
            "elapsed_seconds": self.elapsed_seconds(),
            "budget_total_steps": self._budget_total,
            "rng": capture_rng_state(),
            "callbacks": self.callbacks.state_dict(),
            "extra": self.extra_state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (the model must have the same architecture)."""
        if state.get("format") != _STATE_FORMAT:
            raise ValueError(f"not a trainer state (format={state.get('format')!r}, expected {_STATE_FORMAT})")
        self.raw_model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(dict(state["scheduler"]))
        if self.scaler is not None and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.global_step = int(state["global_step"])
        self.epoch = int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self._epoch_sums = dict(state["epoch_sums"])
        self._epoch_counts = dict(state["epoch_counts"])
        self.history = [dict(h) for h in state["history"]]
        self.last_val_metrics = dict(state["last_val_metrics"])
        self._elapsed_before = float(state["elapsed_seconds"])
        self._budget_total = state["budget_total_steps"]
        restore_rng_state(state["rng"])
        self.callbacks.load_state_dict(state["callbacks"])
        self.load_extra_state_dict(state["extra"])

    def save_checkpoint(self, directory: str | Path, name: str = "last", with_state: bool = True,
                        extra_metadata: Mapping[str, Any] | None = None) -> Path | None:
        """Write ``<name>.safetensors`` + ``<name>.json`` (and ``<name>_state.pt``); rank 0 only.

        The JSON sidecar carries the config, step, epoch and latest validation metrics.
        """
        if not self.is_main:
            return None
        directory = Path(directory)
        config = dataclasses.asdict(self.config) if dataclasses.is_dataclass(self.config) else dict(self.config)
        metadata = {"kind": name, "config": config, "step": self.global_step, "epoch": self.epoch,
                    "metrics": dict(self.last_val_metrics), **dict(extra_metadata or {})}
        path = save_weights(directory / f"{name}.safetensors", self.raw_model.state_dict(), metadata)
        if with_state:
            save_state(directory / f"{name}_state.pt", self.state_dict())
        self.callbacks.on_checkpoint(self, path)
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore a trainer state written by :meth:`save_checkpoint` (see ``fit(resume_from=...)``)."""
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
        self.load_state_dict(load_state(file, map_location="cpu"))
