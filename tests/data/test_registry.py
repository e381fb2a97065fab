"""build_dataset: the format registry, the synthetic and jsonl formats, option checking."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import mie.data
from mie.data import build, registry
from mie.data.build import build_dataset
from mie.data.config import DataConfig, SyntheticConfig
from mie.data.jsonl import JsonlImageText
from mie.data.registry import DATASET_FORMATS, register_dataset_format


def _synthetic_config(path: Path, **kw) -> DataConfig:
    tiny = SyntheticConfig(num_train=10, num_val=3, num_test=3, num_heldout=3, seed=2)
    return DataConfig(format="synthetic", path=str(path), synthetic=tiny, **kw)


def test_synthetic_generates_once_and_reads_splits(tmp_path: Path) -> None:
    config = _synthetic_config(tmp_path / "shapes")
    train = build_dataset(config, "train")
    assert isinstance(train, JsonlImageText) and len(train) == 10
    stamp = (tmp_path / "shapes" / "dataset.json").stat().st_mtime_ns
    heldout = build_dataset(config, "test_heldout", cache_images=True)
    assert len(heldout) == 3 and heldout.cache_images
    assert (tmp_path / "shapes" / "dataset.json").stat().st_mtime_ns == stamp  # not regenerated
    assert heldout[0].image.shape == (3, 64, 64)


def test_max_train_samples_only_limits_the_train_split(tmp_path: Path) -> None:
    config = _synthetic_config(tmp_path, max_train_samples=4)
    assert len(build_dataset(config, "train")) == 4
    assert len(build_dataset(config, "val")) == 3


def test_synthetic_rejects_unknown_options(tmp_path: Path) -> None:
    config = _synthetic_config(tmp_path, format_options={"workers": 0, "colour": "red"})
    with pytest.raises(
        ValueError, match=r"unknown data.format_options \['colour'\].*accepted options: workers"
    ):
        build_dataset(config, "train")


def test_jsonl_folder_file_and_options(tmp_path: Path) -> None:
    shapes = _synthetic_config(tmp_path / "shapes")
    build_dataset(shapes, "train")
    root = tmp_path / "shapes"
    by_folder = build_dataset(DataConfig(format="jsonl", path=str(root)), "val")
    by_file = build_dataset(DataConfig(format="jsonl", path=str(root / "captions.jsonl")), "val")
    assert [r.image_id for r in by_folder.records] == [r.image_id for r in by_file.records]
    (root / "captions.jsonl").rename(root / "other.jsonl")
    moved = DataConfig(
        format="jsonl", path=str(root), format_options={"manifest": "other.jsonl", "root": str(root)}
    )
    assert len(build_dataset(moved, "test")) == 3
    with pytest.raises(ValueError, match="accepted options: manifest, root"):
        build_dataset(DataConfig(format="jsonl", path=str(root), format_options={"images": "x"}), "val")


def test_unknown_format_lists_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown data.format 'parquet'; known formats: .*jsonl, synthetic"):
        build_dataset(DataConfig(format="parquet"), "train")


def test_register_a_format_and_reject_a_clash() -> None:
    def build_echo(config, split, transform=None, **kw):
        return [split, kw]

    try:
        register_dataset_format("echo")(build_echo)
        assert build_dataset(DataConfig(format="echo"), "val", extra=1) == ["val", {"extra": 1}]
        register_dataset_format("echo")(build_echo)  # same builder again is fine (module re-import)
        with pytest.raises(ValueError, match="already registered"):
            register_dataset_format("echo")(lambda *a, **k: None)
    finally:
        DATASET_FORMATS.pop("echo", None)


def test_package_exports_lazily() -> None:
    assert mie.data.build_dataset is build.build_dataset
    assert mie.data.DATASET_FORMATS is build.DATASET_FORMATS is registry.DATASET_FORMATS
    assert mie.data.register_dataset_format is registry.register_dataset_format
    assert "generate_shapes_dataset" in dir(mie.data)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        mie.data.nope  # noqa: B018


def test_generated_manifest_is_readable_json(tmp_path: Path) -> None:
    build_dataset(_synthetic_config(tmp_path), "train")
    lines = (tmp_path / "captions.jsonl").read_text().splitlines()
    assert {json.loads(line)["split"] for line in lines} == {"train", "val", "test", "test_heldout"}


def test_every_format_is_known_to_a_fresh_interpreter() -> None:
    # DATASET_FORMATS taken from the package comes from mie.data.build, which imports every format first.
    code = "from mie.data import DATASET_FORMATS; print(' '.join(sorted(DATASET_FORMATS)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["coco", "csv", "flickr", "jsonl", "synthetic", "webdataset"]
