"""The CLIP-style recipe: config -> data -> tokenizer -> dual encoder -> trainer -> retrieval -> report.

This is the training *application* built from the library's parts (the open_clip / open_clip_train
split): ``train_from_config`` runs a whole job into a run directory, ``evaluate_run`` re-scores a
finished run from its files alone, and ``run_demo`` is what ``make run`` calls.

A run directory holds ``config.yaml`` (resolved), ``tokenizer.json``, ``metrics.jsonl``,
``checkpoints/`` (``best`` and ``last`` weights as safetensors + JSON, ``last_state.pt``),
``report.md`` + ``results.json`` and ``plots/`` (loss and R@1 curves, a retrieval grid).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, IterableDataset

from mie.config import TrainingConfig, load_config, save_config
from mie.data import build_dataset, build_image_transform, collate_image_text, images_and_all_captions
from mie.data.image_text import all_captions, caption_image_index
from mie.evaluation.plots import plot_curves, plot_retrieval_grid
from mie.evaluation.report import compare_results, format_metrics_table, load_results, write_report
from mie.evaluation.retrieval import retrieval_metrics, retrieval_topk
from mie.evaluation.zero_shot import average_prompt_embeddings, build_class_embeddings, zero_shot_classify
from mie.io import load_weights
from mie.losses import LOSSES, build_loss
from mie.models.registry import build_model, num_parameters
from mie.tokenization.base import BaseTokenizer
from mie.tokenization.factory import load_any_tokenizer, train_tokenizer
from mie.training.base import resolve_device
from mie.training.distributed import (
    barrier,
    cleanup,
    init_distributed,
    is_distributed,
    is_main_process,
    main_process_first,
)
from mie.training.multimodal import MultimodalTrainer

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
TOKENIZER_FILE = "tokenizer.json"
EVAL_BATCH_SIZE = 250


# ----------------------------------------------------------------------------- tokenizer
def build_tokenizer(config: TrainingConfig, captions: Sequence[str]) -> BaseTokenizer:
    """The tokenizer named by ``config.tokenizer``: loaded from its ``path``, else built on ``captions``."""
    tcfg = config.tokenizer
    if tcfg.path:
        return load_any_tokenizer(tcfg.path)
    return train_tokenizer(tcfg.name, captions, vocab_size=tcfg.vocab_size, lowercase=tcfg.lowercase)


# ----------------------------------------------------------------------------- evaluation sets
@dataclass
class EvalSet:
    """A decoded evaluation split: every readable image once with all its captions, kept in memory."""

    name: str
    images: torch.Tensor  # [N, 3, H, W], transformed
    captions: list[list[str]]
    image_ids: list[str]
    attributes: list[dict[str, Any] | None]

    @property
    def flat_captions(self) -> tuple[list[str], torch.Tensor]:
        """All captions flattened, with the image row each belongs to."""
        return caption_image_index(self.captions)


def load_eval_set(config: TrainingConfig, split: str) -> EvalSet:
    """Decode ``split`` once with the evaluation transform (center crop, no augmentation)."""
    transform = build_image_transform(config.model.image_size, train=False)
    dataset = build_dataset(config.data, split, transform=transform)
    images, captions, ids = [], [], []
    for batch in images_and_all_captions(dataset, batch_size=EVAL_BATCH_SIZE):
        images.append(batch.images)
        captions.extend(batch.captions)
        ids.extend(batch.image_ids)
    if not images:
        raise ValueError(f"split {split!r} of {config.data.path} has no readable image")
    by_id = {r.image_id: r.attributes for r in getattr(dataset, "records", [])}
    return EvalSet(split, torch.cat(images), captions, ids, [by_id.get(i) for i in ids])


@torch.no_grad()
def embed_eval_set(model: nn.Module, tokenizer: BaseTokenizer, evalset: EvalSet,
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Image embeddings, caption embeddings and caption->image index of ``evalset`` (fp32, on CPU)."""
    was_training = model.training
    model.eval()
    ctx = model.config.context_length
    image_embeds = torch.cat([
        model.encode_image(evalset.images[i:i + EVAL_BATCH_SIZE].to(device)).float().cpu()
        for i in range(0, len(evalset.images), EVAL_BATCH_SIZE)
    ])
    texts, owner = evalset.flat_captions
    text_embeds = torch.cat([
        model.encode_text(tokenizer(texts[i:i + 4 * EVAL_BATCH_SIZE], ctx).to(device)).float().cpu()
        for i in range(0, len(texts), 4 * EVAL_BATCH_SIZE)
    ])
    model.train(was_training)
    return image_embeds, text_embeds, owner


