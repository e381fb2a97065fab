"""Run reports: ``report.md`` for people and ``results.json`` with the same numbers for programs.

``results`` maps a split name ("val", "test") to the dict returned by
:func:`mie.evaluation.retrieval.retrieval_metrics`. ``mie eval RUN_DIR`` recomputes the metrics and
checks them against the stored ``results.json`` with :func:`compare_with_saved` (only the splits the
file holds; :func:`compare_results` compares two results dicts key by key).

``results.json`` layout::

    {"retrieval": {split: metrics}, "zero_shot": {split: zero_shot result} | null,
     "training": {...} | null, "config": {...}, "figures": {name: path}, "extra": {...} | null}
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mie.io.atomic import atomic_write_text
from mie.io.cache import read_json, save_json_atomic

RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"

# Training-summary keys we know how to label; any other key is shown under its own name.
_TRAINING_LABELS = {
    "steps": "optimizer steps",
    "epochs": "epochs",
    "wall_time_s": "wall time (s)",
    "samples_per_s": "samples / s",
    "samples_seen": "samples seen",
    "final_loss": "final training loss",
    "best_val_mean_R@1": "best val mean R@1",
    "device": "device",
}


# ---- JSON -------------------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """Plain-JSON copy of ``value``: tensors/NumPy scalars -> numbers/lists, NaN/inf -> None, Path -> str."""
    if hasattr(value, "tolist") and callable(value.tolist):  # torch tensors, NumPy arrays and scalars
        value = value.tolist()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None  # strict JSON has no NaN; a missing number reads as null
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(f"cannot store a {type(value).__name__} in results.json; convert it to numbers or text")


def load_results(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``RUN_DIR/results.json`` written by :func:`write_report`."""
    path = Path(run_dir) / RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; `mie train` writes it when a run finishes")
    data = read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts/lists -> {"a.b.0": leaf} so two results can be compared key by key."""
    if isinstance(value, Mapping):
        items = [(f"{prefix}.{k}" if prefix else str(k), v) for k, v in value.items()]
    elif isinstance(value, (list, tuple)):
        items = [(f"{prefix}[{i}]", v) for i, v in enumerate(value)]
    else:
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, item in items:
        out.update(_flatten(item, key))
    if not items:
        out[prefix] = value  # keep empty containers visible
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def compare_results(a: Mapping[str, Any], b: Mapping[str, Any], atol: float = 1e-6) -> list[str]:
    """Differences between two (nested) results dicts, one readable line each; empty when they agree.

    Numbers agree within ``atol``; anything else must be equal. Keys present on one side only are reported.
    """
    flat_a, flat_b = _flatten(jsonable(a)), _flatten(jsonable(b))
    diffs = []
    for key in sorted(flat_a.keys() | flat_b.keys()):
        if key not in flat_b:
            diffs.append(f"{key}: only in the first ({flat_a[key]!r})")
        elif key not in flat_a:
            diffs.append(f"{key}: only in the second ({flat_b[key]!r})")
        else:
            x, y = flat_a[key], flat_b[key]
            if _is_number(x) and _is_number(y):
                if abs(x - y) > atol:
                    diffs.append(f"{key}: {x!r} != {y!r} (|diff| {abs(x - y):.3g} > atol {atol:g})")
            elif x != y:
                diffs.append(f"{key}: {x!r} != {y!r}")
    return diffs


@dataclass
class ReportComparison:
    """How re-scored results compare with a run's ``results.json``: splits compared, differences, and
    a ``nothing to compare: ...`` line for each thing the file cannot vouch for."""

    source: Path | None = None  # the results.json compared with; None when nothing was
    compared: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    nothing_to_compare: list[str] = field(default_factory=list)

    @property
    def reproduces(self) -> bool:
        """True when at least one split was compared and every compared number agrees."""
        return bool(self.compared) and not self.differences


def compare_with_saved(run_dir: str | os.PathLike[str], results: Mapping[str, Mapping[str, Any]],
                       checkpoint: str | None = None, atol: float = 1e-6, section: str = "retrieval",
                       data: Any = None) -> ReportComparison:
    """Compare ``results`` (split -> metrics) with the ``section`` of ``RUN_DIR/results.json``, split by split.

    Only the splits the file holds are compared; a split it lacks, a missing file, a file that scored
    another checkpoint (its ``extra["evaluated checkpoint"]`` is not ``checkpoint``), or results of other
    ``data`` than the run's own give a ``nothing to compare`` line instead of a difference. Every
    recipe's ``mie eval`` compares through this one function.
    """
    if data is not None:
        return ReportComparison(nothing_to_compare=[f"nothing to compare: {RESULTS_FILE} scores the run's own "
                                                    f"data, not {data}"])
    path = Path(run_dir) / RESULTS_FILE
    if not path.is_file():
        return ReportComparison(nothing_to_compare=[f"nothing to compare: {path} does not exist (the run has "
                                                    "no report)"])
    saved = load_results(run_dir)
    scored = (saved.get("extra") or {}).get("evaluated checkpoint")
    if checkpoint is not None and scored is not None and scored != checkpoint:
        return ReportComparison(nothing_to_compare=[f"nothing to compare: {RESULTS_FILE} scores {scored}, "
                                                    f"not {checkpoint}"])
    stored = saved.get(section) or {}
    comparison = ReportComparison(source=path)
    for split, metrics in results.items():
        if split in stored:
            comparison.compared.append(split)
            comparison.differences += compare_results({split: stored[split]}, {split: metrics}, atol)
        else:
            comparison.nothing_to_compare.append(f"nothing to compare: {RESULTS_FILE} has no {split!r} split")
    return comparison


# ---- tables -----------------------------------------------------------------------------------------


def _ks(results: Mapping[str, Mapping[str, Any]]) -> list[int]:
    """The K values present in any split's metrics (from keys like ``i2t_R@5``), ascending."""
    found = {int(m.group(1)) for metrics in results.values() for key in metrics
             if (m := re.fullmatch(r"(?:i2t|t2i)_R@(\d+)", key))}
    return sorted(found)


