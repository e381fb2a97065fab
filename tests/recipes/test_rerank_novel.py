"""Pairs new to the re-ranker: drawn from the seen pairs, kept out of its images, a val gallery of their own."""

from __future__ import annotations

import pytest
import torch

from mie.errors import ConfigError
from mie.recipes.clip.evaluate import EvalSet
from mie.recipes.clip.rerank_novel import holds, novel_pairs, objects_of, safest_setting, split_gallery


def _attrs(*pairs):
    return {"objects": [{"color": c, "shape": s} for c, s in pairs]}


def test_novel_pairs_are_seeded_draws_from_the_seen_pairs():
    seen = [[("red", "circle"), ("blue", "square")], [("green", "star")], [(c, "cross") for c in "abcdefgh"]]
    objects = [objects_of(_attrs(*image)) for image in seen]
    pairs = novel_pairs(objects, 2, seed=3)
    assert pairs == novel_pairs(objects, 2, seed=3) and len(set(pairs)) == 2
    assert all(any(p in image for image in objects) for p in pairs)
    assert [holds(image, pairs) for image in objects] == [any(p in image for p in pairs) for image in objects]
    with pytest.raises(ConfigError, match="too many of the 11"):
        novel_pairs(objects, 3, seed=0)
    with pytest.raises(ConfigError, match="shapes data"):
        novel_pairs([objects_of(None), objects_of({"objects": []})], 1, seed=0)


def test_split_gallery_keeps_each_image_with_its_captions():
    attrs = [_attrs(("red", "circle")), _attrs(("blue", "square"), ("red", "star")), _attrs(("red", "star"))]
    val = EvalSet("val", torch.arange(3.0).view(3, 1, 1, 1), [["a"], ["b", "c"], ["d"]], ["i0", "i1", "i2"], attrs,
                  ["p0", "p1", "p2"])
    seen, new = split_gallery(val, [("red", "star")])
    assert new.image_ids == ["i1", "i2"] and new.captions == [["b", "c"], ["d"]] and new.paths == ["p1", "p2"]
    assert seen.image_ids == ["i0"] and seen.images.flatten().tolist() == [0.0]
    assert new.name == "val (new pairs)" and seen.name == "val (seen pairs)"
    with pytest.raises(ConfigError, match="0 of the 3 val images"):
        split_gallery(val, [("pink", "hexagon")])


def test_safest_setting_helps_most_on_val_without_lowering_either_gallery():
    gains = {(1.0, 0.0): (0.02, -0.01), (10.0, 0.0): (0.01, 0.006), (100.0, 0.0): (0.004, 0.004),
             (100.0, 0.5): (0.03, 0.0), (1000.0, 0.0): (0.0, 0.0)}
    # (1, 0) helps seen pairs but lowers the new ones; of the rest (100, 0.5) gains most over val's 300 + 100 images
    assert safest_setting(gains, (300, 100)) == (100.0, 0.5)
    # weighted by size: a new-pair gallery four times the rest prefers the setting that helps both
    assert safest_setting(gains, (100, 400)) == (10.0, 0.0)
    assert safest_setting({(5.0, 0.0): (0.0, 0.0), (50.0, 0.0): (0.0, 0.0), (50.0, 1.0): (0.0, 0.0)}) == (50.0, 0.0)
    # every setting lowers a gallery: the one whose smaller gain is largest
    assert safest_setting({(1.0, 0.0): (0.05, -0.02), (2.0, 0.0): (0.01, -0.01)}) == (2.0, 0.0)


def test_annealing_hardest_negatives_is_refused_in_one_line():
    from mie.recipes.clip.config import ClipConfig, check_config

    config = ClipConfig(project_name="x", output_dir="out")
    config.rerank.temperature_start, config.rerank.negatives = 2.0, "hardest"
    with pytest.raises(ConfigError, match="rerank.temperature_start: anneals .* hardest negatives are not sampled"):
        check_config(config)
    config.rerank.negatives = "softmax"
    check_config(config)  # accepted with sampled negatives


def test_grounding_without_phrases_or_with_a_negative_weight_is_refused_in_one_line():
    from mie.recipes.clip.config import ClipConfig, check_config

    config = ClipConfig(project_name="x", output_dir="out")
    config.rerank.enabled, config.rerank.groundings = True, [0.0, 0.5]
    with pytest.raises(ConfigError, match="rerank.grounding: scores a caption's phrases"):
        check_config(config)
    config.rerank.phrases = ["red circle"]
    check_config(config)  # accepted with phrases to ground
    config.rerank.groundings = [-1.0]
    with pytest.raises(ConfigError, match="rerank.groundings: must be >= 0"):
        check_config(config)