def retrieval_evaluator(evalset: EvalSet, tokenizer: BaseTokenizer,
                        device: torch.device) -> Callable[[nn.Module], dict[str, float]]:
    """A ``model -> metrics`` callable for the trainer's validation (R@K with all captions)."""

    def evaluate(model: nn.Module) -> dict[str, float]:
        image_embeds, text_embeds, owner = embed_eval_set(model, tokenizer, evalset, device)
        return retrieval_metrics(image_embeds, text_embeds, owner)

    return evaluate


def _single_object_labels(evalset: EvalSet, attribute: str, classnames: list[str]) -> tuple[list[int], list[int]]:
    """Rows of single-object images and the index of their ``attribute`` value (synthetic data only)."""
    rows, labels = [], []
    for row, attrs in enumerate(evalset.attributes):
        objects = (attrs or {}).get("objects") or []
        if len(objects) == 1 and objects[0].get(attribute) in classnames:
            rows.append(row)
            labels.append(classnames.index(objects[0][attribute]))
    return rows, labels


def zero_shot_results(model: nn.Module, tokenizer: BaseTokenizer, evalset: EvalSet,
                      image_embeds: torch.Tensor, device: torch.device) -> dict[str, dict[str, Any]]:
    """Zero-shot shape and colour classification of the single-object images of a shapes split."""
    from mie.data.synthetic import attribute_prompts

    ctx = model.config.context_length

    def encode(texts: list[str]) -> torch.Tensor:
        return model.encode_text(tokenizer(texts, ctx).to(device)).float().cpu()

    out: dict[str, dict[str, Any]] = {}
    model.eval()
    with torch.no_grad():
        for attribute in ("shape", "color"):
            classnames, templates = attribute_prompts(attribute)
            rows, labels = _single_object_labels(evalset, attribute, classnames)
            if not rows:
                continue
            classes = build_class_embeddings(encode, classnames, templates)
            out[f"{evalset.name}/{attribute}"] = zero_shot_classify(
                image_embeds[rows], classes, labels, classnames=classnames)
            out[f"{evalset.name}/{attribute} (any object)"] = _any_object_accuracy(
                evalset, attribute, classnames, image_embeds, classes)
    return out


def _any_object_accuracy(evalset: EvalSet, attribute: str, classnames: list[str],
                         image_embeds: torch.Tensor, classes: torch.Tensor) -> dict[str, Any]:
    """Zero-shot over EVERY image: the top-1 class counts as right if any object in the image has it.

    Single-object images are few (each split's combinations are unique), so this is the larger test;
    ``chance`` is the accuracy of a uniform random guess on the same images, for comparison.
    """
    class_embeds = average_prompt_embeddings(classes) if classes.dim() == 3 else F.normalize(classes, dim=-1)
    pred = (F.normalize(image_embeds.float(), dim=-1) @ class_embeds.T).argmax(dim=1).tolist()
    hits, chance, count = 0, 0.0, 0
    for row, attrs in enumerate(evalset.attributes):
        present = {o.get(attribute) for o in (attrs or {}).get("objects") or []} & set(classnames)
        if present:
            hits += classnames[pred[row]] in present
            chance += len(present) / len(classnames)
            count += 1
    return {"accuracy": hits / max(count, 1), "chance": chance / max(count, 1), "num_samples": count,
            "num_classes": len(classnames)}


def evaluate_model(model: nn.Module, tokenizer: BaseTokenizer, evalsets: Sequence[EvalSet],
                   device: torch.device) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, Any]]]:
    """Retrieval metrics per split, and zero-shot results where the data carries attributes."""
    results: dict[str, dict[str, float]] = {}
    zero_shot: dict[str, dict[str, Any]] = {}
    for evalset in evalsets:
        image_embeds, text_embeds, owner = embed_eval_set(model, tokenizer, evalset, device)
        results[evalset.name] = retrieval_metrics(image_embeds, text_embeds, owner)
        if any(evalset.attributes):
            zero_shot.update(zero_shot_results(model, tokenizer, evalset, image_embeds, device))
    return results, zero_shot


