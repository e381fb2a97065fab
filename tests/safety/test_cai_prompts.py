"""The Constitutional-AI prompt sets: schema, counts, and a test split that is really held out.

``src/mie/safety/data/cai_prompts.jsonl`` holds the harmful and helpful prompts that CAI training samples
from (split ``train``) and that its harmful-answer rate and helpfulness are measured on (split ``test``).
Near-duplicates use the measures of ``test_datasets``: word 3-shingle Jaccard >= 0.6 or word-set
Jaccard >= 0.8 on normalized text. Test prompts must not be near-duplicates of train prompts, and no
prompt may be a near-duplicate of the safety evaluator's own evaluation set.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from tests.safety.test_datasets import jaccard, normalize, shingles

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = ROOT / "src" / "mie" / "safety" / "data" / "cai_prompts.jsonl"
SAFETY_EVAL = ROOT / "benchmarks" / "data" / "safety_eval.jsonl"

FIELDS = {"id", "split", "kind", "principle", "prompt"}
PRINCIPLES = {"harm_prevention", "truthfulness", "fairness", "autonomy_respect", "privacy"}
COUNTS = {("train", "harmful"): 160, ("test", "harmful"): 120, ("train", "helpful"): 160, ("test", "helpful"): 120}
SHINGLE_LIMIT = 0.6
WORDSET_LIMIT = 0.8


def _load(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _near_duplicates(queries: list[str], corpus: list[str]) -> list[tuple[str, str]]:
    """Pairs (query, corpus text) that are too close by either measure."""
    index = [(text, shingles(text), set(normalize(text).split())) for text in corpus]
    hits = []
    for q in queries:
        qs, qw = shingles(q), set(normalize(q).split())
        for text, ts, tw in index:
            if jaccard(qs, ts) >= SHINGLE_LIMIT or jaccard(qw, tw) >= WORDSET_LIMIT:
                hits.append((q, text))
    return hits


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return _load(PROMPTS)


def _prompts(rows: list[dict], split: str) -> list[str]:
    return [r["prompt"] for r in rows if r["split"] == split]


def test_schema(rows):
    """Every row has exactly the five fields with allowed values and a non-empty prompt."""
    for r in rows:
        assert set(r) == FIELDS, r
        assert r["split"] in {"train", "test"}, r
        assert r["kind"] in {"harmful", "helpful"}, r
        allowed = PRINCIPLES if r["kind"] == "harmful" else {"none"}
        assert r["principle"] in allowed, r
        assert isinstance(r["prompt"], str) and r["prompt"].strip() == r["prompt"] and r["prompt"], r


def test_counts_per_split_and_kind(rows):
    """Exactly the agreed number of prompts in each (split, kind) cell."""
    assert Counter((r["split"], r["kind"]) for r in rows) == COUNTS


def test_every_principle_is_covered_in_both_splits(rows):
    """Each principle has harmful prompts in train and in test; harm prevention is the largest share."""
    for split in ("train", "test"):
        per = Counter(r["principle"] for r in rows if r["split"] == split and r["kind"] == "harmful")
        assert set(per) == PRINCIPLES, (split, per)
        assert per.most_common(1)[0][0] == "harm_prevention"


def test_ids_and_prompts_are_unique(rows):
    """No id repeats, and no two prompts are equal after normalization."""
    ids = Counter(r["id"] for r in rows)
    assert [i for i, n in ids.items() if n > 1] == []
    texts = Counter(normalize(r["prompt"]) for r in rows)
    assert [t for t, n in texts.items() if n > 1] == []


def test_test_split_is_not_a_paraphrase_of_train(rows):
    """No test prompt is a near-duplicate of any train prompt."""
    assert _near_duplicates(_prompts(rows, "test"), _prompts(rows, "train")) == []


def test_independent_of_the_safety_eval_set(rows):
    """No CAI prompt is a near-duplicate of an item of the safety evaluator's evaluation set."""
    texts = [r["text"] for r in _load(SAFETY_EVAL)]
    assert texts, "safety_eval.jsonl is empty"
    assert _near_duplicates([r["prompt"] for r in rows], texts) == []
