"""Tiny training runs of every family (clip, lm, seq2seq, classification) for the device tests, and the
tools that watch their steps for host synchronisations: :class:`HostSyncCounter` on the CPU,
``torch.cuda.set_sync_debug_mode`` on CUDA (tests/gpu/test_cuda_sync_debug.py).

A step's window opens when the loader hands its batch to the trainer and closes when the trainer asks
for the next one, so it holds the copy to the device, forward, backward, optimizer step, the callbacks'
``on_step_end`` and the limit checks; fetching batches and the end of an epoch (its means, validation,
history row) lie outside, as does logging, which happens on the logged steps.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import DataLoader

from mie.losses.config import LossConfig
from mie.models.causal_lm import CausalLM, CausalLMConfig
from mie.models.multimodal import DualEncoderConfig
from mie.models.registry import build_model
from mie.models.seq2seq import EncoderDecoderTransformer, Seq2SeqConfig
from mie.models.vit_classifier import ViTClassifier, ViTClassifierConfig
from mie.tokenization.base import SPECIAL_TOKENS
from mie.training import (
    BaseTrainer,
    MetricsLogger,
    OptimizerConfig,
    ProgressBar,
    ScheduleConfig,
    TrainerConfig,
)
from mie.training.device import pin_memory
from mie.training.task import Task
from mie.training.tasks.classification import ClassificationTask
from mie.training.tasks.contrastive import ContrastiveTask
from mie.training.tasks.language_model import LanguageModelTask
from mie.training.tasks.seq2seq import Seq2SeqTask

FAMILIES = ("clip", "lm", "seq2seq", "classification")
PAD, EOS = SPECIAL_TOKENS.index("<pad>"), SPECIAL_TOKENS.index("<eos>")
aten = torch.ops.aten

# Ops that read a value back (item, float, bool, ...), whose output size depends on the data, or that
# build a tensor from host data (a blocking copy when it is then put on the device).
_SYNC_OPS = {aten._local_scalar_dense.default, aten.nonzero.default, aten.masked_select.default,
             aten._unique2.default, aten.unique_dim.default, aten.unique_consecutive.default,
             aten.bincount.default, aten.equal.default, aten.repeat_interleave.Tensor, aten.lift_fresh.default}
_INDEX_OPS = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default, aten._index_put_impl_.default}
_PYTHON_METHODS = ("tolist", "cpu", "numpy")  # on the CPU these never reach the dispatcher
# Reads of tensors that live on the host on every device, each with its reason.
EXEMPT = {
    "torch/optim/": "torch.optim's step counters are CPU tensors unless capturable or fused",
    "mie/training/tasks/classification.py:mix": "mixup / cutmix draw from torch's CPU generator",
    "mie/training/tasks/classification.py:cutmix_box": "cutmix draws its box from torch's CPU generator",
    # Off the CPU the text tower neither checks nor trims while training (test_device.py shows it on meta).
    "mie/models/text.py:eot_positions": "on the CPU only: the end-of-text check",
    "mie/models/text.py:forward": "on the CPU only: the cut after the batch's last end-of-text",
}


@dataclass
class Sync:
    """One host synchronisation: the step it fell in, whether that step is logged, the op, and where."""

    step: int
    logged: bool
    op: str
    where: str


@dataclass
class HostSyncCounter(TorchDispatchMode):
    """Records every would-be host synchronisation while :attr:`step` is set (a step's window is open).

    On the CPU a sync cannot be observed, so this counts what would be one on a GPU (see ``_SYNC_OPS``,
    boolean-mask indexing, ``tolist`` / ``cpu`` / ``numpy``) except the host-side reads in :data:`EXEMPT`.
    """

    syncs: list[Sync] = field(default_factory=list)
    step: int | None = None
    logged: bool = True

    def __post_init__(self) -> None:
        super().__init__()

    def record(self, op: str) -> None:
        """Note ``op`` against the open step, unless no window is open or the read is exempt."""
        if self.step is None:
            return
        where = _caller()
        if where is not None:
            self.syncs.append(Sync(self.step, self.logged, op, where))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _SYNC_OPS or (func in _INDEX_OPS and _has_mask(args[1])):
            self.record(str(func))
        return func(*args, **kwargs)

    @contextlib.contextmanager
    def watching(self) -> Iterator[HostSyncCounter]:
        """Count inside the block (the dispatch mode plus the Python-level reads)."""
        saved = {name: getattr(torch.Tensor, name) for name in _PYTHON_METHODS}

        def wrap(name: str, method: Callable) -> Callable:
            def counted(tensor, *args, **kwargs):
                self.record(f"Tensor.{name}")
                return method(tensor, *args, **kwargs)
            return counted

        for name, method in saved.items():
            setattr(torch.Tensor, name, wrap(name, method))
        try:
            with self:
                yield self
        finally:
            for name, method in saved.items():
                setattr(torch.Tensor, name, method)

    def unlogged(self) -> list[Sync]:
        """The syncs that fell in steps which are not logged (there should be none)."""
        return [s for s in self.syncs if not s.logged]


def _has_mask(indices: Any) -> bool:
    return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices or ())


def _caller() -> str | None:
    """``file:line function`` of the innermost frame outside torch, or None when the read is exempt."""
    frame, where = sys._getframe(2), None
    while frame is not None:
        path = frame.f_code.co_filename.replace("\\", "/")
        label = f"{path}:{frame.f_code.co_name}"
        if any(key in label for key in EXEMPT):
            return None
        if where is None and "/torch/" not in path and not path.endswith("tests/device_runs.py"):
            where = f"{path.split('/src/')[-1]}:{frame.f_lineno} {frame.f_code.co_name}"
        frame = frame.f_back
    return where or "?"


class StepWindows:
    """Wraps a loader: calls ``enter(step, logged)`` when a batch is handed over and ``leave()`` while
    the trainer fetches the next one (and once the loader is spent). Set :attr:`trainer` before fitting."""

    def __init__(self, loader: Any, enter: Callable[[int, bool], None], leave: Callable[[], None]) -> None:
        self.loader, self.enter, self.leave = loader, enter, leave
        self.trainer: BaseTrainer | None = None

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:  # generator / sampler, which the trainer reseeds per epoch
        return getattr(self.loader, name)

    def __iter__(self) -> Iterator[Any]:
        iterator = iter(self.loader)
        while True:
            self.leave()
            try:
                batch = next(iterator)
            except StopIteration:
                return
            step = self.trainer.global_step + 1
            self.enter(step, step % max(1, self.trainer.config.log_every) == 0)
            yield batch


# ---- the tiny families ------------------------------------------------------------------------------------


def _clip(device: str) -> tuple[Task, list[dict[str, torch.Tensor]]]:
    cfg = DualEncoderConfig(name="tiny", embed_dim=16, image_size=8, patch_size=4, vision_width=16, vision_layers=1,
                            vision_heads=2, text_width=16, text_layers=1, text_heads=2, context_length=8,
                            vocab_size=64, mlp_ratio=2.0)
    ids = torch.randint(len(SPECIAL_TOKENS), 64, (16, 8))
    lengths = torch.randint(2, 8, (16,))
    ids[torch.arange(8)[None, :] >= lengths[:, None]] = PAD
    ids[torch.arange(16), lengths - 1] = EOS
    rows = [{"images": torch.randn(3, 8, 8), "input_ids": ids[i], "match_ids": torch.tensor(i)} for i in range(16)]
    return ContrastiveTask(build_model(cfg, eos_id=EOS, pad_id=PAD), LossConfig(name="clip")), rows


def _lm(device: str) -> tuple[Task, list[tuple[torch.Tensor, torch.Tensor]]]:
    model = CausalLM(CausalLMConfig(vocab_size=64, dim=16, n_layers=1, n_heads=2, max_seq_len=16))
    blocks = torch.randint(0, 64, (16, 9))
    return LanguageModelTask(model), [(b[:-1], b[1:]) for b in blocks]


def _seq2seq(device: str) -> tuple[Task, list[dict[str, torch.Tensor]]]:
    model = EncoderDecoderTransformer(Seq2SeqConfig(src_vocab_size=12, tgt_vocab_size=12, dim=16, heads=2,
                                                    encoder_layers=1, decoder_layers=1, dropout=0.0, max_len=16))
    body = torch.randint(4, 12, (16, 5))
    body[::2, 3:] = 0  # padded rows (pad id 0)
    tgt = torch.cat([torch.full((16, 1), 2), body, torch.full((16, 1), 3)], 1)
    return Seq2SeqTask(model, pad_id=0, label_smoothing=0.1), [{"src": s, "tgt": t} for s, t in zip(body, tgt)]


def _classification(device: str) -> tuple[Task, list[dict[str, torch.Tensor]]]:
    model = ViTClassifier(ViTClassifierConfig(image_size=8, patch_size=4, in_channels=1, width=16, layers=1, heads=2,
                                              num_classes=3))
    task = ClassificationTask(model, 3, label_smoothing=0.1, mixup_alpha=0.4, cutmix_alpha=1.0, switch_prob=0.5)
    return task, [{"images": torch.randn(1, 8, 8), "labels": torch.tensor(i % 3)} for i in range(16)]


BUILDERS = {"clip": _clip, "lm": _lm, "seq2seq": _seq2seq, "classification": _classification}


def tiny_trainer(family: str, device: str, output_dir: Path, enter: Callable[[int, bool], None],
                 leave: Callable[[], None], **overrides: Any) -> BaseTrainer:
    """A trainer over ``family``'s tiny task: 2 epochs of 4 batches of 4 (8 steps), logged every 4th step,
    so steps 1-3 and 5-7 are not logged; its loader calls ``enter`` / ``leave`` around each step."""
    torch.manual_seed(0)
    task, rows = BUILDERS[family](device)
    config = TrainerConfig(project_name="device", output_dir=str(output_dir), seed=0, epochs=2, device=device,
                           log_every=4, checkpoint_every_steps=0, best_metric="val/loss", best_mode="min",
                           optimizer=OptimizerConfig(lr=1e-3, grad_clip=1.0),
                           schedule=ScheduleConfig(name="cosine", warmup_steps=2))
    for key, value in overrides.items():
        setattr(config, key, value)
    loader = DataLoader(rows, batch_size=4, shuffle=True, drop_last=True, pin_memory=pin_memory(device),
                        generator=torch.Generator().manual_seed(0))
    windows = StepWindows(loader, enter, leave)
    trainer = BaseTrainer(task, config, windows, val_loader=DataLoader(rows[:8], batch_size=4),
                          callbacks=[ProgressBar(quiet=True), MetricsLogger()], device=device)
    windows.trainer = trainer
    return trainer


def count_host_syncs(family: str, output_dir: Path, task_hook: Callable[[Task], None] | None = None,
                     **overrides: Any) -> tuple[HostSyncCounter, BaseTrainer]:
    """Train ``family``'s tiny run on the CPU under a :class:`HostSyncCounter`; return both."""
    counter = HostSyncCounter()

    def enter(step: int, logged: bool) -> None:
        counter.step, counter.logged = step, logged

    def leave() -> None:
        counter.step = None

    trainer = tiny_trainer(family, "cpu", output_dir, enter, leave, **overrides)
    if task_hook is not None:
        task_hook(trainer.task)
    with counter.watching():
        trainer.fit()
    return counter, trainer