# ----------------------------------------------------------------------------- training
def build_train_loader(config: TrainingConfig, dataset: Dataset, tokenizer: BaseTokenizer) -> DataLoader:
    """Shuffled batches with one random caption per image, reproducible per epoch.

    The trainer reseeds the loader's generator with ``seed + epoch``. Caption picks draw from that
    same generator when batches are made in-process (with workers, DataLoader seeds each worker from
    it), so an epoch's batches depend only on the seed and the epoch: skipping the batches already
    trained on when resuming mid-epoch replays the same draws.
    """
    data = config.data
    generator = torch.Generator().manual_seed(config.seed)
    collate = functools.partial(collate_image_text, tokenizer=tokenizer, context_length=config.model.context_length,
                                generator=generator if data.num_workers == 0 else None)
    # A stream (WebDataset) orders itself: shards are split by rank and worker and reordered per
    # epoch by the dataset's set_epoch, which the trainer calls; it cannot take a shuffling sampler.
    stream = isinstance(dataset, IterableDataset)
    # Under DDP each rank takes its own slice of a shuffle that is the same on every rank (seeded, and
    # re-drawn per epoch by the trainer's set_epoch); data.batch_size is the batch of ONE rank.
    sampler = (DistributedSampler(dataset, shuffle=True, seed=config.seed, drop_last=True)
               if is_distributed() and not stream else None)
    return DataLoader(dataset, batch_size=data.batch_size, shuffle=not stream and sampler is None, sampler=sampler,
                      drop_last=True, generator=generator, collate_fn=collate, num_workers=data.num_workers,
                      persistent_workers=data.num_workers > 0)


def _train_dataset(config: TrainingConfig) -> Dataset:
    data = config.data
    transform = build_image_transform(config.model.image_size, train=True,
                                      crop_scale=tuple(data.random_crop_scale), hflip=data.hflip)
    # Decoded images are kept in memory: the demo revisits every small image many times.
    return build_dataset(data, data.train_split, transform=transform, cache_images=True)


def _checkpoint_to_evaluate(run_dir: Path) -> Path:
    checkpoints = run_dir / "checkpoints"
    for name in ("best", "last"):
        path = checkpoints / f"{name}.safetensors"
        if path.is_file():
            return path
    raise FileNotFoundError(f"no checkpoints/best.safetensors or last.safetensors in {run_dir}; "
                            "is this a finished run directory of `mie train`?")


def _training_summary(trainer: MultimodalTrainer, seconds: float, num_train: int | None) -> dict[str, Any]:
    steps = trainer.global_step
    samples = steps * trainer.config.data.batch_size * trainer.config.grad_accum_steps
    epochs = round(samples / max(1, num_train), 2) if num_train else trainer.epoch
    return {"steps": steps, "epochs": epochs, "wall_time_s": round(seconds, 1),
            "samples_per_s": round(samples / max(seconds, 1e-9), 1), "train_images": num_train or "streamed"}


def _num_images(dataset: Dataset) -> int | None:
    """``len(dataset)``, or None for a stream (WebDataset shards) whose length is unknown up front."""
    return None if isinstance(dataset, IterableDataset) else len(dataset)


def _config_summary(config: TrainingConfig, model: nn.Module, vocab_size: int) -> dict[str, Any]:
    m = config.model
    return {
        "model": f"ViT {m.image_size}px/patch {m.patch_size}/width {m.vision_width}/{m.vision_layers} layers + "
                 f"text width {m.text_width}/{m.text_layers} layers/context {m.context_length}",
        "parameters": num_parameters(model), "vocab_size": vocab_size, "loss": config.loss.name,
        "batch_size": config.data.batch_size, "lr": config.optimizer.lr, "precision": config.precision,
        "data": f"{config.data.format}:{config.data.path}",
    }


