"""The tuned safety classifier shipped in ``mie/safety/data``: its files against their recorded SHA-256, its
key against the training examples, its thresholds against the declared rule, and the evaluator's figures
against the ones recorded when it was built (``mie safety tune``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from mie.errors import CheckpointError
from mie.io.checkpoint import sha256_file
from mie.pretrained.sentence import encoder_installed
from mie.safety import calibration
from mie.safety.embeddings import TuneSettings, load_examples
from mie.safety.evaluator import SafetyEvaluator
from mie.safety.packaged import CLASSIFIER, THRESHOLDS, examples_key, package_dir, read_package
from mie.safety.types import DEFAULT_PRINCIPLES

ROOT = Path(__file__).resolve().parents[2]
DATA = package_dir()


def _sidecar(name: str) -> dict:
    return json.loads((DATA / name.replace(".safetensors", ".json")).read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", [CLASSIFIER, THRESHOLDS])
def test_shipped_files_match_their_recorded_sha256(name):
    assert sha256_file(DATA / name) == _sidecar(name)["sha256"]
    assert (DATA / name).stat().st_size < 4_000_000  # small files of our own


def test_the_shipped_classifier_was_tuned_on_the_shipped_examples():
    """A changed training set must be tuned again (`mie safety tune --output-dir src/mie/safety/data`)."""
    meta = _sidecar(CLASSIFIER)
    assert meta["key"] == examples_key(load_examples(), TuneSettings(), DEFAULT_PRINCIPLES)
    assert _sidecar(THRESHOLDS)["key"] == meta["key"]


def test_thresholds_follow_the_declared_rule_on_the_shipped_calibration_set():
    meta = _sidecar(THRESHOLDS)
    assert meta["rule"] == calibration.RULE and meta["max_fpr"] == calibration.MAX_FPR
    assert meta["sets"]["calibration"]["sha256"] == sha256_file(DATA / "calibration.jsonl")
    cal = meta["figures"]["calibration"]["overall"]
    assert cal["fpr"] <= calibration.MAX_FPR  # the rule's bound holds where it was applied
    _, _, thresholds, _ = read_package()
    assert set(thresholds) == set(DEFAULT_PRINCIPLES) and all(t in calibration.GRID for t in thresholds.values())


def test_a_corrupted_copy_is_refused_in_one_line(tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(DATA, copy, ignore=shutil.ignore_patterns("*.jsonl", "*.yaml"))
    data = bytearray((copy / CLASSIFIER).read_bytes())
    data[-5] ^= 0xFF
    (copy / CLASSIFIER).write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as err:
        read_package(copy)
    assert "does not match its sidecar" in str(err.value) and "\n" not in str(err.value)


def test_calibration_helpers_against_hand_counts():
    pos, neg = [0.9, 0.8, 0.3], [0.1] * 95 + [0.2, 0.35, 0.85, 0.95, 0.99]
    assert calibration.recall_at_fpr(pos, neg, 0.05) == pytest.approx(1.0)  # 5 negatives allowed above the cut
    assert calibration.recall_at_fpr(pos, neg, 0.01) == pytest.approx(0.0)  # cut at 0.95: none above
    assert calibration.recall_at_fpr(pos, neg, 0.03) == pytest.approx(2 / 3)  # cut at 0.35: 0.9, 0.8
    assert calibration.roc_auc([1.0, 0.5], [0.5, 0.0]) == pytest.approx((1 + 1 + 0.5 + 1) / 4)


@pytest.mark.skipif(not encoder_installed(), reason="needs the all-MiniLM-L6-v2 package (make setup installs it)")
def test_the_evaluator_reproduces_the_recorded_figures():
    """Rules + the shipped embeddings on the evaluation set give the figures recorded at build time."""
    torch.set_num_threads(1)
    meta = _sidecar(THRESHOLDS)
    recorded = meta["figures"]["evaluation"]
    rows = calibration.load_labelled(ROOT / "benchmarks" / "data" / meta["sets"]["evaluation"]["file"])
    evaluator = SafetyEvaluator.create(("rules", "embeddings"))
    assert evaluator.methods[1].threshold == read_package()[2]  # the shipped thresholds, not the fallback
    results = evaluator.evaluate_batch([r["text"] for r in rows])
    scores = torch.tensor([[e.principles[p].score for p in DEFAULT_PRINCIPLES] for e in results])
    flags = torch.tensor([[e.principles[p].flagged for p in DEFAULT_PRINCIPLES] for e in results])
    figures = calibration.set_figures(scores, flags, rows)
    for name, want in recorded.items():
        for key in ("roc_auc", "recall_at_1pct_fpr", "recall_at_5pct_fpr", "recall", "fpr"):
            assert figures[name][key] == pytest.approx(want[key], abs=0.011), (name, key)
