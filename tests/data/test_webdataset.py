"""WebDataset shards: brace expansion, the rank x worker split, streaming, skipping bad samples."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

import mie.data.webdataset as wds
from mie.data import build_dataset, skip_report
from mie.data.config import DataConfig
from mie.data.webdataset import WebDatasetImageText, expand_shards, iter_tar_samples, shard_assignment


def _write_shard(path: Path, members: list[tuple[str, bytes]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            if name.endswith("/"):
                info.type = tarfile.DIRTYPE  # directories are not samples
            tar.addfile(info, io.BytesIO(data))
    return path


def _good_shards(folder: Path, images, shards: int, per_shard: int, prefix: str = "shard") -> list[str]:
    paths = []
    for s in range(shards):
        members = []
        for i in range(per_shard):
            key = f"s{s:02d}/{i:04d}"
            members += [(f"{key}.png", images.png(s * 100 + i)), (f"{key}.txt", f"shard {s} item {i}".encode())]
        paths.append(str(_write_shard(folder / f"{prefix}-{s:03d}.tar", members)))
    return paths


def test_expand_shards_patterns(tmp_path: Path) -> None:
    assert expand_shards("a/shards-{000..003}.tar") == [f"a/shards-{i:03d}.tar" for i in range(4)]
    assert expand_shards("{x,y}-{8..10}.tar") == ["x-8.tar", "x-9.tar", "x-10.tar", "y-8.tar", "y-9.tar", "y-10.tar"]
    assert expand_shards(["one.tar", "t-{1..2}.tar"]) == ["one.tar", "t-1.tar", "t-2.tar"]
    for name in ("b.tar", "a.tar"):
        (tmp_path / name).write_bytes(b"")
    assert expand_shards(str(tmp_path / "*.tar")) == [str(tmp_path / "a.tar"), str(tmp_path / "b.tar")]
    with pytest.raises(ValueError, match="runs backwards"):
        expand_shards("s-{5..2}.tar")


@pytest.mark.parametrize("num_shards", [1, 3, 4, 9])
def test_shard_assignment_covers_each_sample_once(num_shards: int) -> None:
    """2 ranks x 2 workers: simulate every reader on a stream of 5 samples per shard."""
    stream = [(shard, i) for shard in range(num_shards) for i in range(5)]
    seen = []
    for rank in range(2):
        for worker in range(2):
            shards, stride, offset = shard_assignment(num_shards, rank, 2, worker, 2)
            mine = [s for s in stream if s[0] in shards]
            seen += [s for position, s in enumerate(mine) if position % stride == offset]
    assert sorted(seen) == stream
    with pytest.raises(ValueError, match="rank 2/2"):
        shard_assignment(4, 2, 2, 0, 1)


def test_iterating_with_rank_and_worker_split(tmp_path: Path, images, monkeypatch) -> None:
    """The dataset reads get_worker_info(); patched, 2 ranks x 2 workers see every sample once."""
    paths = _good_shards(tmp_path, images, shards=3, per_shard=4)
    keys = []
    for rank in range(2):
        for worker in range(2):
            info = type("Info", (), {"id": worker, "num_workers": 2})()
            monkeypatch.setattr(wds, "get_worker_info", lambda info=info: info)
            data = WebDatasetImageText(str(tmp_path / "shard-{000..002}.tar"), rank=rank, world_size=2)
            keys += [s.image_id for s in data]
    assert sorted(keys) == sorted(f"s{s:02d}/{i:04d}" for s in range(3) for i in range(4))
    monkeypatch.undo()
    sample = next(iter(WebDatasetImageText(paths[:1])))
    assert sample.captions == ["shard 0 item 0"]
    assert torch.allclose(sample.image, torch.from_numpy(images.array(0)).permute(2, 0, 1).float() / 255)


def test_real_dataloader_workers_split_shards(tmp_path: Path, images) -> None:
    _good_shards(tmp_path, images, shards=4, per_shard=2)
    data = WebDatasetImageText(str(tmp_path / "shard-{000..003}.tar"), shuffle_shards=True, seed=3)
    loader = DataLoader(data, batch_size=None, num_workers=2)
    keys = [s.image_id for s in loader]
    assert sorted(keys) == sorted(f"s{s:02d}/{i:04d}" for s in range(4) for i in range(2))


def test_shard_shuffle_depends_on_seed_and_epoch(tmp_path: Path, images) -> None:
    _good_shards(tmp_path, images, shards=6, per_shard=1)
    data = WebDatasetImageText(str(tmp_path / "shard-{000..005}.tar"), shuffle_shards=True, seed=1)
    first = data.shard_order()
    assert data.shard_order() == first and sorted(first) == data.shards
    data.set_epoch(1)
    assert data.shard_order() != first
    assert WebDatasetImageText(data.shards).shard_order() == data.shards  # no shuffle: given order


def test_bad_samples_and_truncated_shard_are_skipped(tmp_path: Path, images) -> None:
    members = [
        ("ok.png", images.png(1)), ("ok.txt", b"first caption\nsecond caption\n"),
        ("corrupt.jpg", b"garbage"), ("corrupt.txt", b"caption"),
        ("nocap.png", images.png(2)),
        ("blank.png", images.png(3)), ("blank.txt", b"  \n"),
        ("onlytext.txt", b"lonely"),
        ("meta.jpg", images.png(4, "JPEG")), ("meta.json", json.dumps({"caption": "from json", "w": 12}).encode()),
        ("badjson.png", images.png(5)), ("badjson.json", b"[1, 2]"),
        ("dir/", b""),
    ]
    shard = _write_shard(tmp_path / "bad.tar", members)
    data = WebDatasetImageText(str(shard))
    samples = list(data)
    assert [(s.image_id, s.captions, s.attributes) for s in samples] == [
        ("ok", ["first caption", "second caption"], None), ("meta", ["from json"], {"w": 12})]
    assert data.skipped == {"corrupt": 1, "no caption": 2, "missing image": 1, "bad caption": 1}
    assert skip_report(data).startswith("WebDatasetImageText: skipped 5 (1 bad caption, 1 corrupt")

    good = _good_shards(tmp_path / "t", images, shards=1, per_shard=3)[0]
    raw = Path(good).read_bytes()
    cut = raw.index(b"shard 0 item 2")  # inside the last caption's data
    (tmp_path / "cut.tar").write_bytes(raw[:cut])
    from collections import Counter

    counts: Counter[str] = Counter()
    keys = [s["__key__"] for s in iter_tar_samples(tmp_path / "cut.tar", counts)]
    assert keys == ["s00/0000", "s00/0001"] and counts == {"truncated shard": 1}


def test_build_webdataset_split_resolution(tmp_path: Path, images) -> None:
    _good_shards(tmp_path / "train", images, shards=2, per_shard=1)
    _good_shards(tmp_path, images, shards=1, per_shard=2, prefix="val")
    by_folder = DataConfig(format="webdataset", path=str(tmp_path))
    assert len(list(build_dataset(by_folder, "train"))) == 2
    assert len(list(build_dataset(by_folder, "val", cache_images=True))) == 2
    with pytest.raises(FileNotFoundError, match="no test/\\*.tar or test-\\*.tar shards"):
        build_dataset(by_folder, "test")
    pattern = DataConfig(format="webdataset", path=str(tmp_path / "{split}-{000..000}.tar"))
    assert len(list(build_dataset(pattern, "val"))) == 2
    mapped = DataConfig(format="webdataset", path="unused",
                        format_options={"shards": {"train": str(tmp_path / "train" / "shard-{000..001}.tar")},
                                        "shuffle_shards": True, "seed": 4})
    assert build_dataset(mapped, "train").shuffle_shards
    with pytest.raises(ValueError, match="no entry for split 'val'"):
        build_dataset(mapped, "val")
    with pytest.raises(FileNotFoundError, match="1 of 2 shards not found"):
        WebDatasetImageText([str(tmp_path / "val-000.tar"), str(tmp_path / "nope.tar")])
    with pytest.raises(FileNotFoundError, match="no shards match"):
        WebDatasetImageText(str(tmp_path / "*.none"))
    assert len(expand_shards(str(tmp_path / "train" / "*.tar"))) == 2
