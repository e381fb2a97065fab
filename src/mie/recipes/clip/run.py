"""A finished clip run: load it from its directory, evaluate it, print and report its results.

``train`` (``mie.recipes.clip.train``) ends by calling :func:`evaluate_and_report`; ``mie eval``
calls :func:`evaluate`; both load the run with :func:`load_run_parts`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mie.config import load_config
from mie.errors import CheckpointError
from mie.evaluation.report import compare_results, format_metrics_table, load_results, write_report
from mie.io import load_weights
from mie.models.registry import build_model, num_parameters
from mie.recipes.clip.config import ClipConfig
from mie.recipes.clip.evaluate import EvalSet, evaluate_model, load_eval_set, write_figures
from mie.recipes.run_dir import TOKENIZER_FILE, checkpoint_to_evaluate, run_config_path
from mie.tokenization.base import BaseTokenizer
from mie.tokenization.factory import load_any_tokenizer
from mie.training import resolve_device


@dataclass
class RunResult:
    """What a finished run produced: where it lives and its evaluation numbers."""

    run_dir: Path
    results: dict[str, dict[str, float]]
    zero_shot: dict[str, dict[str, Any]]


def config_summary(config: ClipConfig, model: nn.Module, vocab_size: int) -> dict[str, Any]:
    m = config.model
    return {
        "model": f"ViT {m.image_size}px/patch {m.patch_size}/width {m.vision_width}/{m.vision_layers} layers + "
                 f"text width {m.text_width}/{m.text_layers} layers/context {m.context_length}",
        "parameters": num_parameters(model), "vocab_size": vocab_size,
        "loss": config.loss.name if not config.stages else f"{len(config.stages)} stages",
        "batch_size": config.data.batch_size, "lr": config.optimizer.lr, "precision": config.precision,
        "data": f"{config.data.format}:{config.data.path}",
    }


def load_run_parts(run_dir: Path) -> tuple[ClipConfig, BaseTokenizer, nn.Module, torch.device]:
    config = load_config(run_config_path(run_dir), ClipConfig)
    tokenizer = load_any_tokenizer(run_dir / TOKENIZER_FILE)
    device = resolve_device(config.device)
    model = build_model(config.model, eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id)
    checkpoint = checkpoint_to_evaluate(run_dir)
    state, _ = load_weights(checkpoint)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"does not fit the model of {run_dir / 'config.yaml'} ({' '.join(str(exc).split())[:300]})",
                              where=checkpoint, fix="keep the checkpoints and config.yaml of one run together") from None
    return config, tokenizer, model.to(device).eval(), device


def evaluate_and_report(run_dir: Path, config: ClipConfig, tokenizer: BaseTokenizer, device: torch.device,
                         training: dict[str, Any], stages: list[dict[str, Any]] | None) -> RunResult:
    _, _, model, _ = load_run_parts(run_dir)
    evalsets = [load_eval_set(config, split) for split in config.data.test_splits]
    results, zero_shot = evaluate_model(model, tokenizer, evalsets, device)
    # No test split (a smoke run): the report holds the training summary and curves only.
    figures = write_figures(run_dir, model, tokenizer, evalsets[0], device) if evalsets else {}
    checkpoint = checkpoint_to_evaluate(run_dir).name
    write_report(run_dir, results, config_summary(config, model, tokenizer.vocab_size), figures,
                 extra={"evaluated checkpoint": checkpoint}, zero_shot=zero_shot, training=training,
                 stages=stages, title=f"{config.project_name}: image-text retrieval report")
    return RunResult(run_dir, results, zero_shot)


def evaluate(run_dir: str | Path, splits: Sequence[str] | None = None) -> tuple[RunResult, list[str]]:
    """Re-score a finished run from its files; return the results and their differences from ``results.json``."""
    run_dir = Path(run_dir)
    config, tokenizer, model, device = load_run_parts(run_dir)
    evalsets: list[EvalSet] = [load_eval_set(config, split) for split in (splits or config.data.test_splits)]
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
