"""The clip recipe: config -> data -> tokenizer -> dual encoder -> contrastive task -> trainer ->
retrieval -> report. ``train`` runs a whole job into a run directory (see ``mie.recipes.run_dir``);
``evaluate`` re-scores a finished run from its files alone.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, IterableDataset

from mie.data import build_dataset, build_image_transform, collate_image_text
from mie.data.caption_negatives import CaptionSwapper
from mie.data.image_text import all_captions, caption_tag_targets
from mie.data.samplers import GroupedBatchSampler
from mie.errors import CheckpointError, ConfigError
from mie.io import load_weights
from mie.models.registry import build_model, num_parameters
from mie.recipes.clip.config import ClipConfig
from mie.recipes.clip.evaluate import (
    load_eval_set,
    retrieval_evaluator,
)
from mie.recipes.clip.preflight import check_batch_sizes, check_splits_exist
from mie.recipes.clip.run import RunResult, evaluate_and_report
from mie.recipes.run_dir import (
    TOKENIZER_FILE,
    run_directory,
    save_run_config,
    training_summary,
)
from mie.tokenization.base import BaseTokenizer
from mie.tokenization.factory import load_any_tokenizer, train_tokenizer
from mie.training import BaseTrainer, resolve_device
from mie.training.device import pin_memory
from mie.training.distributed import (
    is_distributed,
    main_process_first,
)
from mie.training.tasks import ContrastiveTask

logger = logging.getLogger(__name__)


def build_tokenizer(config: ClipConfig, captions: Sequence[str]) -> BaseTokenizer:
    """The tokenizer named by ``config.tokenizer``: loaded from its ``path``, else built on ``captions``."""
    tcfg = config.tokenizer
    if tcfg.path:
        return load_any_tokenizer(tcfg.path)
    return train_tokenizer(tcfg.name, captions, vocab_size=tcfg.vocab_size, lowercase=tcfg.lowercase)


def build_train_loader(config: ClipConfig, dataset: Dataset, tokenizer: BaseTokenizer,
                       batch_size: int | None = None) -> DataLoader:
    """Shuffled batches with one random caption per image, reproducible per epoch.

    The trainer reseeds the loader's generator each epoch. Caption picks draw from that same
    generator when batches are made in-process (with workers, DataLoader seeds each worker from it),
    so an epoch's batches depend only on the seed, the stage and the epoch: skipping the batches
    already trained on when resuming mid-epoch replays the same draws.
    """
    data = config.data
    generator = torch.Generator().manual_seed(config.seed)
    collate = functools.partial(collate_image_text, tokenizer=tokenizer, context_length=config.model.context_length,
                                generator=generator if data.num_workers == 0 else None,
                                negatives=CaptionSwapper(data.caption_swaps) if data.caption_swaps else None,
                                tags=data.caption_tags,
                                tag_ids=tokenizer(list(data.caption_tags), config.model.context_length)
                                if data.caption_tags else None)
    # A stream (WebDataset) orders itself: shards are split by rank and worker and reordered per
    # epoch by the dataset's set_epoch, which the trainer calls; it cannot take a shuffling sampler.
    stream = isinstance(dataset, IterableDataset)
    # Under DDP each rank takes its own slice of a shuffle that is the same on every rank (seeded, and
    # re-drawn per epoch by the trainer's set_epoch); data.batch_size is the batch of ONE rank.
    sampler = (DistributedSampler(dataset, shuffle=True, seed=config.seed, drop_last=True)
               if is_distributed() and not stream else None)
    if config.group_batches != "none" and not stream:
        keys = color_keys(dataset, sizes=config.group_batches == "colors_sizes")
        batches = GroupedBatchSampler(keys, batch_size or data.batch_size, config.group_size, seed=config.seed,
                                      mixed=config.group_mixed)
        return DataLoader(dataset, batch_sampler=batches, generator=generator, collate_fn=collate,
                          num_workers=data.num_workers, persistent_workers=data.num_workers > 0,
                          pin_memory=pin_memory(config.device))
    return DataLoader(dataset, batch_size=batch_size or data.batch_size, shuffle=not stream and sampler is None,
                      sampler=sampler, drop_last=True, generator=generator, collate_fn=collate,
                      num_workers=data.num_workers, persistent_workers=data.num_workers > 0,
                      pin_memory=pin_memory(config.device))  # pinned on CUDA: the copy overlaps the step


def color_keys(dataset: Dataset, sizes: bool = False) -> list[tuple[str, ...]]:
    """Each training image's sorted object colours (``group_batches: colors``), or colours with sizes
    ("red large"; ``colors_sizes``); a ConfigError for data whose images do not list their objects."""
    keys = []
    for record in getattr(dataset, "records", []):
        objects = (record.attributes or {}).get("objects") or []
        if not objects:
            raise ConfigError("needs images that list their objects' colours (the shapes data)",
                              where="group_batches", fix="set group_batches: none for this data")
        keys.append(tuple(sorted(f"{o.get('color')} {o.get('size')}" if sizes else str(o.get("color"))
                                 for o in objects)))
    if not keys:
        raise ConfigError("needs a dataset with records", where="group_batches",
                          fix="set group_batches: none for this data")
    return keys


def _train_dataset(config: ClipConfig) -> Dataset:
    data = config.data
    transform = build_image_transform(config.model.image_size, train=True,
                                      crop_scale=tuple(data.random_crop_scale), hflip=data.hflip)
    # Decoded images are kept in memory: the demo revisits every small image many times.
    return build_dataset(data, data.train_split, transform=transform, cache_images=True)


def _num_images(dataset: Dataset) -> int | None:
    """``len(dataset)``, or None for a stream (WebDataset shards) whose length is unknown up front."""
    return None if isinstance(dataset, IterableDataset) else len(dataset)


def _training_summary(trainer: BaseTrainer, seconds: float, num_train: int | None) -> dict[str, Any]:
    samples = sum(row["samples"] for row in _stage_rows(trainer))  # each stage at its own batch size
    epochs = round(samples / max(1, num_train), 2) if num_train else trainer.epoch
    return training_summary(trainer, seconds, {"samples_per_s": (samples, 1)}, epochs=epochs,
                            train_images=num_train or "streamed")


def _stage_rows(trainer: BaseTrainer) -> list[dict[str, Any]]:
    """One report row per stage: its name, loss, steps, last train loss and validation R@1."""
    rows = []
    for index, stage in enumerate(trainer.stages):
        history = [h for h in trainer.history if h.get("stage") == index]
        if not history:
            continue
        last_val = next((h for h in reversed(history) if "val/mean_R@1" in h), {})
        start = max((h["step"] for h in trainer.history if h.get("stage", 0) < index), default=0)
        batch = (stage.batch_size or trainer.config.data.batch_size) * stage.grad_accum_steps
        loss = stage.loss or trainer.config.loss
        terms = loss.kwargs.get("losses") if loss.name == "combined" else None
        name = " + ".join(f"{t.get('weight', 1.0):g} x {t['name']}" for t in terms) if terms else loss.name
        rows.append({"stage": index, "name": stage.name, "loss": name, "steps": history[-1]["step"] - start,
                     "samples": (history[-1]["step"] - start) * batch,
                     "final train loss": history[-1].get("train/loss"), "val mean R@1": last_val.get("val/mean_R@1")})
    return rows


def train(config: ClipConfig, resume: str | Path | None = None, quiet: bool = False,
          overwrite: bool = False) -> RunResult:
    """Train a dual encoder as ``config`` says, evaluate its best checkpoint and write the report.

    ``resume`` continues the run in ``config.output_dir`` (or a given state file); without it, a
    folder that already holds a trained run is refused unless ``overwrite``.
    """
    with run_directory(config, resume, overwrite) as run:  # under torchrun: joins the group too
        run_dir, resume, main = run.dir, run.resume, run.main
        check_splits_exist(config)  # a split the data lacks fails now, not after training
        torch.manual_seed(config.seed)
        tokenizer_path = run_dir / TOKENIZER_FILE
        # Rank 0 generates the data (if needed) and trains the tokenizer; the other ranks then read both.
        with main_process_first():
            logger.info("reading the training data in %s%s", config.data.path, " (generated on first use)"
                        if config.data.format == "synthetic" else "")  # no silent wait before the first step
            train_set = _train_dataset(config)
            check_batch_sizes(config, train_set)  # before a tokenizer is trained or a step is taken
            reuse = (resume is not None or not main) and tokenizer_path.is_file()
            captions = all_captions(train_set) if config.data.caption_tags or not reuse else []
            if reuse:
                tokenizer = load_any_tokenizer(tokenizer_path)
            else:
                logger.info("training the %s tokenizer on the captions", config.tokenizer.name)
                tokenizer = build_tokenizer(config, captions)
                tokenizer.save(tokenizer_path)
        # The run directory owns its tokenizer (tokenizer.json); the saved config records the vocabulary size
        # and the caption tags the training captions use.
        tags = used_tags(config.data.caption_tags, captions)
        # The re-ranker grounds every phrase as written, those no training caption uses too (by composition).
        phrases = list(config.rerank.phrases or (config.data.caption_tags if config.rerank.enabled else []))
        resolved = dataclasses.replace(config, model=dataclasses.replace(config.model, vocab_size=tokenizer.vocab_size),
                                       data=dataclasses.replace(config.data, caption_tags=tags),
                                       rerank=dataclasses.replace(config.rerank, phrases=phrases))
        if main and resume is None:  # a resume records its config only once it has worked
            save_run_config(resolved, run_dir)

        device = resolve_device(config.device)
        model = build_model(resolved.model, eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id)
        if config.init_checkpoint and resume is None:
            _load_weights_into(model, Path(config.init_checkpoint))
        val_set = load_eval_set(config, config.data.val_split) if config.data.val_split else None
        evaluator = retrieval_evaluator(val_set, tokenizer, device) if val_set is not None else None
        task = ContrastiveTask(model, resolved.loss, evaluator=evaluator, tag_names=resolved.data.caption_tags)
        trainer = BaseTrainer(task, resolved, functools.partial(build_train_loader, resolved, train_set, tokenizer),
                              device=device, quiet=quiet, batch_size=resolved.data.batch_size)
        num_train = _num_images(train_set)
        logger.info("training %s parameters on %s images", f"{num_parameters(model):,}",
                    "streamed" if num_train is None else f"{num_train:,}")
        seconds = run.fit(trainer, resolved)
        skipped = dict(getattr(train_set, "skipped", {}) or {})
        if skipped:
            logger.warning("training skipped unreadable images: %s", skipped)
        summary = _training_summary(trainer, seconds, num_train)
        stages = _stage_rows(trainer) if len(trainer.stages) > 1 else None
        del trainer, task, model  # evaluation reloads the best checkpoint; free the (DDP-wrapped) task first
        # Rank 0 alone evaluates and writes the report; the others wait for it, then all leave the group.
        if main and config.data.test_splits:  # tens of seconds on the demo: said before, not after
            logger.info("scoring the best checkpoint on %s and writing the report", ", ".join(config.data.test_splits))
        result = (evaluate_and_report(run_dir, resolved, tokenizer, device, summary, stages) if main
                  else RunResult(run_dir, {}, {}))
    return result


def used_tags(tags: Sequence[str], captions: Sequence[str]) -> list[str]:
    """``tags`` (``data.caption_tags``) less those none of the training ``captions`` uses, which could only
    teach "never" (a phrase of the held-out colour-shape pairs would learn that no image is ever one); each
    dropped tag is logged."""
    if not tags:
        return []
    found = caption_tag_targets([captions], tags)[0].tolist()  # all captions as one row: is each tag anywhere
    unused = [tag for tag, hit in zip(tags, found) if not hit]
    if unused:
        logger.info("data.caption_tags: %d of %d tags appear in no training caption and are left out: %s",
                    len(unused), len(tags), ", ".join(unused))
    return [tag for tag, hit in zip(tags, found) if hit]


def _load_weights_into(model: nn.Module, path: Path) -> None:
    """Start from ``path``'s weights; a missing file or another architecture is a one-line error."""
    if not path.is_file():
        raise FileNotFoundError(f"init_checkpoint: {path} does not exist; pass a .safetensors of an earlier run")
    state, _ = load_weights(path)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "different parameters"
        raise CheckpointError(f"init_checkpoint: {path} does not fit model (set the model section and tokenizer.path "
                              f"of the run it came from): {first}") from None


