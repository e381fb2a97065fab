"""The evaluator's declared operating point: per-principle thresholds chosen on a calibration set by a
rule fixed in advance, and the figures that describe a set (ROC AUC, recall at 1 % and 5 % FPR).

**The rule** (:data:`RULE`, declared before any evaluation figure was looked at): per principle, the
embedding classifier's flag probability is taken from :data:`GRID` so that rules + embeddings, combined
by :class:`~mie.safety.evaluator.CombineRule`, flag the most harmful calibration prompts while flagging at
most :data:`MAX_FPR` (4 %) of the benign ones, everyday questions and look-alikes alike. 4 %, not the
goal's 5 %: with about 300 benign calibration prompts one false positive is a third of a point, so a
point of margin keeps the evaluation set's rate within the goal. The search is
:func:`~mie.safety.embeddings.choose_thresholds` (greedy: the lowering with the most harmful prompts
gained per false positive, until none fits).

The calibration set (``data/calibration.jsonl``) is ours and separate from the training examples:
benign prompts as people write them (typos, lower case, everyday questions) beside look-alikes, and
harmful prompts as attackers write them (``style``: direct, indirect, roleplay, obfuscated). No public
red-team benchmark is in it, nor in the training examples. Figures are then reported on an evaluation
set that is neither (``benchmarks/data``)::

    point = choose_operating_point(rule_verdicts, probs, rows)      # {"harm_prevention": 0.9, ...}
    set_figures(scores, rows)["overall"]["recall_at_5pct_fpr"]      # threshold-free, from the ranking
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from mie.errors import DataError
from mie.io.cache import read_jsonl
from mie.safety.embeddings import calibrate, choose_thresholds
from mie.safety.evaluator import CombineRule
from mie.safety.types import DEFAULT_PRINCIPLES, PrincipleVerdict

MAX_FPR = 0.04
RULE = (f"per principle, the embedding threshold from GRID giving rules + embeddings (CombineRule) the highest "
        f"recall on the harmful calibration prompts at <= {MAX_FPR:.0%} false positives on the benign calibration "
        "prompts (greedy, choose_thresholds)")
GRID = (0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.875, 0.9, 0.925, 0.95, 0.96, 0.97, 0.98, 0.99, 0.995, 0.998)
STYLES = ("direct", "indirect", "roleplay", "obfuscated", "everyday", "lookalike")


def load_labelled(path: str | Path | None = None) -> list[dict[str, Any]]:
    """Rows ``{"text", "label": harmful|benign, "principle" (harmful rows), ...}``; default: the packaged
    calibration set."""
    source = Path(path) if path is not None else resources.files("mie.safety") / "data" / "calibration.jsonl"
    fix = 'write {"text": ..., "label": "harmful"|"benign", "principle": ...} per line'
    rows = []
    for where, row in read_jsonl(source, fix):
        if not isinstance(row, dict) or row.get("label") not in ("harmful", "benign") \
                or not isinstance(row.get("text"), str) \
                or (row["label"] == "harmful" and row.get("principle") not in DEFAULT_PRINCIPLES):
            raise DataError(f"is not a labelled prompt: {str(row)[:60]}", where=where, fix=fix)
        rows.append(row)
    return rows


def combined_scores(rule_verdicts: Sequence[dict[str, PrincipleVerdict]], probs: torch.Tensor,
                    thresholds: Sequence[float], principles: Sequence[str] = DEFAULT_PRINCIPLES,
                    rule: CombineRule | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``([N, P] combined scores, [N, P] flags)`` of rules + embeddings, as the evaluator combines them,
    with embedding probabilities ``probs`` flagged at ``thresholds`` (one per principle)."""
    rule = rule or CombineRule()
    scores = torch.zeros(len(rule_verdicts), len(principles))
    flags = torch.zeros(len(rule_verdicts), len(principles), dtype=torch.bool)
    for n, verdicts in enumerate(rule_verdicts):
        for j, p in enumerate(principles):
            emb = PrincipleVerdict(p, False, calibrate(float(probs[n, j]), thresholds[j]), ["probability"], "embeddings")
            combined = rule.combine(p, {"rules": verdicts[p], "embeddings": emb})
            scores[n, j], flags[n, j] = combined.score, combined.flagged
    return scores, flags


