"""The trainer's part of every recipe config: loop limits, precision, logging, checkpoints,
optimizer, schedule and stages. A recipe's config extends ``TrainerConfig`` with its model, data
and loss, so these keys sit at the top level of every YAML file (``max_steps``, ``optimizer.lr``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar

from mie.config import FRACTION, NON_NEGATIVE, POSITIVE, Rule, one_of
from mie.losses.config import LossConfig

_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def _betas(v: list[float]) -> bool:
    return len(v) == 2 and all(0.0 <= b < 1.0 for b in v)


@dataclass
class OptimizerConfig:
    """AdamW settings; ``grad_clip`` <= 0 disables clipping."""

    RULES: ClassVar[dict[str, Rule]] = {
        "name": one_of("adamw"),
        "lr": POSITIVE,
        "weight_decay": NON_NEGATIVE,
        "betas": (_betas, "two numbers [beta1, beta2], each in [0, 1)"),
        "eps": POSITIVE,
        "implementation": one_of("auto", "fused", "foreach"),
    }

    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.1
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-6
    grad_clip: float = 1.0
    # AdamW kernel: fused (one pass over each tensor) or foreach; auto = fused where torch has it for every
    # parameter's device (CPU and CUDA in recent torch), else foreach
    implementation: str = "auto"


@dataclass
class ScheduleConfig:
    """Learning-rate schedule: linear warmup then ``cosine`` / ``linear`` decay, ``inverse_sqrt``, or ``constant``."""

    RULES: ClassVar[dict[str, Rule]] = {
        "name": one_of("cosine", "linear", "constant", "inverse_sqrt"),
        "warmup_steps": NON_NEGATIVE,
        "min_lr_ratio": FRACTION,
    }

    name: str = "cosine"
    warmup_steps: int = 100
    min_lr_ratio: float = 0.0


@dataclass
class StageConfig:
    """One stage of a multistage run. Zero / empty / null fields take the run's top-level value.

    Its length is ``steps`` optimizer steps, else ``epochs`` passes over the data. ``freeze`` and the
    keys of ``lr_multipliers`` are glob patterns over parameter names (``visual.*``, ``*_projection.*``;
    a plain name also matches everything under it); the first matching ``lr_multipliers`` pattern sets
    a parameter's factor on the stage's lr, so a last ``"*"`` sets the rest.
    """

    RULES: ClassVar[dict[str, Rule]] = {
        "epochs": NON_NEGATIVE, "steps": NON_NEGATIVE, "lr": NON_NEGATIVE, "batch_size": NON_NEGATIVE,
        "grad_accum_steps": NON_NEGATIVE,
        "lr_multipliers": (lambda v: all(m >= 0 for m in v.values()), "a mapping pattern -> factor >= 0"),
    }

    name: str = ""
    epochs: int = 0
    steps: int = 0
    loss: LossConfig | None = None
    freeze: list[str] = field(default_factory=list)
    lr_multipliers: dict[str, float] = field(default_factory=dict)
    lr: float = 0.0
    batch_size: int = 0
    grad_accum_steps: int = 0
    schedule: ScheduleConfig | None = None


@dataclass
class TrainerConfig:
    """What ``BaseTrainer`` reads: the run directory, seed, limits, precision, logging, checkpoints,
    optimizer, schedule and (optionally) stages. With no ``stages`` the run is one stage of ``max_steps``
    optimizer steps when that is set, else of ``epochs``."""

    RULES: ClassVar[dict[str, Rule]] = {
        "epochs": POSITIVE,
        "max_steps": NON_NEGATIVE,
        "max_minutes": NON_NEGATIVE,
        "threads": NON_NEGATIVE,
        "ddp_timeout_s": POSITIVE,
        "grad_accum_steps": POSITIVE,
        "precision": one_of("auto", "fp32", "bf16", "fp16"),
        "device": (lambda v: _DEVICE.fullmatch(v) is not None, "auto | cpu | cuda | cuda:N | mps"),
        "log_every": POSITIVE,
        "eval_every_epochs": POSITIVE,
        "checkpoint_every_steps": NON_NEGATIVE,
        "best_metric": (lambda v: bool(v.strip()), "a non-empty metric name such as val/mean_R@1"),
        "best_mode": one_of("max", "min"),
        "qat": one_of("", "int8-weight", "int4-weight"),
    }

    project_name: str = "mie"
    output_dir: str = "runs/mie"
    seed: int = 42
    epochs: int = 10
    # > 0: the length of training in optimizer steps; the epochs follow from it (the epochs key is not used) and
    # the log says how many. With stages: a cap on the steps of all stages together. 0 = the epochs decide.
    max_steps: int = 0
    max_minutes: float = 0.0  # 0 = no wall-clock budget; else the schedule is sized to fit it
    grad_accum_steps: int = 1
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 elsewhere) | fp32 | bf16 | fp16
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    threads: int = 0  # torch's CPU threads; 0 = torch's default (one per core); 1 on a shared CPU; --threads wins
    compile: bool = False  # torch.compile each repeated block (mie.training.compile); pays where measured
    tensorboard: bool = False  # also write TensorBoard event files to <output_dir>/tensorboard
    # quantization-aware training: linears compute with int8 / int4 (group 32) rounded weights (mie.optimization.qat);
    # afterwards `mie optimize quantize RUN --method <the same>` stores them as integers. "" = off
    qat: str = ""
    ddp_timeout_s: float = 600.0  # under torchrun: a rank that fails or stalls stops the others within this
    log_every: int = 10
    eval_every_epochs: int = 1
    checkpoint_every_steps: int = 0  # 0 = only at stage ends and the end (and the best)
    best_metric: str = "val/mean_R@1"
    best_mode: str = "max"  # max | min
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    stages: list[StageConfig] = field(default_factory=list)
