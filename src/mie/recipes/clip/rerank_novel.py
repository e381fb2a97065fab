"""Pairs new to the re-ranker (``rerank.novel_pairs``): a validation that looks like ``test_heldout``.

``test_heldout`` holds colour–shape pairs that no training image shows, so neither the dual encoder nor
the ITM head has seen them; the validation split has none, and a fusion weight chosen on it favours a head
that has learnt the training pairs by heart (on the shapes demo re-ranking lifted ``test`` by a point and
lowered ``test_heldout`` by half a point). With ``novel_pairs: K`` the recipe keeps ``K`` colour–shape
pairs that the retriever did see (drawn with the run's seed) out of the head's training images; the val
images holding one of them become a second val gallery, pairs new to the head as the held-out ones are,
and the fusion weights are those that help most on val while lowering neither gallery (the rest of val, and
the new pairs)::

    pairs = novel_pairs(train_objects, k=6, seed=0)
    keep = [i for i, objs in enumerate(train_objects) if not holds(objs, pairs)]   # the head's images
    seen, new = split_gallery(val, pairs)
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from mie.errors import ConfigError
from mie.recipes.clip.evaluate import EvalSet

Pair = tuple[str, str]  # (colour, shape)


def objects_of(attributes: dict[str, Any] | None) -> list[Pair]:
    """The ``(colour, shape)`` pairs of an image's objects (the shapes data's attributes)."""
    return [(o.get("color"), o.get("shape")) for o in (attributes or {}).get("objects") or []]


def novel_pairs(objects: Sequence[Sequence[Pair]], k: int, seed: int) -> list[Pair]:
    """``k`` pairs drawn (seeded) from those the training images show; a ConfigError when the images list
    no objects (not shapes data) or show too few pairs to leave most of them to the head."""
    seen = sorted({pair for image in objects for pair in image})
    if not seen:
        raise ConfigError("rerank.novel_pairs needs images that list their objects' colours and shapes "
                          "(the shapes data)", fix="set rerank.novel_pairs: 0 for other data")
    if k > len(seen) // 4:
        raise ConfigError(f"rerank.novel_pairs={k} keeps too many of the {len(seen)} colour-shape pairs from the "
                          "re-ranker's training", fix=f"use at most {len(seen) // 4}")
    return sorted(random.Random(seed).sample(seen, k))


def holds(objects: Sequence[Pair], pairs: Sequence[Pair]) -> bool:
    """Whether an image with ``objects`` shows one of ``pairs``."""
    return any(pair in pairs for pair in objects)


def sub_gallery(evalset: EvalSet, rows: Sequence[int], name: str) -> EvalSet:
    """The images ``rows`` of ``evalset`` (with their captions) as a gallery of their own."""
    index = list(rows)
    return EvalSet(name, evalset.images[index], [evalset.captions[i] for i in index],
                   [evalset.image_ids[i] for i in index], [evalset.attributes[i] for i in index],
                   [evalset.paths[i] for i in index] if evalset.paths else [])


def split_gallery(evalset: EvalSet, pairs: Sequence[Pair]) -> tuple[EvalSet, EvalSet]:
    """``(seen, new)``: the images of ``evalset`` without and with one of ``pairs``; a ConfigError when
    either side is empty (too small a val split to check the weight on new pairs)."""
    shows = [holds(objects_of(attrs), pairs) for attrs in evalset.attributes]
    new, seen = [i for i, s in enumerate(shows) if s], [i for i, s in enumerate(shows) if not s]
    if not new or not seen:
        raise ConfigError(f"rerank.novel_pairs: {len(new)} of the {len(evalset.attributes)} {evalset.name} images "
                          "show a pair new to the re-ranker; both galleries need images",
                          fix="use a larger val split or set rerank.novel_pairs: 0")
    return sub_gallery(evalset, seen, f"{evalset.name} (seen pairs)"), sub_gallery(evalset, new,
                                                                                   f"{evalset.name} (new pairs)")


def safest_setting(gains: dict[tuple[float, float], tuple[float, float]], sizes: tuple[int, int] = (1, 1)
                   ) -> tuple[float, float]:
    """The ``(sim_weight, grounding)`` with the largest gain over all of val (the two galleries' gains,
    re-ranked minus plain mean R@1, weighted by their ``sizes``) among those that lower neither gallery; when
    every setting lowers one, the one whose smaller gain is largest. Ties: the larger weight, nearer the
    encoder's own order, then the smaller grounding.

    Not simply the largest smaller gain: the new-pair gallery is small (a hundred-odd images near 98%), so one
    query there (0.4 points) would outweigh points on the rest of val."""
    def order(key: tuple[float, float]) -> tuple[float, float, float]:
        return key[0], -key[1]

    harmless = [key for key, (seen, new) in gains.items() if seen >= 0 and new >= 0]
    if harmless:
        total = sum(sizes)
        return max(harmless, key=lambda k: ((gains[k][0] * sizes[0] + gains[k][1] * sizes[1]) / total, *order(k)))
    return max(gains, key=lambda k: (min(gains[k]), *order(k)))
