"""``mie optimize prune``: calibrate (Wanda), prune, and fine-tune through the trainer with the zeros kept zero.

Calibration uses the task's own data: a clip run's validation split (images and captions), an LM's text before
its held-out half. Fine-tuning runs ``--finetune-steps`` optimizer steps of the recipe's own task
(:class:`~mie.training.tasks.ContrastiveTask` or :class:`~mie.training.tasks.LanguageModelTask`) in
:class:`~mie.training.BaseTrainer`, at a quarter of the run's learning rate, with
:func:`mie.optimization.prune.keep_pruned`'s gradient masks; its scratch folder is removed afterwards.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import logging
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from mie.cli import optimize_families as families
from mie.cli.optimize_runs import Loaded, lm_text
from mie.errors import ConfigError
from mie.optimization import prune, structured
from mie.optimization.wanda import input_norms

logger = logging.getLogger(__name__)
CALIBRATION_BATCH = 64  # images (and as many captions) per clip calibration batch


def calibration(loaded: Loaded, output: Path, batches: int) -> tuple[Iterable[Any], Any]:
    """``(batches, forward)`` for :func:`~mie.optimization.wanda.input_norms` from the task's own data."""
    if loaded.kind in families.FAMILIES:
        return families.calibration(loaded.kind, loaded.model, loaded.tokenizer, loaded.config, batches)
    if loaded.kind == "clip":
        from mie.recipes.clip.evaluate import load_eval_set

        split = loaded.config.data.val_split or loaded.config.data.train_split
        evalset = load_eval_set(loaded.config, split)
        texts, _ = evalset.flat_captions
        context = loaded.model.config.context_length
        chunks = [(evalset.images[i:i + CALIBRATION_BATCH],
                   loaded.tokenizer(texts[5 * i:5 * (i + CALIBRATION_BATCH)], context))
                  for i in range(0, len(evalset.images), CALIBRATION_BATCH)][:batches]

        def forward_clip(model: Any, batch: Any) -> Any:
            return model.encode_image(batch[0]), model.encode_text(batch[1])
        return chunks, forward_clip
    from mie.data.lm_text import lm_val_loader

    text = lm_text(loaded, output)
    blocks = itertools.islice(lm_val_loader(text.train, loaded.config.data.batch_size), batches)

    def forward_lm(model: Any, batch: Any) -> Any:
        return model(batch[0])
    return list(blocks), forward_lm


def prune_loaded(loaded: Loaded, args: argparse.Namespace, output: Path) -> dict[str, Any]:
    """Prune ``loaded.model`` in place as ``args`` say (and fine-tune it); returns the optimization record."""
    model, amount, rounds = loaded.model, args.amount, max(1, args.iterations)
    if args.method in ("heads", "neurons"):
        shrink = structured.prune_heads if args.method == "heads" else structured.prune_mlp_neurons
        record: dict[str, Any] = {"structure": shrink(model, amount)}
        if args.finetune_steps:
            finetune(loaded, {}, args.finetune_steps, output)
    else:
        # Iterative: prune to amount * i / rounds, fine-tune, repeat; the zeros of a round rank lowest in the next
        # (magnitude and Wanda scores of a zero are zero), so each round's mask holds the previous one's zeros.
        for index in range(1, rounds + 1):
            target = amount * index / rounds
            if args.method == "wanda":
                batches, forward = calibration(loaded, output, args.calibration_batches)
                masks = prune.wanda_prune(model, target, input_norms(model, batches, forward))
            else:
                masks = prune.magnitude_prune(model, target, scope=args.scope)
            steps = args.finetune_steps // rounds
            if steps:
                finetune(loaded, masks, steps, output)
        record = {}
    report = prune.sparsity_report(model)
    record["pruning"] = {"method": args.method, "amount": amount, "scope": args.scope, "iterations": rounds,
                         "finetune_steps": args.finetune_steps,
                         "linear_sparsity": report["linear_sparsity"], "model_sparsity": report["model_sparsity"]}
    logger.info("sparsity of the pruned linear layers: %.1f%% (model %.1f%%)", 100 * report["linear_sparsity"],
                100 * report["model_sparsity"])
    return record


def _trainer_config(config: Any, steps: int, scratch: Path) -> Any:
    optimizer = dataclasses.replace(config.optimizer, lr=config.optimizer.lr / 4)
    schedule = dataclasses.replace(config.schedule, warmup_steps=min(config.schedule.warmup_steps, steps // 5))
    return dataclasses.replace(config, max_steps=steps, output_dir=str(scratch), stages=[], optimizer=optimizer,
                               schedule=schedule, max_minutes=0, tensorboard=False, compile=False)


def check_finetune(loaded: Loaded) -> None:
    """Refuse ``--finetune-steps`` for the families whose fine-tuning after pruning is not wired in."""
    if loaded.kind in families.FAMILIES:
        raise ConfigError(f"fine-tuning a {loaded.kind} run after pruning is not built", where="--finetune-steps",
                          fix="leave --finetune-steps out (prune only), or fine-tune the pruned run with mie train")


def finetune(loaded: Loaded, masks: dict[str, torch.Tensor], steps: int, output: Path) -> None:
    """``steps`` optimizer steps of the recipe's task on its training data; pruned weights stay zero."""
    from mie.training import BaseTrainer

    check_finetune(loaded)
    scratch = output / "finetune_scratch"
    config = _trainer_config(loaded.config, steps, scratch)
    if loaded.kind == "clip":
        from mie.recipes.clip.train import _train_dataset, build_train_loader
        from mie.training.tasks import ContrastiveTask

        train_set = _train_dataset(config)
        task = ContrastiveTask(loaded.model, config.loss)
        loader: Any = functools.partial(build_train_loader, config, train_set, loaded.tokenizer)
        batch_size = config.data.batch_size
    else:
        from mie.data.lm_text import lm_train_loader
        from mie.training.tasks import LanguageModelTask

        task = LanguageModelTask(loaded.model)
        loader = lm_train_loader(lm_text(loaded, output).train, config.data.batch_size, config.seed)
        batch_size = config.data.batch_size
    handles = prune.keep_pruned(masks, loaded.model)
    try:
        trainer = BaseTrainer(task, config, loader, callbacks=[], device="cpu", quiet=True, batch_size=batch_size)
        trainer.fit()
    finally:
        prune.remove_hooks(handles)  # permanent: the zeros are in the weights
        shutil.rmtree(scratch, ignore_errors=True)
    loaded.model.eval()
    logger.info("fine-tuned %d steps", steps)
