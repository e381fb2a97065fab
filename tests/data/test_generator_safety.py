"""The shapes generator never deletes or overwrites what it did not write (issue 11, item 1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mie.data import shapes_files, synthetic
from mie.data.build import build_dataset
from mie.data.config import DataConfig, SyntheticConfig
from mie.data.jsonl import JsonlImageText
from mie.data.synthetic import ensure_shapes_dataset, generate_from_config
from mie.errors import DataError

TINY = SyntheticConfig(num_train=4, num_val=2, num_test=2, num_heldout=2, image_size=32, seed=1)
OTHER = SyntheticConfig(num_train=3, num_val=0, num_test=2, num_heldout=2, image_size=32, seed=2)
REFUSAL = r"choose an empty data\.path .* or set data\.format to the format of your data"


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _user_folder(root: Path, images) -> Path:
    """A user's own jsonl dataset: a dataset.json of their own, captions.jsonl and images/train/*.png."""
    for name, seed in (("a", 1), ("b", 2)):
        images.write(root / "images" / "train" / f"{name}.png", seed)
    (root / "dataset.json").write_text(json.dumps({"name": "my photos", "license": "mine"}))
    lines = [{"image": f"images/train/{n}.png", "captions": [f"photo {n}"], "split": "train"} for n in "ab"]
    (root / "captions.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return root


def test_format_synthetic_refuses_a_user_folder_and_leaves_it_byte_for_byte(tmp_path: Path, images) -> None:
    root = _user_folder(tmp_path / "mine", images)
    before = _files(root)
    config = DataConfig(format="synthetic", path=str(root), synthetic=TINY)
    with pytest.raises(DataError, match=rf"mine/dataset.json: is not the shapes generator's marker.* — {REFUSAL}"):
        build_dataset(config, "train")
    assert _files(root) == before


def test_default_format_reads_a_user_folder_without_writing(tmp_path: Path, images) -> None:
    root = _user_folder(tmp_path / "mine", images)
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    config = DataConfig(path=str(root), synthetic=TINY)
    assert config.format == "auto"
    train = build_dataset(config, "train")
    assert isinstance(train, JsonlImageText) and len(train) == 2 and train[0].captions == ["photo a"]
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before


@pytest.mark.parametrize("layout", ["captions only", "images only", "an unrelated file"])
def test_unmarked_folder_is_refused_untouched(tmp_path: Path, images, layout: str) -> None:
    root = tmp_path / "d"
    if layout == "captions only":
        root.mkdir()
        (root / "captions.jsonl").write_text('{"image": "x.png", "captions": ["x"]}\n')
    elif layout == "images only":
        images.write(root / "images" / "train" / "train_00000.png", 3)
    else:
        root.mkdir()
        (root / "notes.txt").write_text("keep me")
    before = _files(root)
    with pytest.raises(DataError, match=rf"d: holds files the shapes generator did not write .* — {REFUSAL}"):
        ensure_shapes_dataset(TINY, root)
    assert _files(root) == before


def test_empty_or_missing_folder_is_generated(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for root in (tmp_path / "empty", tmp_path / "missing" / "deeper"):
        ensure_shapes_dataset(TINY, root)
        marker = json.loads((root / "dataset.json").read_text())
        assert marker["generator"] == "mie-shapes" and marker["complete"] is True
        assert set(marker["files"]) == set(_files(root)) - {"dataset.json"}
        assert all(marker["files"][rel] == len(data) for rel, data in _files(root).items() if rel != "dataset.json")


def test_regenerating_over_its_own_output_works(tmp_path: Path) -> None:
    root = ensure_shapes_dataset(TINY, tmp_path / "d")
    ensure_shapes_dataset(OTHER, root)
    fresh = generate_from_config(OTHER, tmp_path / "fresh")
    assert _files(root) == _files(fresh)  # old images of the larger train split and of val are gone
    assert not (root / "images" / "val").exists()


def test_user_files_in_a_generated_folder_survive_regeneration(tmp_path: Path, images) -> None:
    root = ensure_shapes_dataset(TINY, tmp_path / "d")
    images.write(root / "images" / "train" / "my_photo.png", 7)
    images.write(root / "images" / "val" / "mine.png", 8)
    (root / "notes.txt").write_text("my notes")
    kept = {rel: data for rel, data in _files(root).items() if rel in {
        "images/train/my_photo.png", "images/val/mine.png", "notes.txt"}}
    ensure_shapes_dataset(OTHER, root)
    after = _files(root)
    assert {rel: after.get(rel) for rel in kept} == kept
    generated = set(json.loads((root / "dataset.json").read_text())["files"])
    assert set(after) == generated | set(kept) | {"dataset.json"}


def test_a_user_file_where_a_new_image_would_go_is_refused(tmp_path: Path, images) -> None:
    small = SyntheticConfig(num_train=2, num_val=0, num_test=0, num_heldout=0, image_size=32, seed=1)
    root = ensure_shapes_dataset(small, tmp_path / "d")
    images.write(root / "images" / "train" / "train_00003.png", 9)
    before = _files(root)
    with pytest.raises(DataError, match=rf"train_00003.png: was not written by the shapes generator.* — {REFUSAL}"):
        ensure_shapes_dataset(TINY, root)
    assert _files(root) == before


def test_a_generated_file_the_user_changed_is_not_deleted(tmp_path: Path) -> None:
    root = ensure_shapes_dataset(TINY, tmp_path / "d")
    with open(root / "captions.jsonl", "a", encoding="utf-8") as f:
        f.write('{"image": "images/train/train_00000.png", "captions": ["my own caption"], "split": "train"}\n')
    before = _files(root)
    with pytest.raises(DataError, match=r"captions.jsonl: changed since the shapes generator wrote it"):
        ensure_shapes_dataset(OTHER, root)
    assert _files(root) == before


def _edit_marker(root: Path, resign: bool, **changes) -> None:
    marker = json.loads((root / "dataset.json").read_text())
    marker.update(changes)
    if resign:
        marker["signature"] = shapes_files._signature(marker)
    (root / "dataset.json").write_text(json.dumps(marker))


@pytest.mark.parametrize("tamper", ["unsigned file list", "path outside the layout", "foreign generator"])
def test_a_tampered_or_foreign_marker_is_refused(tmp_path: Path, tamper: str) -> None:
    root = ensure_shapes_dataset(TINY, tmp_path / "d")
    (root / "mine.txt").write_text("mine")
    (tmp_path / "outside.txt").write_text("outside")
    files = json.loads((root / "dataset.json").read_text())["files"]
    if tamper == "unsigned file list":
        _edit_marker(root, resign=False, files={**files, "mine.txt": 4})
    elif tamper == "path outside the layout":
        _edit_marker(root, resign=True, files={**files, "../outside.txt": None, "mine.txt": None})
    else:
        _edit_marker(root, resign=True, generator="someone-else")
    before = _files(tmp_path)
    with pytest.raises(DataError, match=rf"dataset.json: .*refusing to delete or overwrite anything.* — {REFUSAL}"):
        ensure_shapes_dataset(OTHER, root)
    assert _files(tmp_path) == before


def test_an_interrupted_generation_is_cleaned_up_next_time(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "d"

    def crash(out_dir, image_size, seed, tasks, workers):
        synthetic._render_chunk(out_dir, image_size, seed, tasks[:3])
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "_render_all", crash)
    with pytest.raises(KeyboardInterrupt):
        ensure_shapes_dataset(TINY, root)
    monkeypatch.undo()
    assert json.loads((root / "dataset.json").read_text())["complete"] is False
    ensure_shapes_dataset(TINY, root)
    assert _files(root) == _files(generate_from_config(TINY, tmp_path / "fresh"))


def test_a_version_1_folder_is_regenerated_with_a_manifest(tmp_path: Path, images) -> None:
    root = generate_from_config(TINY, tmp_path / "d")
    marker = json.loads((root / "dataset.json").read_text())
    legacy = {k: marker[k] for k in ("seed", "image_size", "num_train", "num_val", "num_test", "num_test_heldout",
                                     "shapes", "colors", "heldout_pairs")}
    (root / "dataset.json").write_text(json.dumps({"generator": "mie.data.synthetic", "version": 1, **legacy}))
    images.write(root / "images" / "train" / "mine.png", 4)
    mine = (root / "images" / "train" / "mine.png").read_bytes()
    ensure_shapes_dataset(TINY, root)
    assert json.loads((root / "dataset.json").read_text())["version"] == synthetic.GENERATOR_VERSION
    assert (root / "images" / "train" / "mine.png").read_bytes() == mine


def test_a_file_as_data_path_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("not a folder")
    with pytest.raises(DataError, match="data: is a file, not a folder"):
        ensure_shapes_dataset(TINY, tmp_path / "data")
    assert (tmp_path / "data").read_text() == "not a folder"
