"""Atomic file writes: a crash (or Ctrl-C) mid-save never leaves a half-written file in place.

Every writer goes through :func:`atomic_path`: the data goes to a temporary file in the same
directory, is flushed and fsync'ed, then ``os.replace`` swaps it in (atomic on POSIX and Windows
when both paths are on one file system, which "same directory" guarantees), and finally the
directory itself is fsync'ed so the rename survives a power loss. Until the swap, the previous
file is untouched.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

# A temporary is named ``.<name>.mie-tmp-<8 random>``: distinctive, so a clean-up after a kill can tell
# our own leftovers from a user's ``.notes.tmp`` (see :func:`mie.io.store.remove_temporaries`).
TEMP_TAG = ".mie-tmp-"
_TEMP_NAME = re.compile(r"\..+" + re.escape(TEMP_TAG) + r"[A-Za-z0-9_]{8}")


def is_temporary_name(name: str) -> bool:
    """Whether ``name`` is one :func:`atomic_path` makes (``.<name>.mie-tmp-XXXXXXXX``)."""
    return _TEMP_NAME.fullmatch(name) is not None


def _fsync_file(path: Path) -> None:
    """Flush a closed file's data to disk (writers such as torch.save close their own handles)."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(directory: Path) -> None:
    """Persist a rename in ``directory``; a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on directories; the rename itself is still atomic
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit it replaces ``path`` atomically.

    Use it for writers that want a file name (``torch.save``, ``safetensors``)::

        with atomic_path("ckpt/last.pt") as tmp:
            torch.save(state, tmp)

    If the block raises, the temporary file is removed and ``path`` keeps its old content.
    Parent directories are created.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}{TEMP_TAG}", suffix="")
    except OSError as exc:  # name the file the caller wanted, not the temporary
        raise OSError(exc.errno, exc.strerror, str(target)) from exc
    os.close(fd)
    os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp makes 0600; a saved file gets the usual permissions
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # again: a writer may have made the file anew (safetensors does, 0600)
        _fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`); returns the path."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`); returns the path."""
    return atomic_write_bytes(path, text.encode(encoding))
