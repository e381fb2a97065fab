"""Stages of a run: resolving each stage's settings, freezing by name, lr multipliers by name.

With no ``stages`` in the config a run is one stage of ``epochs``. A stage's zero / empty / null
fields take the top-level value, so a one-stage config and its ``stages: [{}]`` twin train alike.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Iterable

import torch
from torch import nn
from torch.utils.data import IterableDataset

from mie.training.config import StageConfig, TrainerConfig
from mie.training.optim import split_decay_parameters


def resolve_stages(config: TrainerConfig) -> list[StageConfig]:
    """Every stage with its own values filled in from the top level (name, length, lr, schedule...)."""
    # Without stages, max_steps is the length of training (epochs follow from it, as in Hugging Face's Trainer).
    stages = config.stages or [StageConfig(name="train", steps=config.max_steps)]
    resolved = []
    for index, stage in enumerate(stages):
        resolved.append(dataclasses.replace(
            stage,
            name=stage.name or f"stage{index}",
            epochs=stage.epochs or (0 if stage.steps else config.epochs),
            lr=stage.lr or config.optimizer.lr,
            grad_accum_steps=stage.grad_accum_steps or config.grad_accum_steps,
            schedule=stage.schedule or config.schedule,
        ))
    return resolved


def matches(name: str, pattern: str) -> bool:
    """Glob match of a parameter name; a plain prefix also matches what lies under it
    (``visual`` matches ``visual.trunk.blocks.0.mlp.fc1.weight``)."""
    return fnmatch.fnmatchcase(name, pattern) or name == pattern or name.startswith(pattern.rstrip(".") + ".")


def _check_patterns(patterns: Iterable[str], names: list[str], where: str) -> None:
    for pattern in patterns:
        if not any(matches(n, pattern) for n in names):
            roots = sorted({n.split(".")[0] for n in names})
            raise ValueError(f"{where}: pattern {pattern!r} matches no parameter; names start with "
                             f"{', '.join(roots)} (e.g. 'visual.*')")


def check_patterns(task: nn.Module, stages: list[StageConfig], multistage: bool) -> None:
    """Check every stage's ``freeze`` and ``lr_multipliers`` patterns before anything trains, so a typo
    in stage 3 fails at once rather than after stages 1 and 2."""
    model_names = [n for n, _ in task.model.named_parameters()]
    all_names = [n.removeprefix("model.") for n, _ in task.named_parameters()]
    for index, stage in enumerate(stages):
        where = f"stages[{index}]" if multistage else "training"
        _check_patterns(stage.freeze, model_names, f"{where}.freeze")
        _check_patterns(stage.lr_multipliers, all_names, f"{where}.lr_multipliers")


def apply_freeze(model: nn.Module, patterns: list[str], where: str = "freeze") -> int:
    """Freeze the model's parameters whose names match ``patterns``, unfreeze the rest; returns how
    many parameters (elements) stay trainable."""
    names = [n for n, _ in model.named_parameters()]
    _check_patterns(patterns, names, where)
    trainable = 0
    for name, param in model.named_parameters():
        frozen = any(matches(name, p) for p in patterns)
        param.requires_grad_(not frozen)
        trainable += 0 if frozen else param.numel()
    if trainable == 0:
        raise ValueError(f"{where}: every model parameter is frozen; leave something to train")
    return trainable


def param_groups(task: nn.Module, lr: float, weight_decay: float, multipliers: dict[str, float],
                 where: str = "lr_multipliers") -> list[dict]:
    """AdamW groups of the task's trainable parameters: one per (lr multiplier, decay or not).

    Names are those of :func:`trainable_named_parameters`. The first pattern of ``multipliers`` that
    matches a name sets its factor (1.0 if none does). Each group carries ``name`` (e.g.
    ``"visual.*/decay"``) and its own ``lr``; decay follows ``split_decay_parameters``.
    """
    named = trainable_named_parameters(task)
    _check_patterns(multipliers, [n.removeprefix("model.") for n, _ in task.named_parameters()], where)
    skip_decay = {n.removeprefix("model.") for n in split_decay_parameters(task)[2]}
    groups: dict[tuple[str, bool], dict] = {}
    seen: set[int] = set()
    for name, param in named:
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        pattern = next((p for p in multipliers if matches(name, p)), "")
        factor = multipliers.get(pattern, 1.0)
        decay = name not in skip_decay
        group = groups.setdefault((pattern, decay), {
            "params": [], "lr": lr * factor, "weight_decay": weight_decay if decay else 0.0,
            "name": f"{pattern or 'default'}/{'decay' if decay else 'no_decay'}"})
        group["params"].append(param)
    if not groups:
        raise ValueError("nothing to train: every parameter is frozen; unfreeze some in the stage's `freeze`")
    return list(groups.values())


def trainable_named_parameters(task: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The task's parameters that train, named as configs write them: model parameters without the
    ``model.`` prefix (``visual.*``), others (a loss's) with their path (``loss.bias``)."""
    out = []
    for name, param in task.named_parameters():
        if param.requires_grad:
            out.append((name.removeprefix("model."), param))
    return out


def stage_rng_offset(index: int) -> int:
    """Added to ``seed + epoch`` when seeding stage ``index``'s shuffles (0 for the first stage)."""
    return 1000 * index


def seed_epoch(loader: Iterable, epoch: int, seed: int) -> None:
    """Make an epoch's shuffle a function of ``seed + epoch`` (``epoch`` includes the stage offset), so
    a resumed run replays the same batches: samplers and streams get ``set_epoch``, a loader's own
    generator is re-seeded."""
    for sampler in (getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
    dataset = getattr(loader, "dataset", None)
    if isinstance(dataset, IterableDataset) and hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)  # a stream's shard order (WebDataset)
    generator = getattr(loader, "generator", None)
    if isinstance(generator, torch.Generator):
        generator.manual_seed(seed + epoch)
