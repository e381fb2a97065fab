"""Augmentation: each stage against a direct computation, its probability, seeding and validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageFilter

from mie.data.augment import (
    AugmentedCaptions,
    ColorJitter,
    Cutout,
    RandomGaussianBlur,
    RandomGrayscale,
    WordDropout,
    WordSwap,
    build_augmented_transform,
)
from mie.data.image_text import ImageTextDataset, ImageTextRecord
from mie.data.transforms import Compose


def _image(seed: int = 0, size: int = 16) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_color_jitter_matches_pillow_enhancers_in_drawn_order() -> None:
    image = _image()
    out = ColorJitter(0.3, 0.2, 0.1, generator=_gen(5))(image)
    g = _gen(5)  # replay the draws: an order, then one factor per stage
    order = torch.randperm(3, generator=g).tolist()
    expected = image
    for i in order:
        strength = (0.3, 0.2, 0.1)[i]
        factor = 1 - strength + 2 * strength * float(torch.rand((), generator=g))
        expected = (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color)[i](expected).enhance(factor)
    assert np.array_equal(np.asarray(out), np.asarray(expected))
    assert np.array_equal(np.asarray(ColorJitter(0, 0, 0)(image)), np.asarray(image))
    with pytest.raises(ValueError, match="ColorJitter contrast must be in"):
        ColorJitter(contrast=1.5)


def test_grayscale_and_blur() -> None:
    image = _image(1)
    grey = np.asarray(RandomGrayscale(p=1.0)(image)).astype(int)
    luminance = np.asarray(image.convert("L")).astype(int)
    assert grey.shape == (16, 16, 3) and all(np.array_equal(grey[..., c], luminance) for c in range(3))
    assert RandomGrayscale(p=0.0)(image) is image
    g = _gen(2)
    blurred = RandomGaussianBlur(p=1.0, radius=(1.0, 1.0), generator=g)(image)
    assert np.array_equal(np.asarray(blurred), np.asarray(image.filter(ImageFilter.GaussianBlur(1.0))))
    assert RandomGaussianBlur(p=0.0)(image) is image
    with pytest.raises(ValueError, match="radius must satisfy"):
        RandomGaussianBlur(radius=(2.0, 1.0))
    with pytest.raises(ValueError, match="RandomGrayscale probability must be in"):
        RandomGrayscale(p=2)


def test_grayscale_probability_is_respected() -> None:
    stage = RandomGrayscale(p=0.3, generator=_gen(0))
    image = _image(3)
    hits = sum(stage(image) is not image for _ in range(400))
    assert 90 < hits < 150


def test_cutout_paints_exactly_its_box() -> None:
    image = _image(4, size=20)
    stage = Cutout(p=1.0, size=0.3, fill=(1, 2, 3), generator=_gen(9))
    out = np.asarray(stage(image))
    _ = torch.rand((), generator=(g := _gen(9)))  # the probability draw
    box = Cutout(size=0.3, generator=g).box(20, 20)
    left, top, right, bottom = box
    assert 0 < (right - left) <= 6 and 0 < (bottom - top) <= 6
    mask = np.zeros((20, 20), bool)
    mask[top:bottom, left:right] = True
    assert (out[mask] == (1, 2, 3)).all()
    assert np.array_equal(out[~mask], np.asarray(image)[~mask])
    with pytest.raises(ValueError, match="Cutout size must be in"):
        Cutout(size=0)


def test_word_dropout_and_swap() -> None:
    text = "a small red circle left of a blue star"
    dropped = WordDropout(p=0.5, generator=_gen(1))(text)
    words = dropped.split()
    assert 0 < len(words) < 9 and all(w in text.split() for w in words)
    assert WordDropout(p=1.0, generator=_gen(1))(text) in text.split()  # never empty
    assert WordDropout(p=0.5)("single") == "single"
    swapped = WordSwap(p=1.0)(text)
    assert swapped == "small a circle red of left blue a star"
    assert WordSwap(p=0.0)(text) == text
    some = WordSwap(p=0.5, generator=_gen(2))(text)
    assert sorted(some.split()) == sorted(text.split())


def test_augmented_captions_and_pipeline(tmp_path: Path, images) -> None:
    record = ImageTextRecord(images.write(tmp_path / "a.png", 0), ["one two three"], "a")
    missing = ImageTextRecord(tmp_path / "b.png", ["x"], "b")
    data = AugmentedCaptions(ImageTextDataset([record, missing]), Compose([WordSwap(1.0)]))
    assert data[0].captions == ["two one three"] and data[1] is None
    assert len(data) == 2 and data.skipped["missing"] == 1 and data.records[0] is record
    t1 = build_augmented_transform(8, seed=0, blur_p=0.5, cutout_p=0.5)
    t2 = build_augmented_transform(8, seed=0, blur_p=0.5, cutout_p=0.5)
    image = _image(5)
    a, b = t1(image), t2(image)
    assert a.shape == (3, 8, 8) and torch.equal(a, b)
    names = [type(s).__name__ for s in t1.transforms]
    assert names == ["RandomResizedCrop", "ColorJitter", "RandomGrayscale", "RandomGaussianBlur", "Cutout",
                     "ToTensor", "Normalize"]
    plain = build_augmented_transform(8, color_jitter=0, grayscale_p=0)
    assert [type(s).__name__ for s in plain.transforms] == ["RandomResizedCrop", "ToTensor", "Normalize"]
    assert "ColorJitter(brightness=0.4" in repr(t1)
