"""The clip recipe's optional re-ranker (``rerank.enabled``): an ITM head on a fusion block, trained on the
training split with hard negatives from the frozen dual encoder (``mie.training.tasks.itm``), then used
to re-order each query's top ``rerank.k`` (``mie.evaluation.rerank``). The report shows R@K with and
without it; the head is kept as ``checkpoints/reranker.safetensors``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from mie.data import build_dataset, build_image_transform, collate_image_text
from mie.data.samplers import NeighbourBatchSampler
from mie.evaluation.grounding import caption_phrases, phrase_grounding
from mie.evaluation.report import REPORT_FILE, RESULTS_FILE, compare_results, load_results
from mie.evaluation.rerank import PairScorer, rerank_retrieval
from mie.io import load_weights
from mie.io.atomic import atomic_write_text
from mie.io.cache import save_json_atomic
from mie.io.checkpoint import save_weights
from mie.models.fusion import ImageTextMatcher
from mie.recipes.clip.config import ClipConfig
from mie.recipes.clip.evaluate import EVAL_BATCH_SIZE, EvalSet, load_eval_set
from mie.recipes.clip.rerank_novel import holds, novel_pairs, objects_of, safest_setting, split_gallery
from mie.tokenization.base import BaseTokenizer
from mie.training import BaseTrainer
from mie.training.config import OptimizerConfig, ScheduleConfig, TrainerConfig
from mie.training.device import pin_memory
from mie.training.progress import ProgressBar
from mie.training.tasks.itm import ITMTask, NegativeCurriculum, image_features, text_features

logger = logging.getLogger(__name__)
RERANKER_FILE = "reranker.safetensors"
PAIR_BATCH = 1024


def build_matcher(config: ClipConfig) -> ImageTextMatcher:
    """A fresh ITM head over the dual encoder's token widths."""
    model = config.model
    return ImageTextMatcher(config.rerank.fusion, text_dim=model.text_width, image_dim=model.vision_width)


def _loader(config: ClipConfig, dataset: Dataset, tokenizer: BaseTokenizer, batch_size: int,
            neighbours: torch.Tensor | None = None) -> DataLoader:
    """Batches with one random caption per image (the trainer reseeds the generator per epoch): shuffled,
    or runs of the dual encoder's nearest neighbours (``neighbours``: its image embeddings) so that the
    in-batch negatives are the candidates the encoder itself confuses."""
    generator = torch.Generator().manual_seed(config.seed)
    collate = functools.partial(collate_image_text, tokenizer=tokenizer, context_length=config.model.context_length,
                                generator=generator)
    if neighbours is not None:
        batches = NeighbourBatchSampler(neighbours, batch_size, config.rerank.group_size, seed=config.seed)
        return DataLoader(dataset, batch_sampler=batches, generator=generator, collate_fn=collate,
                          pin_memory=pin_memory(config.device))
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True, generator=generator,
                      collate_fn=collate, pin_memory=pin_memory(config.device))


@torch.no_grad()
def _image_embeddings(model: nn.Module, dataset: Dataset, device: torch.device) -> torch.Tensor:
    """The frozen dual encoder's unit image embeddings of every image of ``dataset``, in order."""
    model.eval()
    out = []
    for start in range(0, len(dataset), EVAL_BATCH_SIZE):
        images = torch.stack([dataset[i].image for i in range(start, min(start + EVAL_BATCH_SIZE, len(dataset)))])
        out.append(image_features(model, images.to(device))[1].float().cpu())
    return torch.cat(out)


