"""Flickr30k / Flickr8k (Karpathy JSON, token file, results.csv) and COCO captions read from disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mie.data import build_dataset, skip_report
from mie.data.coco import CocoCaptions
from mie.data.config import DataConfig
from mie.data.flickr import HASH_PERCENTS, FlickrDataset, hash_split
from mie.data.image_text import ImageTextDataset
from mie.data.transforms import ToTensor


def _karpathy_with_bad_files(root: Path, images) -> Path:
    """5 train images: #1 missing, #2 corrupt, #3 truncated, #4 only blank captions; plus a restval, val, test."""
    entries = []
    for k, split in enumerate(["train"] * 5 + ["restval", "val", "test"]):
        if k == 2:
            images.corrupt(root / "flickr30k-images" / f"{k}.jpg")
        elif k == 3:
            images.truncated(root / "flickr30k-images" / f"{k}.jpg", k)
        elif k != 1:
            images.write(root / "flickr30k-images" / f"{k}.jpg", k)
        raws = ["  ", ""] if k == 4 else [f"image {k} one", "", f"image {k} two"]
        entries.append({"filename": f"{k}.jpg", "split": split, "sentences": [{"raw": r} for r in raws]})
    (root / "dataset_flickr30k.json").write_text(json.dumps({"images": entries}))
    return root


def test_karpathy_splits_captions_and_skips(tmp_path: Path, images) -> None:
    root = _karpathy_with_bad_files(tmp_path, images)
    train = FlickrDataset(root, "train")
    assert isinstance(train, ImageTextDataset)
    # restval joins train; image 4 (blank captions only) is dropped at open.
    assert [r.image_id for r in train.records] == ["0.jpg", "1.jpg", "2.jpg", "3.jpg", "5.jpg"]
    assert train.records[0].captions == ["image 0 one", "image 0 two"]
    assert train.skipped == {"empty caption": 5 + 2, "no caption": 1}
    samples = [train[i] for i in range(len(train))]
    assert [s is None for s in samples] == [False, True, True, True, False]
    assert train.skipped["missing"] == 1 and train.skipped["corrupt"] == 2
    # JPEG is lossy: compare with the decoded file rather than the source array.
    expected = ToTensor()(np.asarray(Image.open(root / "flickr30k-images" / "0.jpg").convert("RGB")))
    assert samples[0].image.shape == (3, 10, 12) and np.allclose(samples[0].image, expected)
    assert skip_report(train) == ("FlickrDataset: skipped 11 (2 corrupt, 7 empty caption, 1 missing, 1 no caption)")
    assert [r.image_id for r in FlickrDataset(root, "val").records] == ["6.jpg"]
    assert len(FlickrDataset(root, "all")) == 7


def test_eager_load_finds_broken_files_at_open(tmp_path: Path, images) -> None:
    root = _karpathy_with_bad_files(tmp_path, images)
    eager = FlickrDataset(root, "train", lazy_load=False)
    assert eager.skipped["missing"] == 1 and eager.skipped["corrupt"] == 2  # before any __getitem__
    assert eager.cache_images and len(eager._cache) == 2


def test_token_file_and_hash_split(tmp_path: Path, images) -> None:
    names = [f"{1000 + i}.jpg" for i in range(200)]
    lines = [f"{n}#{j}\t{n} says {j}" for n in names for j in range(5)]
    (tmp_path / "results_20130124.token").write_text("\n".join(lines) + "\n\n")
    images.write(tmp_path / "flickr30k-images" / names[0], 0)
    parts = {s: FlickrDataset(tmp_path, s) for s in ("train", "val", "test")}
    assert sum(len(p) for p in parts.values()) == 200
    for split, data in parts.items():
        assert all(hash_split(r.image_id, HASH_PERCENTS) == split for r in data.records)
        assert all(r.captions == [f"{r.image_id} says {j}" for j in range(5)] for r in data.records)
    assert 160 < len(parts["train"]) < 195 and len(parts["val"]) > 0 and len(parts["test"]) > 0