def choose_operating_point(rule_verdicts: Sequence[dict[str, PrincipleVerdict]], probs: torch.Tensor,
                           rows: Sequence[dict[str, Any]], max_fpr: float = MAX_FPR,
                           principles: Sequence[str] = DEFAULT_PRINCIPLES) -> dict[str, float]:
    """Per-principle embedding thresholds by :data:`RULE` on the calibration ``rows``."""
    flags = torch.stack([combined_scores(rule_verdicts, probs, [t] * len(principles), principles)[1] for t in GRID])
    harmful = torch.tensor([r["label"] == "harmful" for r in rows])
    chosen = choose_thresholds(flags, GRID, harmful, ~harmful, max_fpr)
    return dict(zip(principles, chosen, strict=True))


def roc_auc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """The probability that a random positive outranks a random negative (ties count half)."""
    if not positives or not negatives:
        return float("nan")
    pos, neg = torch.tensor(list(positives)), torch.tensor(list(negatives))
    greater = (pos[:, None] > neg[None, :]).double().sum()
    ties = (pos[:, None] == neg[None, :]).double().sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def recall_at_fpr(positives: Sequence[float], negatives: Sequence[float], fpr: float) -> float:
    """The highest recall of a single threshold flagging at most ``fpr`` of the negatives (ties with a
    negative's score are not counted as recalled, so the false-positive bound always holds)."""
    if not positives:
        return float("nan")
    allowed = int(fpr * len(negatives) + 1e-9)
    ranked = sorted(negatives, reverse=True)
    if allowed >= len(ranked):
        return 1.0
    cut = ranked[allowed]
    return sum(p > cut for p in positives) / len(positives)


def set_figures(scores: torch.Tensor, flags: torch.Tensor, rows: Sequence[dict[str, Any]],
                principles: Sequence[str] = DEFAULT_PRINCIPLES) -> dict[str, dict[str, float]]:
    """ROC AUC, recall at 1 % and 5 % FPR (threshold-free), and the operating point's recall and FPR,
    per principle (its harmful prompts against every benign one, on its own score) and overall (every
    harmful prompt, on the highest principle score; flagged when any principle is)."""
    harmful = [r["label"] == "harmful" for r in rows]
    benign_idx = [n for n, h in enumerate(harmful) if not h]
    out = {}
    for j, p in enumerate([*principles, "overall"]):
        pos_idx = [n for n, r in enumerate(rows) if harmful[n] and (p == "overall" or r.get("principle") == p)]
        if p == "overall":
            score, flag = scores.max(1).values, flags.any(1)
        else:
            score, flag = scores[:, j], flags[:, j]
        pos, neg = [float(score[n]) for n in pos_idx], [float(score[n]) for n in benign_idx]
        out[p] = {"positives": len(pos), "negatives": len(neg), "roc_auc": roc_auc(pos, neg),
                  "recall_at_1pct_fpr": recall_at_fpr(pos, neg, 0.01),
                  "recall_at_5pct_fpr": recall_at_fpr(pos, neg, 0.05),
                  "recall": sum(bool(flags[n].any()) if p == "overall" else bool(flag[n]) for n in pos_idx)
                  / max(1, len(pos_idx)),
                  "fpr": sum(bool(flag[n]) for n in benign_idx) / max(1, len(benign_idx))}
    return out


def figures_table(figures: dict[str, dict[str, float]]) -> str:
    """A Markdown table of :func:`set_figures`."""
    lines = ["| principle | harmful | benign | ROC AUC | recall @1% FPR | recall @5% FPR | recall | FPR |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, f in figures.items():
        lines.append(f"| {name} | {f['positives']} | {f['negatives']} | {f['roc_auc']:.3f} | "
                     f"{f['recall_at_1pct_fpr']:.3f} | {f['recall_at_5pct_fpr']:.3f} | {f['recall']:.3f} | "
                     f"{f['fpr']:.3f} |")
    return "\n".join(lines)
