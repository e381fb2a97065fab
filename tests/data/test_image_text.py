"""Manifests, the image–text dataset, skipping bad images, collation and evaluation iteration."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Subset

from mie.data.image_text import (
    ImageTextDataset,
    ImageTextSample,
    all_captions,
    caption_image_index,
    collate_image_text,
    dataset_records,
    images_and_all_captions,
)
from mie.data.jsonl import JsonlImageText, read_manifest
from mie.data.transforms import ToTensor
from mie.tokenization.base import BaseTokenizer


class CharTokenizer(BaseTokenizer):
    """Letters a–z plus space as ids 4..30: enough to check what the collate function encodes."""

    vocab_size = 31
    pad_id, bos_id, eos_id = 0, 2, 3

    def encode(self, text: str) -> list[int]:
        return [4 + (ord(ch) - 97 if ch != " " else 26) for ch in text if ch == " " or "a" <= ch <= "z"]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(" " if i == 30 else chr(i - 4 + 97) for i in ids if i >= 4)


def _write_images(root: Path, n: int) -> list[np.ndarray]:
    arrays = []
    for i in range(n):
        array = np.random.default_rng(i).integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
        (root / "img").mkdir(exist_ok=True)
        Image.fromarray(array).save(root / "img" / f"{i}.png")
        arrays.append(array)
    return arrays


def _write_manifest(root: Path, rows: list[dict]) -> Path:
    path = root / "captions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def small(tmp_path: Path) -> tuple[Path, list[np.ndarray]]:
    arrays = _write_images(tmp_path, 4)
    rows = [
        {"image": f"img/{i}.png", "captions": [f"cap {i} a", f"cap {i} b"], "split": "train" if i < 3 else "val",
         "id": f"im{i}", "attributes": {"k": i}}
        for i in range(4)
    ]  # fmt: skip
    return _write_manifest(tmp_path, rows), arrays


def test_manifest_round_trip(small: tuple[Path, list[np.ndarray]]) -> None:
    manifest, arrays = small
    records = read_manifest(manifest)
    assert [r.image_id for r in records] == ["im0", "im1", "im2", "im3"]
    assert records[1].captions == ["cap 1 a", "cap 1 b"] and records[1].attributes == {"k": 1}
    assert records[3].split == "val" and records[0].path == manifest.parent / "img" / "0.png"
    dataset = JsonlImageText(manifest, split="train")
    assert len(dataset) == 3
    sample = dataset[2]
    assert isinstance(sample, ImageTextSample) and sample.image_id == "im2"
    expected = torch.from_numpy(arrays[2]).permute(2, 0, 1).float() / 255
    assert torch.allclose(sample.image, expected)
    assert JsonlImageText(manifest, split="train", max_samples=2).records == records[:2]


def test_root_option_and_absolute_paths(tmp_path: Path) -> None:
    _write_images(tmp_path, 2)
    manifest_dir = tmp_path / "meta"
    manifest_dir.mkdir()
    rows = [
        {"image": "img/0.png", "captions": ["x"]},
        {"image": str(tmp_path / "img" / "1.png"), "captions": ["y"]},
    ]
    manifest = _write_manifest(manifest_dir, rows)
    dataset = JsonlImageText(manifest, root=tmp_path)
    assert dataset[0] is not None and dataset[1] is not None
    assert dataset.records[0].image_id == "img/0.png"  # no "id": the relative path names the image


def test_manifest_errors_name_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="captions.jsonl not found; expected a JSON-lines file"):
        read_manifest(tmp_path / "captions.jsonl")
    path = tmp_path / "m.jsonl"
    path.write_text('{"image": "a.png", "captions": ["x"]}\n{"image": "b.png", "captions": ["y"\n')
    with pytest.raises(ValueError, match=r"m\.jsonl:2: invalid JSON"):
        read_manifest(path)
    path.write_text('\n{"image": "a.png"}\n')
    with pytest.raises(ValueError, match=r"m\.jsonl:2: missing key\(s\) captions"):
        read_manifest(path)
    path.write_text('{"image": "a.png", "captions": []}\n')
    with pytest.raises(ValueError, match="non-empty list of strings"):
        read_manifest(path)
    path.write_text('{"image": "", "captions": ["x"]}\n')
    with pytest.raises(ValueError, match="'image' must be"):
        read_manifest(path)
    path.write_text('["a.png"]\n')
    with pytest.raises(ValueError, match="expected a JSON object"):
        read_manifest(path)
    path.write_text('{"image": "a.png", "captions": ["x"]}\n')
    with pytest.raises(ValueError, match="no 'split' key"):
        read_manifest(path, split="train")


def test_unknown_split_lists_present_splits(small: tuple[Path, list[np.ndarray]]) -> None:
    manifest, _ = small
    with pytest.raises(ValueError, match=r"no records in split 'test'; splits present: \['train', 'val'\]"):
        read_manifest(manifest, split="test")


def test_missing_and_corrupt_images_are_skipped_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _write_images(tmp_path, 1)
    good = (tmp_path / "img" / "0.png").read_bytes()
    (tmp_path / "img" / "truncated.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "img" / "text.png").write_text("this is not an image")
    rows = [
        {"image": f"img/{name}.png", "captions": [name]} for name in ("0", "truncated", "text", "missing")
    ]
    dataset = JsonlImageText(_write_manifest(tmp_path, rows))
    with caplog.at_level(logging.WARNING, logger="mie.data.image_text"):
        for _ in range(2):  # a second epoch neither warns again nor counts again
            results = [dataset[i] for i in range(4)]
            assert results[0] is not None and results[1:] == [None, None, None]
    assert dict(dataset.skipped) == {"corrupt": 2, "missing": 1}
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 3
    assert any("truncated.png" in w for w in warnings) and any("missing image" in w for w in warnings)


def test_cache_decodes_each_image_once(small: tuple[Path, list[np.ndarray]]) -> None:
    manifest, _ = small
    cached = JsonlImageText(manifest, split="train", cache_images=True)
    uncached = JsonlImageText(manifest, split="train")
    first = [cached[i].image for i in range(3)]
    for record in cached.records:
        record.path.unlink()  # only the cache can answer now
    assert all(torch.equal(cached[i].image, first[i]) for i in range(3))
    assert uncached[0] is None and uncached.skipped["missing"] == 1
    assert not cached.skipped


def test_transform_is_applied(small: tuple[Path, list[np.ndarray]]) -> None:
    manifest, arrays = small
    dataset = JsonlImageText(manifest, split="train", transform=lambda image: ToTensor()(image) * 2)
    assert torch.allclose(dataset[0].image, torch.from_numpy(arrays[0]).permute(2, 0, 1).float() / 255 * 2)


def _sample(image_id: str, captions: list[str], value: float = 0.0) -> ImageTextSample:
    return ImageTextSample(torch.full((3, 2, 2), value), captions, image_id)


def test_collate_match_ids_skips_and_fixed_caption() -> None:
    batch = [_sample("a", ["ab", "ba"], 1.0), None, _sample("b", ["b"], 2.0), _sample("a", ["ab", "ba"], 1.0)]
    out = collate_image_text(batch, CharTokenizer(), context_length=5, caption_index=1)
    assert out["images"].shape == (3, 3, 2, 2) and out["images"][1].eq(2.0).all()
    assert out["match_ids"].tolist() == [0, 1, 0]
    assert out["image_ids"] == ["a", "b", "a"] and out["num_skipped"] == 1
    assert out["captions"] == ["ba", "b", "ba"]  # index 1 wraps to 0 for a one-caption image
    assert out["input_ids"].tolist() == [[2, 5, 4, 3, 0], [2, 5, 3, 0, 0], [2, 5, 4, 3, 0]]


def test_collate_random_caption_is_seeded() -> None:
    batch = [_sample(str(i), [f"c{i}x", f"c{i}y", f"c{i}z"]) for i in range(20)]

    def picks(seed: int) -> list[str]:
        gen = torch.Generator().manual_seed(seed)
        return collate_image_text(batch, CharTokenizer(), 8, generator=gen)["captions"]

    assert picks(0) == picks(0) and picks(0) != picks(1)
    assert all(c in s.captions for c, s in zip(picks(0), batch))
    assert len({c[-1] for c in picks(0)}) == 3  # all three positions get picked


def test_collate_all_skipped_and_bad_index() -> None:
    assert collate_image_text([None, None], CharTokenizer(), 4) is None
    with pytest.raises(ValueError, match="caption_index"):
        collate_image_text([_sample("a", ["x"])], CharTokenizer(), 4, caption_index="first")


def test_dataloader_epoch_with_a_bad_file(small: tuple[Path, list[np.ndarray]]) -> None:
    manifest, _ = small
    (manifest.parent / "img" / "1.png").write_text("broken")
    dataset = JsonlImageText(manifest)
    collate = functools.partial(collate_image_text, tokenizer=CharTokenizer(), context_length=8)
    batches = list(DataLoader(dataset, batch_size=2, collate_fn=collate))
    assert [b["images"].shape[0] for b in batches] == [1, 2]
    assert sum(b["num_skipped"] for b in batches) == 1


def test_eval_iteration_and_caption_index(tmp_path: Path) -> None:
    _write_images(tmp_path, 5)
    (tmp_path / "img" / "2.png").unlink()
    rows = [{"image": f"img/{i}.png", "captions": [f"c{i}"] * (i % 2 + 1), "id": f"i{i}"} for i in range(5)]
    dataset = JsonlImageText(_write_manifest(tmp_path, rows))
    batches = list(images_and_all_captions(dataset, batch_size=3))
    assert [b.images.shape[0] for b in batches] == [3, 1]
    image_ids = [i for b in batches for i in b.image_ids]
    assert image_ids == ["i0", "i1", "i3", "i4"]
    per_image = [c for b in batches for c in b.captions]
    flat, owner = caption_image_index(per_image)
    assert flat == ["c0", "c1", "c1", "c3", "c3", "c4"]
    for caption, row in zip(flat, owner.tolist()):  # naive check: the owner's captions hold the caption
        assert caption in per_image[row]
    assert owner.tolist() == [0, 1, 1, 2, 2, 3]
    with pytest.raises(ValueError, match="batch_size"):
        next(images_and_all_captions(dataset, batch_size=0))


def test_all_captions_without_decoding(small: tuple[Path, list[np.ndarray]]) -> None:
    manifest, _ = small
    dataset = JsonlImageText(manifest, split="train")
    for path in (manifest.parent / "img").iterdir():
        path.unlink()  # would make any decode fail
    assert all_captions(dataset) == ["cap 0 a", "cap 0 b", "cap 1 a", "cap 1 b", "cap 2 a", "cap 2 b"]
    assert all_captions(Subset(dataset, [2])) == ["cap 2 a", "cap 2 b"]
    assert [r.image_id for r in dataset_records(Subset(Subset(dataset, [0, 2]), [1]))] == ["im2"]
    assert not dataset.skipped
    with pytest.raises(TypeError, match="has no 'records'"):
        all_captions(torch.utils.data.TensorDataset(torch.zeros(2)))


def test_records_dataset_defaults_to_tensor(small: tuple[Path, list[np.ndarray]]) -> None:
    manifest, _ = small
    dataset = ImageTextDataset(read_manifest(manifest)[:1])
    assert len(dataset) == 1 and dataset[0].image.dtype == torch.float32
