"""Helpers that write small on-disk datasets: good PNG/JPEG images, corrupt and truncated ones."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def image_array(seed: int, size: tuple[int, int] = (10, 12)) -> np.ndarray:
    """A seeded random RGB image (height, width, 3) as uint8."""
    return np.random.default_rng(seed).integers(0, 256, size=(*size, 3), dtype=np.uint8)


def png_bytes(seed: int, fmt: str = "PNG") -> bytes:
    """The encoded bytes of ``image_array(seed)``."""
    buffer = io.BytesIO()
    Image.fromarray(image_array(seed)).save(buffer, format=fmt)
    return buffer.getvalue()


def write_image(path: Path, seed: int) -> Path:
    """A valid PNG (or JPEG for a .jpg name) at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(seed, "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"))
    return path


def write_corrupt(path: Path) -> Path:
    """A file with an image name whose bytes are not an image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not an image at all")
    return path


def write_truncated(path: Path, seed: int) -> Path:
    """A PNG cut off in the middle of its data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = png_bytes(seed)
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture
def images():
    """The helpers above, as one fixture object (tests/data has no package to import from)."""

    class Helpers:
        array = staticmethod(image_array)
        png = staticmethod(png_bytes)
        write = staticmethod(write_image)
        corrupt = staticmethod(write_corrupt)
        truncated = staticmethod(write_truncated)

    return Helpers


def write_karpathy_flickr(root: Path, counts: dict[str, int], captions_per_image: int = 5) -> Path:
    """A Flickr30k folder: ``dataset_flickr30k.json`` + ``flickr30k-images/`` with good PNG images.

    Image ``k`` of the whole set is ``{k}.png``; its captions are ``"photo {k} caption {j}"``.
    """
    import json

    entries, k = [], 0
    for split, count in counts.items():
        for _ in range(count):
            write_image(root / "flickr30k-images" / f"{k}.png", k)
            sentences = [{"raw": f"photo {k} caption {j}", "tokens": []} for j in range(captions_per_image)]
            entries.append({"filename": f"{k}.png", "imgid": k, "split": split, "sentences": sentences})
            k += 1
    (root / "dataset_flickr30k.json").write_text(json.dumps({"images": entries, "dataset": "flickr30k"}))
    return root


@pytest.fixture
def karpathy_flickr():
    """``write_karpathy_flickr`` as a fixture."""
    return write_karpathy_flickr
