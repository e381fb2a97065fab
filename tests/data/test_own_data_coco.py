"""Own data (issue 12): one COCO captions file as ``data.path`` (or a folder holding one), its images
found beside it and split by a hash of their names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mie.data import build_dataset
from mie.data.build import detect_data_format
from mie.data.coco import CocoCaptions
from mie.data.config import DataConfig
from mie.data.splits import hash_split
from mie.errors import ConfigError, DataError

SPLITS = ("train", "val", "test")


def _captions(path: Path, count: int) -> Path:
    """A COCO captions file of ``count`` images ``{k:04d}.jpg``, two captions each."""
    data = {"images": [{"id": k, "file_name": f"{k:04d}.jpg"} for k in range(count)],
            "annotations": [{"image_id": k, "id": 2 * k + j, "caption": f"photo {k} take {j}"}
                            for k in range(count) for j in range(2)]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def _images(folder: Path, images, count: int) -> None:
    for k in range(count):
        images.write(folder / f"{k:04d}.jpg", k)


def test_a_captions_file_as_data_path_is_split_by_hash(tmp_path: Path, images) -> None:
    annotation = _captions(tmp_path / "coco" / "annotations" / "captions_train2017.json", 60)
    _images(tmp_path / "coco" / "train2017", images, 60)
    parts = {s: build_dataset(DataConfig(format="coco", path=str(annotation)), s) for s in SPLITS}
    names = {s: [r.path.name for r in d.records] for s, d in parts.items()}
    assert sorted(sum(names.values(), [])) == [f"{k:04d}.jpg" for k in range(60)]
    assert all(n and all(hash_split(x) == s for x in n) for s, n in names.items())
    record = parts["train"].records[0]
    assert record.path.parent == tmp_path / "coco" / "train2017" and len(record.captions) == 2
    assert parts["train"][0] is not None
    with pytest.raises(DataError, match="no images with captions for split 'test_heldout'.*split train/val/test "
                                        "80/10/10 by a hash"):
        build_dataset(DataConfig(format="coco", path=str(annotation)), "test_heldout")
    assert len(CocoCaptions(annotation, "all")) == 60


@pytest.mark.parametrize("where", ["images", "beside", "parent_images"])
def test_images_are_found_beside_the_file(tmp_path: Path, images, where: str) -> None:
    annotation = _captions(tmp_path / "mine" / "captions.json", 10)
    folder = {"images": tmp_path / "mine" / "images", "beside": tmp_path / "mine",
              "parent_images": tmp_path / "images"}[where]
    _images(folder, images, 10)
    data = CocoCaptions(annotation, "all")
    assert {r.path.parent for r in data.records} == {folder} and data[0] is not None


def test_images_dir_option_and_missing_images(tmp_path: Path, images) -> None:
    annotation = _captions(tmp_path / "ann" / "captions.json", 10)
    _images(tmp_path / "pics", images, 10)
    config = DataConfig(format="coco", path=str(annotation), format_options={"images_dir": str(tmp_path / "pics")})
    assert sum(len(build_dataset(config, s)) for s in SPLITS if s in {hash_split(f"{k:04d}.jpg") for k in range(10)}) == 10
    with pytest.raises(DataError, match=r"captions.json: none of its first images \(0000.jpg.*is in .*ann/images.*"
                                        "set data.format_options.images_dir"):
        CocoCaptions(annotation, "all")
    with pytest.raises(ConfigError, match="already an annotation file"):
        CocoCaptions(annotation, "all", annotation=annotation)


def test_a_folder_holding_one_captions_file(tmp_path: Path, images) -> None:
    annotation = _captions(tmp_path / "mine" / "captions.json", 12)
    _images(tmp_path / "mine" / "images", images, 12)
    assert detect_data_format(str(tmp_path / "mine")) == ("coco", str(annotation))
    assert detect_data_format(str(annotation)) == ("coco", str(annotation))
    total = 0
    for split in {hash_split(f"{k:04d}.jpg") for k in range(12)}:
        total += len(build_dataset(DataConfig(path=str(tmp_path / "mine")), split))  # format auto
        assert len(CocoCaptions(tmp_path / "mine", split)) > 0  # the folder given to coco directly
    assert total == 12


def test_karpathy_file_as_data_path_keeps_its_splits(tmp_path: Path, images) -> None:
    entries = [{"filepath": "val2014", "filename": f"{k}.jpg", "split": s, "sentences": [{"raw": f"c {k}"}]}
               for k, s in enumerate(["train", "restval", "val", "test"])]
    (tmp_path / "dataset_coco.json").write_text(json.dumps({"images": entries}))
    for k in range(4):
        images.write(tmp_path / "val2014" / f"{k}.jpg", k)
    path = str(tmp_path / "dataset_coco.json")
    assert [r.image_id for r in build_dataset(DataConfig(format="coco", path=path), "train").records] == ["0.jpg", "1.jpg"]
    assert [r.image_id for r in build_dataset(DataConfig(path=path), "test").records] == ["3.jpg"]
