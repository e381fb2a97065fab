"""``BaseTrainer``: the training loop, written once. A :class:`~mie.training.task.Task` says what a
batch means; the trainer owns everything around it: device placement, seeding, stages, gradient
accumulation, clipping, mixed precision, lr schedules, step / epoch / wall-clock limits, DDP,
callbacks, checkpoints and exact resumption.

Stages run in order (one implicit stage without ``stages:``). Entering a stage calls
``task.on_stage_start``, freezes parameters by name, builds the stage's optimizer (lr multipliers by
name), schedule and loader (its batch size), and re-wraps the task for DDP. A stage lasts ``steps``
optimizer steps, else ``epochs`` passes; top-level ``max_steps`` caps all stages together. Its end
is checkpointed (``stage<i>.safetensors`` and ``last``) and every metrics row carries ``stage``.

``max_minutes`` stops the run once spent and sizes the last stage's schedule to fit it
(``mie.training.budget``); either is said aloud and kept in ``notices``. The first Ctrl-C stops at
the next step boundary, commits a resumable checkpoint and raises ``KeyboardInterrupt``; a second
one interrupts at once.

Hot path: the loss and diagnostics stay on the device; ``.item()``-like host synchronisations, the
finiteness check and the task's diagnostics (``task.logging_step``) happen every ``log_every``
steps only.

Exact resumption: an epoch's shuffle depends on ``seed + 1000 * stage + epoch``; the state holds
task, optimizer, scheduler, scaler, counters, running sums, RNG and callback states, so a run
resumed at any checkpoint (mid-stage and mid-epoch included) computes what an uninterrupted one
would on a deterministic device.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from mie.errors import CheckpointError, ConfigError, NonFiniteLossError
from mie.training.budget import check_time_budget
from mie.training.callbacks import Callback, CallbackList, MetricsLogger
from mie.training.checkpoint_callback import ModelCheckpoint
from mie.training.checkpointing import TrainerStateMixin
from mie.training.compile import compile_blocks, release_blocks
from mie.training.config import StageConfig, TrainerConfig
from mie.training.device import autocast, resolve_device, resolve_precision, to_device
from mie.training.distributed import (
    get_world_size,
    guard_collectives,
    is_main_process,
    rank_seed,
    wrap_ddp,
)
from mie.training.interrupt import GracefulInterrupt
from mie.training.loop_utils import batch_size_of, safe_len, to_float
from mie.training.optim import create_adamw
from mie.training.progress import ProgressBar
from mie.training.rng import set_seed
from mie.training.schedules import build_scheduler
from mie.training.stages import (
    apply_freeze,
    check_patterns,
    param_groups,
    resolve_stages,
    seed_epoch,
    stage_rng_offset,
)
from mie.training.task import Task
from mie.training.tensorboard import TensorBoardLogger
from mie.training.threads import set_threads

LoaderFactory = Callable[[int], Iterable]
logger = logging.getLogger(__name__)


class BaseTrainer(TrainerStateMixin):
    """Trains ``task`` as ``config`` says. ``train_loader`` is an iterable of batches, or a function
    ``batch_size -> iterable`` (needed when a stage sets its own ``batch_size``).

    ``callbacks=None`` installs ``ProgressBar``, ``MetricsLogger`` and ``ModelCheckpoint``; pass a
    list (possibly empty) to choose exactly. ``batch_size`` is the loaders' default batch size.
    """

    #: optimizer steps measured before a wall-clock budget resizes the last stage's schedule
    budget_calibration_steps: int = 20

    def __init__(self, task: Task, config: TrainerConfig, train_loader: Iterable | LoaderFactory,
                 val_loader: Iterable | None = None, callbacks: Iterable[Callback] | None = None,
                 device: str | torch.device | None = None, quiet: bool = False, batch_size: int = 0) -> None:
        self.config = config
        self.device = resolve_device(device if device is not None else config.device)
        self.is_main = is_main_process()
        # For the whole process (decoding after training runs on as many); --threads wins; warns on a busy CPU.
        set_threads(config.threads)
        set_seed(rank_seed(config.seed))
        if config.qat:  # fake-quantized linears, so the weights learn the integer grid they will be stored on
            from mie.optimization.qat import prepare_qat
            prepare_qat(task.model, config.qat)
        self.task = task.to(self.device)
        self.model = self.task.model
        self._loaders = train_loader
        self._default_batch = batch_size
        self.train_loader: Iterable = [] if callable(train_loader) else train_loader
        self.val_loader = val_loader
        self.autocast_dtype = resolve_precision(config.precision, self.device)
        self.scaler = torch.amp.GradScaler("cuda") if self.autocast_dtype is torch.float16 else None
        self.stages: list[StageConfig] = resolve_stages(config)
        for index, stage in enumerate(self.stages):
            if stage.grad_accum_steps < 1:
                raise ValueError(f"grad_accum_steps of stage {index} is {stage.grad_accum_steps}; it must be >= 1")
        default = [ProgressBar(quiet=quiet), MetricsLogger(), ModelCheckpoint()]
        if config.tensorboard:
            default.append(TensorBoardLogger())
        self.callbacks = CallbackList(default if callbacks is None else callbacks)
        self.global_step = self.stage = self.stage_step = self.epoch = self.batch_in_epoch = 0
        self.history: list[dict[str, float]] = []
        self.should_stop = self.interrupted = False
        self.notices: list[str] = []  # what shortened or stopped the run, for the console and the report
        self._interrupt: GracefulInterrupt | None = None
        self.last_step_metrics: dict[str, float] = {}
        self.last_val_metrics: dict[str, float] = {}
        self._epoch_sums: dict[str, Any] = {}
        self._epoch_counts: dict[str, int] = {}
        self._epoch_open = False  # an epoch has begun whose validation and history row are still to come
        self._elapsed_before = 0.0
        self._fit_start: float | None = None
        self._fit_start_step = 0
        self._budget_total: int | None = None
        self._calibration: tuple | None = None  # (stage, epoch, step where it began, start step, start time)
        self._window_sums: dict[str, Any] = {}
        self._window_counts: dict[str, int] = {}
        self._log_samples, self._log_seconds = 0, 0.0
        self.ddp_task: torch.nn.Module = self.task
        check_patterns(self.task, self.stages, bool(config.stages))
        self._enter_stage(0)

    # ----------------------------------------------------------------- set-up
    def _enter_stage(self, index: int) -> None:
        """Set up stage ``index``: task hook, freezing, optimizer, schedule, loader, DDP."""
        stage = self.stages[index]
        where = f"stages[{index}]" if self.config.stages else "training"
        self.stage = index
        self.task.on_stage_start(index, stage)
        self.task.to(self.device)
        apply_freeze(self.model, stage.freeze, f"{where}.freeze")
        groups = param_groups(self.task, stage.lr, self.config.optimizer.weight_decay, stage.lr_multipliers,
                              f"{where}.lr_multipliers")
        self.optimizer = create_adamw(groups, self.config.optimizer, stage.lr)
        if stage.batch_size or callable(self._loaders):
            if not callable(self._loaders):
                raise ValueError(f"{where}.batch_size is set but the trainer got a fixed loader; pass a "
                                 "function batch_size -> loader")
            self.train_loader = self._loaders(stage.batch_size or self._default_batch)
        n_batches = safe_len(self.train_loader)
        if n_batches == 0:  # e.g. fewer samples than one batch with drop_last: training would do nothing
            raise ConfigError("the training data gives no batch, so training would take 0 optimizer steps",
                              where=f"{where} (batch size {stage.batch_size or self._default_batch or '?'})",
                              fix="lower data.batch_size (or the stage's batch_size) below the number of samples")
        self.steps_per_epoch = None if n_batches is None else math.ceil(n_batches / stage.grad_accum_steps)
        self.stage_total = self._plan_stage_steps(stage, where)  # before the max_steps cap
        self._budget_total = None
        self.scheduler = build_scheduler(self.optimizer, stage.schedule, lambda: self.total_steps)
        self.ddp_task = wrap_ddp(self.task, self.device, find_unused_parameters=True)

    def _plan_stage_steps(self, stage: StageConfig, where: str) -> int:
        if stage.steps:
            return stage.steps
        if self.steps_per_epoch is None:
            if self.config.max_steps > 0:
                return self.config.max_steps  # a stream: the run's step cap sizes the stage
            raise ValueError(f"the training loader has no length, so {where} cannot be sized in epochs; "
                             "set max_steps (or the stage's steps)")
        return stage.epochs * self.steps_per_epoch

    @property
    def total_steps(self) -> int:
        """Optimizer steps the current stage's schedule spans: :attr:`planned_steps`, or what fits
        ``max_minutes`` once measured."""
        return self._budget_total or self.planned_steps

    @property
    def planned_steps(self) -> int:
        """The current stage's length, capped by what is left of ``max_steps`` (steps before this
        stage are ``global_step - stage_step``)."""
        planned = self.stage_total
        if self.config.max_steps > 0:
            planned = min(planned, self.config.max_steps - (self.global_step - self.stage_step))
        return max(1, planned)

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.autocast_dtype)

    def load_checkpoint(self, path: str | Path) -> None:
        """Continue from a state written by :meth:`save_checkpoint` (see :meth:`read_checkpoint`)."""
        state = self.read_checkpoint(path)
        stage = state.get("stage", 0) if isinstance(state, dict) else 0
        if not isinstance(stage, int) or not 0 <= stage < len(self.stages):
            raise CheckpointError(f"names stage {stage!r}, but this config has {len(self.stages)} stage(s)",
                                  where=path, fix="resume with the config of the run that wrote it")
        self._enter_stage(stage)
        self.load_state_dict(state, where=path)

    def elapsed_seconds(self) -> float:
        """Training wall-clock time, summed over resumed runs."""
        running = time.monotonic() - self._fit_start if self._fit_start is not None else 0.0
        return self._elapsed_before + running

    # ----------------------------------------------------------------- the loop
    @guard_collectives  # a failed or stalled rank: a DistributedError naming this rank, within the timeout
    def fit(self, resume_from: str | Path | None = None) -> list[dict[str, float]]:
        """Run every stage (or until a limit); return the history, one dict per (partial) epoch with
        ``stage``, ``epoch``, ``step``, ``train/...`` means and, when validated, ``val/...`` metrics.

        ``resume_from`` is a ``*_state.pt`` file, its ``.safetensors`` sibling, or a directory
        holding ``last_state.pt`` (directly or under ``checkpoints/``).
        """
        if resume_from is not None:
            self.load_checkpoint(resume_from)
            if self.is_main:
                logger.info("resumed from step %d (stage %d, epoch %d) of %s", self.global_step, self.stage,
                            self.epoch + 1, resume_from)
        self.should_stop = self.interrupted = False
        self._calibration = None
        self._fit_start, self._fit_start_step = time.monotonic(), self.global_step
        self._check_limits()  # a resumed run may already be at max_steps
        compiled = compile_blocks(self.model, self.device) if self.config.compile else []  # eager again after fit
        self.callbacks.on_train_begin(self)
        with GracefulInterrupt() as self._interrupt:  # Ctrl-C: stop at a step boundary, save, then exit
            while True:  # a resumed run already at max_steps still finishes its open epoch and its stage
                self._run_stage()
                if self.should_stop or self.stage + 1 >= len(self.stages):
                    break
                self.stage_step = self.epoch = self.batch_in_epoch = 0
                self._epoch_sums, self._epoch_counts = {}, {}
                self._enter_stage(self.stage + 1)
        self._interrupt = None
        self._elapsed_before, self._fit_start = self.elapsed_seconds(), None
        self.callbacks.on_train_end(self, self.history)  # commits the last state, mid-epoch after Ctrl-C
        release_blocks(compiled)
        if self.interrupted:
            raise KeyboardInterrupt(f"interrupted at step {self.global_step}; a resumable checkpoint is saved in "
                                    f"{self.config.output_dir} — continue with --resume")
        return self.history

    def _run_stage(self) -> None:
        # An epoch a checkpoint interrupted is finished (validation, history row) even at max_steps.
        while self._epoch_open or (self.stage_step < self.total_steps and not self.should_stop):
            epoch = self.epoch
            self.callbacks.on_epoch_begin(self, epoch)
            self._epoch_open = True
            train_metrics, completed = self._run_train_epoch()
            if self.interrupted:
                return  # no validation or history row: the epoch resumes where it stopped
            stage_done = self.stage_step >= self.total_steps
            metrics: dict[str, float] = {"stage": self.stage, "epoch": epoch, "step": self.global_step,
                                         **train_metrics}
            periodic = completed and (epoch + 1) % max(1, self.config.eval_every_epochs) == 0
            if periodic or stage_done or self.should_stop:
                val_metrics = self.validate_epoch()
                if val_metrics:
                    metrics.update(val_metrics)
                    self.callbacks.on_validation_end(self, val_metrics)
            if completed:
                self.epoch, self.batch_in_epoch = epoch + 1, 0
                self._epoch_sums, self._epoch_counts = {}, {}
            self.history.append(metrics)
            self._epoch_open = False
            self.callbacks.on_epoch_end(self, epoch, metrics)
        # A stage is over when it ran its planned length (or what fits the time budget), not when the
        # run's max_steps cut it short.
        if self.stage_step >= (self._budget_total or self.stage_total) and len(self.stages) > 1:
            self.save_checkpoint(Path(self.config.output_dir) / "checkpoints", f"stage{self.stage}",
                                 with_state=False, extra_metadata={"stage_name": self.stages[self.stage].name})
            self.callbacks.on_stage_end(self, self.stage)

    def _run_train_epoch(self) -> tuple[dict[str, float], bool]:
        n_batches = safe_len(self.train_loader)
        if self.stage_step >= self.total_steps or self.should_stop:  # resumed at the end: no batch to train
            return self._epoch_means(), n_batches is not None and self.batch_in_epoch >= n_batches
        self.task.train()
        seed_epoch(self.train_loader, stage_rng_offset(self.stage) + self.epoch, self.config.seed)
        accum = self.stages[self.stage].grad_accum_steps
        skip = self.batch_in_epoch
        if skip and not isinstance(getattr(self.train_loader, "generator", None), torch.Generator) \
                and not hasattr(getattr(self.train_loader, "sampler", None), "set_epoch"):
            warnings.warn("resuming mid-epoch with a loader that has no torch.Generator or set_epoch sampler: "
                          "the skipped batches may differ from those already trained on", stacklevel=3)
        window, samples, window_start = 0, 0, time.perf_counter()
        completed = True
        for index, batch in enumerate(self.train_loader):
            if index < skip or batch is None:
                continue  # mid-epoch resume: these batches were trained on before the checkpoint
            batch = to_device(batch, self.device)  # non_blocking on CUDA: no host wait
            closes = (index + 1) % accum == 0 or (n_batches is not None and index + 1 == n_batches)
            logged = (self.global_step + 1) % max(1, self.config.log_every) == 0
            self.task.logging_step = logged
            # Inside an accumulation window DDP need not all-reduce; with an unknown length we cannot
            # tell which batch closes the window, so every backward synchronises.
            skip_sync = isinstance(self.ddp_task, DistributedDataParallel) and not closes and n_batches is not None
            with self.ddp_task.no_sync() if skip_sync else contextlib.nullcontext():
                with self._autocast():
                    out = self.ddp_task(batch)
                if "loss" not in out:
                    raise ValueError(f"{type(self.task).__name__}.training_forward must return a dict with 'loss'")
                scaled = out["loss"] / accum
                (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            self._accumulate(out)
            window += 1
            samples += batch_size_of(batch)
            if closes:
                self._finish_step(window, samples, time.perf_counter() - window_start, index + 1, logged)
                window, samples, window_start = 0, 0, time.perf_counter()
                if self.should_stop or self.stage_step >= self.total_steps:
                    completed = n_batches is not None and index + 1 >= n_batches
                    break
        if window:  # a loader without length ended inside a window
            self._finish_step(window, samples, time.perf_counter() - window_start, self.batch_in_epoch + window, True)
        return self._epoch_means(), completed

    def _epoch_means(self) -> dict[str, float]:
        means = {key: to_float(self._epoch_sums[key]) / self._epoch_counts[key] for key in self._epoch_sums}
        return {f"train/{key}": value for key, value in means.items()}

    def _accumulate(self, out: dict[str, Any]) -> None:
        """Running sums of the step's outputs, kept on the device (no host synchronisation)."""
        for key, value in out.items():
            value = value.detach().float() if isinstance(value, torch.Tensor) else float(value)
            self._epoch_sums[key] = self._epoch_sums.get(key, 0.0) + value
            self._epoch_counts[key] = self._epoch_counts.get(key, 0) + 1
            self._window_sums[key] = self._window_sums.get(key, 0.0) + value
            self._window_counts[key] = self._window_counts.get(key, 0) + 1

    def _finish_step(self, micro_batches: int, samples: int, seconds: float, batches_done: int,
                     logged: bool) -> None:
        lr, grad_norm = self._optimizer_step(micro_batches)
        self.global_step += 1
        self.stage_step += 1
        self.batch_in_epoch = batches_done
        self._log_samples += samples
        self._log_seconds += seconds
        metrics: dict[str, float] = {}
        if logged:
            means = {key: to_float(total) / self._window_counts[key] for key, total in self._window_sums.items()}
            if not math.isfinite(means.get("loss", 0.0)):
                self._raise_non_finite(means["loss"])
            metrics = {f"train/{key}": value for key, value in means.items()}
            metrics["train/lr"] = lr
            metrics["train/samples_per_sec"] = self._log_samples * get_world_size() / max(self._log_seconds, 1e-9)
            if grad_norm is not None:
                metrics["train/grad_norm"] = to_float(grad_norm)
            self._window_sums, self._window_counts = {}, {}
            self._log_samples, self._log_seconds = 0, 0.0
            self.last_step_metrics = metrics
        self.callbacks.on_step_end(self, self.global_step, metrics)
        self._check_limits(logged)

    def _raise_non_finite(self, loss: float) -> None:
        first = self.global_step + 1 - self._window_counts.get("loss", 1) // self.stages[self.stage].grad_accum_steps
        steps = f"at step {self.global_step}" if first >= self.global_step else f"in steps {first}..{self.global_step}"
        raise NonFiniteLossError(f"loss is {loss} {steps} (stage {self.stage}, epoch {self.epoch})",
                                 where=f"training of {self.config.output_dir}",
                                 fix="lower the learning rate, use fp32/bf16 or check the data; the last checkpoint is kept")

    def _optimizer_step(self, micro_batches: int) -> tuple[float, torch.Tensor | None]:
        """Step on the accumulated gradients; returns ``(lr used, grad norm before clipping)``."""
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        accum = self.stages[self.stage].grad_accum_steps
        if micro_batches != accum:  # a short last window: turn the sum of loss/accum into a mean
            for p in params:
                if p.grad is not None:
                    p.grad.mul_(accum / micro_batches)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        grad_norm = None
        if self.config.optimizer.grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(params, self.config.optimizer.grad_clip)
        lr = float(self.optimizer.param_groups[0]["lr"])
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.task.after_optimizer_step()
        return lr, grad_norm

    def _check_limits(self, logged: bool = True) -> None:
        cfg = self.config
        if cfg.max_steps > 0 and self.global_step >= cfg.max_steps:
            self.should_stop = True
        if self._interrupt is not None and self._interrupt.stop_now(logged, self.device):
            self.should_stop = self.interrupted = True
            return
        check_time_budget(self, logged)
