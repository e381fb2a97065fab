"""JSON and ``.npy`` cache files: written atomically, read without ever executing code.

``.npy`` files are always read with ``allow_pickle=False``: an object array (which NumPy stores as
a pickle) is rejected both when saving and when loading.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from mie.io.atomic import atomic_path, atomic_write_text


def save_json_atomic(path: str | os.PathLike[str], obj: Any, indent: int | None = 2) -> Path:
    """Serialise ``obj`` as JSON (UTF-8, keys kept in order) and write it atomically."""
    try:
        text = json.dumps(obj, indent=indent, ensure_ascii=False, allow_nan=True)
    except TypeError as err:
        raise ValueError(f"cannot write {path}: the object is not JSON-serialisable ({err}); "
                         "convert it to dicts, lists, strings and numbers first") from err
    return atomic_write_text(path, text + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file; a missing file or invalid JSON raises an error naming the file."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"JSON file not found: {file}")
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{file} is not valid JSON ({err}); delete it to rebuild the cache") from err


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
        raise ValueError(f"{file} cannot be read safely ({err}); delete it to rebuild the cache") from err
