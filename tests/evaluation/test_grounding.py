"""Phrase grounding: a caption's maximal phrases, and the mean best-patch cosine against a plain loop."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mie.evaluation.grounding import caption_phrases, phrase_grounding

TAGS = ["circle", "square", "red", "blue", "red circle", "blue square", "big red circle"]


def test_caption_phrases_are_the_longest_tags_that_occur():
    captions = ["A red circle left of a blue square.", "a circle", "a Red  square", "a reddish circle",
                "one big red circle", "nothing here"]
    assert caption_phrases(captions, TAGS) == [
        [4, 5],  # "red circle" and "blue square", not their words
        [0],
        [1, 2],  # "red square" is no tag: its words are
        [0],  # whole words only: "reddish" is not "red"
        [6],  # the longest of three nested tags
        [],
    ]


def test_grounding_is_the_mean_best_patch_cosine_of_the_phrases():
    torch.manual_seed(0)
    patches, tags = torch.randn(3, 5, 8), torch.randn(len(TAGS), 8)
    phrases = [[4, 5], [0], [], [6, 4, 1]]
    got = phrase_grounding(patches, tags, phrases)
    assert got.shape == (3, 4)
    for n in range(3):
        for c, ks in enumerate(phrases):
            want = 0.0 if not ks else sum(max(float(F.cosine_similarity(patches[n, p], tags[k], dim=0))
                                              for p in range(5)) for k in ks) / len(ks)
            assert float(got[n, c]) == pytest.approx(want, abs=1e-5)


def test_a_patch_that_binds_colour_to_shape_wins():
    # Two images: one patch is "red circle" in the first; the second has "red" and "circle" on separate patches.
    red, circle, other = torch.eye(3)
    red_circle = F.normalize(red + circle, dim=0)
    bound = torch.stack([red_circle, other])
    apart = torch.stack([red, circle])
    score = phrase_grounding(torch.stack([bound, apart]), red_circle[None], [[0]])
    assert float(score[0, 0]) == pytest.approx(1.0) and float(score[1, 0]) == pytest.approx(2 ** -0.5)


def test_mismatched_widths_are_one_clear_error():
    with pytest.raises(ValueError, match="must share D"):
        phrase_grounding(torch.zeros(2, 3, 4), torch.zeros(5, 6), [[0]])
