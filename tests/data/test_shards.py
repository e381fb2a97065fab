"""`mie data shards`: any map-style dataset to WebDataset shards that stream back the same samples."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from mie.cli import main
from mie.data.jsonl import read_manifest
from mie.data.synthetic import generate_shapes_dataset
from mie.data.webdataset import WebDatasetImageText, write_shards


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return generate_shapes_dataset(tmp_path_factory.mktemp("shapes"), num_train=7, num_val=3, num_test=2,
                                   num_heldout=0, image_size=24, workers=0)


def test_cli_converts_every_split_and_the_stream_reads_it_back(shapes: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "shards"
    assert main(["data", "shards", str(shapes), str(out), "--samples-per-shard", "3"]) == 0
    printed = capsys.readouterr().out
    assert "train: 7 samples in 3 shards" in printed and "val: 3 samples in 1 shards" in printed
    assert sorted(p.name for p in (out / "train").iterdir()) == [f"train-{k:05d}.tar" for k in range(3)]
    records = read_manifest(shapes / "captions.jsonl", split="train")
    stream = WebDatasetImageText(sorted(str(p) for p in (out / "train").glob("*.tar")))
    samples = list(stream.iter_all())
    # Same order, same captions, original ids kept with the attributes, image bytes copied as they were.
    assert [s.captions for s in samples] == [r.captions for r in records]
    assert [s.attributes["id"] for s in samples] == [r.image_id for r in records]
    assert [s.attributes["objects"] for s in samples] == [r.attributes["objects"] for r in records]
    with tarfile.open(out / "train" / "train-00000.tar") as tar:
        first = tar.extractfile("00000000.png").read()
    assert first == records[0].path.read_bytes()


def test_missing_images_are_skipped_and_counted(shapes: Path, tmp_path: Path) -> None:
    records = read_manifest(shapes / "captions.jsonl", split="val")
    records[1].path = tmp_path / "gone.png"
    info = write_shards(records, tmp_path / "out", "val", samples_per_shard=10)
    assert info["samples"] == 2 and info["skipped"] == {"missing image": 1}
    assert not list((tmp_path / "out").glob("*.tmp*"))  # the temporary file was renamed into place
    with pytest.raises(ValueError, match="samples_per_shard"):
        write_shards(records, tmp_path / "x", "val", samples_per_shard=0)


def test_shards_of_shards_is_an_error(tmp_path: Path, shapes: Path, capsys) -> None:
    out = tmp_path / "shards"
    main(["data", "shards", str(shapes), str(out)])
    assert main(["data", "shards", str(out / "train"), str(tmp_path / "again")]) == 1
    assert "already holds WebDataset shards" in capsys.readouterr().err
