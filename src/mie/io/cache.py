"""JSON and ``.npy`` cache files, written atomically, and safe readers of user-provided text and JSON.

``.npy`` files are always read with ``allow_pickle=False``: an object array (which NumPy stores as
a pickle) is rejected both when saving and when loading. The text readers turn every way a file's
bytes can be wrong (not UTF-8, not JSON, nested too deeply) into one :class:`~mie.errors.DataError`
naming the file, so dataset readers never surface a bare ``UnicodeDecodeError`` or ``RecursionError``.
"""

from __future__ import annotations

import codecs
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from mie.errors import DataError, MieError, storage_error
from mie.io.atomic import atomic_path, atomic_write_text

UTF8_FIX = "save it as UTF-8"


def save_json_atomic(path: str | os.PathLike[str], obj: Any, indent: int | None = 2) -> Path:
    """Serialise ``obj`` as JSON (UTF-8, keys kept in order) and write it atomically."""
    try:
        text = json.dumps(obj, indent=indent, ensure_ascii=False, allow_nan=True)
    except TypeError as err:
        raise ValueError(f"cannot write {path}: the object is not JSON-serialisable ({err}); "
                         "convert it to dicts, lists, strings and numbers first") from err
    return atomic_write_text(path, text + "\n")


def decode_utf8(raw: bytes, where: str | os.PathLike[str], offset: int = 0) -> str:
    """``raw`` as UTF-8 text; undecodable bytes raise a DataError naming ``where`` and the byte offset."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"not UTF-8 text: undecodable byte at offset {offset + err.start}", where=where,
                        fix=UTF8_FIX) from err


def utf8_error(path: str | os.PathLike[str]) -> DataError:
    """The DataError for a text file that failed to decode, with the absolute offset of its first bad byte.

    A text-mode reader's ``UnicodeDecodeError`` only knows the offset inside its buffer, so the file is
    scanned again, a chunk at a time, to name the real one.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(1 << 20)
            pending = len(decoder.getstate()[0])  # bytes of a split sequence carried from the last chunk
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as err:
                return DataError(f"not UTF-8 text: undecodable byte at offset {offset - pending + err.start}",
                                 where=path, fix=UTF8_FIX)
            if not chunk:
                break
            offset += len(chunk)
    return DataError("not UTF-8 text", where=path, fix=UTF8_FIX)


@contextmanager
def read_text_lines(path: str | os.PathLike[str], newline: str | None = None) -> Iterator[TextIO]:
    """A UTF-8 text file open for reading; undecodable bytes and read failures raise errors naming it.

    Errors raised while the caller iterates inside the ``with`` are translated too: a text-mode
    ``UnicodeDecodeError`` becomes a DataError with the file's byte offset.
    """
    try:
        with open(path, encoding="utf-8", newline=newline) as handle:
            yield handle
    except (MieError, FileNotFoundError):
        raise
    except UnicodeDecodeError as err:
        raise utf8_error(path) from err
    except OSError as err:
        raise storage_error(err, path) from err


def parse_json(text: str, where: str | os.PathLike[str], fix: str = "fix or regenerate the file") -> Any:
    """``json.loads(text)`` whose failures (bad syntax, nesting too deep for the parser) are DataErrors."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"invalid JSON ({err.msg} at line {err.lineno} column {err.colno})", where=where,
                        fix=fix) from err
    except RecursionError as err:
        # CPython's parser recurses once per '[' or '{'; '[' * 100000 exhausts the stack.
        raise DataError("JSON nested too deeply to read", where=where, fix=fix) from err


def read_jsonl(path: str | os.PathLike[str], fix: str = "fix the line") -> Iterator[tuple[str, Any]]:
    """``("file:line", parsed value)`` for each non-blank line of a JSON-lines file; bad bytes and bad JSON
    are DataErrors naming the file and line."""
    with read_text_lines(path) as lines:
        for lineno, line in enumerate(lines, start=1):
            if line.strip():
                where = f"{path}:{lineno}"
                yield where, parse_json(line, where, fix)


def read_json(path: str | os.PathLike[str], expect_object: bool = False,
              fix: str = "delete it to rebuild the cache") -> Any:
    """Read a JSON file; a missing file, non-UTF-8 bytes, invalid or too deeply nested JSON (and, with
    ``expect_object``, a top level that is not an object) raise an error naming the file."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"JSON file not found: {file}")
    text = decode_utf8(file.read_bytes(), file)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{file} is not valid JSON ({err.msg} at line {err.lineno})", fix=fix) from err
    except RecursionError as err:
        raise DataError("JSON nested too deeply to read", where=file, fix=fix) from err
    if expect_object and not isinstance(data, dict):
        raise DataError(f"expected a JSON object, got {type(data).__name__}", where=file, fix=fix)
    return data


def save_npy(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Save ``array`` as ``.npy`` atomically; object arrays are refused (they would need pickle)."""
    array = np.asarray(array)
    if array.dtype.hasobject:
        raise ValueError(f"cannot save {path}: dtype {array.dtype} holds Python objects; "
                         "store numeric or fixed-width string arrays instead")
    # np.save appends ".npy" to a file *name* without it, so write through a handle instead.
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array, allow_pickle=False)
    return Path(path)


def load_npy(path: str | os.PathLike[str], mmap_mode: str | None = None) -> np.ndarray:
    """Load a ``.npy`` file with ``allow_pickle=False``; pickled content raises ``ValueError``."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f".npy file not found: {file}")
    try:
        return np.load(file, mmap_mode=mmap_mode, allow_pickle=False)
    except (ValueError, EOFError) as err:
        raise DataError(f"{file} cannot be read safely ({err})", fix="delete it to rebuild the cache") from err
