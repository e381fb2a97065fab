"""The training phases of a cai run, each a task on ``BaseTrainer`` in its own folder of the run:

* ``sft/``: :class:`~mie.training.tasks.SFTTask` on the SL-CAI revisions (prompt and padding masked);
* ``reward_model/``: :class:`~mie.training.tasks.RewardModelTask` (Bradley–Terry, soft AI labels);
* ``dpo/``: :class:`~mie.training.tasks.DPOTask` against the frozen SL model;
* ``ppo/``: :class:`~mie.training.tasks.PPOTask`, rewarded by the reward model, KL to the SL model.

Adapters (``lora.r`` > 0) are the only trained weights besides a reward or value head; checkpoints
hold merged weights, so each phase's result loads into a plain model of the base architecture.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from mie.io import load_weights
from mie.io.cache import read_json, save_json_atomic
from mie.models.causal_lm import CausalLM
from mie.models.lora import lora_freeze_patterns
from mie.models.reward import RewardModel
from mie.recipes.cai.batches import pair_loader, sft_loader
from mie.recipes.cai.config import CAIConfig, PhaseConfig, PPOConfig
from mie.recipes.run_dir import checkpoint_to_evaluate, load_run_weights, prepare_run_dir, training_summary
from mie.training import BaseTrainer
from mie.training.callbacks import MetricsLogger
from mie.training.checkpoint_callback import ModelCheckpoint
from mie.training.config import StageConfig, TrainerConfig
from mie.training.progress import ProgressBar
from mie.training.tasks import DPOTask, PPOTask, RewardModelTask, SFTTask
from mie.training.tasks.reference import frozen

log = logging.getLogger(__name__)
DONE_FILE = "done.json"


def phase_done(folder: Path) -> dict[str, Any] | None:
    """The summary a finished phase left in ``folder/done.json``, or None."""
    path = folder / DONE_FILE
    return read_json(path, expect_object=True) if path.is_file() else None


def adapted(model: torch.nn.Module, phase: PhaseConfig) -> torch.nn.Module:
    """A float32 training copy of ``model``, with LoRA adapters on ``phase.lora.targets`` when r > 0."""
    model = copy.deepcopy(model).float().train()
    phase.lora.apply(model)
    return model


def trainer_config(config: CAIConfig, phase: PhaseConfig, folder: Path, model: torch.nn.Module,
                   frozen_under: str = "", best_metric: str = "val/loss", best_mode: str = "min") -> TrainerConfig:
    """The top-level trainer settings with the phase's length, lr and folder, and one stage with the phase's
    ``freeze``, ``lr_multipliers`` and ``grad_accum_steps``. With adapters, every weight
    and bias of ``model`` under ``frozen_under`` is frozen, which leaves the adapters (``lora_a``/``lora_b``)
    and whatever lies outside ``frozen_under`` (a reward or value head) to train."""
    shared = {f.name: getattr(config, f.name) for f in dataclasses.fields(TrainerConfig)}
    freeze = lora_freeze_patterns(model, frozen_under) if phase.lora.r else []
    return dataclasses.replace(
        TrainerConfig(**shared), output_dir=str(folder), max_steps=phase.steps,
        epochs=10_000 if phase.steps else max(phase.epochs, 1),  # with steps, the steps decide
        optimizer=dataclasses.replace(config.optimizer, lr=phase.lr),
        schedule=dataclasses.replace(config.schedule, warmup_steps=phase.warmup_steps),
        best_metric=best_metric, best_mode=best_mode, max_minutes=0.0,
        stages=[StageConfig(name="train", freeze=[*phase.freeze, *freeze], lr_multipliers=phase.lr_multipliers,
                            grad_accum_steps=phase.grad_accum_steps)])


def _fit(task: Any, tconfig: TrainerConfig, train: Any, val: Any, resume: bool, quiet: bool, name: str
         ) -> dict[str, Any]:
    folder = Path(tconfig.output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    trainer = BaseTrainer(task, tconfig, train, val_loader=val, device=tconfig.device, quiet=quiet,
                          callbacks=[ProgressBar(quiet=quiet), MetricsLogger(), ModelCheckpoint()])
    start = time.monotonic()
    # A phase killed before its first checkpoint starts again; a finished-but-unmarked one resumes.
    trainer.fit(resume_from=prepare_run_dir(folder, folder if resume else None, overwrite=not resume))
    summary = {"phase": name, **training_summary(trainer, time.monotonic() - start, notes=False),
               "val": {k: round(float(v), 4) for k, v in trainer.last_val_metrics.items()}}
    save_json_atomic(folder / DONE_FILE, summary)
    return summary


def train_sft(config: CAIConfig, base: CausalLM, rows: Sequence[Any], val_rows: Sequence[Any], pad_id: int,
              folder: Path, resume: bool, quiet: bool) -> dict[str, Any]:
    """Fine-tune ``base`` on the accepted SL-CAI rows; returns the phase summary."""
    phase = config.sl.sft
    model = adapted(base, phase)
    tconfig = trainer_config(config, phase, folder, model)
    val = sft_loader(val_rows, phase.batch_size, config.seed, pad_id, shuffle=False) if val_rows else None
    return _fit(SFTTask(model), tconfig, sft_loader(rows, phase.batch_size, config.seed, pad_id), val, resume,
                quiet, "sft")


def load_phase_model(base: CausalLM, folder: Path) -> CausalLM:
    """A copy of ``base``'s architecture with the merged weights a phase saved last (eval mode)."""
    model = CausalLM(base.config)
    load_run_weights(model, folder, "last")
    return model.eval()


