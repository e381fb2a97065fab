"""Pairs new to the re-ranker: drawn from the seen pairs, kept out of its images, a val gallery of their own."""

from __future__ import annotations

import pytest
import torch

from mie.errors import ConfigError
from mie.recipes.clip.evaluate import EvalSet
from mie.recipes.clip.rerank_novel import holds, novel_pairs, objects_of, safest_weight, split_gallery


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


def test_safest_weight_maximises_the_smaller_gain():
    gains = {1.0: (0.02, -0.01), 10.0: (0.01, 0.006), 100.0: (0.004, 0.004), 1000.0: (0.0, 0.0)}
    assert safest_weight(gains) == 10.0  # 1 helps seen pairs most but hurts the new ones
    assert safest_weight({5.0: (0.0, 0.0), 50.0: (0.0, 0.0)}) == 50.0  # ties: nearer the encoder's order


def test_annealing_hardest_negatives_is_refused_in_one_line():
    from mie.recipes.clip.config import ClipConfig, check_config

    config = ClipConfig(project_name="x", output_dir="out")
    config.rerank.temperature_start, config.rerank.negatives = 2.0, "hardest"
    with pytest.raises(ConfigError, match="rerank.temperature_start: anneals .* hardest negatives are not sampled"):
        check_config(config)
    config.rerank.negatives = "softmax"
    check_config(config)  # accepted with sampled negatives
