"""The classification recipe: config -> labelled images -> ViT classifier -> classification task ->
trainer -> top-1 / top-5 / per-class accuracy and confusion matrices -> report."""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from pathlib import Path

import torch

from mie.errors import ConfigError
from mie.models.vit_classifier import ViTClassifier
from mie.recipes.classification.config import ClassificationRecipeConfig
from mie.recipes.classification.data import build_loader, channel_stats, load_split
from mie.recipes.classification.run import ClassificationRunResult, evaluate_and_report
from mie.recipes.run_dir import run_directory, save_run_config, training_summary
from mie.training import BaseTrainer, resolve_device
from mie.training.device import pin_memory
from mie.training.tasks.classification import ClassificationTask

logger = logging.getLogger(__name__)


def build_task(config: ClassificationRecipeConfig, model: torch.nn.Module) -> ClassificationTask:
    """The task with the config's label smoothing, mixup and cutmix."""
    return ClassificationTask(model, config.model.num_classes, label_smoothing=config.label_smoothing,
                              mixup_alpha=config.mixup_alpha, cutmix_alpha=config.cutmix_alpha,
                              mix_prob=config.mix_prob, switch_prob=config.switch_prob)


def train(config: ClassificationRecipeConfig, resume: str | Path | None = None, quiet: bool = False,
          overwrite: bool = False) -> ClassificationRunResult:
    """Train a ViT classifier as ``config`` says, score its best checkpoint on the test splits, report.

    ``resume`` continues the run in ``config.output_dir``; without it, a folder that already holds a
    trained run is refused unless ``overwrite``.
    """
    with run_directory(config, resume, overwrite) as run:
        run_dir, resume, main = run.dir, run.resume, run.main
        start = time.monotonic()
        train_set, val_set = load_split(config, "train"), load_split(config, "val")
        data = config.data
        if data.batch_size > len(train_set):
            raise ConfigError(f"{data.batch_size} is larger than the {len(train_set)} training images, so training "
                              "would take 0 steps", where="data.batch_size", fix=f"set it to at most {len(train_set)}")
        mean, std = (data.mean, data.std) if data.mean and data.std else channel_stats(train_set.images)
        resolved = dataclasses.replace(
            config, model=dataclasses.replace(config.model, num_classes=len(train_set.classnames)),
            data=dataclasses.replace(data, mean=[round(m, 6) for m in mean], std=[round(s, 6) for s in std]))
        if main and resume is None:
            save_run_config(resolved, run_dir)
        load_seconds = time.monotonic() - start
        device = resolve_device(config.device)
        torch.manual_seed(config.seed)
        model = ViTClassifier(resolved.model)
        task = build_task(resolved, model)
        pinned = pin_memory(device)  # on CUDA: pinned batches, whose copies to the GPU need not wait
        loaders = functools.partial(build_loader, train_set, resolved.data.mean, resolved.data.std, train=True,
                                    data=resolved.data, seed=config.seed, pin_memory=pinned)
        val_loader = build_loader(val_set, resolved.data.mean, resolved.data.std, data.eval_batch_size, train=False,
                                  data=resolved.data, pin_memory=pinned)
        trainer = BaseTrainer(task, resolved, loaders, val_loader=val_loader, device=device, quiet=quiet,
                              batch_size=data.batch_size)
        parameters = sum(p.numel() for p in model.parameters())
        logger.info("training %s parameters on %s images of %d classes (%s validation images; data ready in %.1f s)",
                    f"{parameters:,}", f"{len(train_set):,}", len(train_set.classnames), f"{len(val_set):,}", load_seconds)
        seconds = run.fit(trainer, resolved)
        best = max((h["val/top1"] for h in trainer.history if "val/top1" in h), default=None)
        training = training_summary(trainer, seconds, {"images_per_s": (trainer.global_step * data.batch_size, 1)},
                                    best_val_top1=best, train_images=len(train_set), val_images=len(val_set))
        m = resolved.model
        summary = {"source": data.source, "model": f"ViT {m.image_size} px / patch {m.patch_size} / width {m.width} / "
                                                   f"{m.layers} layers / {m.heads} heads, {m.pool} pool",
                   "parameters": parameters, "classes": m.num_classes, "batch_size": data.batch_size,
                   "lr": config.optimizer.lr, "label_smoothing": config.label_smoothing,
                   "mixup_alpha": config.mixup_alpha, "cutmix_alpha": config.cutmix_alpha}
        del trainer, task, model
        result = (evaluate_and_report(run_dir, resolved, device, training, summary) if main
                  else ClassificationRunResult(run_dir, {}))
    return result
