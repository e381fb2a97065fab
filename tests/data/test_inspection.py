"""Dataset inspection (mie.data.inspection): format detection, per-split counts and broken files."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from mie.data.inspection import detect_format, format_report, inspect_dataset
from mie.errors import DataError


def _jsonl(root: Path, images) -> Path:
    images.write(root / "a.png", 0)
    images.corrupt(root / "b.png")
    lines = [{"image": "a.png", "captions": ["one two three", "four"], "split": "train"},
             {"image": "b.png", "captions": ["x y"], "split": "train"},
             {"image": "c.png", "captions": ["missing one"], "split": "val"}]
    (root / "captions.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return root


def test_detect_format(tmp_path: Path, images, karpathy_flickr) -> None:
    assert detect_format(_jsonl(tmp_path / "j", images)) == "jsonl"
    assert detect_format(karpathy_flickr(tmp_path / "f", {"train": 1})) == "flickr"
    (tmp_path / "c" / "annotations").mkdir(parents=True)
    (tmp_path / "c" / "annotations" / "captions_val2017.json").write_text("{}")
    assert detect_format(tmp_path / "c") == "coco"
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "train.tsv").write_text("filepath\ttitle\n")
    assert detect_format(tmp_path / "t") == "csv" and detect_format(tmp_path / "t" / "train.tsv") == "csv"
    (tmp_path / "w" / "train").mkdir(parents=True)
    (tmp_path / "w" / "train" / "0.tar").write_bytes(b"")
    assert detect_format(tmp_path / "w") == "webdataset"
    assert detect_format("shards-{000..009}.tar") == "webdataset"
    assert detect_format(tmp_path / "j" / "captions.jsonl") == "jsonl"
    with pytest.raises(DataError, match=r"a.png: cannot tell the format of .*a file with extension '.png'.* — pass"):
        detect_format(tmp_path / "j" / "a.png")
    with pytest.raises(DataError, match=r"\(it does not exist\) — pass --format"):
        detect_format(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"\(the folder is empty\)"):
        detect_format(tmp_path / "empty")


def test_inspect_jsonl_counts_stats_and_broken(tmp_path: Path, images) -> None:
    fmt, reports, preview = inspect_dataset(_jsonl(tmp_path, images))
    assert fmt == "jsonl" and [r.name for r in reports] == ["train", "val"]
    train, val = reports
    assert (train.images, train.captions, train.caption_words) == (2, 3, [3, 1, 2])
    assert train.caption_stats() == "1 / 2.0 / 2 / 3"
    assert train.broken == [(str(tmp_path / "b.png"), "corrupt")]
    assert val.broken == [(str(tmp_path / "c.png"), "missing")]
    assert len(preview) == 1 and preview[0][1] == "one two three" and preview[0][0].shape == (3, 128, 128)
    text = format_report(tmp_path, fmt, reports, max_broken=1)
    assert "checked 3 samples: 2 broken" in text and "... and 1 more" in text
    assert f"[train] corrupt: {tmp_path / 'b.png'}" in text


def test_inspect_webdataset_csv_and_coco(tmp_path: Path, images) -> None:
    shards = tmp_path / "shards"
    shards.mkdir()
    with tarfile.open(shards / "000.tar", "w") as tar:
        for name, data in [("k1.png", images.png(0)), ("k1.txt", b"a b"), ("k2.png", b"bad"), ("k2.txt", b"c")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    fmt, reports, _ = inspect_dataset(shards, check=0)
    assert fmt == "webdataset" and [(r.name, r.images, r.checked) for r in reports] == [("all", 1, 2)]
    assert reports[0].broken == [("k2", "unusable")] and reports[0].skipped == {"corrupt": 1}
    images.write(tmp_path / "t" / "a.png", 1)
    (tmp_path / "t" / "table.csv").write_text("filepath,title\na.png,hello there\n")
    fmt, reports, _ = inspect_dataset(tmp_path / "t" / "table.csv", check=0)
    assert (fmt, [r.name for r in reports], reports[0].images) == ("csv", ["train"], 1)  # "a.png" hashes to train
    (tmp_path / "t" / "split.csv").write_text("filepath,title,split\na.png,x,train\na.png,y,val\n")
    _, reports, _ = inspect_dataset(tmp_path / "t" / "split.csv")
    assert [r.name for r in reports] == ["train", "val"]
    _, reports, _ = inspect_dataset(tmp_path / "t", fmt="csv", options={})
    assert [r.name for r in reports] == ["table"]  # split.csv has no rows whose split column says "split"
    with pytest.raises(ValueError, match="no readable split .* as format 'coco'"):
        inspect_dataset(tmp_path / "t", fmt="coco")