def test_flickr8k_split_lists(tmp_path: Path, images) -> None:
    (tmp_path / "Flickr8k.token.txt").write_text("a.jpg#0\tA dog\na.jpg#1\tA brown dog\nb.jpg#0\tA cat\n")
    (tmp_path / "Flickr_8k.trainImages.txt").write_text("a.jpg\n")
    (tmp_path / "Flickr_8k.devImages.txt").write_text("b.jpg\n")
    (tmp_path / "Flickr_8k.testImages.txt").write_text("\n")
    images.write(tmp_path / "Flicker8k_Dataset" / "a.jpg", 0)
    train = FlickrDataset(tmp_path, "train")
    assert [(r.image_id, r.captions) for r in train.records] == [("a.jpg", ["A dog", "A brown dog"])]
    assert [r.image_id for r in FlickrDataset(tmp_path, "val").records] == ["b.jpg"]


def test_kaggle_results_csv_with_malformed_row(tmp_path: Path, images) -> None:
    rows = ["image_name| comment_number| comment", "1.jpg| 0| A man | with a bar", "1.jpg| 1| Another man",
            "2.jpg| 0 A broken row without the third field"]
    nested = tmp_path / "flickr30k_images"
    (nested / "flickr30k_images").mkdir(parents=True)
    (tmp_path / "results.csv").write_text("\n".join(rows) + "\n")
    images.write(nested / "flickr30k_images" / "1.jpg", 1)
    data = FlickrDataset(tmp_path, "all")
    assert [(r.image_id, r.captions) for r in data.records] == [("1.jpg", ["A man | with a bar", "Another man"])]
    assert data.records[0].path == nested / "flickr30k_images" / "1.jpg"
    assert data.skipped == {"malformed line": 1}
    assert data[0] is not None


