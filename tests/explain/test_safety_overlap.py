"""Word scores from WordPiece attributions, the overlap metrics and the hand-marked safety set (issue 32)."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest

from mie.explain.overlap import (
    expected_hits,
    longest_first,
    mean_overlap,
    merge_wordpieces,
    overlap,
    random_overlap,
    word_scores,
)
from mie.safety.types import DEFAULT_PRINCIPLES

MARKED = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "safety_marked.jsonl"


def test_wordpieces_join_their_word_and_add_their_scores():
    tokens = ["[CLS]", "what", "'", "s", "the", "shake", "-", "and", "-", "ba", "##ke", "method", "for", "met",
              "##h", "?", "[SEP]"]
    scores = [9.0, 0.1, 0.0, 0.2, 0.0, 0.3, 0.0, 0.0, 0.0, 0.25, 0.5, 0.1, 0.0, 1.5, 0.75, 0.05, 9.0]
    merged = merge_wordpieces(tokens, scores)
    assert [w for w, _ in merged] == ["what", "'", "s", "the", "shake", "-", "and", "-", "bake", "method", "for",
                                      "meth", "?"]
    assert dict(merged)["bake"] == pytest.approx(0.75) and dict(merged)["meth"] == pytest.approx(2.25)
    assert sum(s for _, s in merged) == pytest.approx(sum(scores) - 18.0)  # only the special tokens are lost
    words = word_scores(tokens, scores)
    assert list(words) == ["what", "s", "the", "shake", "and", "bake", "method", "for", "meth"]  # no punctuation


def test_a_piece_after_a_special_token_starts_a_word_and_repeats_keep_their_best_score():
    assert merge_wordpieces(["[CLS]", "##x", "y"], [1.0, 2.0, 3.0]) == [("x", 2.0), ("y", 3.0)]
    assert word_scores(["kill", "a", "kill", "##er", "kill"], [1.0, 0.0, 2.0, 2.0, 3.0]) == \
        {"kill": 3.0, "a": 0.0, "killer": 4.0}
    with pytest.raises(ValueError, match="2 tokens but 1 scores"):
        merge_wordpieces(["a", "b"], [1.0])


def test_overlap_against_hand_computed_values():
    scores = {"how": 0.1, "do": -0.2, "i": 0.0, "poison": 0.9, "my": 0.3, "dog": 0.05}
    # ranking: poison, my, how, dog, i, do
    assert overlap(scores, {"poison", "dog"}) == overlap(scores, ["dog", "poison"])
    result = overlap(scores, {"poison", "dog"})  # k = 2: poison, my -> one hit
    assert (result.hit1, result.precision, result.recall, result.k, result.n) == (1.0, 0.5, 0.5, 2, 6)
    result = overlap(scores, {"dog", "my", "do"})  # k = 3: poison, my, how -> one hit of three
    assert (result.hit1, result.precision, result.recall) == (0.0, pytest.approx(1 / 3), pytest.approx(1 / 3))
    result = overlap(scores, {"poison", "dog"}, k=4)  # poison, my, how, dog -> both
    assert (result.precision, result.recall) == (0.5, 1.0)
    result = overlap(scores, {"poison", "bomb"})  # a marked word that is no word of the text is a miss
    assert (result.hit1, result.precision, result.recall) == (1.0, 0.5, 0.5)
    with pytest.raises(ValueError, match="no marked words"):
        overlap(scores, set())


def test_ties_count_their_expected_share():
    # a first; then b, c, d tie for the second place: one in three of them is marked
    assert expected_hits({"a": 3, "b": 1, "c": 1, "d": 1}, {"a", "c"}, 2) == pytest.approx(1 + 1 / 3)
    assert expected_hits({"a": 3, "b": 1, "c": 1, "d": 1}, {"a", "c"}, 10) == 2.0  # k past the end
    words = ["how", "do", "i", "poison", "a", "dog"]
    result = random_overlap(words, {"poison", "dog"})
    assert (result.hit1, result.precision, result.recall) == (pytest.approx(1 / 3),) * 3
    # longest first: poison (6); then how, dog (3) tie for the second place
    result = overlap(longest_first(words), {"poison", "dog"})
    assert (result.hit1, result.precision) == (1.0, 0.75)
    assert mean_overlap([result, random_overlap(words, {"poison", "dog"})]) == \
        pytest.approx(((1 + 1 / 3) / 2, (0.75 + 1 / 3) / 2, (0.75 + 1 / 3) / 2))


def _brute_force(scores: dict[str, float], marked: set[str], k: int) -> tuple[float, float]:
    """Mean hit@1 and hits@k over every order of the words that sorts them by score (ties in every order)."""
    orders = [p for p in itertools.permutations(scores)
              if all(scores[a] >= scores[b] for a, b in itertools.pairwise(p))]
    return (sum(p[0] in marked for p in orders) / len(orders),
            sum(sum(w in marked for w in p[:k]) for p in orders) / len(orders))


@pytest.mark.parametrize("scores, marked", [
    (dict.fromkeys("abcdef", 0.0), {"b", "e"}),  # the random baseline: every word ties
    (dict.fromkeys("abcde", 0.0), {"a", "b", "c"}),
    ({"a": 2.0, "b": 1.0, "c": 1.0, "d": 1.0, "e": 0.0, "f": 0.0}, {"c", "f"}),
    (longest_first(["kill", "the", "cat", "now", "please"]), {"kill", "cat"}),
])
def test_the_exact_expectation_matches_a_brute_force_enumeration(scores, marked):
    for k in range(1, len(scores) + 1):
        hit1, hits = _brute_force(scores, marked, k)
        result = overlap(scores, marked, k)
        assert result.hit1 == pytest.approx(hit1)
        assert result.precision == pytest.approx(hits / k) and result.recall == pytest.approx(hits / len(marked))
    if len(set(scores.values())) == 1:  # the closed form of the random baseline: m / n and k / n
        m, n = len(marked), len(scores)
        result = random_overlap(scores, marked)
        assert (result.hit1, result.precision, result.recall) == (pytest.approx(m / n),) * 3


def test_the_marked_set_parses_and_every_marked_word_is_a_word_of_its_text():
    items = [json.loads(line) for line in MARKED.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert 30 <= len(items) <= 50
    assert len({it["text"] for it in items}) == len(items)
    lines = (MARKED.parent / "safety_eval.jsonl").read_text(encoding="utf-8").splitlines()
    for item in items:
        assert set(item) == {"text", "principle", "harmful_words", "source"}
        assert item["principle"] in DEFAULT_PRINCIPLES
        assert 1 <= len(item["harmful_words"]) <= 4 and len(set(item["harmful_words"])) == len(item["harmful_words"])
        words = re.findall(r"[a-z0-9]+", item["text"].lower())  # the tokenizer's words: punctuation splits
        for word in item["harmful_words"]:
            assert word == word.lower() and word in words, (word, item["text"])
        found = re.fullmatch(r"benchmarks/data/safety_eval\.jsonl line (\d+) \((\w+)\)", item["source"])
        assert found, item["source"]
        source = json.loads(lines[int(found[1]) - 1])  # taken from the evaluation set, on its own label
        assert source["text"] == item["text"] and source["category"] == found[2]
        assert source["label"] == "harmful" and source["principle"] == item["principle"]


def test_the_benchmark_says_what_is_missing_and_exits_0_without_the_encoder(monkeypatch, capsys):
    import importlib.util

    import mie.pretrained.sentence as sentence

    path = MARKED.parents[1] / "safety_attribution.py"
    spec = importlib.util.spec_from_file_location("safety_attribution_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(sentence, "encoder_installed", lambda name="all-minilm-l6-v2": False)
    assert module.main(["--threads", "1"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "all-MiniLM-L6-v2" in out[0]
