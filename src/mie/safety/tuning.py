"""The recipe of the shipped safety classifier (``mie safety tune``): tune all-MiniLM-L6-v2 on the training
examples, factorise the update (:mod:`mie.safety.packaged`), reload the factorised weights so that what is
measured is what ships, choose the thresholds by the declared rule (:mod:`mie.safety.calibration`) and
record the figures on the calibration and evaluation sets::

    build_package("src/mie/safety/data", evaluation="benchmarks/data/safety_eval.jsonl")
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mie.io import save_weights
from mie.io.checkpoint import sha256_file
from mie.safety.calibration import (
    MAX_FPR,
    RULE,
    choose_operating_point,
    combined_scores,
    load_labelled,
    set_figures,
)
from mie.safety.embeddings import EmbeddingMethod, TuneSettings, _harmful_texts, load_examples, tune
from mie.safety.packaged import (
    CLASSIFIER,
    ENCODER,
    RANK,
    THRESHOLDS,
    add_updates,
    examples_key,
    low_rank_updates,
    package_dir,
    packaged_key,
    save_thresholds,
)
from mie.safety.rules import RuleMethod
from mie.safety.types import DEFAULT_PRINCIPLES

log = logging.getLogger(__name__)


def build_package(directory: str | Path, examples_path: str | Path | None = None,
                  calibration: str | Path | None = None, evaluation: str | Path | None = None,
                  tune_again: bool = True, progress: Callable[[str], None] = log.info) -> dict[str, Any]:
    """The recipe: tune (unless ``tune_again`` is False and ``directory`` holds a classifier), then choose
    the thresholds on ``calibration`` and measure ``evaluation``; returns the thresholds' metadata."""
    from mie.pretrained import load_sentence_encoder

    folder = Path(directory)
    examples, settings, principles = load_examples(examples_path), TuneSettings(), list(DEFAULT_PRINCIPLES)
    if tune_again or not (folder / CLASSIFIER).is_file():
        start = time.monotonic()
        progress(f"tuning all-MiniLM-L6-v2 on {len(examples)} labelled examples (minutes on 2 CPU cores)")
        encoder = load_sentence_encoder(ENCODER)
        head = tune(encoder, examples, principles, settings)
        state = low_rank_updates(encoder.model)
        encoder = load_sentence_encoder(ENCODER)  # the factorised weights, exactly as they ship
        add_updates(encoder.model, state)
        texts = _harmful_texts(examples, principles)
        state.update({"head.weight": head.weight.detach(), "head.bias": head.bias.detach()})
        state.update({f"exemplars.{p}": encoder.encode(t).half() for p, t in texts.items() if t})
        folder.mkdir(parents=True, exist_ok=True)
        save_weights(folder / CLASSIFIER, state, {"key": examples_key(examples, settings, principles),
                                                  "encoder": ENCODER, "rank": RANK, "principles": principles,
                                                  "settings": asdict(settings), "examples": len(examples)})
        progress(f"tuned in {time.monotonic() - start:.0f} s; wrote {folder / CLASSIFIER}")
    method = EmbeddingMethod.from_package(folder, examples)
    rules = RuleMethod()
    cal_rows = load_labelled(calibration)
    progress(f"choosing thresholds on {len(cal_rows)} calibration prompts: {RULE}")
    cal_texts = [r["text"] for r in cal_rows]
    cal_rules, (cal_probs, _) = rules.score_batch(cal_texts), method.probabilities(cal_texts)
    chosen = choose_operating_point(cal_rules, cal_probs, cal_rows, MAX_FPR, principles)
    values = [chosen[p] for p in principles]
    figures = {"calibration": set_figures(*combined_scores(cal_rules, cal_probs, values, principles), cal_rows)}
    sets = {"calibration": _describe(calibration, cal_rows)}
    if evaluation is not None:
        rows = load_labelled(evaluation)
        texts = [r["text"] for r in rows]
        ev_rules, (ev_probs, _) = rules.score_batch(texts), method.probabilities(texts)
        figures["evaluation"] = set_figures(*combined_scores(ev_rules, ev_probs, values, principles), rows)
        sets["evaluation"] = _describe(evaluation, rows)
    meta = {"rule": RULE, "max_fpr": MAX_FPR, "key": packaged_key(folder), "sets": sets, "figures": figures}
    save_thresholds(folder, chosen, meta)
    progress(f"thresholds {chosen}; wrote {folder / THRESHOLDS}")
    return {"thresholds": chosen, **meta}


def _describe(path: str | Path | None, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    source = Path(path) if path is not None else package_dir() / "calibration.jsonl"
    return {"file": source.name, "sha256": sha256_file(source), "prompts": len(rows),
            "harmful": sum(r["label"] == "harmful" for r in rows)}
