"""Opt-in augmentation: image colour jitter, grayscale, blur and cutout; caption word dropout and swap.

Image stages take and return a Pillow image, so they slot into a ``transforms.Compose`` before
``ToTensor``. Every stage draws from ``generator`` when given (reproducible) or else from torch's
global RNG, which a DataLoader seeds differently per worker. ``build_augmented_transform`` gives a
whole training pipeline (random-resized crop first)::

    transform = build_augmented_transform(64, seed=0, color_jitter=0.4, grayscale_p=0.2, cutout_p=0.5)
    texts = AugmentedCaptions(dataset, Compose([WordDropout(0.1), WordSwap(0.1)]))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from PIL import Image, ImageEnhance, ImageFilter
from torch.utils.data import Dataset

from mie.data.image_text import ImageTextSample
from mie.data.transforms import CLIP_MEAN, CLIP_STD, Compose, Normalize, RandomResizedCrop, ToTensor


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _happens(p: float, generator: torch.Generator | None) -> bool:
    return p > 0 and float(torch.rand((), generator=generator)) < p


def _check_probability(name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} probability must be in [0, 1], got {p}")


class ColorJitter:
    """Scale brightness, contrast and saturation by random factors in ``[1 - s, 1 + s]``, in random order."""

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4,
                 generator: torch.Generator | None = None) -> None:
        for name, value in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"ColorJitter {name} must be in [0, 1), got {value}")
        self.strengths = {"brightness": brightness, "contrast": contrast, "saturation": saturation}
        self.generator = generator

    def __call__(self, image: Image.Image) -> Image.Image:
        enhancers = {"brightness": ImageEnhance.Brightness, "contrast": ImageEnhance.Contrast,
                     "saturation": ImageEnhance.Color}
        names = list(self.strengths)
        for i in torch.randperm(len(names), generator=self.generator).tolist():
            strength = self.strengths[names[i]]
            if strength > 0:
                factor = _uniform(1 - strength, 1 + strength, self.generator)
                image = enhancers[names[i]](image).enhance(factor)
        return image

    def __repr__(self) -> str:
        return f"ColorJitter({', '.join(f'{k}={v}' for k, v in self.strengths.items())})"


class RandomGrayscale:
    """With probability ``p``, replace the image by its luminance (kept as 3-channel RGB)."""

    def __init__(self, p: float = 0.2, generator: torch.Generator | None = None) -> None:
        _check_probability("RandomGrayscale", p)
        self.p = p
        self.generator = generator

    def __call__(self, image: Image.Image) -> Image.Image:
        return image.convert("L").convert("RGB") if _happens(self.p, self.generator) else image

    def __repr__(self) -> str:
        return f"RandomGrayscale(p={self.p})"


class RandomGaussianBlur:
    """With probability ``p``, blur with a Gaussian of radius drawn from ``radius`` (pixels)."""

    def __init__(self, p: float = 0.5, radius: tuple[float, float] = (0.1, 2.0),
                 generator: torch.Generator | None = None) -> None:
        _check_probability("RandomGaussianBlur", p)
        if not 0 <= radius[0] <= radius[1]:
            raise ValueError(f"RandomGaussianBlur radius must satisfy 0 <= min <= max, got {tuple(radius)}")
        self.p = p
        self.radius = (float(radius[0]), float(radius[1]))
        self.generator = generator

    def __call__(self, image: Image.Image) -> Image.Image:
        if not _happens(self.p, self.generator):
            return image
        return image.filter(ImageFilter.GaussianBlur(_uniform(*self.radius, self.generator)))

    def __repr__(self) -> str:
        return f"RandomGaussianBlur(p={self.p}, radius={self.radius})"


class Cutout:
    """With probability ``p``, paint a random square of side ``size`` x the shorter side with ``fill``.

    Cutout (DeVries & Taylor, 2017): the square's centre is uniform over the image and it may stick
    out of the border, so edges are occluded less often than the middle, as in the paper.
    """

    def __init__(self, p: float = 0.5, size: float = 0.25, fill: tuple[int, int, int] = (124, 116, 104),
                 generator: torch.Generator | None = None) -> None:
        _check_probability("Cutout", p)
        if not 0 < size <= 1:
            raise ValueError(f"Cutout size must be in (0, 1] (a fraction of the shorter side), got {size}")
        self.p = p
        self.size = size
        self.fill = tuple(fill)  # default: the CLIP mean colour, i.e. zero after normalisation
        self.generator = generator

    def box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """Draw the (left, top, right, bottom) box, clipped to the image."""
        side = max(1, round(self.size * min(width, height)))
        cx = int(torch.randint(0, width, (), generator=self.generator))
        cy = int(torch.randint(0, height, (), generator=self.generator))
        left, top = max(0, cx - side // 2), max(0, cy - side // 2)
        return left, top, min(width, cx - side // 2 + side), min(height, cy - side // 2 + side)

    def __call__(self, image: Image.Image) -> Image.Image:
        if not _happens(self.p, self.generator):
            return image
        out = image.copy()
        out.paste(self.fill, self.box(*image.size))
        return out

    def __repr__(self) -> str:
        return f"Cutout(p={self.p}, size={self.size})"


class WordDropout:
    """Drop each word of a caption with probability ``p`` (never all of them)."""

    def __init__(self, p: float = 0.1, generator: torch.Generator | None = None) -> None:
        _check_probability("WordDropout", p)
        self.p = p
        self.generator = generator

    def __call__(self, text: str) -> str:
        words = text.split()
        if len(words) < 2 or self.p == 0:
            return text
        keep = (torch.rand(len(words), generator=self.generator) >= self.p).tolist()
        kept = [w for w, k in zip(words, keep) if k]
        if not kept:  # an empty caption would match nothing: keep one word at random
            kept = [words[int(torch.randint(0, len(words), (), generator=self.generator))]]
        return " ".join(kept)

    def __repr__(self) -> str:
        return f"WordDropout(p={self.p})"


class WordSwap:
    """Swap each pair of neighbouring words with probability ``p`` (left to right, non-overlapping)."""

    def __init__(self, p: float = 0.1, generator: torch.Generator | None = None) -> None:
        _check_probability("WordSwap", p)
        self.p = p
        self.generator = generator

    def __call__(self, text: str) -> str:
        words = text.split()
        i = 0
        while i < len(words) - 1:
            if _happens(self.p, self.generator):
                words[i], words[i + 1] = words[i + 1], words[i]
                i += 2  # a swapped word is not swapped again, so words move at most one place
            else:
                i += 1
        return " ".join(words)

    def __repr__(self) -> str:
        return f"WordSwap(p={self.p})"


class AugmentedCaptions(Dataset):
    """An image–text dataset whose samples' captions pass through ``text_transform`` on every read."""

    def __init__(self, dataset: Dataset, text_transform: Callable[[str], str]) -> None:
        self.dataset = dataset
        self.text_transform = text_transform
        self.records = getattr(dataset, "records", None)

    @property
    def skipped(self) -> Any:
        """What the inner dataset skipped."""
        return getattr(self.dataset, "skipped", {})

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> ImageTextSample | None:
        sample = self.dataset[index]
        if sample is None:
            return None
        captions = [self.text_transform(c) for c in sample.captions]
        return ImageTextSample(sample.image, captions, sample.image_id, sample.attributes)


def build_augmented_transform(
    image_size: int,
    seed: int | None = None,
    crop_scale: Sequence[float] = (0.5, 1.0),
    color_jitter: float = 0.4,
    grayscale_p: float = 0.2,
    blur_p: float = 0.0,
    cutout_p: float = 0.0,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
) -> Compose:
    """A training pipeline: random-resized crop, colour jitter, grayscale, blur, cutout, then tensor.

    Stages with strength or probability 0 are left out. ``seed`` makes the whole pipeline share one
    seeded generator (reproducible in one process); ``None`` uses the per-worker global RNG.
    """
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    stages: list[Callable[[Any], Any]] = [
        RandomResizedCrop(image_size, scale=(float(crop_scale[0]), float(crop_scale[1])), generator=generator)]
    if color_jitter > 0:
        stages.append(ColorJitter(color_jitter, color_jitter, color_jitter, generator=generator))
    if grayscale_p > 0:
        stages.append(RandomGrayscale(grayscale_p, generator=generator))
    if blur_p > 0:
        stages.append(RandomGaussianBlur(blur_p, generator=generator))
    if cutout_p > 0:
        stages.append(Cutout(cutout_p, generator=generator))
    return Compose([*stages, ToTensor(), Normalize(mean, std)])
