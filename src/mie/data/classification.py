"""Image classification from an ImageFolder layout, for the ViT trainer::

    root/cat/0001.png
    root/cat/0002.jpg
    root/dog/0001.png

Class ``k`` is the ``k``-th folder name in sorted order (as torchvision's ImageFolder does). A
missing or corrupt image is skipped and counted in ``skipped``; ``collate_classification`` drops it.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from mie.data.transforms import DEFAULT_MAX_IMAGE_PIXELS, LoadImage, ToTensor
from mie.errors import DataError, LimitError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")
IMAGEFOLDER_LAYOUT = "a folder with one sub-folder per class holding its images: root/<class_name>/*.png"


class ImageFolderDataset(Dataset):
    """``(image tensor, class index)`` pairs from ``root/<class>/<image>``; ``None`` for unreadable images."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        transform: Callable[[Image.Image], torch.Tensor] | None = None,
        suffixes: Sequence[str] = IMAGE_SUFFIXES,
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"ImageFolder root {self.root} not found; expected {IMAGEFOLDER_LAYOUT}")
        self.classes = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not self.classes:
            raise ValueError(f"{self.root} has no class sub-folders; expected {IMAGEFOLDER_LAYOUT}")
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        allowed = {s.lower() for s in suffixes}
        self.samples: list[tuple[Path, int]] = [
            (path, self.class_to_idx[name])
            for name in self.classes
            for path in sorted((self.root / name).rglob("*"))
            if path.is_file() and path.suffix.lower() in allowed
        ]
        if not self.samples:
            raise ValueError(f"no images ({', '.join(sorted(allowed))}) under {self.root}; expected {IMAGEFOLDER_LAYOUT}")
        self.transform = transform if transform is not None else ToTensor()
        self.skipped: Counter[str] = Counter()
        self._bad: set[int] = set()
        self._load = LoadImage(max_image_pixels)

    @property
    def targets(self) -> list[int]:
        """The class index of every sample, in order (e.g. for a class-balanced sampler)."""
        return [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | None:
        if index in self._bad:
            return None
        path, label = self.samples[index]
        try:
            image = self._load(path)
        except FileNotFoundError:
            return self._skip(index, "missing")
        except LimitError as err:  # refused before decoding (data.max_image_pixels)
            return self._skip(index, "too large", err)
        except (DataError, OSError) as err:  # LoadImage turns every malformed file into a DataError
            return self._skip(index, "corrupt", err)
        return self.transform(image), label

    def _skip(self, index: int, reason: str, err: Exception | None = None) -> None:
        self._bad.add(index)
        self.skipped[reason] += 1
        logger.warning("skipping %s image %s%s", reason, self.samples[index][0], f": {err}" if err else "")
        return None


def collate_classification(batch: Sequence[tuple[torch.Tensor, int] | None]) -> dict[str, torch.Tensor] | None:
    """Stack ``(image, label)`` pairs into ``{"images", "labels"}``, dropping ``None``; None if all dropped."""
    kept = [item for item in batch if item is not None]
    if not kept:
        return None
    return {"images": torch.stack([image for image, _ in kept]),
            "labels": torch.tensor([label for _, label in kept], dtype=torch.long)}
