"""Hostile images (issue 11): a tiny PNG that declares a huge size is refused before it is decoded, and
every malformed image is one DataError naming the file, never a Pillow exception."""

from __future__ import annotations

import json
import struct
import tracemalloc
import zlib
from pathlib import Path

import pytest
from PIL import Image

from mie.data.build import build_dataset
from mie.data.config import DataConfig
from mie.data.image_text import ImageTextDataset, ImageTextRecord
from mie.data.inspection import inspect_dataset
from mie.data.transforms import LoadImage, open_image
from mie.errors import DataError, LimitError


@pytest.fixture(autouse=True)
def _restore_pillow_limit(monkeypatch):
    """open_image lowers Pillow's process-wide limit; put it back so other tests see the default."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int = 13000, height: int = 13000) -> bytes:
    """A PNG of a few hundred bytes whose IHDR declares ``width`` x ``height`` RGB pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 4096, 9)  # far too little data: only the header is meant to be read
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def test_declared_size_over_the_limit_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb_png())
    assert path.stat().st_size < 20_000
    tracemalloc.start()
    try:
        with pytest.raises(LimitError) as info:
            LoadImage(max_pixels=40_000_000)(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(info.value)
    assert "bomb.png" in message and "data.max_image_pixels" in message and "169,000,000" in message
    assert "\n" not in message
    assert peak < 50_000_000  # nothing near the 507 MB of the decoded image was allocated


def test_own_check_names_width_and_height_and_lowers_pillows_limit(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    Image.new("RGB", (100, 60)).save(path)
    with pytest.raises(LimitError, match=r"wide\.png: image declares .*6,000.*over the limit of 5,000"):
        open_image(path, max_pixels=5_000)
    assert Image.MAX_IMAGE_PIXELS == 5_000
    assert open_image(path, max_pixels=6_000).size == (100, 60)  # exactly at the limit is fine


@pytest.mark.parametrize("payload", [b"this is not an image", bomb_png(10, 10)[:40], b"\x89PNG\r\n\x1a\n" + b"\0" * 30,
                                     b"GIF89a" + b"\xff" * 20, b"BM" + b"\0" * 60])
def test_malformed_image_is_one_data_error_naming_the_file(tmp_path: Path, payload: bytes) -> None:
    path = tmp_path / "broken.png"
    path.write_bytes(payload)
    with pytest.raises(DataError, match=r"broken\.png: cannot decode the image .* — replace or remove") as info:
        LoadImage()(path)
    assert "\n" not in str(info.value)


def test_truncated_pixel_data_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "short.png"
    path.write_bytes(bomb_png(64, 64))  # header fine, pixel data missing
    with pytest.raises(DataError, match="short.png"):
        LoadImage()(path)


def test_dataset_skips_a_bomb_as_too_large(tmp_path: Path) -> None:
    (tmp_path / "bomb.png").write_bytes(bomb_png())
    dataset = ImageTextDataset([ImageTextRecord(tmp_path / "bomb.png", ["a caption"], "b")])
    assert dataset[0] is None
    assert dataset.skipped == {"too large": 1}


def test_builders_honour_data_max_image_pixels(tmp_path: Path) -> None:
    Image.new("RGB", (40, 40)).save(tmp_path / "a.png")
    line = {"image": "a.png", "captions": ["a square"], "split": "train"}
    (tmp_path / "captions.jsonl").write_text(json.dumps(line) + "\n")
    config = DataConfig(format="jsonl", path=str(tmp_path), max_image_pixels=1_000)
    dataset = build_dataset(config, "train")
    assert dataset[0] is None and dataset.skipped == {"too large": 1}
    assert build_dataset(DataConfig(format="jsonl", path=str(tmp_path)), "train")[0] is not None


def test_inspect_reports_a_bomb_as_broken(tmp_path: Path) -> None:
    (tmp_path / "bomb.png").write_bytes(bomb_png())
    line = {"image": "bomb.png", "captions": ["a huge picture"], "split": "train"}
    (tmp_path / "captions.jsonl").write_text(json.dumps(line) + "\n")
    _, reports, _ = inspect_dataset(tmp_path, preview_size=0)
    assert reports[0].broken == [(str(tmp_path / "bomb.png"), "too large")]