def train_reranker(run_dir: Path, config: ClipConfig, model: nn.Module, tokenizer: BaseTokenizer,
                   device: torch.device, quiet: bool = False) -> tuple[ImageTextMatcher, dict[str, Any]]:
    """Train the ITM head on ``config.data.train_split`` (the dual encoder ``model`` frozen); save it."""
    cfg = config.rerank
    dataset: Dataset = build_dataset(config.data, config.data.train_split, cache_images=True,
                                     transform=build_image_transform(config.model.image_size, train=False))
    held: list[tuple[str, str]] = []
    if cfg.novel_pairs:  # pairs the head never sees, to choose the fusion weight on (rerank_novel)
        objects = [objects_of(r.attributes) for r in getattr(dataset, "records", [])]
        held = novel_pairs(objects, cfg.novel_pairs, config.seed)
        dataset = Subset(dataset, [i for i, o in enumerate(objects) if not holds(o, held)])
    torch.manual_seed(config.seed)
    matcher = build_matcher(config)
    task = ITMTask(matcher, model, negatives=cfg.negatives, temperature=cfg.temperature)
    trainer_config = TrainerConfig(output_dir=str(run_dir / "reranker"), seed=config.seed, epochs=cfg.epochs,
                                   max_minutes=cfg.max_minutes, log_every=10, device=config.device,
                                   optimizer=OptimizerConfig(lr=cfg.lr, weight_decay=cfg.weight_decay),
                                   schedule=ScheduleConfig(warmup_steps=20))
    neighbours = _image_embeddings(model, dataset, device) if cfg.batches == "neighbours" else None
    callbacks: list[Any] = [ProgressBar(quiet=quiet)]
    if cfg.temperature_start:  # check_config refuses it with hardest negatives
        callbacks.append(NegativeCurriculum(task, cfg.temperature_start, cfg.temperature))
    trainer = BaseTrainer(task, trainer_config, functools.partial(_loader, config, dataset, tokenizer,
                                                                  neighbours=neighbours),
                          callbacks=callbacks, device=device, batch_size=cfg.batch_size)
    logger.info("training the re-ranker (%s fusion, %d layers, %s parameters) on %d images",
                cfg.fusion.type, cfg.fusion.layers, f"{sum(p.numel() for p in matcher.parameters()):,}", len(dataset))
    start = time.monotonic()
    trainer.fit()
    last = trainer.last_step_metrics
    summary = {"steps": trainer.global_step, "wall_time_s": round(time.monotonic() - start, 1),
               "final train loss": last.get("train/loss"), "final train accuracy": last.get("train/accuracy"),
               "negative temperature": {"start": cfg.temperature_start or cfg.temperature,
                                        "end": round(task.temperature, 6)}}
    if held:
        summary["pairs new to the head"] = [list(pair) for pair in held]
    return matcher.eval(), summary


def save_reranker(run_dir: Path, config: ClipConfig, matcher: ImageTextMatcher, summary: dict[str, Any],
                  sim_weight: float, grounding: float = 0.0) -> None:
    """Keep the head with its fusion settings, training summary and the ``sim_weight`` and ``grounding`` it
    ranks with."""
    save_weights(run_dir / "checkpoints" / RERANKER_FILE, matcher.state_dict(),
                 {"fusion": dataclasses.asdict(config.rerank.fusion), "training": summary, "sim_weight": sim_weight,
                  "grounding": grounding})


def load_reranker(run_dir: Path, config: ClipConfig, device: torch.device
                  ) -> tuple[ImageTextMatcher, float, float] | None:
    """The run's trained ITM head and the ``sim_weight`` and ``grounding`` it was saved with, or None when the
    run has none."""
    path = run_dir / "checkpoints" / RERANKER_FILE
    if not path.is_file():
        return None
    matcher = build_matcher(config)
    state, meta = load_weights(path)
    matcher.load_state_dict(state)
    return (matcher.to(device).eval(), float(meta.get("sim_weight", config.rerank.sim_weight)),
            float(meta.get("grounding", config.rerank.grounding)))


@torch.no_grad()
def grounding_scores(model: nn.Module, tokenizer: BaseTokenizer, evalset: EvalSet, tags: list[str],
                     device: torch.device) -> torch.Tensor:
    """``[N images, T captions]`` of ``evalset``: each caption's phrases (``tags`` it holds) scored against
    the image's patches by the dual encoder (``mie.evaluation.grounding``)."""
    model.eval()
    texts, _ = evalset.flat_captions
    ctx = model.config.context_length
    tag_embeds = torch.cat([model.encode_text(tokenizer(tags[i:i + EVAL_BATCH_SIZE], ctx).to(device)).float().cpu()
                            for i in range(0, len(tags), EVAL_BATCH_SIZE)])
    patches = torch.cat([model.encode_image_tokens(evalset.images[i:i + EVAL_BATCH_SIZE].to(device))[1].float().cpu()
                         for i in range(0, len(evalset.images), EVAL_BATCH_SIZE)])
    return phrase_grounding(patches, tag_embeds, caption_phrases(texts, tags))


