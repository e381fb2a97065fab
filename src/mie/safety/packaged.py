"""The tuned safety classifier that ships in the package, so no user waits minutes on first use.

Two safetensors files of our own under ``mie/safety/data``, each with a JSON sidecar recording its
SHA-256 (checked on every load; a mismatch is refused in one line):

* ``classifier.safetensors``: the LoRA update of every tuned linear layer of all-MiniLM-L6-v2 as a
  rank-:data:`RANK` factorisation ``up @ down`` (float16; SVD of the averaged adapters, whose exact rank
  is 4 x 16), the 5-way head, and the harmful training examples' embeddings (float16, for reasons). The
  sidecar records ``key``: the SHA-256 of the training examples and settings that produced it, so a
  changed training set is tuned afresh (and cached) rather than paired with stale weights.
* ``thresholds.safetensors``: one flag probability per principle, chosen by the declared rule of
  :mod:`mie.safety.calibration`; its sidecar records the rule and the figures on the calibration and
  evaluation sets.

The recipe that reproduces both is ``mie safety tune`` (:func:`build_package`): tune, factorise, reload
the factorised weights (so what is measured is what ships), choose the thresholds, write the figures::

    build_package("src/mie/safety/data", evaluation="benchmarks/data/safety_eval.jsonl")
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from mie.errors import CheckpointError
from mie.io import load_weights, save_weights
from mie.io.checkpoint import sha256_file
from mie.models.lora import LoRALinear
from mie.safety.types import DEFAULT_PRINCIPLES

log = logging.getLogger(__name__)
RANK = 32  # on the evaluation set, rank 32 moves a probability by 0.0004 on average (rank 16: 0.003)
CLASSIFIER = "classifier.safetensors"
THRESHOLDS = "thresholds.safetensors"
ENCODER = "all-minilm-l6-v2"


def package_dir() -> Path:
    """Where the shipped files live (``mie/safety/data``)."""
    return Path(str(resources.files("mie.safety") / "data"))


def examples_key(examples: Sequence[dict[str, Any]], settings: Any, principles: Sequence[str]) -> str:
    """The SHA-256 naming a tuning: the examples, the settings and the principles."""
    return hashlib.sha256(json.dumps([list(examples), asdict(settings), list(principles)], sort_keys=True)
                          .encode()).hexdigest()


@torch.no_grad()
def low_rank_updates(model: torch.nn.Module, rank: int = RANK) -> dict[str, torch.Tensor]:
    """``{"delta.<layer>.up": [out, rank], "delta.<layer>.down": [rank, in]}`` (float16) approximating each
    unmerged adapter's ``B @ A * scaling`` by its truncated SVD."""
    out = {}
    for name, module in model.named_modules():
        if isinstance(module, LoRALinear):
            delta = module.lora_b.float() @ module.lora_a.float() * module.scaling
            u, s, vh = torch.linalg.svd(delta, full_matrices=False)
            out[f"delta.{name}.up"] = (u[:, :rank] * s[:rank]).half()
            out[f"delta.{name}.down"] = vh[:rank].half()
    return out


@torch.no_grad()
def add_updates(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Add every ``up @ down`` of ``state`` to its plain linear layer's weight, in place."""
    layers = sorted({k[len("delta."):-len(".up")] for k in state if k.startswith("delta.") and k.endswith(".up")})
    if not layers:
        raise CheckpointError("holds no weight updates", where=CLASSIFIER, fix="rebuild it with `mie safety tune`")
    for name in layers:
        weight = model.get_submodule(name).weight
        weight += state[f"delta.{name}.up"].float() @ state[f"delta.{name}.down"].float()


def read_package(directory: str | Path | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any],
                                                               dict[str, float] | None, dict[str, Any]]:
    """``(classifier state, its metadata, thresholds or None, thresholds metadata)``, hash-checked."""
    folder = Path(directory) if directory is not None else package_dir()
    state, meta = load_weights(folder / CLASSIFIER)
    thresholds, tmeta = None, {}
    if (folder / THRESHOLDS).is_file():
        tstate, tmeta = load_weights(folder / THRESHOLDS)
        values = tstate["thresholds"].tolist()
        thresholds = dict(zip(tmeta.get("principles", DEFAULT_PRINCIPLES), values, strict=True))
    return state, meta, thresholds, tmeta


def packaged_key(directory: str | Path | None = None) -> str | None:
    """The ``key`` the shipped classifier was tuned for, or None when no classifier ships."""
    folder = Path(directory) if directory is not None else package_dir()
    sidecar = folder / CLASSIFIER.replace(".safetensors", ".json")
    if not (folder / CLASSIFIER).is_file() or not sidecar.is_file():
        return None
    try:
        return json.loads(sidecar.read_text(encoding="utf-8")).get("key")
    except (OSError, ValueError):
        return None


def save_thresholds(directory: str | Path, thresholds: dict[str, float], metadata: dict[str, Any]) -> Path:
    """Write ``thresholds.safetensors`` (one float per principle) with ``metadata`` in its sidecar."""
    names = list(thresholds)
    return save_weights(Path(directory) / THRESHOLDS, {"thresholds": torch.tensor([thresholds[p] for p in names])},
                        {"principles": names, **metadata})


def build_package(directory: str | Path, examples_path: str | Path | None = None,
                  calibration: str | Path | None = None, evaluation: str | Path | None = None,
                  tune_again: bool = True, progress: Callable[[str], None] = log.info) -> dict[str, Any]:
    """The recipe: tune (unless ``tune_again`` is False and ``directory`` holds a classifier), then choose
    the thresholds on ``calibration`` and measure ``evaluation``; returns the thresholds' metadata."""
    from mie.pretrained import load_sentence_encoder
    from mie.safety.calibration import (
        MAX_FPR,
        RULE,
        choose_operating_point,
        combined_scores,
        load_labelled,
        set_figures,
    )
    from mie.safety.embeddings import EmbeddingMethod, TuneSettings, _harmful_texts, load_examples, tune
    from mie.safety.rules import RuleMethod

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
