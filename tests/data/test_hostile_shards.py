"""Hostile tar shards (issue 11): a member declaring gigabytes is refused before a byte of it is read;
links, devices and names outside the shard are DataErrors; ``mie data inspect`` prints one line."""

from __future__ import annotations

import io
import tarfile
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest

from mie import cli
from mie.data.build import build_dataset
from mie.data.config import DataConfig
from mie.data.webdataset import WebDatasetImageText, iter_tar_samples
from mie.errors import DataError, LimitError


def huge_member_shard(path: Path, size: int = 2 * 1024**3) -> Path:
    """A ~3 KB tar whose second member's header declares ``size`` bytes (its data is not there)."""
    caption = tarfile.TarInfo("0001.txt")
    caption.size = 5
    huge = tarfile.TarInfo("0001.png")
    huge.size = size
    path.write_bytes(caption.tobuf(format=tarfile.GNU_FORMAT) + b"a cat".ljust(512, b"\0")
                     + huge.tobuf(format=tarfile.GNU_FORMAT) + b"\0" * 1024)
    return path


def shard_with(path: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    """A tar of one good caption then ``member``."""
    with tarfile.open(path, "w") as tar:
        good = tarfile.TarInfo("0000.txt")
        good.size = 3
        tar.addfile(good, io.BytesIO(b"cat"))
        member.size = len(data) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return path


def test_member_over_the_limit_is_refused_before_reading(tmp_path: Path) -> None:
    shard = huge_member_shard(tmp_path / "evil.tar")
    assert shard.stat().st_size < 10_000
    tracemalloc.start()
    try:
        with pytest.raises(LimitError) as info:
            list(WebDatasetImageText(str(shard)).iter_all())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(info.value)
    assert "evil.tar" in message and "'0001.png'" in message and "2,147,483,648" in message
    assert "data.max_member_bytes" in message
    assert peak < 20_000_000


def test_builder_honours_data_max_member_bytes(tmp_path: Path) -> None:
    shard = shard_with(tmp_path / "s.tar", tarfile.TarInfo("0001.txt"), b"x" * 200)
    config = DataConfig(format="webdataset", path=str(shard), max_member_bytes=100)
    with pytest.raises(LimitError, match="0001.txt"):
        list(build_dataset(config, "train").iter_raw())
    assert len(list(build_dataset(DataConfig(format="webdataset", path=str(shard)), "train").iter_raw())) == 2


def _link(name: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = "/etc/passwd"
    return info


@pytest.mark.parametrize(("member", "what"), [
    (_link("0001.txt", tarfile.SYMTYPE), "symbolic link"),
    (_link("0001.txt", tarfile.LNKTYPE), "hard link"),
    (_link("0001.txt", tarfile.CHRTYPE), "device or pipe"),
    (_link("0001.txt", tarfile.FIFOTYPE), "device or pipe"),
    (tarfile.TarInfo("../../0001.txt"), "points outside the shard"),
    (tarfile.TarInfo("/abs/0001.txt"), "points outside the shard"),
])
def test_unsafe_members_are_data_errors(tmp_path: Path, member: tarfile.TarInfo, what: str) -> None:
    data = b"x" if member.isfile() else b""
    shard = shard_with(tmp_path / "bad.tar", member, data)
    with pytest.raises(DataError, match=rf"bad\.tar: member .*{what}.* — rebuild the shard"):
        list(iter_tar_samples(shard, Counter()))


def test_hostile_caption_json_is_a_bad_caption_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "c.tar"
    with tarfile.open(path, "w") as tar:
        for key, payload in [("0", b"[" * 100_000), ("1", b'{"captions": 5}'), ("2", b"\xff\xfe"), ("3", b"[1]")]:
            for ext, data in (("png", b"not an image"), ("json", payload)):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    dataset = WebDatasetImageText(str(path))
    assert list(dataset.iter_all()) == []
    assert dataset.skipped == {"bad caption": 3, "no caption": 1}
    assert dataset.all_captions() == []


@pytest.mark.parametrize("make", ["huge", "symlink"])
def test_cli_inspect_prints_one_line_and_exits_1(tmp_path: Path, capsys, make: str) -> None:
    shard = (huge_member_shard(tmp_path / "evil.tar") if make == "huge"
             else shard_with(tmp_path / "evil.tar", _link("0001.txt", tarfile.SYMTYPE)))
    assert cli.main(["data", "inspect", str(shard), "--out", str(tmp_path / "s.png")]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "evil.tar" in lines[0] and "Traceback" not in captured.err + captured.out
