"""Image pipeline without torchvision: small composable callables over Pillow images, then tensors.

A pipeline is ``Compose([...])`` of stages; stages before ``ToTensor`` take and return a Pillow
image, ``ToTensor`` turns it into a float ``[3, H, W]`` tensor in ``[0, 1]`` and ``Normalize``
standardises it. ``build_image_transform`` gives the standard train / eval pipelines::

    transform = build_image_transform(64, train=True, crop_scale=(0.8, 1.0))
    tensor = transform(LoadImage()("cat.png"))
"""

from __future__ import annotations

import math
import os
import re
import struct
import warnings
from collections.abc import Callable, Sequence
from typing import IO, Any

import numpy as np
import torch
from PIL import Image

from mie.errors import DataError, LimitError, MieError, storage_error

# Mean and std of the CLIP training images (RGB); the usual normalisation for contrastive image towers.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

_INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def _resample(name: str) -> Image.Resampling:
    """Pillow's resampling filter for ``name``, with a clear error for unknown names."""
    if name not in _INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {name!r}; choose one of {', '.join(_INTERPOLATIONS)}")
    return _INTERPOLATIONS[name]


class Compose:
    """Apply transforms one after another: ``Compose([Resize(64), CenterCrop(64), ToTensor()])``."""

    def __init__(self, transforms: Sequence[Callable[[Any], Any]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: Any) -> Any:
        for transform in self.transforms:
            x = transform(x)
        return x

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Compose([{inner}])"


DEFAULT_MAX_IMAGE_PIXELS = 40_000_000  # DataConfig.max_image_pixels
PIXEL_LIMIT_FIX = "shrink the image, or raise data.max_image_pixels if it is genuine"
# What Pillow and its plugins raise for malformed bytes: UnidentifiedImageError and "truncated" are
# OSErrors; some headers give SyntaxError, ValueError, struct.error, IndexError, EOFError, ...
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, TypeError, IndexError, KeyError, EOFError,
                  ZeroDivisionError, OverflowError, struct.error)


def open_image(source: str | os.PathLike[str] | IO[bytes], max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
               name: str | None = None) -> Image.Image:
    """Decode an image as RGB after checking its declared size against ``max_pixels``.

    ``Image.open`` reads only the header, so a 20 KB PNG declaring 13000 x 13000 pixels is refused
    with a :class:`LimitError` before it is decoded (3.9 GB). Any malformed file becomes one
    :class:`DataError` naming it (``name``, else the path); a missing file stays ``FileNotFoundError``.
    """
    where = name or (os.fspath(source) if isinstance(source, (str, os.PathLike)) else "image")
    # Pillow's own bomb check (warning above the limit, error above twice it) then matches ours.
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise LimitError(f"image declares {width}x{height} = {width * height:,} pixels, over the "
                                     f"limit of {max_pixels:,}", where=where, fix=PIXEL_LIMIT_FIX)
                # convert() forces the full decode inside the ``with``, so a truncated file fails here.
                return image.convert("RGB")
    except (MieError, FileNotFoundError):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        found = re.search(r"\((\d+) pixels\)", str(err))
        pixels = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        raise LimitError(f"image declares {pixels}, over the limit of {max_pixels:,}", where=where,
                         fix=PIXEL_LIMIT_FIX) from err
    except OSError as err:
        if err.errno is not None:  # a real read failure (permissions, I/O), not bad image bytes
            raise storage_error(err, where) from err
        raise _corrupt(where, err) from err
    except _DECODE_ERRORS as err:
        raise _corrupt(where, err) from err


def _corrupt(where: str, err: BaseException) -> DataError:
    detail = " ".join(str(err).split())[:120] or type(err).__name__
    return DataError(f"cannot decode the image ({detail})", where=where, fix="replace or remove the file")


