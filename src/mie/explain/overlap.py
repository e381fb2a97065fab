"""Do a text's top-attributed words overlap the words a reader marked? Word scores and overlap metrics.

A WordPiece attribution (:class:`mie.explain.text_attr.TokenAttribution`) scores tokens; a reader marks
words. :func:`word_scores` merges each word's ``##`` continuation pieces into it by summing their scores
(attributions add up), drops the special tokens and the pure-punctuation tokens, and keeps one score per
distinct word (its best occurrence). A ranking of those words is then compared with the marked words at
``k`` = the number of marked words: hit@1 (the top word is marked), precision@k and recall@k.

Ties in a ranking are taken in uniformly random order and the metrics are their exact expectation over
those orders, so the random baseline is the ranking in which every word ties (:func:`random_overlap`:
hit@1 ``m / n``, precision@k ``m / n``, recall@k ``k / n`` for ``m`` marked words among ``n``), and a
baseline with many ties (:func:`longest_first`: longer words first) is not flattered by an arbitrary
tie-break::

    scores = word_scores(attr.tokens, attr.scores)    # attr: safety_attributions(method, text, principle)
    overlap(scores, {"poison"}).hit1                   # 1.0 when "poison" has the highest score
    random_overlap(scores, {"poison"}).hit1            # 1 / len(scores)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

SPECIAL_TOKENS = frozenset({"[CLS]", "[SEP]", "[PAD]", "[MASK]"})


def merge_wordpieces(tokens: Sequence[str], scores: Sequence[float],
                     special: Iterable[str] = SPECIAL_TOKENS) -> list[tuple[str, float]]:
    """``(word, score)`` per word, in text order: each ``##`` piece joins the word before it and adds its
    score to the word's; tokens in ``special`` are dropped (a ``##`` piece right after one starts a word).

    >>> merge_wordpieces(["[CLS]", "met", "##h", "lab", "[SEP]"], [0.5, 1.0, 2.0, -1.0, 0.25])
    [('meth', 3.0), ('lab', -1.0)]
    """
    if len(tokens) != len(scores):
        raise ValueError(f"{len(tokens)} tokens but {len(scores)} scores")
    special = frozenset(special)
    words: list[tuple[str, float]] = []
    previous_special = True
    for token, score in zip(tokens, scores, strict=True):
        if token in special:
            previous_special = True
            continue
        if token.startswith("##") and words and not previous_special:
            word, total = words[-1]
            words[-1] = (word + token[2:], total + float(score))
        else:
            words.append((token.removeprefix("##") if token != "##" else token, float(score)))
        previous_special = False
    return words


def word_scores(tokens: Sequence[str], scores: Sequence[float],
                special: Iterable[str] = SPECIAL_TOKENS) -> dict[str, float]:
    """One score per distinct word (:func:`merge_wordpieces`; a repeated word keeps its highest score),
    in order of first occurrence; words without a letter or digit (punctuation) are left out.

    >>> word_scores(["[CLS]", "kill", "the", "kill", "##er", ",", "kill", "[SEP]"], [0, 1, 2, 3, 4, 5, -6, 0])
    {'kill': 1.0, 'the': 2.0, 'killer': 7.0}
    """
    out: dict[str, float] = {}
    for word, score in merge_wordpieces(tokens, scores, special):
        if any(c.isalnum() for c in word):
            out[word] = max(score, out.get(word, score))
    return out


@dataclass(frozen=True)
class Overlap:
    """Expected overlap of one ranking's top ``k`` of ``n`` words with the marked words (ties random)."""

    hit1: float  # the top-ranked word is a marked word
    precision: float  # marked words among the top k, over k
    recall: float  # marked words among the top k, over the number of marked words
    k: int
    n: int


def expected_hits(scores: Mapping[str, float], marked: Iterable[str], k: int) -> float:
    """The expected number of ``marked`` words among the ``k`` highest-scoring words of ``scores``, ties
    taken in uniformly random order: every tie group above the cut counts whole, and the group the cut
    splits counts its share of marked words times the places left.

    >>> expected_hits({"a": 3, "b": 1, "c": 1, "d": 1}, {"a", "c"}, 2)   # a, then one of b, c, d
    1.3333333333333333
    """
    marked = set(marked)
    groups: dict[float, list[str]] = {}
    for word, score in scores.items():
        groups.setdefault(float(score), []).append(word)
    left, hits = max(0, min(k, len(scores))), 0.0
    for score in sorted(groups, reverse=True):
        if left == 0:
            break
        group = groups[score]
        inside = sum(w in marked for w in group)
        take = min(left, len(group))
        hits += inside * take / len(group)
        left -= take
    return hits


def overlap(scores: Mapping[str, float], marked: Iterable[str], k: int | None = None) -> Overlap:
    """Hit@1, precision@k and recall@k of the ranking by ``scores`` (highest first) against ``marked``
    (default ``k``: the number of marked words). A marked word that is not among the scored words counts
    as missed. With ``k`` = the number of marked words, all of them scored, precision and recall agree.

    >>> overlap({"how": 0.1, "poison": 2.0, "dog": 0.5}, {"poison", "dog"})
    Overlap(hit1=1.0, precision=1.0, recall=1.0, k=2, n=3)
    """
    marked = set(marked)
    if not marked:
        raise ValueError("no marked words")
    k = len(marked) if k is None else k
    if k < 1:
        raise ValueError(f"k must be at least 1 (got {k})")
    hits = expected_hits(scores, marked, k)
    return Overlap(expected_hits(scores, marked, 1), hits / k, hits / len(marked), k, len(scores))


def random_overlap(words: Iterable[str], marked: Iterable[str], k: int | None = None) -> Overlap:
    """The expected :func:`overlap` of a uniformly random ranking of ``words`` (every word tied).

    >>> random_overlap(["how", "do", "i", "poison", "a", "dog"], {"poison", "dog"})
    Overlap(hit1=0.3333333333333333, precision=0.3333333333333333, recall=0.3333333333333333, k=2, n=6)
    """
    return overlap(dict.fromkeys(words, 0.0), marked, k)


def longest_first(words: Iterable[str]) -> dict[str, float]:
    """Scores that rank longer words first (the word's length; equal lengths tie).

    >>> longest_first(["how", "do", "poison"])
    {'how': 3.0, 'do': 2.0, 'poison': 6.0}
    """
    return {w: float(len(w)) for w in words}


def mean_overlap(results: Sequence[Overlap]) -> tuple[float, float, float]:
    """``(hit@1, precision@k, recall@k)`` averaged over items (each item weighs the same)."""
    if not results:
        raise ValueError("no results to average")
    n = len(results)
    return (sum(r.hit1 for r in results) / n, sum(r.precision for r in results) / n,
            sum(r.recall for r in results) / n)
