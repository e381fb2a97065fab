"""``data.format: auto`` (the default): the format of existing data, told by reading only (issue 11, item 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mie.config import read_yaml
from mie.data.build import build_dataset, detect_data_format
from mie.data.config import DataConfig, SyntheticConfig
from mie.data.synthetic import generate_from_config
from mie.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
TINY = SyntheticConfig(num_train=4, num_val=2, num_test=2, num_heldout=2, image_size=32, seed=1)


def _touch(root: Path, *names: str) -> Path:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x")
    return root


@pytest.mark.parametrize(("names", "fmt", "read"), [
    (["captions.jsonl", "images/a.png"], "jsonl", "."),
    (["pairs.jsonl", "images/a.png"], "jsonl", "pairs.jsonl"),
    (["train.csv", "val.csv"], "csv", "."),
    (["pairs.tsv", "images/a.png"], "csv", "pairs.tsv"),
    (["dataset_flickr30k.json", "flickr30k-images/1.jpg"], "flickr", "."),
    (["results_20130124.token"], "flickr", "."),
    (["annotations/captions_val2017.json", "val2017/1.jpg"], "coco", "."),
    (["dataset_coco.json"], "coco", "."),
    (["train-000.tar", "val-000.tar"], "webdataset", "."),
    (["train/000.tar", "val/000.tar"], "webdataset", "."),
])
def test_auto_detects_each_folder_layout(tmp_path: Path, names: list[str], fmt: str, read: str) -> None:
    root = _touch(tmp_path / "d", *names)
    assert detect_data_format(str(root)) == (fmt, str(root if read == "." else root / read))


@pytest.mark.parametrize(("name", "fmt"), [("m.jsonl", "jsonl"), ("t.csv", "csv"), ("t.tsv", "csv"),
                                           ("s.tar", "webdataset")])
def test_auto_detects_a_file(tmp_path: Path, name: str, fmt: str) -> None:
    path = _touch(tmp_path, name) / name
    assert detect_data_format(str(path)) == (fmt, str(path))


def test_auto_detects_a_shard_pattern() -> None:
    assert detect_data_format("data/cc/{split}-{000..009}.tar")[0] == "webdataset"


def test_auto_reads_a_shapes_folder_without_regenerating(tmp_path: Path) -> None:
    root = generate_from_config(TINY, tmp_path / "shapes")
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in root.rglob("*") if p.is_file()}
    other = SyntheticConfig(num_train=9, seed=5)  # a synthetic section that differs does not matter to auto
    assert len(build_dataset(DataConfig(path=str(root), synthetic=other), "train")) == 4
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in root.rglob("*") if p.is_file()} == before


def test_auto_builds_a_csv_folder(tmp_path: Path, images) -> None:
    images.write(tmp_path / "img" / "a.png", 1)
    (tmp_path / "pairs.csv").write_text("filepath,title\nimg/a.png,a red thing\n")
    data = build_dataset(DataConfig(path=str(tmp_path)), "train")
    assert len(data) == 1 and data[0].captions == ["a red thing"]


@pytest.mark.parametrize(("setup", "found"), [
    ("missing", "it does not exist"),
    ("empty", "the folder is empty"),
    ("other files", "found notes.txt, photos/"),
])
def test_auto_cannot_tell_is_one_config_error_line(tmp_path: Path, setup: str, found: str) -> None:
    root = tmp_path / "d"
    if setup == "empty":
        root.mkdir()
    elif setup == "other files":
        _touch(root, "notes.txt", "photos/a.png")
    with pytest.raises(ConfigError) as caught:
        build_dataset(DataConfig(path=str(root)), "train")
    message = str(caught.value)
    assert message.startswith(f"data.format: cannot tell the format of '{root}' ({found}")
    assert "— set data.format to one of jsonl, csv, flickr, coco, webdataset (or synthetic to generate" in message
    assert "\n" not in message
    assert not root.exists() or setup != "missing"  # nothing was created


def test_auto_refuses_an_unfinished_generation(tmp_path: Path) -> None:
    root = generate_from_config(TINY, tmp_path / "shapes")
    marker = json.loads((root / "dataset.json").read_text())
    from mie.data.shapes_files import write_marker

    params = {k: v for k, v in marker.items() if k not in ("generator", "complete", "files", "signature")}
    write_marker(root, params, marker["files"], complete=False)
    with pytest.raises(ConfigError, match="did not finish — set data.format to synthetic"):
        build_dataset(DataConfig(path=str(root)), "train")


def test_unknown_format_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"unknown data.format 'parquet'; known formats: auto, coco"):
        build_dataset(DataConfig(format="parquet"), "train")


def test_default_is_auto_and_every_config_names_its_format() -> None:
    assert DataConfig().format == "auto"
    for path in sorted((REPO / "configs").rglob("*.yaml")):
        raw = read_yaml(path) or {}  # with its base config merged in
        if raw.get("recipe", "clip") != "clip":
            continue  # an lm config reads text files, not an image-text data.format
        data = raw.get("data", {})
        assert data.get("format"), f"{path.name} must say data.format explicitly"
        if data.get("path", "data/shapes") == "data/shapes":
            assert data["format"] == "synthetic", path.name
