"""The shapes generator: determinism, captions that are true for their image, splits and held-out pairs."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mie.data import synthetic
from mie.data.config import SyntheticConfig
from mie.data.shapes_drawing import RADIUS_FRACTION
from mie.data.synthetic import (
    BACKGROUND_PHRASES,
    COLOR_RGB,
    COLORS,
    SHAPES,
    attribute_prompts,
    ensure_shapes_dataset,
    generate_from_config,
    generate_shapes_dataset,
    heldout_pairs,
)
from mie.errors import DataError

SIZES = {"num_train": 40, "num_val": 8, "num_test": 8, "num_heldout": 8}
_C = "|".join(COLORS)
_S = "|".join(SHAPES)
_REL = "to the left of|on the left of|left of|to the right of|on the right of|right of|above|over|below|under|beneath"
RELATION = re.compile(
    rf"\b({_C}) ({_S})(?:, which is| is)? ({_REL}) (?:a|an|the) (?:(?:small|large) )?({_C}) ({_S})\b"
)


def _read(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "captions.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_shapes_dataset(tmp_path_factory.mktemp("shapes"), **SIZES, seed=3, workers=0)


@pytest.fixture(scope="module")
def records(shapes: Path) -> list[dict]:
    return _read(shapes)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_counts(shapes: Path, records: list[dict]) -> None:
    counts = Counter(r["split"] for r in records)
    assert counts == {"train": 40, "val": 8, "test": 8, "test_heldout": 8}
    for r in records:
        path = shapes / r["image"]
        assert path.is_file() and r["image"] == f"images/{r['split']}/{r['id']}.png"
        with Image.open(path) as image:
            assert image.mode == "RGB" and image.size == (64, 64)
    meta = json.loads((shapes / "dataset.json").read_text())
    assert meta["seed"] == 3 and meta["num_train"] == 40 and meta["version"] == synthetic.GENERATOR_VERSION


def test_same_seed_same_bytes_and_other_seed_differs(shapes: Path, tmp_path: Path) -> None:
    again = generate_shapes_dataset(tmp_path / "again", **SIZES, seed=3, workers=0)
    assert _files(again) == _files(shapes)
    other = generate_shapes_dataset(tmp_path / "other", **SIZES, seed=4, workers=0)
    assert (other / "captions.jsonl").read_bytes() != (shapes / "captions.jsonl").read_bytes()


def test_worker_count_does_not_change_output(shapes: Path, tmp_path: Path) -> None:
    parallel = generate_shapes_dataset(tmp_path / "parallel", **SIZES, seed=3, workers=2)
    assert _files(parallel) == _files(shapes)


def test_five_distinct_captions_naming_every_object(records: list[dict]) -> None:
    for r in records:
        captions = r["captions"]
        assert len(captions) == 5 and len(set(captions)) == 5
        for caption in captions:
            for obj in r["attributes"]["objects"]:
                assert f"{obj['color']} {obj['shape']}" in caption, (caption, obj)


def test_relations_counts_backgrounds_and_order_are_true(records: list[dict]) -> None:
    words = {1: "one", 2: "two", 3: "three"}
    checked = 0
    for r in records:
        objects = {(o["color"], o["shape"]): o for o in r["attributes"]["objects"]}
        for caption in r["captions"]:
            for color_a, shape_a, rel, color_b, shape_b in RELATION.findall(caption):
                a, b = objects[(color_a, shape_a)], objects[(color_b, shape_b)]
                if "left" in rel:
                    assert a["x"] < b["x"], caption
                elif "right" in rel:
                    assert a["x"] > b["x"], caption
                elif rel in ("above", "over"):
                    assert a["y"] < b["y"], caption
                else:
                    assert a["y"] > b["y"], caption
                checked += 1
            if caption.startswith("from left to right: "):
                named = re.findall(rf"({_C}) ({_S})", caption)
                xs = [objects[pair]["x"] for pair in named]
                assert xs == sorted(xs) and len(named) == len(objects)
            count = re.search(r"\b(one|two|three) shapes?\b", caption)
            if count:
                assert count.group(1) == words[len(objects)], caption
            for kind, phrase in BACKGROUND_PHRASES.items():
                if phrase in caption:
                    assert kind == r["attributes"]["background"], caption
    assert checked >= 20  # the parser really saw relations


def test_single_object_position_phrases(tmp_path: Path) -> None:
    root = generate_shapes_dataset(
        tmp_path, num_train=60, num_val=0, num_test=0, num_heldout=0, seed=1, workers=0
    )
    singles = [r for r in _read(root) if len(r["attributes"]["objects"]) == 1]
    assert singles
    for r in singles:
        (obj,) = r["attributes"]["objects"]
        for caption in r["captions"]:
            where = re.search(r"in the (center|top|bottom|left|right)(?: (left|right))?$", caption)
            if not where:
                continue
            words = [w for w in where.groups() if w]
            assert ("left" in words) == (obj["x"] < 64 / 3) and ("right" in words) == (obj["x"] >= 128 / 3)
            assert ("top" in words) == (obj["y"] < 64 / 3) and ("bottom" in words) == (obj["y"] >= 128 / 3)


def test_at_least_half_multi_object(records: list[dict]) -> None:
    multi = sum(len(r["attributes"]["objects"]) >= 2 for r in records)
    assert multi >= len(records) / 2
    assert all(1 <= len(r["attributes"]["objects"]) <= 3 for r in records)


def test_combinations_unique_within_and_across_splits(records: list[dict]) -> None:
    combos = [
        tuple(sorted((o["shape"], o["color"], o["size"]) for o in r["attributes"]["objects"]))
        for r in records
    ]
    assert len(set(combos)) == len(combos)
    for r in records:  # one (color, shape) pair per image, so "the red circle" is unambiguous
        pairs = [(o["color"], o["shape"]) for o in r["attributes"]["objects"]]
        assert len(set(pairs)) == len(pairs)


def test_heldout_pairs_only_in_heldout_split(shapes: Path, records: list[dict]) -> None:
    held = {tuple(p) for p in json.loads((shapes / "dataset.json").read_text())["heldout_pairs"]}
    assert held == set(heldout_pairs(3))
    for r in records:
        pairs = {(o["color"], o["shape"]) for o in r["attributes"]["objects"]}
        if r["split"] == "test_heldout":
            assert pairs & held, r
        else:
            assert not pairs & held, r


def test_heldout_pairs_are_about_ten_percent_and_spread() -> None:
    for seed in range(5):
        pairs = heldout_pairs(seed)
        assert len(pairs) == round(0.1 * len(COLORS) * len(SHAPES))
        assert len({c for c, _ in pairs}) == len(pairs) and len({s for _, s in pairs}) == len(pairs)
    assert heldout_pairs(0) != heldout_pairs(1)


def test_objects_inside_image_and_not_overlapping(records: list[dict]) -> None:
    for r in records:
        objs = r["attributes"]["objects"]
        for o in objs:
            radius = RADIUS_FRACTION[o["size"]] * 64
            assert radius < o["x"] < 64 - radius and radius < o["y"] < 64 - radius
        for i, a in enumerate(objs):
            for b in objs[i + 1 :]:
                gap = math.hypot(a["x"] - b["x"], a["y"] - b["y"])
                assert (
                    gap >= (RADIUS_FRACTION[a["size"]] + RADIUS_FRACTION[b["size"]]) * 64
                )


def test_pixels_show_the_described_colors_on_a_dark_background(shapes: Path, records: list[dict]) -> None:
    palette = np.array(list(COLOR_RGB.values()), dtype=float)
    large_seen = small_seen = False
    for r in records:
        pixels = np.asarray(Image.open(shapes / r["image"]), dtype=float)
        assert pixels[0, 0].max() < 100 and pixels[63, 63].max() < 100  # corners are background
        for o in r["attributes"]["objects"]:
            centre = pixels[o["y"], o["x"]]
            nearest = COLORS[int(np.argmin(((palette - centre) ** 2).sum(axis=1)))]
            assert nearest == o["color"], (r["id"], o)
            # Count this colour's pixels in the object's box: large objects cover clearly more area. The
            # smallest large shape (a star, ~1.46 r^2) covers more than the largest small one (a circle).
            half = math.ceil(1.1 * RADIUS_FRACTION["large"] * 64) + 1
            x0, y0 = max(0, o["x"] - half), max(0, o["y"] - half)
            box = pixels[y0 : o["y"] + half + 1, x0 : o["x"] + half + 1]
            area = (np.abs(box - COLOR_RGB[o["color"]]).max(axis=2) < 40).sum()
            split = 0.5 * (1.46 * (RADIUS_FRACTION["large"] * 64) ** 2 + math.pi * (RADIUS_FRACTION["small"] * 64) ** 2)
            if len(r["attributes"]["objects"]) == 1:
                if o["size"] == "large":
                    assert area > split, (r["id"], o, area)
                    large_seen = True
                else:
                    assert area < split, (r["id"], o, area)
                    small_seen = True
    assert large_seen or small_seen


def test_ensure_regenerates_only_when_parameters_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = SyntheticConfig(num_train=6, num_val=2, num_test=2, num_heldout=2, image_size=32, seed=0)
    root = ensure_shapes_dataset(cfg, tmp_path / "d")
    assert len(_read(root)) == 12
    with Image.open(root / _read(root)[0]["image"]) as image:
        assert image.size == (32, 32)

    def fail(*args, **kwargs):
        raise AssertionError("regenerated although nothing changed")

    monkeypatch.setattr(synthetic, "generate_from_config", fail)
    assert ensure_shapes_dataset(cfg, root) == root
    monkeypatch.undo()

    smaller = SyntheticConfig(num_train=3, num_val=0, num_test=2, num_heldout=2, image_size=32, seed=0)
    ensure_shapes_dataset(smaller, root)
    assert Counter(r["split"] for r in _read(root)) == {"train": 3, "test": 2, "test_heldout": 2}
    assert not (root / "images" / "val").exists()  # stale files of the old generation are gone
    assert len(list((root / "images" / "train").iterdir())) == 3


def test_ensure_refuses_over_corrupt_metadata(tmp_path: Path) -> None:
    # A marker that is not valid JSON is not provably ours: nothing in the folder is touched.
    cfg = SyntheticConfig(num_train=2, num_val=0, num_test=0, num_heldout=0, seed=0)
    root = generate_from_config(cfg, tmp_path)
    (root / "dataset.json").write_text("{not json")
    before = _files(root)
    with pytest.raises(DataError, match=r"dataset.json: is not the shapes generator's marker.* — choose an empty"):
        ensure_shapes_dataset(cfg, root)
    assert _files(root) == before


def test_bad_parameters_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="num_val"):
        generate_shapes_dataset(tmp_path, num_train=1, num_val=-1, num_test=0, num_heldout=0)
    with pytest.raises(ValueError, match="image_size"):
        generate_shapes_dataset(tmp_path, num_train=1, num_val=0, num_test=0, num_heldout=0, image_size=8)


def test_attribute_prompts() -> None:
    names, templates = attribute_prompts("shape")
    assert names == list(SHAPES) and all("{}" in t for t in templates)
    names, templates = attribute_prompts("color")
    assert names == list(COLORS)
    assert not any(t.startswith("a {}") for t in templates)  # "a orange" would be wrong
    assert attribute_prompts("size")[0] == ["small", "large"]
    with pytest.raises(ValueError, match="shape, color or size"):
        attribute_prompts("texture")


def test_generator_module_does_not_import_torch() -> None:
    # Spawned generation workers import this module; torch would add ~1.5 s to each of them.
    code = "import sys, mie.data.synthetic; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_attribute_prompts_name_the_other_attribute_in_caption_words() -> None:
    # Captions always pair a colour with a shape, so prompts do too (averaged over the other one).
    _, shape_templates = attribute_prompts("shape")
    assert {t.format("circle") for t in shape_templates} >= {f"the {c} circle" for c in COLORS}
    _, color_templates = attribute_prompts("color")
    assert {t.format("red") for t in color_templates} >= {f"the red {s}" for s in SHAPES}