def _pct(value: Any) -> str:
    return f"{100 * value:.2f}" if _is_number(value) else "-"


def _num(value: Any) -> str:
    if not _is_number(value):
        return "-" if value is None else str(value)
    return f"{value:g}" if float(value).is_integer() else f"{value:.4g}"


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """Column-aligned pipe table; ``|`` inside a cell is escaped so it cannot split the row."""
    cells = [[str(c).replace("|", "\\|").replace("\n", " ") for c in row] for row in [header, *rows]]
    widths = [max(len(c) for c in col) for col in zip(*cells)]

    def line(row: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |"

    rule = "| " + " | ".join("-" * w for w in widths) + " |"
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def format_metrics_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown table (readable on a console too): per split, R@K both ways in %, mean R@1, median ranks."""
    if not results:
        return "(no retrieval results)"
    ks = _ks(results)
    header = ["split", *[f"i2t R@{k}" for k in ks], *[f"t2i R@{k}" for k in ks], "mean R@1", "i2t MedR", "t2i MedR"]
    rows = []
    for split, m in results.items():
        rows.append([
            split,
            *[_pct(m.get(f"i2t_R@{k}")) for k in ks],
            *[_pct(m.get(f"t2i_R@{k}")) for k in ks],
            _pct(m.get("mean_R@1")),
            _num(m.get("i2t_median_rank")),
            _num(m.get("t2i_median_rank")),
        ])
    return _markdown_table(header, rows)


def format_zero_shot_table(zero_shot: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown table of zero-shot accuracy (%) per split, plus top-K and balanced accuracy when present."""
    ks = sorted({int(m.group(1)) for r in zero_shot.values() for key in r
                 if (m := re.fullmatch(r"top(\d+)_accuracy", key))})
    header = ["split", "top-1 acc", *[f"top-{k} acc" for k in ks], "balanced acc", "chance", "images", "classes"]
    rows = [[split, _pct(r.get("accuracy")), *[_pct(r.get(f"top{k}_accuracy")) for k in ks],
             _pct(r.get("balanced_accuracy")), _pct(r.get("chance")), _num(r.get("num_samples")),
             _num(r.get("num_classes"))]
            for split, r in zero_shot.items()]
    return _markdown_table(header, rows)


def _per_class_table(result: Mapping[str, Any]) -> str:
    accs = result.get("per_class_accuracy") or []
    names = result.get("classnames") or [str(i) for i in range(len(accs))]
    return _markdown_table(["class", "accuracy"], [[n, _pct(a)] for n, a in zip(names, accs)])


def _key_value_table(data: Mapping[str, Any], labels: Mapping[str, str] | None = None) -> str:
    labels = labels or {}
    return _markdown_table(["", "value"], [[labels.get(k, k), _num(v)] for k, v in data.items()])


# ---- report -----------------------------------------------------------------------------------------


def write_report(
    run_dir: str | os.PathLike[str],
    results: Mapping[str, Mapping[str, Any]],
    config_summary: Mapping[str, Any],
    figures: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
    *,
    zero_shot: Mapping[str, Mapping[str, Any]] | None = None,
    training: Mapping[str, Any] | None = None,
    stages: list[Mapping[str, Any]] | None = None,
    title: str = "Run report",
) -> Path:
    """Write ``RUN_DIR/report.md`` and ``RUN_DIR/results.json``; return the report path.

    ``figures`` maps a caption to a PNG path relative to ``run_dir`` (embedded in the report; a
    missing file is an error, so a report never shows broken images). ``training`` holds the
    training summary (steps, wall_time_s, samples_per_s, ...), ``zero_shot`` maps split -> the dict
    of :func:`mie.evaluation.zero_shot.zero_shot_classify`, ``stages`` one row (a mapping of
    column -> value) per stage of a multistage run, and ``extra`` is any further key/values.
    """
    root = Path(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    figures = dict(figures or {})
    for name, rel in figures.items():
        if Path(rel).is_absolute():
            raise ValueError(f"figure {name!r}: use a path relative to {root}, got absolute {rel}")
        if not (root / rel).is_file():
            raise FileNotFoundError(f"figure {name!r} not found at {root / rel}; create it before the report")

    payload = jsonable({
        "retrieval": results, "zero_shot": zero_shot, "training": training,
        "config": config_summary, "figures": figures, "extra": extra, "stages": stages,
    })
    save_json_atomic(root / RESULTS_FILE, payload)

    parts = [f"# {title}", "", f"Run directory: `{root}`", "", "## Retrieval", "",
             "Recall@K in %, median rank (MedR) 1-based.", "", format_metrics_table(results), ""]
    if zero_shot:
        parts += ["## Zero-shot classification", "", format_zero_shot_table(zero_shot), ""]
        for split, result in zero_shot.items():
            if result.get("per_class_accuracy"):
                parts += [f"Per-class accuracy ({split}):", "", _per_class_table(result), ""]
    if stages:
        header = list(dict.fromkeys(k for row in stages for k in row))
        rows = [[_num(row.get(k, "")) for k in header] for row in stages]
        parts += ["## Stages", "", _markdown_table(header, rows), ""]
    if training:
        parts += ["## Training summary", "", _key_value_table(training, _TRAINING_LABELS), ""]
    if config_summary:
        parts += ["## Configuration", "", _key_value_table(config_summary), ""]
    if extra:
        parts += ["## Notes", "", _key_value_table(extra), ""]
    if figures:
        parts += ["## Figures", ""]
        for name, rel in figures.items():
            parts += [f"### {name}", "", f"![{name}]({Path(rel).as_posix()})", ""]
    parts.append(f"Machine-readable numbers: `{RESULTS_FILE}`.")

    return atomic_write_text(root / REPORT_FILE, "\n".join(parts) + "\n")
