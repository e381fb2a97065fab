"""The safety toolkit's labelled text sets: schema, counts, and a held-out eval set that is really held out.

Three files are checked:

* ``src/mie/safety/data/train_examples.jsonl``: training examples for per-principle classifier heads;
* ``benchmarks/data/safety_eval.jsonl``: the evaluation set, written separately from the training set;
* ``src/mie/safety/data/redteam_probes.jsonl``: red-team probes, six families.

Texts are compared after :func:`normalize` (lowercase, punctuation removed, whitespace collapsed).
Near-duplicates: an eval text and a training text are too close when the Jaccard similarity of their
word 3-shingles is >= 0.6 **or** the Jaccard similarity of their word sets is >= 0.8. The shingle measure
catches copied phrasing; the word-set measure catches one-word swaps and re-orderings of short texts,
which have few shingles. Either one alone suffices to fail.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from mie.safety.types import DEFAULT_PRINCIPLES

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "src" / "mie" / "safety" / "data"
TRAIN = DATA / "train_examples.jsonl"
EVAL = ROOT / "benchmarks" / "data" / "safety_eval.jsonl"
PROBES = DATA / "redteam_probes.jsonl"
CONSTITUTION = DATA / "constitution.yaml"

LABELS = {"harmful", "benign"}
PROBE_FAMILIES = {"prompt_injection", "directive_smuggling", "context_manipulation", "goal_hijacking",
                  "encoding_attack", "roleplay_jailbreak"}
SHINGLE_LIMIT = 0.6  # word 3-shingle Jaccard at or above this is a near-duplicate
WORDSET_LIMIT = 0.8  # word-set Jaccard at or above this is a near-duplicate


def normalize(text: str) -> str:
    """Lowercase, punctuation turned into spaces, whitespace collapsed."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def shingles(text: str, k: int = 3) -> set[tuple[str, ...]]:
    """The word k-shingles of the normalized text (the whole text as one shingle when shorter than k)."""
    words = normalize(text).split()
    return {tuple(words[i:i + k]) for i in range(max(1, len(words) - k + 1))}


def jaccard(a: set, b: set) -> float:
    """|a & b| / |a | b| (0 for two empty sets)."""
    union = a | b
    return len(a & b) / len(union) if union else 0.0


def is_lookalike(row: dict) -> bool:
    """A benign row that shares vocabulary with harmful requests: every benign category but ``everyday_*``."""
    return row["label"] == "benign" and not row["category"].startswith("everyday_")


def _load(path: Path) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            assert line.strip(), f"{path.name}:{n} is blank"
            rows.append(json.loads(line))
    return rows


@pytest.fixture(scope="module")
def train() -> list[dict]:
    return _load(TRAIN)


@pytest.fixture(scope="module")
def evaluation() -> list[dict]:
    return _load(EVAL)


@pytest.fixture(scope="module")
def probes() -> list[dict]:
    return _load(PROBES)


def test_default_principles_are_the_five():
    assert DEFAULT_PRINCIPLES == ("harm_prevention", "truthfulness", "fairness", "autonomy_respect", "privacy")


@pytest.mark.parametrize("which", ["train", "evaluation"])
def test_labelled_schema(which, request):
    rows = request.getfixturevalue(which)
    for row in rows:
        assert set(row) == {"text", "label", "principle", "category"}, row
        assert isinstance(row["text"], str) and row["text"].strip() == row["text"] and row["text"], row
        assert row["label"] in LABELS, row
        assert isinstance(row["category"], str) and re.fullmatch(r"[a-z][a-z0-9_]*", row["category"]), row
        if row["label"] == "harmful":
            assert row["principle"] in DEFAULT_PRINCIPLES, row
        else:
            assert row["principle"] is None, row
    assert {r["principle"] for r in rows if r["label"] == "harmful"} == set(DEFAULT_PRINCIPLES)


def test_probe_schema(probes):
    for row in probes:
        assert set(row) == {"id", "probe", "prompt", "goal", "principle"}, row
        assert row["probe"] in PROBE_FAMILIES, row
        assert row["principle"] in DEFAULT_PRINCIPLES, row
        for key in ("id", "prompt", "goal"):
            assert isinstance(row[key], str) and row[key].strip(), row
    assert len({r["id"] for r in probes}) == len(probes)
    assert {r["principle"] for r in probes} == set(DEFAULT_PRINCIPLES)


def test_train_counts(train):
    harmful = Counter(r["principle"] for r in train if r["label"] == "harmful")
    assert harmful["harm_prevention"] >= 120
    for principle in DEFAULT_PRINCIPLES[1:]:
        assert harmful[principle] >= 60, (principle, harmful[principle])
    benign = [r for r in train if r["label"] == "benign"]
    assert len(benign) >= 500
    assert sum(is_lookalike(r) for r in benign) >= 300  # most benign examples share the harmful words


def test_eval_counts(evaluation):
    assert len(evaluation) >= 400
    harmful = Counter(r["principle"] for r in evaluation if r["label"] == "harmful")
    benign = [r for r in evaluation if r["label"] == "benign"]
    assert sum(harmful.values()) >= 180
    assert len(benign) >= 200
    assert sum(is_lookalike(r) for r in benign) >= 160
    assert all(harmful[p] >= 25 for p in DEFAULT_PRINCIPLES), harmful
    assert harmful["harm_prevention"] == max(harmful.values())


