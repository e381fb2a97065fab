"""Image transforms checked against plain numpy computations."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mie.data.transforms import (
    CLIP_MEAN,
    CLIP_STD,
    CenterCrop,
    Compose,
    LoadImage,
    Normalize,
    RandomHorizontalFlip,
    RandomResizedCrop,
    Resize,
    ToTensor,
    build_image_transform,
)


def _image(height: int, width: int, seed: int = 0) -> tuple[Image.Image, np.ndarray]:
    array = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(array, mode="RGB"), array


def test_to_tensor_and_normalize_match_numpy() -> None:
    image, array = _image(5, 7)
    got = Normalize()(ToTensor()(image))
    expected = np.empty((3, 5, 7))
    for c in range(3):
        for y in range(5):
            for x in range(7):
                expected[c, y, x] = (array[y, x, c] / 255.0 - CLIP_MEAN[c]) / CLIP_STD[c]
    assert got.dtype == torch.float32 and got.shape == (3, 5, 7)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)


def test_to_tensor_accepts_arrays_and_greyscale() -> None:
    _, array = _image(4, 4)
    assert torch.equal(ToTensor()(array), ToTensor()(Image.fromarray(array)))
    grey = ToTensor()(Image.fromarray(array[:, :, 0]))
    assert grey.shape == (3, 4, 4) and torch.equal(grey[0], grey[2])
    assert float(ToTensor()(np.full((2, 2, 3), 255, np.uint8)).min()) == 1.0
    with pytest.raises(ValueError, match="H, W, C"):
        ToTensor()(np.zeros((1, 2, 2, 3), np.uint8))


def test_normalize_errors() -> None:
    with pytest.raises(ValueError, match="same length"):
        Normalize((0.5,), (0.5, 0.5))
    with pytest.raises(ValueError, match="positive"):
        Normalize((0.5,), (0.0,))
    with pytest.raises(ValueError, match="channel"):
        Normalize()(torch.zeros(1, 4, 4))


def test_center_crop_box_and_pixels() -> None:
    image, array = _image(80, 100)
    crop = CenterCrop(64)
    assert crop.box(100, 80) == (18, 8, 82, 72)
    np.testing.assert_array_equal(np.asarray(crop(image)), array[8:72, 18:82])
    assert crop(crop(image)) is not None and CenterCrop(80)(Image.fromarray(array[:, :80])).size == (80, 80)


def test_center_crop_pads_small_images_with_black() -> None:
    image, array = _image(10, 10)
    out = np.asarray(CenterCrop(16)(image))
    assert out.shape == (16, 16, 3)
    np.testing.assert_array_equal(out[3:13, 3:13], array)
    assert out[:3].max() == 0 and out[:, :3].max() == 0


def test_resize_shorter_side() -> None:
    image, _ = _image(50, 100)
    assert Resize(64)(image).size == (128, 64)
    assert Resize(64).output_size(30, 90) == (64, 192)
    same, _ = _image(64, 64)
    assert Resize(64)(same) is same  # no work when already the right size
    with pytest.raises(ValueError, match="interpolation"):
        Resize(64, interpolation="cubic-ish")
    with pytest.raises(ValueError, match="positive"):
        Resize(0)


def test_random_resized_crop_is_seeded_and_in_range() -> None:
    def boxes(seed: int) -> list[tuple[int, int, int, int]]:
        rrc = RandomResizedCrop(32, scale=(0.3, 0.9), generator=torch.Generator().manual_seed(seed))
        return [rrc.box(100, 80) for _ in range(50)]

    first = boxes(1)
    assert first == boxes(1) and first != boxes(2)
    for left, top, right, bottom in first:
        w, h = right - left, bottom - top
        assert 0 <= left < right <= 100 and 0 <= top < bottom <= 80
        # Rounding w and h moves area and ratio a little beyond the sampled range.
        assert 0.3 * 0.9 <= w * h / 8000 <= 0.9 * 1.1
        assert 3 / 4 * 0.9 <= w / h <= 4 / 3 * 1.1


def test_random_resized_crop_output_matches_box() -> None:
    image, _ = _image(80, 100)
    rrc = RandomResizedCrop(32, scale=(0.5, 1.0), generator=torch.Generator().manual_seed(0))
    out = rrc(image)
    box = RandomResizedCrop(32, scale=(0.5, 1.0), generator=torch.Generator().manual_seed(0)).box(100, 80)
    assert out.size == (32, 32)
    reference = np.asarray(image.crop(box).resize((32, 32), Image.Resampling.BICUBIC))
    # resize(box=...) also reads pixels just outside the box, so only the border rows may differ.
    np.testing.assert_array_equal(np.asarray(out)[3:-3, 3:-3], reference[3:-3, 3:-3])


def test_random_resized_crop_fallback_clamps_ratio() -> None:
    # A full-area crop with ratio >= 2 never fits a square: the fallback is a central 2:1 crop.
    rrc = RandomResizedCrop(16, scale=(1.0, 1.0), ratio=(2.0, 3.0))
    assert rrc.box(60, 60) == (0, 15, 60, 45)
    tall = RandomResizedCrop(16, scale=(1.0, 1.0), ratio=(0.2, 0.25))
    assert tall.box(60, 60) == (22, 0, 37, 60)
    assert RandomResizedCrop(16, scale=(1.0, 1.0), ratio=(1.0, 1.0)).box(60, 60) == (0, 0, 60, 60)


def test_random_resized_crop_uses_global_rng_without_generator() -> None:
    rrc = RandomResizedCrop(8, scale=(0.2, 0.6))
    torch.manual_seed(5)
    a = [rrc.box(50, 50) for _ in range(5)]
    torch.manual_seed(5)
    assert a == [rrc.box(50, 50) for _ in range(5)]


def test_random_resized_crop_rejects_bad_ranges() -> None:
    with pytest.raises(ValueError, match="scale"):
        RandomResizedCrop(8, scale=(0.0, 1.0))
    with pytest.raises(ValueError, match="ratio"):
        RandomResizedCrop(8, ratio=(2.0, 1.0))
    with pytest.raises(ValueError, match="positive"):
        RandomResizedCrop(0)


def test_horizontal_flip() -> None:
    image, array = _image(6, 9)
    np.testing.assert_array_equal(np.asarray(RandomHorizontalFlip(1.0)(image)), array[:, ::-1])
    assert RandomHorizontalFlip()(image) is image  # off by default
    flips = RandomHorizontalFlip(0.5, generator=torch.Generator().manual_seed(0))
    flipped = sum(flips(image) is not image for _ in range(400))
    assert 150 < flipped < 250
    with pytest.raises(ValueError, match="p must be"):
        RandomHorizontalFlip(1.5)


def test_load_image_converts_to_rgb(tmp_path: Path) -> None:
    grey = Image.fromarray(np.arange(16, dtype=np.uint8).reshape(4, 4), mode="L")
    grey.save(tmp_path / "g.png")
    rgba = Image.new("RGBA", (3, 3), (10, 20, 30, 128))
    rgba.save(tmp_path / "a.png")
    loaded = LoadImage()(tmp_path / "g.png")
    assert loaded.mode == "RGB" and np.asarray(loaded)[1, 2].tolist() == [6, 6, 6]
    assert LoadImage()(str(tmp_path / "a.png")).mode == "RGB"
    assert LoadImage()(grey).mode == "RGB"
    rgb, _ = _image(2, 2)
    assert LoadImage()(rgb) is rgb


def test_compose_applies_in_order() -> None:
    pipeline = Compose([lambda x: x + 1, lambda x: x * 10])
    assert pipeline(1) == 20
    assert "ToTensor()" in repr(Compose([ToTensor()]))


def test_build_image_transform_eval_matches_manual_pipeline() -> None:
    image, _ = _image(48, 96)
    got = build_image_transform(32, train=False)(image)
    resized = image.resize((64, 32), Image.Resampling.BICUBIC)
    cropped = np.asarray(resized)[:, 16:48].astype(np.float64) / 255.0
    expected = (cropped - np.array(CLIP_MEAN)) / np.array(CLIP_STD)
    np.testing.assert_allclose(got.numpy(), expected.transpose(2, 0, 1), atol=1e-5)


def test_build_image_transform_train_stages() -> None:
    plain = build_image_transform(32, train=True)
    assert [type(t).__name__ for t in plain.transforms] == ["Resize", "CenterCrop", "ToTensor", "Normalize"]
    aug = build_image_transform(32, train=True, crop_scale=[0.5, 1.0], hflip=True)
    names = [type(t).__name__ for t in aug.transforms]
    assert names == ["RandomResizedCrop", "RandomHorizontalFlip", "ToTensor", "Normalize"]
    assert aug.transforms[0].scale == (0.5, 1.0) and math.isclose(aug.transforms[1].p, 0.5)
    image, _ = _image(40, 40)
    assert aug(image).shape == (3, 32, 32)
    # Evaluation never augments, whatever the training options say.
    assert (
        type(build_image_transform(32, train=False, crop_scale=(0.5, 1.0), hflip=True).transforms[0])
        is Resize
    )
    with pytest.raises(ValueError, match="crop_scale"):
        build_image_transform(32, train=True, crop_scale=[0.5])