def write_figures(run_dir: Path, model: nn.Module, tokenizer: BaseTokenizer, evalset: EvalSet,
                  device: torch.device, num_queries: int = 6) -> dict[str, str]:
    """Loss / R@1 curves and a grid of caption queries with their top-5 images; paths relative to run_dir."""
    plots = run_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    figures = {}
    if (run_dir / "metrics.jsonl").is_file():
        plot_curves(run_dir / "metrics.jsonl", plots / "curves.png", title="Training loss and validation R@1")
        figures["Loss and R@1 curves"] = "plots/curves.png"
    image_embeds, text_embeds, owner = embed_eval_set(model, tokenizer, evalset, device)
    texts, _ = evalset.flat_captions
    step = max(1, len(evalset.captions) // num_queries)
    picks = [row * len(evalset.captions[0]) for row in range(0, len(evalset.captions), step)][:num_queries]
    picks = [p for p in picks if p < len(texts)]
    top, _ = retrieval_topk(text_embeds[picks], image_embeds, k=5)
    images = (evalset.images * _std() + _mean()).clamp(0, 1)
    grid_images = [[images[i] for i in row.tolist()] for row in top]
    correct = [[i == int(owner[p]) for i in row.tolist()] for p, row in zip(picks, top)]
    plot_retrieval_grid([texts[p] for p in picks], grid_images, correct, plots / "retrieval_grid.png",
                        title=f"Text -> image retrieval on {evalset.name} (green = the caption's image)")
    figures["Text queries and their top-5 images"] = "plots/retrieval_grid.png"
    return figures


def _mean() -> torch.Tensor:
    from mie.data.transforms import CLIP_MEAN

    return torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)


def _std() -> torch.Tensor:
    from mie.data.transforms import CLIP_STD

    return torch.tensor(CLIP_STD).view(1, 3, 1, 1)


@dataclass
class RunResult:
    """What a finished run produced: where it lives and its evaluation numbers."""

    run_dir: Path
    results: dict[str, dict[str, float]]
    zero_shot: dict[str, dict[str, Any]]


