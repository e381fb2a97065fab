"""Hard-negative captions by word swaps, as NegCLIP does (Yuksekgonul et al., 2023, "When and why
vision-language models behave like bags-of-words, and what to do about it").

A caption that names a word of a group (a shape: "circle", "square", ...) is edited to name another
word of that group which the caption does not name anywhere ("a red circle" -> "a red star"). When
captions name every object of their image (the shapes data does), the edited caption is false for
the image, yet differs from the true one only there: as an extra negative of the image->text loss
it makes the model encode that attribute, which in-batch negatives alone rarely demand.

    >>> groups = [["circle", "square", "star"]]
    >>> swap_word_negative("a red circle left of a blue square", groups, torch.Generator().manual_seed(0))
    'a red circle left of a blue star'
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch


def _pattern(word: str) -> re.Pattern[str]:
    """``word`` as a whole word (so "cross" never matches inside "across")."""
    return re.compile(rf"\b{re.escape(word)}\b")


def _pick(options: Sequence[str], generator: torch.Generator | None) -> str:
    return options[int(torch.randint(len(options), (1,), generator=generator))]


def swap_word_negative(caption: str, groups: Sequence[Sequence[str]],
                       generator: torch.Generator | None = None) -> str | None:
    """``caption`` with every occurrence of one of its group words replaced by a word of the same
    group that it does not contain; ``None`` when no group has both (nothing to swap).

    The group, the word and its replacement are drawn uniformly from ``generator`` (else torch's
    global RNG), so a seeded loader repeats its negatives.
    """
    choices = []
    for group in groups:
        present = [w for w in group if _pattern(w).search(caption)]
        absent = [w for w in group if w not in present]
        if present and absent:
            choices.append((present, absent))
    if not choices:
        return None
    present, absent = choices[int(torch.randint(len(choices), (1,), generator=generator))]
    word = _pick(present, generator)
    return _pattern(word).sub(_pick(absent, generator), caption)


def word_swap_negatives(captions: Sequence[str], groups: Sequence[Sequence[str]],
                        generator: torch.Generator | None = None) -> tuple[list[str], list[int]]:
    """One swapped negative per caption that has a swap (captions without one contribute none), and
    the index of the caption each was made from."""
    negatives = [swap_word_negative(caption, groups, generator) for caption in captions]
    rows = [row for row, n in enumerate(negatives) if n is not None]
    return [negatives[row] for row in rows], rows
