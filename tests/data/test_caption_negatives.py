"""NegCLIP-style negative captions: word swaps and replacements, collate, the clip loss's extra columns, config."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
import yaml

from mie.data.caption_negatives import CaptionSwapper, negative_captions
from mie.errors import ConfigError
from mie.losses import CLIPStyleLoss

SHAPE_WORDS = ["circle", "square", "triangle", "star"]


def words(text: str) -> list[str]:
    return text.split()


@pytest.mark.parametrize("seed", range(20))
def test_a_negative_changes_only_group_words_and_changes_at_least_one(seed):
    swap = CaptionSwapper([SHAPE_WORDS])
    caption = "the small red circle is left of the large blue square"
    negative = swap(caption, torch.Generator().manual_seed(seed))
    changed = [(a, b) for a, b in zip(words(caption), words(negative)) if a != b]
    assert len(words(negative)) == len(words(caption)) and changed
    assert all(a in SHAPE_WORDS and b in SHAPE_WORDS for a, b in changed)


def test_two_words_of_a_group_are_sometimes_swapped_which_changes_the_binding():
    swap = CaptionSwapper([SHAPE_WORDS])
    caption = "a red circle and a blue square"
    seen = {swap(caption, torch.Generator().manual_seed(seed)) for seed in range(60)}
    assert "a red square and a blue circle" in seen  # the bag of words is the same: only binding differs
    assert any(n.count("circle") == 1 and "square" not in n for n in seen)  # a replacement


def test_no_group_word_gives_none_and_words_inside_other_words_do_not_match():
    swap = CaptionSwapper([["star", "circle"]])
    assert swap("a starry circled sky", torch.Generator().manual_seed(0)) is None
    out = negative_captions(["a red star", "nothing here", "a circle"], swap, torch.Generator().manual_seed(1))
    assert out == ["a red circle", "a star"]


def test_only_groups_that_occur_are_perturbed_and_the_draws_are_reproducible():
    swap = CaptionSwapper([SHAPE_WORDS, ["red", "blue", "green"]])
    caption = "one red circle"
    draws = [swap(caption, torch.Generator().manual_seed(s)) for s in range(40)]
    assert draws == [swap(caption, torch.Generator().manual_seed(s)) for s in range(40)]
    assert any("red" not in d for d in draws) and any("circle" not in d for d in draws)
    assert all(("red" in d) != ("circle" in d) for d in draws)  # one word changed, of one group


@pytest.mark.parametrize("groups,match", [
    ([["circle"]], "at least two different"), ([["circle", "circle"]], "at least two different"),
    ([["a b", "c"]], "single words"), ([["circle", "square"], ["square", "star"]], "in two groups"),
])
def test_malformed_groups_are_refused_naming_the_key(groups, match):
    with pytest.raises(ConfigError, match=match) as info:
        CaptionSwapper(groups)
    assert "data.caption_swaps" in str(info.value)


def naive_negclip(img, txt, neg, scale):
    """Reference: image->text rows over the batch's captions then the negatives; text->image plain."""
    img, txt, neg = (F.normalize(x, dim=-1) for x in (img, txt, neg))
    n = img.shape[0]
    i2t = t2i = 0.0
    for i in range(n):
        row = [float(scale) * float(img[i] @ k) for k in torch.cat([txt, neg])]
        i2t += math.log(sum(math.exp(x) for x in row)) - row[i]
        col = [float(scale) * float(txt[i] @ k) for k in img]
        t2i += math.log(sum(math.exp(x) for x in col)) - col[i]
    return (i2t + t2i) / (2 * n)


@pytest.mark.parametrize("with_ids", [False, True])
def test_the_clip_loss_adds_negative_captions_to_the_image_to_text_direction_only(with_ids):
    torch.manual_seed(0)
    img, txt, neg = (torch.randn(n, 6, dtype=torch.float64) for n in (5, 5, 3))
    ids = torch.arange(5) if with_ids else None
    loss = CLIPStyleLoss(temperature=0.5)(img, txt, match_ids=ids, negative_text_embeds=neg)
    assert loss.item() == pytest.approx(naive_negclip(img, txt, neg, 2.0), abs=1e-9)
    plain = CLIPStyleLoss(temperature=0.5)(img, txt, match_ids=ids)
    assert CLIPStyleLoss(temperature=0.5)(img, txt, negative_text_embeds=neg[:0]).item() == pytest.approx(plain.item())
    assert loss.item() > plain.item()  # more negatives in every image row's denominator


def test_collate_adds_one_tokenized_negative_per_caption_that_has_one():
    from mie.data.image_text import ImageTextSample, collate_image_text
    from mie.tokenization import SimpleTokenizer

    captions = ["a red circle", "a plain background", "a blue square"]
    tok = SimpleTokenizer.build(captions + ["square circle triangle"])
    samples = [ImageTextSample(torch.zeros(3, 4, 4), [c], f"im{k}") for k, c in enumerate(captions)]
    batch = collate_image_text(samples, tok, 8, negatives=CaptionSwapper([["circle", "square", "triangle"]]),
                               generator=torch.Generator().manual_seed(0))
    assert batch["negative_input_ids"].shape == (2, 8)
    decoded = [tok.decode(row.tolist()) for row in batch["negative_input_ids"]]
    assert decoded[0].startswith("a red") and "circle" not in decoded[0]
    assert decoded[1].startswith("a blue") and "square" not in decoded[1]
    assert "negative_input_ids" not in collate_image_text(samples, tok, 8)


def test_training_with_caption_swaps_and_a_loss_that_ignores_them_is_refused(tmp_path):
    from tests.tiny import TINY

    from mie.cli import main

    raw = json.loads(json.dumps(TINY))
    raw["output_dir"], raw["data"]["path"] = str(tmp_path / "run"), str(tmp_path / "data")
    raw["data"]["caption_swaps"] = [["circle", "square"]]
    raw["loss"] = {"name": "siglip"}
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert main(["train", str(config), "-q"]) != 0
    assert not (tmp_path / "data").exists()  # refused before any data was generated


def test_a_tiny_run_trains_with_negative_captions(tmp_path, caplog):
    from tests.tiny import TINY

    from mie.cli import main

    raw = json.loads(json.dumps(TINY))
    raw["output_dir"], raw["data"]["path"] = str(tmp_path / "run"), str(tmp_path / "data")
    raw["data"]["caption_swaps"] = [["circle", "square", "triangle", "star", "hexagon", "cross", "diamond"]]
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert main(["train", str(config), "-q"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in rows if "train/loss" in r]
    assert losses and all(math.isfinite(x) for x in losses)
    # The image->text direction saw more columns than the batch (one negative per caption): its loss
    # starts above log(batch), where a plain clip loss at initialisation sits.
    first = next(r for r in rows if "train/loss_i2t" in r)
    assert first["train/loss_i2t"] > math.log(8) + 0.3
