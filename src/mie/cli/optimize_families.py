"""``mie optimize`` on translation (``seq2seq``) and ViT classification (``classification``) runs, through the
recipes' own entry points: loading, scoring (BLEU / chrF of the model's decoding; top-1 accuracy), the report
the recipe writes for the optimized run, a speed workload and calibration batches of the run's training data.

:mod:`mie.cli.optimize_runs` dispatches here for these two kinds; clip and lm runs stay there.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mie.config import load_config
from mie.io.run_files import TOKENIZER_FILE, run_config_path

FAMILIES = ("seq2seq", "classification")
CPU = torch.device("cpu")
SPEED_SENTENCES = 32  # source sentences translated (greedy) per timed call
SPEED_IMAGES = 64  # images classified per timed call
CALIBRATION_SENTENCES = 16  # source sentences per calibration batch


def load(kind: str, path: Path, checkpoint: str) -> tuple[nn.Module, Any, Any, Path]:
    """``(model, tokenizer, config, weights)`` of a run of ``kind`` (the model in eval mode, on the CPU)."""
    if kind == "seq2seq":
        from mie.recipes.seq2seq.config import Seq2SeqRecipeConfig
        from mie.recipes.seq2seq.run import load_model
        from mie.tokenization.factory import load_any_tokenizer

        config = load_config(run_config_path(path), Seq2SeqRecipeConfig)
        model, weights = load_model(path, config, checkpoint, CPU)
        return model, load_any_tokenizer(path / TOKENIZER_FILE), config, weights
    from mie.recipes.classification.config import ClassificationRecipeConfig
    from mie.recipes.classification.run import load_model as load_classifier

    config = load_config(run_config_path(path), ClassificationRecipeConfig)
    model, weights = load_classifier(path, config, checkpoint, CPU)
    return model, None, config, weights


def score(kind: str, model: nn.Module, tokenizer: Any, config: Any) -> dict[str, dict[str, Any]]:
    """The recipe's metric per evaluated split: BLEU / chrF of every system (seq2seq), accuracy (classification)."""
    if kind == "seq2seq":
        from mie.recipes.seq2seq.data import read_split
        from mie.recipes.seq2seq.run import corpus_dictionary, score_split

        dictionary = corpus_dictionary(config)
        return {split: score_split(model, tokenizer, config, read_split(config.data, split), dictionary, CPU)[0]
                for split in config.eval_splits}
    from mie.recipes.classification.data import load_split
    from mie.recipes.classification.run import score as classify

    return {split: classify(model, load_split(config, split), config, CPU) for split in config.data.test_splits}


def _model_system(scores: dict[str, Any]) -> str:
    """The model's own decoding in one split's translation scores (beam search when configured, else greedy)."""
    return [name for name in scores if name.startswith("model")][-1]


def headline(kind: str, results: dict[str, dict[str, Any]]) -> dict[str, float]:
    """BLEU and chrF of the model per split (seq2seq); top-1 accuracy per split (classification)."""
    if kind == "seq2seq":
        row = {}
        for split, scores in results.items():
            system = scores[_model_system(scores)]
            row[f"{split} BLEU"], row[f"{split} chrF"] = round(system["bleu"], 2), round(system["chrf"], 2)
        return row
    return {f"{split} top-1": round(m["accuracy"], 4) for split, m in results.items()}


def workload(kind: str, model: nn.Module, tokenizer: Any, config: Any) -> tuple[Callable[[], Any], int]:
    """``(fn, items)``: greedy translation of the first eval split's first sentences (items = sentences), or
    classification of a batch of random images of the model's size (items = images)."""
    if kind == "seq2seq":
        from mie.recipes.seq2seq.data import read_split
        from mie.recipes.seq2seq.run import translate_texts

        sources = [source for source, _ in read_split(config.data, config.eval_splits[0])][:SPEED_SENTENCES]
        return (lambda: translate_texts(model, tokenizer, sources, config, 1, CPU)), len(sources)
    shape = (SPEED_IMAGES, config.model.in_channels, config.model.image_size, config.model.image_size)
    images = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    return (lambda: model(images)), SPEED_IMAGES


def calibration(kind: str, model: nn.Module, tokenizer: Any, config: Any, batches: int
                ) -> tuple[list[Any], Callable[[nn.Module, Any], Any]]:
    """``(batches, forward)`` from the run's training split: source sentences translated greedily (the
    decoder sees its own tokens, as in use), or normalized training images (no augmentation)."""
    if kind == "seq2seq":
        from mie.recipes.seq2seq.data import read_split
        from mie.recipes.seq2seq.run import translate_texts

        sources = [source for source, _ in read_split(config.data, "train")]
        chunks = [sources[i:i + CALIBRATION_SENTENCES] for i in range(0, len(sources), CALIBRATION_SENTENCES)]

        def forward_seq2seq(model: nn.Module, batch: list[str]) -> Any:
            return translate_texts(model, tokenizer, batch, config, 1, CPU)
        return chunks[:batches], forward_seq2seq
    from mie.recipes.classification.data import build_loader, load_split

    loader = build_loader(load_split(config, "train"), config.data.mean, config.data.std,
                          config.data.eval_batch_size, train=False, data=config.data)
    images = [batch["images"] for batch in itertools.islice(loader, batches)]
    return images, lambda model, batch: model(batch)


def write_results(kind: str, output: Path, config: Any, tokenizer: Any, summary: dict[str, Any]) -> dict[str, Any]:
    """The recipe's own evaluation of the run just saved in ``output`` (its results.json and report.md)."""
    if kind == "seq2seq":
        from mie.recipes.seq2seq.run import evaluate_and_report

        return evaluate_and_report(output, config, tokenizer, CPU, summary, {}).results
    from mie.recipes.classification.run import evaluate_and_report as classification_report

    return classification_report(output, config, CPU, {}, summary).results
