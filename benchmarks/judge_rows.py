"""The LM judge alone, per judge model, for benchmarks/safety_eval.py (issue 29).

For each installed judge model (SmolLM2-135M-Instruct, Qwen2.5-Coder-0.5B / 1.5B-Instruct) on a stratified
subset of the evaluation set: the judge's score of a text (the highest P(violates) over its questions), ROC
AUC of harmful texts against every benign one, recall at the look-alike FPR of the combined rule (rules +
embeddings on the same subset: the threshold flags at most that share of the look-alikes) and at 5% FPR,
seconds per text, and the shared-prefix KV cache against recomputing the prefix on the first texts (same
scores, the time ratio). Two question sets: ``principles`` (2 prompts per active principle) and ``request``
(one zero-shot "would fulfilling this request be harmful?", 2 prompts).
"""

from __future__ import annotations

import time
from typing import Any

from mie.errors import ConfigError
from mie.pretrained.registry import gguf_path, load_causal_lm
from mie.safety.calibration import recall_at_fpr, roc_auc
from mie.safety.constitution import ConstitutionalFramework
from mie.safety.judge import LMJudge

HEADER = ("| judge model | questions | items | ROC AUC | recall @ look-alike FPR {fpr:.3f} | recall @ 5% FPR | "
          "s/text | shared prefix vs recompute |\n| --- | --- | --- | --- | --- | --- | --- | --- |")


def _installed(name: str) -> bool:
    try:
        gguf_path(name)
        return True
    except ConfigError:
        return False


def _judge(model: Any, tokenizer: Any, questions: str, share: bool) -> LMJudge:
    if questions == "request":
        return LMJudge.for_requests(model, tokenizer, batch_size=10, share_prefix=share)
    return LMJudge(model, tokenizer, list(ConstitutionalFramework.default().active), batch_size=10,
                   share_prefix=share)


def _scores(judge: LMJudge, texts: list[str]) -> tuple[list[float], float]:
    start = time.perf_counter()
    verdicts = judge.score_batch(texts)
    return [max(v.score for v in row.values()) for row in verdicts], time.perf_counter() - start


def judge_rows(items: list[dict], lookalike_fpr: float, models: list[str], plans: list[str],
               timing_items: int = 4) -> tuple[list[str], dict[str, Any]]:
    """Table lines and figures of each installed model in ``models`` under each question set in ``plans``."""
    harmful = [it["label"] == "harmful" for it in items]
    lookalike = [not h and not it.get("category", "").startswith("everyday") for h, it in zip(harmful, items)]
    texts = [it["text"] for it in items]
    lines, figures = [HEADER.format(fpr=lookalike_fpr)], {}
    for name in models:
        if not _installed(name):
            lines.append(f"| {name} | skipped: not installed (make pretrained) | | | | | | |")
            continue
        model, tokenizer = load_causal_lm(name)
        for plan in plans:
            scores, seconds = _scores(_judge(model, tokenizer, plan, True), texts)
            k = min(timing_items, len(texts))
            again, shared_s = _scores(_judge(model, tokenizer, plan, True), texts[:k])
            whole, whole_s = _scores(_judge(model, tokenizer, plan, False), texts[:k])
            gap = max(abs(a - b) for a, b in zip(again, whole, strict=True)) if k else 0.0
            pos = [s for s, h in zip(scores, harmful) if h]
            neg = [s for s, h in zip(scores, harmful) if not h]
            looks = [s for s, lk in zip(scores, lookalike) if lk]
            row = {"items": len(texts), "roc_auc": roc_auc(pos, neg),
                   "recall_at_lookalike_fpr": recall_at_fpr(pos, looks, lookalike_fpr),
                   "recall_at_5pct_fpr": recall_at_fpr(pos, neg, 0.05), "s_per_text": seconds / max(1, len(texts)),
                   "recompute_over_shared": whole_s / max(shared_s, 1e-9), "max_score_gap": gap,
                   "scores": [round(x, 4) for x in scores]}  # per item, in subset order
            figures[f"judge {name} {plan}"] = row
            lines.append(f"| {name} | {plan} | {len(texts)} | {row['roc_auc']:.3f} | "
                         f"{row['recall_at_lookalike_fpr']:.3f} | {row['recall_at_5pct_fpr']:.3f} | "
                         f"{row['s_per_text']:.2f} | {row['recompute_over_shared']:.2f}x on {k} texts "
                         f"(scores within {gap:.1e}) |")
            print(lines[-1], flush=True)
        del model
    return lines, figures
