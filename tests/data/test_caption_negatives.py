"""Word-swap hard-negative captions (NegCLIP) and their place in a collated batch."""

import torch

from mie.data.caption_negatives import swap_word_negative, word_swap_negatives
from mie.data.image_text import ImageTextSample, collate_image_text
from mie.data.shapes_drawing import SHAPES
from mie.tokenization.factory import train_tokenizer

GROUPS = [list(SHAPES)]


def test_swap_replaces_every_occurrence_of_one_word_with_a_word_the_caption_lacks():
    caption = "a red circle left of a blue square, and the circle is large"
    for seed in range(20):
        negative = swap_word_negative(caption, GROUPS, torch.Generator().manual_seed(seed))
        words = negative.replace(",", "").split()
        kept = [w for w in ("circle", "square") if w in words]
        assert len(kept) == 1  # one of the two shapes was swapped out, everywhere it occurred
        new = [w for w in words if w in SHAPES and w not in ("circle", "square")]
        assert len(new) == (2 if kept == ["square"] else 1) and len(set(new)) == 1


def test_swap_matches_whole_words_and_is_none_when_nothing_can_be_swapped():
    assert swap_word_negative("a path across the field", [["cross", "star"]]) is None
    assert swap_word_negative("a circle and a square", [["circle", "square"]]) is None  # no word left to use
    assert word_swap_negatives(["no shapes here", "a red star"], [["star", "circle"]]) == (["a red circle"], [1])


def test_seeded_swaps_repeat():
    captions = [f"a red {s} and a blue {t}" for s, t in zip(SHAPES, reversed(SHAPES))]
    first, _ = word_swap_negatives(captions, GROUPS, torch.Generator().manual_seed(3))
    assert first == word_swap_negatives(captions, GROUPS, torch.Generator().manual_seed(3))[0]


def test_collate_adds_the_negatives_token_ids_only_when_asked():
    samples = [ImageTextSample(torch.zeros(3, 4, 4), [c], f"img{i}", None)
               for i, c in enumerate(["a red circle", "a blue star", "a plain dark background"])]
    tokenizer = train_tokenizer("simple", ["a red circle", "a blue star", "a plain dark background", "square"])
    plain = collate_image_text(samples, tokenizer, 8)
    assert "negative_ids" not in plain
    batch = collate_image_text(samples, tokenizer, 8, negative_word_groups=GROUPS,
                               generator=torch.Generator().manual_seed(0))
    assert batch["negative_ids"].shape == (2, 8)  # the background-only caption has no shape to swap
    assert batch["negative_rows"].tolist() == [0, 1]
    assert batch["captions"] == plain["captions"]
    assert not torch.equal(batch["negative_ids"], batch["input_ids"][:2])
