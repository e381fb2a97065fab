"""A finished classification run: load it, score it on its test splits, write and print its report.

``train`` (``mie.recipes.classification.train``) ends with :func:`evaluate_and_report`; ``mie eval``
calls :func:`evaluate`, which writes nothing and compares with ``results.json``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mie.config import load_config
from mie.errors import ConfigError
from mie.evaluation.classification import classification_metrics
from mie.evaluation.report import RESULTS_FILE, ReportComparison, compare_with_saved, jsonable
from mie.io.atomic import atomic_write_text
from mie.io.cache import save_json_atomic
from mie.models.vit_classifier import ViTClassifier
from mie.recipes.classification.config import ClassificationRecipeConfig
from mie.recipes.classification.data import LabelledImages, build_loader, load_split
from mie.recipes.run_dir import load_run_weights, run_config_path
from mie.training import resolve_device
from mie.training.loop_utils import move_to_device

RESULTS_KEY = "classification"


@dataclass
class ClassificationRunResult:
    """What a run produced: ``results`` is ``{split: classification_metrics(...)}``."""

    run_dir: Path
    results: dict[str, dict[str, Any]]
    checkpoint: Path | None = None


@torch.no_grad()
def predict(model: ViTClassifier, split: LabelledImages, config: ClassificationRecipeConfig,
            device: torch.device) -> torch.Tensor:
    """Logits ``[N, num_classes]`` (fp32, on CPU) of every image of ``split``, in order."""
    model.eval()
    loader = build_loader(split, config.data.mean, config.data.std, config.data.eval_batch_size, train=False,
                          data=config.data)
    return torch.cat([model(move_to_device(batch, device)["images"]).float().cpu() for batch in loader])


def score(model: ViTClassifier, split: LabelledImages, config: ClassificationRecipeConfig,
          device: torch.device) -> dict[str, Any]:
    """Top-1, top-5, balanced and per-class accuracy and the confusion matrix of ``split``."""
    return classification_metrics(predict(model, split, config, device), split.labels, ks=(1, 5),
                                  classnames=split.classnames)


def load_model(run_dir: Path, config: ClassificationRecipeConfig, checkpoint: str,
               device: torch.device) -> tuple[ViTClassifier, Path]:
    """The run's classifier with its ``best`` (or ``last``) weights, in eval mode on ``device``."""
    model = ViTClassifier(config.model)
    weights = load_run_weights(model, run_dir, checkpoint)
    return model.to(device).eval(), weights


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _report_lines(config: ClassificationRecipeConfig, results: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["## Test accuracy", "", "| split | top-1 % | top-5 % | balanced % | images | classes |",
             "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {split} | {_pct(m['accuracy'])} | {_pct(m.get('top5_accuracy'))} | "
              f"{_pct(m['balanced_accuracy'])} | {m['num_samples']} | {m['num_classes']} |"
              for split, m in results.items()]
    for split, m in results.items():
        lines += ["", f"Per-class accuracy ({split}):", "", "| class | accuracy % | images |", "| --- | --- | --- |"]
        support = [sum(row) for row in m["confusion_matrix"]]
        lines += [f"| {name} | {_pct(acc)} | {n} |"
                  for name, acc, n in zip(m["classnames"], m["per_class_accuracy"], support)]
    return lines + [""]


def _write_figures(run_dir: Path, results: dict[str, dict[str, Any]]) -> dict[str, str]:
    from mie.evaluation.classification_plots import plot_classification_curves, plot_confusion_matrix

    plots = run_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    figures = {}
    if (run_dir / "metrics.jsonl").is_file():
        plot_classification_curves(run_dir / "metrics.jsonl", plots / "curves.png",
                                   title="Training loss and validation accuracy")
        figures["Loss and accuracy curves"] = "plots/curves.png"
    for split, m in results.items():
        plot_confusion_matrix(m["confusion_matrix"], m["classnames"], plots / f"confusion_{split}.png",
                              title=f"Confusion matrix on {split} (top-1 {100 * m['accuracy']:.1f}%)")
        figures[f"Confusion matrix ({split})"] = f"plots/confusion_{split}.png"
    return figures


def write_report(run_dir: Path, config: ClassificationRecipeConfig, result: ClassificationRunResult,
                 training: dict[str, Any], summary: dict[str, Any]) -> None:
    """``results.json`` and ``report.md`` with the figures (curves, one confusion matrix per split)."""
    figures = _write_figures(run_dir, result.results)
    payload = {RESULTS_KEY: result.results, "training": training, "config": summary, "figures": figures,
               "extra": {"evaluated checkpoint": result.checkpoint.name if result.checkpoint else None}}
    save_json_atomic(run_dir / RESULTS_FILE, jsonable(payload))
    lines = [f"# {config.project_name}: image classification report", "", f"Run directory: `{run_dir}`", "",
             *_report_lines(config, result.results)]
    for title, table in (("Training summary", training), ("Configuration", summary)):
        lines += [f"## {title}", "", "| | |", "| --- | --- |", *[f"| {k} | {v} |" for k, v in table.items()], ""]
    lines += ["## Figures", ""]
    for name, rel in figures.items():
        lines += [f"### {name}", "", f"![{name}]({rel})", ""]
    lines.append(f"Machine-readable numbers: `{RESULTS_FILE}`.")
    atomic_write_text(run_dir / "report.md", "\n".join(lines) + "\n")


def evaluate_and_report(run_dir: Path, config: ClassificationRecipeConfig, device: torch.device,
                        training: dict[str, Any], summary: dict[str, Any]) -> ClassificationRunResult:
    """Score the best checkpoint on every test split and write the report."""
    model, weights = load_model(run_dir, config, "best", device)
    results = {split: score(model, load_split(config, split), config, device) for split in config.data.test_splits}
    result = ClassificationRunResult(run_dir, results, weights)
    write_report(run_dir, config, result, training, summary)
    return result


def evaluate(run_dir: str | Path, splits: Sequence[str] | None = None, *, checkpoint: str = "best",
             data: str | Path | None = None, data_format: str = "auto") -> tuple[ClassificationRunResult,
                                                                                 ReportComparison]:
    """Re-score a finished run, writing nothing; compare with ``results.json`` where it can.

    ``data`` points the run's source at another folder (an ImageFolder root or the Fashion-MNIST IDX
    folder); ``results.json`` cannot vouch for that, so nothing is compared then.
    """
    run_dir = Path(run_dir)
    config = load_config(run_config_path(run_dir), ClassificationRecipeConfig)
    if data_format not in ("auto", config.data.source):
        raise ConfigError(f"a classification run reads {config.data.source} data, not {data_format!r}",
                          where="--format", fix="leave --format out")
    if data is not None:
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, path=str(data)))
    names = list(splits or config.data.test_splits)
    device = resolve_device(config.device)
    model, weights = load_model(run_dir, config, checkpoint, device)
    result = ClassificationRunResult(run_dir, {s: score(model, load_split(config, s), config, device) for s in names},
                                     weights)
    return result, compare_with_saved(run_dir, result.results, weights.name, section=RESULTS_KEY, data=data)


def print_results(result: ClassificationRunResult, echo: Callable[[str], Any] = print) -> None:
    """Top-1 and top-5 accuracy per split."""
    for split, m in result.results.items():
        top5 = f", top-5 {m['top5_accuracy']:.4f}" if "top5_accuracy" in m else ""
        echo(f"{split}: top-1 {m['accuracy']:.4f}{top5}, balanced {m['balanced_accuracy']:.4f} "
             f"({m['num_samples']} images, {m['num_classes']} classes)")