def train_from_config(config: TrainingConfig, resume: str | Path | None = None, quiet: bool = False) -> RunResult:
    """Train a dual encoder as ``config`` says, evaluate its best checkpoint and write the report."""
    init_distributed()  # under torchrun: join the process group (a no-op for one process)
    main = is_main_process()
    run_dir = Path(config.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    tokenizer_path = run_dir / TOKENIZER_FILE
    # Rank 0 generates the data (if needed) and trains the tokenizer; the other ranks then read both.
    with main_process_first():
        train_set = _train_dataset(config)
        if (resume is not None or not main) and tokenizer_path.is_file():
            tokenizer = load_any_tokenizer(tokenizer_path)
        else:
            tokenizer = build_tokenizer(config, all_captions(train_set))
            tokenizer.save(tokenizer_path)
    # The run directory owns its tokenizer (tokenizer.json); the saved config records the vocabulary size.
    resolved = dataclasses.replace(config, model=dataclasses.replace(config.model, vocab_size=tokenizer.vocab_size))
    if main:
        save_config(resolved, run_dir / CONFIG_FILE)

    device = resolve_device(config.device)
    model = build_model(resolved.model, eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id)
    loss_fn = build_loss(config.loss.name, **_loss_kwargs(config))
    val_set = load_eval_set(config, config.data.val_split) if config.data.val_split else None
    evaluator = retrieval_evaluator(val_set, tokenizer, device) if val_set is not None else None
    trainer = MultimodalTrainer(model, resolved, build_train_loader(resolved, train_set, tokenizer),
                                val_loader=[] if evaluator else None, loss_fn=loss_fn, evaluator=evaluator,
                                device=device, quiet=quiet)
    num_train = _num_images(train_set)
    logger.info("training %s parameters on %s images", f"{num_parameters(model):,}",
                "streamed" if num_train is None else f"{num_train:,}")
    start = time.monotonic()
    trainer.fit(resume_from=resume)
    seconds = trainer.elapsed_seconds() if resume is None else time.monotonic() - start
    skipped = dict(getattr(train_set, "skipped", {}) or {})
    if skipped:
        logger.warning("training skipped unreadable images: %s", skipped)
    summary = _training_summary(trainer, seconds, num_train)
    del trainer, model  # evaluation reloads the best checkpoint; free the (DDP-wrapped) model first
    # Rank 0 alone evaluates and writes the report; the others wait for it, then all leave the group.
    result = _evaluate_and_report(run_dir, resolved, tokenizer, device, summary) if main else RunResult(run_dir, {}, {})
    if is_distributed():
        barrier()
        cleanup()
    return result


def _loss_kwargs(config: TrainingConfig) -> dict[str, Any]:
    """The loss's keyword arguments; under DDP, losses that can compare against every rank's batch do
    (``gather_distributed``, as OpenCLIP does), unless the config says otherwise."""
    kwargs = dict(config.loss.kwargs)
    if is_distributed() and "gather_distributed" not in kwargs:
        if "gather_distributed" in inspect.signature(LOSSES[config.loss.name]).parameters:
            kwargs["gather_distributed"] = True
    return kwargs


def _load_run(run_dir: Path) -> tuple[TrainingConfig, BaseTokenizer, nn.Module, torch.device]:
    config_path = run_dir / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found; pass the run directory written by `mie train`")
    config = load_config(config_path)
    tokenizer = load_any_tokenizer(run_dir / TOKENIZER_FILE)
    device = resolve_device(config.device)
    model = build_model(config.model, eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id)
    state, _ = load_weights(_checkpoint_to_evaluate(run_dir))
    model.load_state_dict(state)
    return config, tokenizer, model.to(device).eval(), device


def _evaluate_and_report(run_dir: Path, config: TrainingConfig, tokenizer: BaseTokenizer, device: torch.device,
                         training: dict[str, Any]) -> RunResult:
    _, _, model, _ = _load_run(run_dir)
    evalsets = [load_eval_set(config, split) for split in config.data.test_splits]
    results, zero_shot = evaluate_model(model, tokenizer, evalsets, device)
    figures = write_figures(run_dir, model, tokenizer, evalsets[0], device)
    checkpoint = _checkpoint_to_evaluate(run_dir).name
    write_report(run_dir, results, _config_summary(config, model, tokenizer.vocab_size), figures,
                 extra={"evaluated checkpoint": checkpoint}, zero_shot=zero_shot, training=training,
                 title=f"{config.project_name}: image-text retrieval report")
    return RunResult(run_dir, results, zero_shot)


def evaluate_run(run_dir: str | Path, splits: Sequence[str] | None = None) -> tuple[RunResult, list[str]]:
    """Re-score a finished run from its files; return the results and their differences from ``results.json``."""
    run_dir = Path(run_dir)
    config, tokenizer, model, device = _load_run(run_dir)
    evalsets = [load_eval_set(config, split) for split in (splits or config.data.test_splits)]
    results, zero_shot = evaluate_model(model, tokenizer, evalsets, device)
    differences: list[str] = []
    if (run_dir / "results.json").is_file():
        saved = load_results(run_dir)
        saved_retrieval = {k: v for k, v in (saved.get("retrieval") or {}).items() if k in results}
        differences = compare_results(saved_retrieval, results)
    return RunResult(run_dir, results, zero_shot), differences


def print_results(result: RunResult, echo: Callable[[str], Any] = print) -> None:
    """R@1/5/10 both ways per split, and the mean R@1 the acceptance bar is set on."""
    echo(format_metrics_table(result.results))
    for split, metrics in result.results.items():
        echo(f"{split}: mean R@1 = {metrics['mean_R@1']:.3f} "
             f"(i2t {metrics['i2t_R@1']:.3f}, t2i {metrics['t2i_R@1']:.3f})")
    for name, zs in result.zero_shot.items():
        if "chance" in zs:
            echo(f"zero-shot {name}: accuracy {zs['accuracy']:.3f} (chance {zs['chance']:.3f}) "
                 f"over {zs['num_samples']} images")
        else:
            echo(f"zero-shot {name}: accuracy {zs['accuracy']:.3f} over {zs['num_samples']} single-object images")


def run_demo(config: TrainingConfig, quiet: bool = False) -> RunResult:
    """Generate the shapes data if absent, train, evaluate and report: the engine's main job."""
    start = time.monotonic()
    result = train_from_config(config, quiet=quiet)
    logger.info("demo finished in %.1f min", (time.monotonic() - start) / 60)
    return result


def steps_for_budget(minutes: float, seconds_per_step: float) -> int:
    """How many optimizer steps fit in ``minutes`` at ``seconds_per_step`` (at least one)."""
    return max(1, math.floor(minutes * 60 / seconds_per_step))