def test_probe_counts(probes):
    families = Counter(r["probe"] for r in probes)
    assert set(families) == PROBE_FAMILIES
    assert all(n >= 12 for n in families.values()), families
    assert len(probes) >= 72


def test_encoding_probes_carry_decodable_payloads(probes):
    """At least one base64 and one hex probe whose payload decodes to readable ASCII text."""
    decoded = {"base64": 0, "hex": 0}
    for row in (r for r in probes if r["probe"] == "encoding_attack"):
        for token in row["prompt"].split():
            if re.fullmatch(r"(?:[0-9a-f]{2}){8,}", token):
                text = binascii.unhexlify(token).decode("ascii", errors="replace")
                decoded["hex"] += text.isprintable()
            elif re.fullmatch(r"[A-Za-z0-9+/]{12,}={0,2}", token) and len(token) % 4 == 0:
                text = base64.b64decode(token).decode("ascii", errors="replace")
                decoded["base64"] += text.isprintable() and " " in text
    assert decoded["base64"] >= 1 and decoded["hex"] >= 1, decoded


@pytest.mark.parametrize("which,field", [("train", "text"), ("evaluation", "text"), ("probes", "prompt")])
def test_no_duplicates_within_a_file(which, field, request):
    rows = request.getfixturevalue(which)
    counts = Counter(normalize(r[field]) for r in rows)
    assert not [t for t, n in counts.items() if n > 1]


def test_eval_texts_not_in_train_or_probes(train, evaluation, probes):
    seen = {normalize(r["text"]) for r in train} | {normalize(r["prompt"]) for r in probes}
    leaked = [r["text"] for r in evaluation if normalize(r["text"]) in seen]
    assert not leaked


def test_eval_has_no_near_duplicate_in_train(train, evaluation):
    train_sets = [(r["text"], shingles(r["text"]), set(normalize(r["text"]).split())) for r in train]
    close = []
    for row in evaluation:
        s, w = shingles(row["text"]), set(normalize(row["text"]).split())
        for text, ts, tw in train_sets:
            if jaccard(s, ts) >= SHINGLE_LIMIT or jaccard(w, tw) >= WORDSET_LIMIT:
                close.append((row["text"], text))
    assert not close, close[:10]


def _strings(node) -> list[str]:
    """Every string anywhere in a parsed YAML document (keys included)."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in _strings(k) + _strings(v)]
    if isinstance(node, (list, tuple)):
        return [s for item in node for s in _strings(item)]
    return []


def test_eval_texts_not_among_constitution_exemplars(evaluation):
    if not CONSTITUTION.exists():
        pytest.skip("constitution.yaml is not there (yet)")
    yaml = pytest.importorskip("yaml")
    exemplars = {normalize(s) for s in _strings(yaml.safe_load(CONSTITUTION.read_text(encoding="utf-8")))}
    leaked = [r["text"] for r in evaluation if normalize(r["text"]) in exemplars]
    assert not leaked


# --- the operating point's sets: calibration (packaged) and the real-world-style evaluation set ------------
CALIBRATION = DATA / "calibration.jsonl"
REALWORLD = ROOT / "benchmarks" / "data" / "safety_eval_realworld.jsonl"
ATTACKER_STYLES = {"direct", "indirect", "roleplay", "obfuscated"}


def _near_duplicates(rows: list[dict], others: list[dict]) -> list[tuple[str, str]]:
    other_sets = [(r["text"], shingles(r["text"]), set(normalize(r["text"]).split())) for r in others]
    close = []
    for row in rows:
        s, w = shingles(row["text"]), set(normalize(row["text"]).split())
        close += [(row["text"], text) for text, ts, tw in other_sets
                  if jaccard(s, ts) >= SHINGLE_LIMIT or jaccard(w, tw) >= WORDSET_LIMIT]
    return close


def test_calibration_set_has_everyday_benign_and_attacker_styles():
    rows = _load(CALIBRATION)
    for row in rows:
        assert set(row) == {"text", "label", "principle", "style"}, row
        assert (row["principle"] in DEFAULT_PRINCIPLES) == (row["label"] == "harmful"), row
    harmful = [r for r in rows if r["label"] == "harmful"]
    assert {r["style"] for r in harmful} == ATTACKER_STYLES
    assert all(n >= 30 for n in Counter(r["principle"] for r in harmful).values())
    benign = Counter(r["style"] for r in rows if r["label"] == "benign")
    assert benign["everyday"] >= 150 and benign["lookalike"] >= 50, benign
    assert len({normalize(r["text"]) for r in rows}) == len(rows)


def test_realworld_eval_set_schema():
    rows = _load(REALWORLD)
    for row in rows:
        assert set(row) == {"text", "label", "principle", "category"}, row
        assert (row["principle"] in DEFAULT_PRINCIPLES) == (row["label"] == "harmful"), row
    assert {r["category"] for r in rows if r["label"] == "harmful"} == ATTACKER_STYLES
    assert {r["principle"] for r in rows if r["label"] == "harmful"} == set(DEFAULT_PRINCIPLES)


def test_operating_point_sets_are_separate_from_training_and_each_other(train, evaluation):
    calibration, realworld = _load(CALIBRATION), _load(REALWORLD)
    assert not _near_duplicates(calibration, train + evaluation)
    assert not _near_duplicates(realworld, train + evaluation + calibration)
