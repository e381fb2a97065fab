"""Own data (issue 12): ``check_splits`` counts each requested split before training, reading no image,
and refuses a split the data lacks in one line naming the config key and the splits there are."""

from __future__ import annotations

import io
import json
import logging
import tarfile
from pathlib import Path

import pytest

from mie.data.config import DataConfig, SyntheticConfig
from mie.data.preflight import UNKNOWN, check_splits
from mie.data.splits import hash_split
from mie.data.synthetic import generate_from_config
from mie.errors import ConfigError, DataError

TINY = SyntheticConfig(num_train=6, num_val=2, num_test=3, num_heldout=0, image_size=24, seed=1)


def _no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any image is opened."""
    def refuse(*args, **kwargs):
        raise AssertionError("check_splits decoded an image")
    monkeypatch.setattr("PIL.Image.open", refuse)


def test_missing_split_is_one_config_error_line(tmp_path: Path) -> None:
    (tmp_path / "pairs.csv").write_text("filepath,title,split\na.png,x,train\nb.png,y,val\nc.png,z,test\n")
    config = DataConfig(format="csv", path=str(tmp_path / "pairs.csv"))
    with pytest.raises(ConfigError) as caught:
        check_splits(config, ["train", "val", "test", "test_heldout"])
    assert str(caught.value) == (f"data.test_splits: split 'test_heldout' is not in {tmp_path / 'pairs.csv'} (it has "
                                 "test, train, val) — set data.test_splits to splits your data has")
    with pytest.raises(ConfigError, match="^data.val_split: split 'dev' is not in"):
        check_splits(DataConfig(format="csv", path=str(tmp_path / "pairs.csv"), val_split="dev"), ["train", "dev"])


def test_csv_table_folder_and_hashed_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_decoding(monkeypatch)
    names = [f"img/{k}.png" for k in range(50)]
    (tmp_path / "pairs.csv").write_text("filepath,title\n" + "".join(f"{n},caption of {n}\n" for n in names))
    counts = check_splits(DataConfig(format="csv", path=str(tmp_path / "pairs.csv")), ["train", "val", "test"])
    assert counts == {s: sum(hash_split(n) == s for n in names) for s in ("train", "val", "test")}
    folder = tmp_path / "tables"
    folder.mkdir()
    (folder / "train.csv").write_text("filepath,title\na.png,x\nb.png,y\na.png,z\n")
    (folder / "val.csv").write_text("filepath,title\nc.png,w\n")
    config = DataConfig(format="csv", path=str(folder), max_train_samples=1)
    assert check_splits(config, ["train", "val", "", "val"]) == {"train": 1, "val": 1}  # blank and repeats ignored
    with pytest.raises(ConfigError, match=r"split 'test' is not in .*tables \(it has train, val\)"):
        check_splits(config, ["train", "test"])


def test_jsonl_and_auto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_decoding(monkeypatch)
    lines = [{"image": f"{k}.png", "captions": ["c"], "split": "train" if k < 3 else "test"} for k in range(4)]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    assert check_splits(DataConfig(path=str(tmp_path)), ["train", "test"]) == {"train": 3, "test": 1}
    with pytest.raises(ConfigError, match=r"^data.val_split: split 'val' is not in .*m.jsonl \(it has test, train\)"):
        check_splits(DataConfig(format="jsonl", path=str(tmp_path / "m.jsonl")), ["val"])
    (tmp_path / "bad.jsonl").write_text('{"image": "a.png", "captions": ["c"]}\n')
    with pytest.raises(DataError, match="no 'split' key"):
        check_splits(DataConfig(format="jsonl", path=str(tmp_path / "bad.jsonl")), ["train"])


def test_coco_official_root_and_single_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_decoding(monkeypatch)
    root = tmp_path / "coco"
    data = {"images": [{"id": k, "file_name": f"{k}.jpg"} for k in range(30)],
            "annotations": [{"image_id": k, "caption": f"c {k}"} for k in range(30)]}
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "captions_val2017.json").write_text(json.dumps(data))
    (root / "val2017").mkdir()
    (root / "val2017" / "0.jpg").write_bytes(b"not decoded")
    assert check_splits(DataConfig(format="coco", path=str(root)), ["val"]) == {"val": 30}
    with pytest.raises(ConfigError, match=r"^data.train_split: split 'train' is not in .*coco \(it has val\)"):
        check_splits(DataConfig(format="coco", path=str(root)), ["train", "val"])
    single = DataConfig(path=str(root / "annotations" / "captions_val2017.json"), test_splits=["test"])
    counts = check_splits(single, ["train", "val", "test"])
    assert sum(counts.values()) == 30 and counts["train"] > counts["test"]
    with pytest.raises(ConfigError, match=r"split 'test_heldout' is not in .*\(it has train, val, test\)"):
        check_splits(single, ["test_heldout"])


def test_flickr_karpathy(tmp_path: Path, karpathy_flickr, monkeypatch: pytest.MonkeyPatch) -> None:
    root = karpathy_flickr(tmp_path / "f", {"train": 3, "val": 1, "test": 2})
    _no_decoding(monkeypatch)
    config = DataConfig(format="flickr", path=str(root), format_options={"lazy_load": False})
    assert check_splits(config, ["train", "val", "test"]) == {"train": 3, "val": 1, "test": 2}
    with pytest.raises(ConfigError, match="split 'test_heldout' is not in .*it has train, val, test"):
        check_splits(config, ["test_heldout"])


def _shard(path: Path, count: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for k in range(count):
            for name, data in ((f"{k}.png", b"png"), (f"{k}.txt", b"caption")):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def test_webdataset_checks_shards_exist(tmp_path: Path, caplog) -> None:
    _shard(tmp_path / "wds" / "train" / "000.tar", 2)
    _shard(tmp_path / "wds" / "val" / "000.tar", 1)
    config = DataConfig(format="webdataset", path=str(tmp_path / "wds"))
    assert check_splits(config, ["train", "val"]) == {"train": UNKNOWN, "val": UNKNOWN}
    with pytest.raises(ConfigError, match=r"^data.test_splits: split 'test' is not in .*wds \(it has train, val\)"):
        check_splits(config, ["train", "test"])
    pattern = DataConfig(format="webdataset", path=str(tmp_path / "wds" / "{split}" / "{000..001}.tar"))
    with pytest.raises(FileNotFoundError, match="1 of 2 shards not found"):
        check_splits(pattern, ["train"])
    listed = DataConfig(format="webdataset", path=".", format_options={"shards": {"train": str(tmp_path / "x.tar")}})
    with pytest.raises(FileNotFoundError, match="shards not found"):
        check_splits(listed, ["train"])
    with pytest.raises(ConfigError, match=r"split 'val' is not in \. \(it has train\)"):
        check_splits(listed, ["val"])
    one = DataConfig(format="webdataset", path=str(tmp_path / "wds" / "train" / "000.tar"))
    with caplog.at_level(logging.WARNING, logger="mie.data.preflight"):
        assert check_splits(one, ["train", "test"]) == {"train": UNKNOWN, "test": UNKNOWN}
    assert "serves the same shards as 'train' and 'test'" in caplog.text


def test_synthetic_before_and_after_generation(tmp_path: Path) -> None:
    config = DataConfig(format="synthetic", path=str(tmp_path / "shapes"), synthetic=TINY, max_train_samples=4)
    assert check_splits(config, ["train", "val", "test"]) == {"train": 4, "val": 2, "test": 3}
    assert not (tmp_path / "shapes").exists()  # nothing generated
    with pytest.raises(ConfigError, match=r"^data.test_splits: split 'test_heldout' is not in .*shapes \(it has "
                                          r"train, val, test\) — .*data.synthetic.num_heldout"):
        check_splits(config, ["test", "test_heldout"])
    generate_from_config(TINY, tmp_path / "shapes")
    assert check_splits(config, ["train", "val", "test"]) == {"train": 4, "val": 2, "test": 3}
