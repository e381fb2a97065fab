"""Hard negative captions made by swapping words, as NegCLIP does (Yuksekgonul et al., 2023, "When and why
vision-language models behave like bags-of-words").

A contrastive batch only teaches what tells its pairs apart. On the shapes data colours, counts and
positions already do, so a dual encoder never needs shape. A negative caption that differs from the true
one in a shape word alone ("a red circle" -> "a red square"), or that swaps two shape words between
objects ("a red circle and a blue square" -> "a red square and a blue circle"), can only be told from the
true caption by the image's shapes and how they bind to colours. ``data.caption_swaps`` lists the groups
of interchangeable words; ``CaptionSwapper`` makes one negative per caption that holds a group's word::

    swap = CaptionSwapper([["circle", "square", "triangle"]])
    swap("a red circle and a blue square", torch.Generator().manual_seed(0))  # "a red square and a blue circle"
"""

from __future__ import annotations

from collections.abc import Sequence

import regex
import torch

from mie.errors import ConfigError


class CaptionSwapper:
    """One negative caption per caption: swap two different words of a group when the caption holds two
    (half the time, else replace one), or replace one word by another of its group; None when no word of
    any group occurs."""

    def __init__(self, groups: Sequence[Sequence[str]]) -> None:
        self.groups: list[list[str]] = []
        for k, group in enumerate(groups):
            words = [str(w).strip().lower() for w in group]
            if len(set(words)) < 2 or not all(words) or any(" " in w for w in words):
                raise ConfigError(f"group {k} must list at least two different single words, got {list(group)!r}",
                                  where="data.caption_swaps", fix="e.g. [[circle, square, triangle]]")
            self.groups.append(list(dict.fromkeys(words)))
        owner: dict[str, int] = {}
        for k, group in enumerate(self.groups):
            for w in group:
                if owner.setdefault(w, k) != k:
                    raise ConfigError(f"the word {w!r} is in two groups", where="data.caption_swaps",
                                      fix="list each word in one group only")
        self._owner = owner
        self._pattern = regex.compile(r"\b(" + "|".join(map(regex.escape, owner)) + r")\b") if owner else None

    def __call__(self, caption: str, generator: torch.Generator | None = None) -> str | None:
        """A negative of ``caption`` (lower-cased words are matched whole), or None."""
        if self._pattern is None:
            return None
        hits = list(self._pattern.finditer(caption.lower()))
        if not hits:
            return None

        def draw(n: int) -> int:
            return int(torch.randint(0, n, (1,), generator=generator))

        # Which group to perturb: one that occurs, at random.
        present = sorted({self._owner[h.group(1)] for h in hits})
        group = present[draw(len(present))]
        spots = [h for h in hits if self._owner[h.group(1)] == group]
        distinct = sorted({h.group(1) for h in spots})
        if len(distinct) >= 2 and draw(2) == 0:
            a = distinct[draw(len(distinct))]
            b = [w for w in distinct if w != a][draw(len(distinct) - 1)]
            swapped = {a: b, b: a}  # every a becomes b and every b becomes a: the binding changes
            edits = [(h.start(), h.end(), swapped[h.group(1)]) for h in spots if h.group(1) in swapped]
        else:
            spot = spots[draw(len(spots))]
            others = [w for w in self.groups[group] if w != spot.group(1)]
            edits = [(spot.start(), spot.end(), others[draw(len(others))])]
        out = caption
        for start, end, word in sorted(edits, reverse=True):
            out = out[:start] + word + out[end:]
        return out


def negative_captions(captions: Sequence[str], swapper: CaptionSwapper,
                      generator: torch.Generator | None = None) -> list[str]:
    """The negatives of the captions that have one, in caption order (the others add none)."""
    out = []
    for caption in captions:
        negative = swapper(caption, generator)
        if negative is not None and negative != caption:
            out.append(negative)
    return out