class LoadImage:
    """Decode an image file (or pass a Pillow image through) as RGB; grey, palette and RGBA become RGB.

    Files are read by :func:`open_image`: over ``max_pixels`` is a :class:`LimitError`, bad bytes a
    :class:`DataError`; ``name`` (e.g. ``shard.tar:0001.png``) names an in-memory source in errors.
    """

    def __init__(self, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> None:
        self.max_pixels = max_pixels

    def __call__(self, source: str | os.PathLike[str] | IO[bytes] | Image.Image,
                 name: str | None = None) -> Image.Image:
        if isinstance(source, Image.Image):
            return source if source.mode == "RGB" else source.convert("RGB")
        return open_image(source, self.max_pixels, name)

    def __repr__(self) -> str:
        return f"LoadImage(max_pixels={self.max_pixels})"


class Resize:
    """Resize so that the shorter side is ``size``, keeping the aspect ratio (no-op when it already is)."""

    def __init__(self, size: int, interpolation: str = "bicubic") -> None:
        if size <= 0:
            raise ValueError(f"Resize size must be positive, got {size}")
        self.size = size
        self.interpolation = interpolation
        self._resample = _resample(interpolation)

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after resizing an image of that size."""
        if width <= height:
            return self.size, max(1, round(height * self.size / width))
        return max(1, round(width * self.size / height)), self.size

    def __call__(self, image: Image.Image) -> Image.Image:
        target = self.output_size(*image.size)
        if target == image.size:
            return image
        return image.resize(target, self._resample)

    def __repr__(self) -> str:
        return f"Resize({self.size}, interpolation={self.interpolation!r})"


class CenterCrop:
    """Cut the central ``size`` x ``size`` square; an image smaller than that is padded with black."""

    def __init__(self, size: int) -> None:
        if size <= 0:
            raise ValueError(f"CenterCrop size must be positive, got {size}")
        self.size = size

    def box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of the crop for an image of that size."""
        left = int(round((width - self.size) / 2.0))
        top = int(round((height - self.size) / 2.0))
        return left, top, left + self.size, top + self.size

    def __call__(self, image: Image.Image) -> Image.Image:
        if image.size == (self.size, self.size):
            return image
        # Pillow fills the part of a box outside the image with zeros: that is the padding.
        return image.crop(self.box(*image.size))

    def __repr__(self) -> str:
        return f"CenterCrop({self.size})"


class RandomResizedCrop:
    """Crop a random area fraction ``scale`` and aspect ``ratio`` of the image, then resize to ``size``.

    The Inception-style sampler: up to 10 tries to draw a box that fits, else a central crop with
    the ratio clamped into range. Randomness comes from ``generator`` when given (reproducible),
    else from torch's global RNG, which a DataLoader seeds differently in every worker.
    """

    def __init__(
        self,
        size: int,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        interpolation: str = "bicubic",
        generator: torch.Generator | None = None,
    ) -> None:
        if size <= 0:
            raise ValueError(f"RandomResizedCrop size must be positive, got {size}")
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"RandomResizedCrop scale must satisfy 0 < min <= max <= 1, got {tuple(scale)}")
        if not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"RandomResizedCrop ratio must satisfy 0 < min <= max, got {tuple(ratio)}")
        self.size = size
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.interpolation = interpolation
        self._resample = _resample(interpolation)
        self.generator = generator

    def _uniform(self, low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=self.generator))

    def _randint(self, high: int) -> int:
        """Uniform integer in ``[0, high]``."""
        return int(torch.randint(0, high + 1, (), generator=self.generator))

    def box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """Draw a (left, top, right, bottom) crop box for an image of that size."""
        area = width * height
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(10):
            target_area = area * self._uniform(*self.scale)
            aspect = math.exp(self._uniform(log_lo, log_hi))
            w = int(round(math.sqrt(target_area * aspect)))
            h = int(round(math.sqrt(target_area / aspect)))
            if 0 < w <= width and 0 < h <= height:
                left, top = self._randint(width - w), self._randint(height - h)
                return left, top, left + w, top + h
        # Fallback: the largest central crop whose aspect ratio is within range.
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            w, h = width, int(round(width / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            w, h = int(round(height * self.ratio[1])), height
        else:
            w, h = width, height
        left, top = (width - w) // 2, (height - h) // 2
        return left, top, left + w, top + h

    def __call__(self, image: Image.Image) -> Image.Image:
        return image.resize((self.size, self.size), self._resample, box=self.box(*image.size))

    def __repr__(self) -> str:
        return f"RandomResizedCrop({self.size}, scale={self.scale}, ratio={self.ratio})"


class RandomHorizontalFlip:
    """Mirror the image left-right with probability ``p`` (default 0: off).

    Off by default on purpose: captions that say "left of" / "right of" (as the shapes dataset's
    do) become false for a flipped image, so flipping teaches the model wrong relations.
    """

    def __init__(self, p: float = 0.0, generator: torch.Generator | None = None) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip p must be in [0, 1], got {p}")
        self.p = p
        self.generator = generator

    def __call__(self, image: Image.Image) -> Image.Image:
        if self.p > 0 and float(torch.rand((), generator=self.generator)) < self.p:
            return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return image

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class ToTensor:
    """uint8 ``[H, W, 3]`` (Pillow image or numpy array) -> float32 ``[3, H, W]`` tensor in ``[0, 1]``."""

    def __call__(self, image: Image.Image | np.ndarray) -> torch.Tensor:
        array = np.asarray(image, dtype=np.uint8)
        if array.ndim == 2:  # greyscale: repeat into three channels
            array = np.repeat(array[:, :, None], 3, axis=2)
        if array.ndim != 3:
            raise ValueError(f"ToTensor expects an [H, W, C] image, got shape {array.shape}")
        return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))).float().div_(255.0)

    def __repr__(self) -> str:
        return "ToTensor()"


class Normalize:
    """Standardise each channel: ``(x - mean[c]) / std[c]``; CLIP's statistics by default."""

    def __init__(self, mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD) -> None:
        if len(mean) != len(std):
            raise ValueError(f"Normalize mean and std need the same length, got {len(mean)} and {len(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"Normalize std must be positive, got {tuple(std)}")
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        if tensor.shape[-3] != self.mean.shape[0]:
            raise ValueError(
                f"Normalize has {self.mean.shape[0]} channel statistics but the tensor has shape {tuple(tensor.shape)}"
            )
        return (tensor - self.mean) / self.std

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()})"


def build_image_transform(
    image_size: int,
    train: bool,
    crop_scale: Sequence[float] = (1.0, 1.0),
    hflip: bool = False,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
) -> Compose:
    """The standard pipeline from a Pillow image to a normalised ``[3, image_size, image_size]`` tensor.

    Evaluation (and training with ``crop_scale == (1, 1)``): shorter side to ``image_size`` then a
    centre crop. Training with a smaller ``crop_scale``: ``RandomResizedCrop``; ``hflip`` adds a
    50% horizontal flip (see ``RandomHorizontalFlip`` for why it is off by default).
    """
    if len(crop_scale) != 2:
        raise ValueError(f"crop_scale must be [min, max], got {list(crop_scale)}")
    lo, hi = float(crop_scale[0]), float(crop_scale[1])
    stages: list[Callable[[Any], Any]]
    if train and (lo, hi) != (1.0, 1.0):
        stages = [RandomResizedCrop(image_size, scale=(lo, hi))]
    else:
        stages = [Resize(image_size), CenterCrop(image_size)]
    if train and hflip:
        stages.append(RandomHorizontalFlip(0.5))
    stages += [ToTensor(), Normalize(mean, std)]
    return Compose(stages)
