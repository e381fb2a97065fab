"""Evaluation of a dual encoder: decoded evaluation splits, retrieval R@K with all captions,
zero-shot classification on the shapes data, and the report's figures."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mie.data import build_dataset, build_image_transform, images_and_all_captions
from mie.data.image_text import caption_image_index
from mie.errors import DataError
from mie.evaluation.plots import plot_curves, plot_retrieval_grid
from mie.evaluation.retrieval import retrieval_metrics, retrieval_topk
from mie.evaluation.shapes_probe import shapes_probe
from mie.evaluation.zero_shot import average_prompt_embeddings, build_class_embeddings, zero_shot_classify
from mie.recipes.clip.config import ClipConfig
from mie.tokenization.base import BaseTokenizer

EVAL_BATCH_SIZE = 250


@dataclass
class EvalSet:
    """A decoded evaluation split: every readable image once with all its captions, kept in memory."""

    name: str
    images: torch.Tensor  # [N, 3, H, W], transformed
    captions: list[list[str]]
    image_ids: list[str]
    attributes: list[dict[str, Any] | None]
    paths: list[str] = field(default_factory=list)  # each image's file (its id where the format has none)

    @property
    def flat_captions(self) -> tuple[list[str], torch.Tensor]:
        """All captions flattened, with the image row each belongs to."""
        return caption_image_index(self.captions)


def load_eval_set(config: ClipConfig, split: str) -> EvalSet:
    """Decode ``split`` once with the evaluation transform (center crop, no augmentation)."""
    transform = build_image_transform(config.model.image_size, train=False)
    dataset = build_dataset(config.data, split, transform=transform)
    images, captions, ids = [], [], []
    for batch in images_and_all_captions(dataset, batch_size=EVAL_BATCH_SIZE):
        images.append(batch.images)
        captions.extend(batch.captions)
        ids.extend(batch.image_ids)
    if not images:
        raise DataError(f"split {split!r} has no readable image", where=config.data.path,
                        fix="check the data with `mie data inspect`")
    by_id = {r.image_id: r for r in getattr(dataset, "records", [])}
    attributes = [by_id[i].attributes if i in by_id else None for i in ids]
    paths = [str(by_id[i].path) if i in by_id else i for i in ids]
    return EvalSet(split, torch.cat(images), captions, ids, attributes, paths)


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


def probe_results(model: nn.Module, tokenizer: BaseTokenizer, evalset: EvalSet, image_embeds: torch.Tensor,
                  device: torch.device) -> dict[str, Any] | None:
    """Colour-shape, shape-only and colour-only precision@8 of ``evalset`` (``mie.evaluation.shapes_probe``);
    None unless every image lists its objects' colours and shapes (the shapes data)."""
    from mie.data.synthetic import COLORS, SHAPES

    objects = [(attrs or {}).get("objects") for attrs in evalset.attributes]
    if not objects or not all(objects):
        return None
    ctx = model.config.context_length
    model.eval()
    with torch.no_grad():
        return shapes_probe(lambda texts: model.encode_text(tokenizer(texts, ctx).to(device)).float().cpu(),
                            image_embeds, objects, COLORS, SHAPES)


def evaluate_model(model: nn.Module, tokenizer: BaseTokenizer, evalsets: Sequence[EvalSet], device: torch.device
                   ) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Retrieval metrics per split; zero-shot results and the shapes probe where the data carries attributes."""
    results: dict[str, dict[str, float]] = {}
    zero_shot: dict[str, dict[str, Any]] = {}
    probes: dict[str, dict[str, Any]] = {}
    for evalset in evalsets:
        image_embeds, text_embeds, owner = embed_eval_set(model, tokenizer, evalset, device)
        results[evalset.name] = retrieval_metrics(image_embeds, text_embeds, owner)
        if any(evalset.attributes):
            zero_shot.update(zero_shot_results(model, tokenizer, evalset, image_embeds, device))
            probe = probe_results(model, tokenizer, evalset, image_embeds, device)
            if probe is not None:
                probes[evalset.name] = probe
    return results, zero_shot, probes


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