@torch.no_grad()
def itm_scorer(matcher: ImageTextMatcher, model: nn.Module, tokenizer: BaseTokenizer, evalset: EvalSet, k: int,
               device: torch.device) -> tuple[torch.Tensor, torch.Tensor, PairScorer]:
    """``(sim [N, T], owner, itm)`` of ``evalset``: the dual encoder's cosine similarities and a lookup of
    the ITM logits of every pair in some query's top ``k`` (each scored once, whatever the fusion weight)."""
    model.eval()
    texts, owner = evalset.flat_captions
    image_parts, text_parts, mask_parts, image_embeds, text_embeds = [], [], [], [], []
    ctx = model.config.context_length
    for start in range(0, len(texts), EVAL_BATCH_SIZE):
        tokens, mask, embeds = text_features(model, tokenizer(texts[start:start + EVAL_BATCH_SIZE], ctx).to(device))
        pad = ctx - tokens.shape[1]  # every chunk padded to the context length, so chunks concatenate
        text_parts.append(F.pad(tokens, (0, 0, 0, pad)).cpu())
        mask_parts.append(F.pad(mask, (0, pad), value=True).cpu())
        text_embeds.append(embeds.cpu())
    for start in range(0, len(evalset.images), EVAL_BATCH_SIZE):
        tokens, embeds = image_features(model, evalset.images[start:start + EVAL_BATCH_SIZE].to(device))
        image_parts.append(tokens.cpu())
        image_embeds.append(embeds.cpu())
    image_tokens, text_tokens, text_mask = torch.cat(image_parts), torch.cat(text_parts), torch.cat(mask_parts)
    sim = (torch.cat(image_embeds) @ torch.cat(text_embeds).T).float()

    def score_pairs(image_index: torch.Tensor, text_index: torch.Tensor) -> torch.Tensor:
        out = []
        for i in range(0, len(image_index), PAIR_BATCH):
            img, txt = image_index[i:i + PAIR_BATCH], text_index[i:i + PAIR_BATCH]
            mask = text_mask[txt]
            length = int(mask.logical_not().sum(dim=1).max())  # no column that is padding in every row
            out.append(matcher(text_tokens[txt, :length].to(device), image_tokens[img].to(device),
                               mask[:, :length].to(device)).float().cpu())
        return torch.cat(out) if out else torch.zeros(0)

    num_texts = sim.shape[1]
    i2t, t2i = sim.topk(min(k, num_texts), dim=1).indices, sim.T.topk(min(k, sim.shape[0]), dim=1).indices
    keys = torch.unique(torch.cat([torch.arange(sim.shape[0]).repeat_interleave(i2t.shape[1]) * num_texts
                                   + i2t.flatten(), t2i.flatten() * num_texts
                                   + torch.arange(num_texts).repeat_interleave(t2i.shape[1])]))
    logits = score_pairs(keys // num_texts, keys % num_texts)

    def itm(image_index: torch.Tensor, text_index: torch.Tensor) -> torch.Tensor:
        query = image_index * num_texts + text_index
        pos = torch.searchsorted(keys, query).clamp(max=len(keys) - 1)
        found = keys[pos] == query
        scores = logits[pos].clone()
        if not bool(found.all()):  # a tie cut the top k differently: score the missing pairs now
            scores[~found] = score_pairs(image_index[~found], text_index[~found])
        return scores

    return sim, owner, itm


def fused_metrics(sim: torch.Tensor, owner: torch.Tensor, itm: PairScorer, k: int, sim_weight: float,
                  ground: torch.Tensor | None = None, grounding: float = 0.0) -> dict[str, dict[str, float]]:
    """R@K from the dual encoder alone and after re-ranking its top ``k`` by ITM logit + ``sim_weight`` x
    (cosine + ``grounding`` x phrase grounding ``ground`` [N, T]) (as BLIP ranks; a large weight keeps the
    encoder's cosine in charge)."""
    with_rerank = rerank_retrieval(sim, owner, k, _fused(itm, sim, sim_weight, ground, grounding))
    plain = rerank_retrieval(sim, owner, k, lambda i, t: sim[i, t])
    return {"without": plain, "with": with_rerank}


def _fused(itm: PairScorer, sim: torch.Tensor, weight: float, ground: torch.Tensor | None, grounding: float
           ) -> PairScorer:
    """The ranking score of image ``i`` and caption ``t``."""
    if ground is None or not grounding:
        return lambda i, t: itm(i, t) + weight * sim[i, t]
    return lambda i, t: itm(i, t) + weight * (sim[i, t] + grounding * ground[i, t])


def score_split(matcher: ImageTextMatcher, model: nn.Module, tokenizer: BaseTokenizer, evalset: EvalSet,
                config: ClipConfig, device: torch.device, sim_weight: float = 1.0, grounding: float = 0.0
                ) -> dict[str, dict[str, float]]:
    """Retrieval R@K of ``evalset`` from the dual encoder alone and re-ranked (``fused_metrics``)."""
    k = config.rerank.k
    sim, owner, itm = itm_scorer(matcher, model, tokenizer, evalset, k, device)
    ground = grounding_scores(model, tokenizer, evalset, phrases(config), device) if grounding \
        else None
    return fused_metrics(sim, owner, itm, k, sim_weight, ground, grounding)


def phrases(config: ClipConfig) -> list[str]:
    """The phrases the re-ranker grounds: ``rerank.phrases``, else ``data.caption_tags``."""
    return list(config.rerank.phrases or config.data.caption_tags)


def settings(config: ClipConfig) -> list[tuple[float, float]]:
    """The ``(sim_weight, grounding)`` pairs val chooses from: ``rerank.sim_weights`` x ``rerank.groundings``
    (or the configured grounding alone)."""
    cfg = config.rerank
    return [(w, g) for w in sorted(cfg.sim_weights) for g in sorted(cfg.groundings or [cfg.grounding])]


def val_table(matcher: ImageTextMatcher, model: nn.Module, tokenizer: BaseTokenizer, val: EvalSet,
              config: ClipConfig, device: torch.device) -> dict[Any, float]:
    """Mean R@1 of ``val`` without re-ranking (``"none"``) and re-ranked with each ``settings`` pair."""
    k = config.rerank.k
    sim, owner, itm = itm_scorer(matcher, model, tokenizer, val, k, device)
    choices = settings(config)
    ground = grounding_scores(model, tokenizer, val, phrases(config), device) \
        if any(g for _, g in choices) else None
    table: dict[Any, float] = {"none": rerank_retrieval(sim, owner, k, lambda i, t: sim[i, t])["mean_R@1"]}
    for weight, grounding in choices:
        table[(weight, grounding)] = rerank_retrieval(sim, owner, k, _fused(itm, sim, weight, ground,
                                                                            grounding))["mean_R@1"]
    return table


def _label(key: Any) -> str:
    """A table key as results.json shows it."""
    return key if isinstance(key, str) else f"sim_weight {key[0]:g}, grounding {key[1]:g}"


def choose_setting(matcher: ImageTextMatcher, model: nn.Module, tokenizer: BaseTokenizer, val: EvalSet,
                   config: ClipConfig, device: torch.device, novel: list[list[str]] | None = None
                   ) -> tuple[float, float, dict[str, Any]]:
    """The ``(sim_weight, grounding)`` of ``settings`` with the best re-ranked mean R@1 on the validation split
    (ties: the larger weight, then the smaller grounding) and the figures it was chosen on. With ``novel``
    pairs (``["red", "circle"]``, kept from the head's training) val splits into the images without and with
    them, and the choice is ``safest_setting``'s (``rerank_novel``)."""
    choices = settings(config)
    if not novel:
        table = val_table(matcher, model, tokenizer, val, config, device)
        best = max(choices, key=lambda c: (table[c], c[0], -c[1]))
        return best[0], best[1], {"val mean R@1 per setting": {_label(c): round(r, 4) for c, r in table.items()}}
    galleries = split_gallery(val, [(colour, shape) for colour, shape in novel])
    tables = [val_table(matcher, model, tokenizer, g, config, device) for g in galleries]
    gains = {c: tuple(t[c] - t["none"] for t in tables) for c in choices}
    figures = {f"{g.name} mean R@1 per setting ({len(g.images)} images)": {_label(c): round(r, 4) for c, r in t.items()}
               for g, t in zip(galleries, tables)}
    best = safest_setting(gains, tuple(len(g.images) for g in galleries))
    return best[0], best[1], figures


def rerank_and_report(run_dir: Path, config: ClipConfig, model: nn.Module, tokenizer: BaseTokenizer,
                      evalsets: list[EvalSet], device: torch.device) -> dict[str, Any]:
    """Train the re-ranker, score every test split with and without it, add both to the report."""
    matcher, training = train_reranker(run_dir, config, model, tokenizer, device)
    weight, grounding = config.rerank.sim_weight, config.rerank.grounding
    if config.rerank.sim_weights and config.data.val_split:
        weight, grounding, figures = choose_setting(matcher, model, tokenizer,
                                                    load_eval_set(config, config.data.val_split), config, device,
                                                    training.get("pairs new to the head"))
        training = {**training, "sim_weight chosen on val": weight, "grounding chosen on val": grounding, **figures}
    save_reranker(run_dir, config, matcher, training, weight, grounding)
    results = {e.name: score_split(matcher, model, tokenizer, e, config, device, weight, grounding) for e in evalsets}
    add_to_report(run_dir, config, results, training)
    return results


def rescore(run_dir: Path, config: ClipConfig, model: nn.Module, tokenizer: BaseTokenizer, evalsets: list[EvalSet],
            device: torch.device) -> dict[str, Any] | None:
    """Re-score ``evalsets`` with the run's saved re-ranker (None when it has none); writes nothing."""
    loaded = load_reranker(run_dir, config, device)
    if loaded is None:
        return None
    matcher, weight, grounding = loaded
    return {e.name: score_split(matcher, model, tokenizer, e, config, device, weight, grounding) for e in evalsets}


def compare_rerank(run_dir: Path, results: dict[str, Any]) -> list[str]:
    """Differences between re-scored re-ranking numbers and those ``results.json`` holds (its splits only)."""
    saved = ((load_results(run_dir).get("rerank") or {}).get("results")) or {}
    return compare_results({s: saved[s] for s in results if s in saved},
                           {s: r for s, r in results.items() if s in saved}, atol=1e-6)


def format_rerank_table(results: dict[str, Any], k: int) -> list[str]:
    """Markdown rows: per split, R@1 / R@5 both ways and mean R@1, without and with re-ranking (in %)."""
    lines = ["| split | re-ranked | i2t R@1 | i2t R@5 | t2i R@1 | t2i R@5 | mean R@1 |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for split, both in results.items():
        for label, key in (("no", "without"), (f"top-{k}", "with")):
            m = both[key]
            cells = [f"{100 * m[name]:.2f}" if name in m else "-"
                     for name in ("i2t_R@1", "i2t_R@5", "t2i_R@1", "t2i_R@5", "mean_R@1")]
            lines.append(f"| {split} | {label} | " + " | ".join(cells) + " |")
    return lines


def add_to_report(run_dir: Path, config: ClipConfig, results: dict[str, Any], training: dict[str, Any]) -> None:
    """Add ``rerank`` to ``results.json`` and a section to ``report.md`` (before its last line)."""
    saved = load_results(run_dir)
    saved["rerank"] = {"k": config.rerank.k, "fusion": dataclasses.asdict(config.rerank.fusion),
                       "negatives": config.rerank.negatives, "training": training, "results": results}
    save_json_atomic(run_dir / RESULTS_FILE, saved)
    fusion, cfg = config.rerank.fusion, config.rerank
    temperature = training.get("negative temperature") or {}
    anneal = (f" (sampling temperature {temperature['start']:g} -> {temperature['end']:g})"
              if temperature and temperature["start"] != temperature["end"] else "")
    weight = training.get("sim_weight chosen on val", cfg.sim_weight)
    grounding = training.get("grounding chosen on val", cfg.grounding)
    score = (f"ITM logit + {weight:g} x (cosine + {grounding:g} x phrase grounding, the mean over the caption's "
             "phrases of the best patch's cosine)" if grounding else f"ITM logit + {weight:g} x cosine")
    novel = training.get("pairs new to the head")
    chosen = (f"; the weights were chosen on val with {len(novel)} colour-shape pairs kept from the head's "
              f"training ({', '.join(' '.join(pair) for pair in novel)})" if novel else "")
    section = ["## Re-ranking with an image-text matching head", "",
               f"A {fusion.type} fusion ({fusion.layers} layers, width {fusion.dim}) with an ITM head, trained "
               f"{training['steps']} steps ({training['wall_time_s']} s) on {cfg.negatives} hard negatives of the "
               f"frozen dual encoder{anneal}, re-orders each query's top {cfg.k} by {score}{chosen}. Recall in %.", "",
               *format_rerank_table(results, config.rerank.k), ""]
    report = run_dir / REPORT_FILE
    lines = report.read_text(encoding="utf-8").rstrip("\n").split("\n")
    atomic_write_text(report, "\n".join(lines[:-1] + section + lines[-1:]) + "\n")