def train_reward_model(config: CAIConfig, sl_model: CausalLM, rows: Sequence[Any], val_rows: Sequence[Any],
                       pad_id: int, folder: Path, resume: bool, quiet: bool) -> dict[str, Any]:
    """A reward model (the SL model's trunk and a scalar head) on the AI-labelled pairs."""
    phase = config.rl.reward_model
    torch.manual_seed(config.seed)  # the head's initial weights
    model = RewardModel(adapted(sl_model, phase))
    tconfig = trainer_config(config, phase, folder, model, frozen_under="backbone", best_metric="val/accuracy",
                             best_mode="max")
    val = pair_loader(val_rows, phase.batch_size, config.seed, pad_id, shuffle=False) if val_rows else None
    return _fit(RewardModelTask(model), tconfig, pair_loader(rows, phase.batch_size, config.seed, pad_id), val,
                resume, quiet, "reward_model")


def load_reward_model(sl_model: CausalLM, folder: Path) -> RewardModel:
    """The trained reward model (eval mode)."""
    model = RewardModel(CausalLM(sl_model.config))
    load_run_weights(model, folder, "last")
    return model.eval()


def train_dpo(config: CAIConfig, sl_model: CausalLM, rows: Sequence[Any], val_rows: Sequence[Any], pad_id: int,
              folder: Path, resume: bool, quiet: bool) -> dict[str, Any]:
    """DPO of a copy of the SL model against the frozen SL model."""
    phase = config.rl.dpo
    task = DPOTask(adapted(sl_model, phase), frozen(sl_model, copy=True), beta=config.rl.dpo_beta)
    tconfig = trainer_config(config, phase, folder, task.model, best_metric="val/reward_accuracy", best_mode="max")
    val = pair_loader(val_rows, phase.batch_size, config.seed, pad_id, shuffle=False) if val_rows else None
    return _fit(task, tconfig, pair_loader(rows, phase.batch_size, config.seed, pad_id), val, resume, quiet, "dpo")


def reward_function(reward_model: RewardModel, pad_id: int, shift: float, scale: float) -> Any:
    """``(prompts, responses) -> [B]`` standardized reward-model scores of prompt + response tokens."""
    @torch.no_grad()
    def score(prompts: list[list[int]], responses: list[list[int]]) -> torch.Tensor:
        rows = [p + r for p, r in zip(prompts, responses, strict=True)]
        width = max(len(r) for r in rows)
        ids = torch.tensor([r + [pad_id] * (width - len(r)) for r in rows], dtype=torch.long)
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], dtype=torch.long)
        device = next(reward_model.parameters()).device
        return ((reward_model(ids.to(device), mask.to(device)) - shift) / scale).float()
    return score


def train_ppo(config: CAIConfig, sl_model: CausalLM, reward_fn: Any, prompts: Sequence[list[int]],
              val_prompts: Sequence[list[int]], pad_id: int, stop_ids: Sequence[int], folder: Path, resume: bool,
              quiet: bool) -> dict[str, Any]:
    """PPO of a copy of the SL model (with a value head), KL-penalised to the frozen SL model."""
    phase: PPOConfig = config.rl.ppo
    torch.manual_seed(config.seed)  # the value head's initial weights
    task = PPOTask(adapted(sl_model, phase), frozen(sl_model, copy=True), reward_fn, phase.max_new_tokens,
                   kl_coef=phase.kl_coef, clip=phase.clip, vf_coef=phase.vf_coef, temperature=phase.temperature,
                   pad_id=pad_id, stop_ids=stop_ids, seed=config.seed)
    # The value head is new and must train; with adapters the policy's own weights stay frozen.
    tconfig = trainer_config(config, phase, folder, task.model, frozen_under="policy", best_metric="val/reward", best_mode="max")
    generator = torch.Generator().manual_seed(config.seed)
    train = torch.utils.data.DataLoader(list(prompts), batch_size=phase.batch_size, shuffle=True, drop_last=True,
                                        generator=generator, collate_fn=list)
    val = torch.utils.data.DataLoader(list(val_prompts), batch_size=phase.batch_size, collate_fn=list) \
        if val_prompts else None
    return _fit(task, tconfig, train, val, resume, quiet, "ppo")


def load_ppo_policy(sl_model: CausalLM, folder: Path) -> CausalLM:
    """The PPO policy alone (its value head dropped), eval mode."""
    state, _ = load_weights(checkpoint_to_evaluate(folder, "last"))
    model = CausalLM(sl_model.config)
    model.load_state_dict({k.removeprefix("policy."): v for k, v in state.items() if k.startswith("policy.")})
    return model.eval()