def test_flickr_errors_name_the_layout(tmp_path: Path, images) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist; expected a folder with an annotation"):
        FlickrDataset(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no Flickr annotation file.*dataset_flickr30k.json"):
        FlickrDataset(tmp_path)
    (tmp_path / "dataset_flickr30k.json").write_text(json.dumps({"images": []}))
    with pytest.raises(FileNotFoundError, match=r"no images folder \(flickr30k-images"):
        FlickrDataset(tmp_path)
    (tmp_path / "images").mkdir()
    with pytest.raises(ValueError, match="unknown Flickr split 'dev'"):
        FlickrDataset(tmp_path, "dev")
    with pytest.raises(ValueError, match="no images with captions in split 'train'"):
        FlickrDataset(tmp_path, "train")
    (tmp_path / "dataset_flickr30k.json").write_text('{"images": [{"file": 1}]}')
    with pytest.raises(ValueError, match=r"images\[0\] lacks 'filename' or 'split'"):
        FlickrDataset(tmp_path, "train")
    (tmp_path / "dataset_flickr30k.json").write_text("{not json")
    with pytest.raises(ValueError, match="invalid JSON"):
        FlickrDataset(tmp_path, "train")
    (tmp_path / "dataset_flickr30k.json").unlink()
    (tmp_path / "results_20130124.token").write_text("no tab here\n")
    with pytest.raises(ValueError, match=r"results_20130124.token:1: expected 'name.jpg#k<TAB>caption'"):
        FlickrDataset(tmp_path, "all")


def test_flickr_builder_options(tmp_path: Path, karpathy_flickr) -> None:
    karpathy_flickr(tmp_path / "f", {"train": 4, "val": 2, "test": 2})
    (tmp_path / "f" / "dataset_flickr30k.json").rename(tmp_path / "split.json")
    config = DataConfig(format="flickr", path=str(tmp_path / "f"), max_train_samples=3,
                        format_options={"annotation": str(tmp_path / "split.json"), "lazy_load": False})
    train = build_dataset(config, "train", cache_images=False)
    assert isinstance(train, FlickrDataset) and len(train) == 3 and train.cache_images
    assert len(build_dataset(config, "test")) == 2
    bad = DataConfig(format="flickr", path=str(tmp_path / "f"), format_options={"json": "x"})
    with pytest.raises(ValueError, match="accepted options: annotation, images_dir, lazy_load"):
        build_dataset(bad, "train")


def _coco(root: Path, images, split: str = "val", year: str = "2017") -> Path:
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    data = {
        "images": [{"id": 9, "file_name": "a.jpg"}, {"id": 4, "file_name": "b.jpg"}, {"id": 7, "file_name": "c.jpg"}],
        "annotations": [{"image_id": 4, "id": 1, "caption": "b one"}, {"image_id": 9, "id": 2, "caption": "a one"},
                        {"image_id": 4, "id": 3, "caption": "b two"}, {"image_id": 7, "id": 5, "caption": " "}],
    }
    (root / "annotations" / f"captions_{split}{year}.json").write_text(json.dumps(data))
    images.write(root / f"{split}{year}" / "a.jpg", 1)
    images.corrupt(root / f"{split}{year}" / "b.jpg")
    return root


def test_coco_official_layout(tmp_path: Path, images) -> None:
    data = CocoCaptions(_coco(tmp_path, images, "val", "2014"), "val", transform=ToTensor())
    assert [(r.image_id, r.captions) for r in data.records] == [("9", ["a one"]), ("4", ["b one", "b two"])]
    assert data.records[0].path == tmp_path / "val2014" / "a.jpg"
    assert data.skipped == {"empty caption": 1, "no caption": 1}
    assert data[0] is not None and data[1] is None and data.skipped["corrupt"] == 1
    assert "1 corrupt" in skip_report(data)
    via_config = build_dataset(DataConfig(format="coco", path=str(tmp_path)), "val")
    assert len(via_config) == 2
    with pytest.raises(FileNotFoundError, match=r"no COCO annotation file for split 'train'.*captions_train2017"):
        CocoCaptions(tmp_path, "train")
    (tmp_path / "val2014" / "a.jpg").unlink()
    (tmp_path / "val2014" / "b.jpg").unlink()
    (tmp_path / "val2014").rmdir()
    with pytest.raises(FileNotFoundError, match="COCO image folder .*val2014 not found"):
        CocoCaptions(tmp_path, "val")


def test_coco_karpathy_and_overrides(tmp_path: Path, images) -> None:
    entries = [{"filepath": "val2014", "filename": "x.jpg", "split": "restval", "sentences": [{"raw": "x"}]},
               {"filepath": "train2014", "filename": "y.jpg", "split": "test", "sentences": [{"raw": "y"}]}]
    (tmp_path / "dataset_coco.json").write_text(json.dumps({"images": entries}))
    images.write(tmp_path / "val2014" / "x.jpg", 0)
    train = CocoCaptions(tmp_path, "train")
    assert [r.path for r in train.records] == [tmp_path / "val2014" / "x.jpg"] and train[0] is not None
    assert [r.image_id for r in CocoCaptions(tmp_path, "test").records] == ["y.jpg"]
    other = _coco(tmp_path / "other", images, "val")
    custom = CocoCaptions(tmp_path, "val", annotation=other / "annotations" / "captions_val2017.json",
                          images_dir=other / "val2017")
    assert len(custom) == 2 and custom[0] is not None
    with pytest.raises(FileNotFoundError, match="COCO folder .* does not exist"):
        CocoCaptions(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="COCO annotation file .*nope.json not found"):
        CocoCaptions(tmp_path, annotation=tmp_path / "nope.json")
    (other / "annotations" / "captions_val2017.json").write_text('{"images": []}')
    with pytest.raises(ValueError, match="expected COCO captions JSON with 'images' and 'annotations'"):
        CocoCaptions(other, "val")
