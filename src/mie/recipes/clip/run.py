"""A finished clip run: load it from its directory, evaluate it, print and report its results.

``train`` (``mie.recipes.clip.train``) ends by calling :func:`evaluate_and_report`; ``mie eval``
calls :func:`evaluate`; both, and ``mie.load_run``, load the run with :func:`load_run_parts`.
Nothing here but :func:`evaluate_and_report` writes into the run directory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from mie.config import load_config
from mie.errors import ConfigError
from mie.evaluation.report import (
    REPORT_FILE,
    RESULTS_FILE,
    ReportComparison,
    compare_with_saved,
    format_metrics_table,
    load_results,
    write_report,
)
from mie.evaluation.shapes_probe import format_probe_table
from mie.io.atomic import atomic_write_text
from mie.io.cache import save_json_atomic
from mie.io.run_kind import check_run_kind
from mie.models.registry import build_model, num_parameters
from mie.recipes.clip.config import ClipConfig
from mie.recipes.clip.evaluate import EvalSet, evaluate_model, load_eval_set, write_figures
from mie.recipes.run_dir import TOKENIZER_FILE, load_run_weights, run_config_path
from mie.tokenization.base import BaseTokenizer
from mie.tokenization.factory import load_any_tokenizer
from mie.training import resolve_device


@dataclass
class RunResult:
    """What a finished run produced: where it lives and its evaluation numbers."""

    run_dir: Path
    results: dict[str, dict[str, float]]
    zero_shot: dict[str, dict[str, Any]]
    checkpoint: Path | None = None  # the weights that were scored
    rerank: dict[str, dict[str, Any]] | None = None  # split -> R@K without / with the ITM re-ranker
    probe: dict[str, dict[str, Any]] | None = None  # split -> colour/shape precision@8 (shapes data)


class RunParts(NamedTuple):
    """A finished run loaded for use: its config, tokenizer, model (eval mode, on ``device``) and weights file."""

    config: ClipConfig
    tokenizer: BaseTokenizer
    model: nn.Module
    device: torch.device
    checkpoint: Path


def config_summary(config: ClipConfig, model: nn.Module, vocab_size: int) -> dict[str, Any]:
    """The report's configuration table: architecture, size, loss, batch, data."""
    m = config.model
    return {
        "model": f"ViT {m.image_size}px/patch {m.patch_size}/width {m.vision_width}/{m.vision_layers} layers + "
                 f"text width {m.text_width}/{m.text_layers} layers/context {m.context_length}",
        "parameters": num_parameters(model), "vocab_size": vocab_size,
        "loss": config.loss.name if not config.stages else f"{len(config.stages)} stages",
        "batch_size": config.data.batch_size, "lr": config.optimizer.lr, "precision": config.precision,
        "data": f"{config.data.format}:{config.data.path}",
    }


def load_run_parts(run_dir: Path, checkpoint: str = "best", device: str | None = None) -> RunParts:
    """Load a finished run: its ``config.yaml``, ``tokenizer.json`` and the ``best`` (or ``last``) weights.

    ``device`` replaces the run's ``device`` setting (``"cpu"``, ``"cuda"``, ``"auto"``); reads only.
    """
    run_dir = Path(run_dir)
    check_run_kind(run_dir, "clip")  # an lm run is named as such, not refused for its model keys
    config = load_config(run_config_path(run_dir), ClipConfig)
    tokenizer = load_any_tokenizer(run_dir / TOKENIZER_FILE)
    target = resolve_device(device or config.device)
    model = build_model(config.model, eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id)
    weights = load_run_weights(model, run_dir, checkpoint)
    return RunParts(config, tokenizer, model.to(target).eval(), target, weights)


def with_data(config: ClipConfig, path: str | Path, data_format: str = "auto") -> ClipConfig:
    """A copy of ``config`` that reads the dataset at ``path`` (``format`` may be ``auto``).

    The run's ``format_options`` are kept only when ``data_format`` names the run's own format.
    """
    options = dict(config.data.format_options) if data_format == config.data.format else {}
    data = dataclasses.replace(config.data, path=str(path), format=data_format, format_options=options)
    return dataclasses.replace(config, data=data)


def evaluate_and_report(run_dir: Path, config: ClipConfig, tokenizer: BaseTokenizer, device: torch.device,
                         training: dict[str, Any], stages: list[dict[str, Any]] | None) -> RunResult:
    """Score the run's best checkpoint on its test splits and write ``report.md``, ``results.json``, plots."""
    parts = load_run_parts(run_dir)
    model, weights = parts.model, parts.checkpoint
    evalsets = [load_eval_set(config, split) for split in config.data.test_splits]
    results, zero_shot, probes = evaluate_model(model, tokenizer, evalsets, device)
    # No test split (a smoke run): the report holds the training summary and curves only.
    figures = write_figures(run_dir, model, tokenizer, evalsets[0], device) if evalsets else {}
    write_report(run_dir, results, config_summary(config, model, tokenizer.vocab_size), figures,
                 extra={"evaluated checkpoint": weights.name}, zero_shot=zero_shot, training=training,
                 stages=stages, title=f"{config.project_name}: image-text retrieval report")
    if probes:
        add_probe_to_report(run_dir, probes)
    reranked = None
    if config.rerank.enabled and evalsets:
        from mie.recipes.clip.rerank import rerank_and_report

        reranked = rerank_and_report(run_dir, config, model, tokenizer, evalsets, device)
    return RunResult(run_dir, results, zero_shot, weights, reranked, probes or None)


def add_probe_to_report(run_dir: Path, probes: dict[str, dict[str, Any]]) -> None:
    """Add ``shapes_probe`` to ``results.json`` and its section to ``report.md`` (before its last line)."""
    saved = load_results(run_dir)
    saved["shapes_probe"] = probes
    save_json_atomic(run_dir / RESULTS_FILE, saved)
    k = next(iter(probes.values()))["color_shape"]["k"]
    section = ["## Shape or colour? Text queries scored by precision@" + str(k), "",
               f"Each query ranks every image of the split; precision@{k} is the share of its top {k} holding an "
               "object of the queried colour and shape (\"a red circle\", all 63 pairs), shape (\"a circle\") or "
               "colour (\"a red shape\"), in %, beside the precision of a random ranking (chance). A model that "
               "matches by colour alone scores at chance on shape-only queries, and on colour-shape queries "
               "finds the colour with any shape.", "",
               *format_probe_table(probes), ""]
    report = run_dir / REPORT_FILE
    lines = report.read_text(encoding="utf-8").rstrip("\n").split("\n")
    atomic_write_text(report, "\n".join(lines[:-1] + section + lines[-1:]) + "\n")


def evaluate(run_dir: str | Path, splits: Sequence[str] | None = None, *, checkpoint: str = "best",
             data: str | Path | None = None, data_format: str = "auto") -> tuple[RunResult, ReportComparison]:
    """Re-score a finished run from its files, writing nothing; compare with ``results.json`` where it can.

    ``splits`` default to the config's ``test_splits`` (``["test"]`` with ``data``); ``checkpoint`` is
    ``best`` or ``last``; ``data`` (+ ``data_format``) scores another dataset with the run's model, which
    ``results.json`` cannot vouch for, so nothing is compared then.
    """
    run_dir = Path(run_dir)
    config, tokenizer, model, device, weights = load_run_parts(run_dir, checkpoint)
    if data is not None:
        config = with_data(config, data, data_format)
    names = list(splits or (["test"] if data is not None else config.data.test_splits))
    if not names:
        raise ConfigError("is empty, so there is no split to score", where=f"data.test_splits of {run_dir}",
                          fix="pass --split NAME")
    evalsets: list[EvalSet] = [load_eval_set(config, split) for split in names]
    results, zero_shot, probes = evaluate_model(model, tokenizer, evalsets, device)
    if data is not None:
        comparison = ReportComparison(nothing_to_compare=[
            f"nothing to compare: results.json scores the run's own data, not {data}"])
    else:
        comparison = compare_with_saved(run_dir, results, checkpoint=weights.name)
    reranked = None
    if config.rerank.enabled:
        from mie.recipes.clip.rerank import compare_rerank, rescore

        reranked = rescore(run_dir, config, model, tokenizer, evalsets, device)
        if reranked is not None and data is None and comparison.source is not None:
            comparison.differences += compare_rerank(run_dir, reranked)
    return RunResult(run_dir, results, zero_shot, weights, reranked, probes or None), comparison


def print_results(result: RunResult, echo: Callable[[str], Any] = print) -> None:
    """R@1/5/10 both ways per split, and the mean R@1 the acceptance bar is set on."""
    echo(format_metrics_table(result.results))
    for split, metrics in result.results.items():
        echo(f"{split}: mean R@1 = {metrics['mean_R@1']:.3f} "
             f"(i2t {metrics['i2t_R@1']:.3f}, t2i {metrics['t2i_R@1']:.3f})")
    for split, both in (result.rerank or {}).items():
        echo(f"{split}: mean R@1 {both['without']['mean_R@1']:.3f} -> {both['with']['mean_R@1']:.3f} re-ranked "
             f"(i2t {both['with']['i2t_R@1']:.3f}, t2i {both['with']['t2i_R@1']:.3f})")
    for name, zs in result.zero_shot.items():
        if "chance" in zs:
            echo(f"zero-shot {name}: accuracy {zs['accuracy']:.3f} (chance {zs['chance']:.3f}) "
                 f"over {zs['num_samples']} images")
        else:
            echo(f"zero-shot {name}: accuracy {zs['accuracy']:.3f} over {zs['num_samples']} single-object images")
    for split, probe in (result.probe or {}).items():
        echo(f"{split}: " + probe_summary(probe))


def probe_summary(probe: dict[str, Any]) -> str:
    """One line of the shapes probe: precision@k (chance) per query family, and the example's hits."""
    k = probe["color_shape"]["k"]
    parts = [f"{label} P@{k} {probe[family]['precision']:.3f} (chance {probe[family]['chance']:.3f})"
             for family, label in (("color_shape", "colour-shape"), ("shape", "shape"), ("color", "colour"))
             if probe[family]["precision"] is not None]
    example = probe.get("example")
    if example:
        parts.append(f"\"{example['query']}\" {example['hits']} of {example['k']}")
    return "; ".join(parts)
