"""Checkpoints that execute nothing when loaded.

* Model weights: ``<name>.safetensors`` plus a JSON sidecar ``<name>.json`` holding the caller's
  metadata (config, step, ...), the versions that wrote it, a timestamp and the SHA-256 of the
  weights file. :func:`load_weights` checks the safetensors header by hand *before* the library
  parses the file, then the hash, so a pickle renamed ``.safetensors``, a truncated download or a
  weights file that does not match its sidecar fail with a :class:`CheckpointError` that says which
  file is wrong and what to do.
* Trainer state (optimizer, scheduler, RNG, counters): ``torch.save`` written atomically and read
  back only with ``torch.load(weights_only=True)``. :func:`save_state` refuses objects that such a
  load could not restore, so a bad state fails at save time, not at resume time.

Writes go weights first, sidecar second; a crash between the two leaves a sidecar whose hash no
longer matches, which :func:`load_weights` reports instead of loading a silent mix.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import errno
import hashlib
import json
import os
import platform
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import safetensors
import torch
from safetensors.torch import load as _st_load
from safetensors.torch import save_file as _st_save_file

from mie.errors import CheckpointError, StorageError, storage_error
from mie.io.atomic import atomic_path, atomic_write_text
from mie.io.faults import fault_point

WEIGHTS_SUFFIX = ".safetensors"
_FORMAT = "mie-weights-v1"
_RESERVED_KEYS = ("format", "weights_file", "sha256", "created", "versions")
_MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors library's own limit
# Leaf types that torch.load(weights_only=True) restores without extra allow-listing.
_PLAIN_TYPES = (str, int, float, bool, type(None), torch.Tensor, torch.dtype, torch.device, torch.Size)




def sidecar_path(weights_path: str | os.PathLike[str]) -> Path:
    """The JSON sidecar of a weights file: ``model.safetensors`` -> ``model.json``."""
    return Path(weights_path).with_suffix(".json")


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _versions() -> dict[str, str]:
    from mie import __version__

    return {"mie": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "safetensors": safetensors.__version__}


def _json_default(value: Any) -> Any:
    """Let configs (dataclasses) and paths be stored in metadata as plain JSON."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def save_weights(path: str | os.PathLike[str], state_dict: Mapping[str, torch.Tensor],
                 metadata: Mapping[str, Any] | None = None) -> Path:
    """Write ``state_dict`` as safetensors plus a JSON sidecar; returns the weights path.

    ``metadata`` (config dict or dataclass, step, metrics, ...) must be JSON-serialisable; the keys
    ``format``, ``weights_file``, ``sha256``, ``created`` and ``versions`` are filled in here.
    Tensors are copied to contiguous CPU storage first: safetensors refuses tensors that share
    memory (tied embeddings) or are non-contiguous views, and a copy of each makes both cases work.
    """
    target = Path(path)
    if target.suffix != WEIGHTS_SUFFIX:
        raise ValueError(f"weights path {target} must end with {WEIGHTS_SUFFIX}, e.g. {target.stem}.safetensors")
    user_meta = dict(metadata or {})
    clash = [key for key in _RESERVED_KEYS if key in user_meta]
    if clash:
        raise ValueError(f"metadata keys {clash} are reserved by save_weights; rename them")
    tensors: dict[str, torch.Tensor] = {}
    for name, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"state_dict entry {name!r} is a {type(value).__name__}, not a tensor; "
                             "put non-tensor values in metadata")
        tensors[name] = value.detach().to("cpu").clone(memory_format=torch.contiguous_format)
    sidecar = {"format": _FORMAT, "weights_file": target.name, **user_meta}
    try:  # serialise before writing anything, so bad metadata leaves the old checkpoint in place
        json.dumps(sidecar, default=_json_default)
    except (TypeError, ValueError) as err:
        raise ValueError(f"metadata for {target} is not JSON-serialisable: {err}") from err

    with _storage_errors(target), atomic_path(target) as tmp:
        _st_save_file(tensors, str(tmp), metadata={"format": "pt"})
    fault_point("save_weights:sidecar")
    sidecar.update(sha256=sha256_file(target),
                   created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                   versions=_versions())
    with _storage_errors(sidecar_path(target)):
        atomic_write_text(sidecar_path(target), json.dumps(sidecar, indent=2, default=_json_default) + "\n")
    return target


@contextlib.contextmanager
def _storage_errors(path: Path) -> Iterator[None]:
    """A failed write (disk full, read-only, no permission) becomes a StorageError naming ``path``.

    torch and safetensors report write failures as their own RuntimeError-like types; their
    message carries the OS error, which is recognised here.
    """
    try:
        yield
    except OSError as exc:
        raise storage_error(exc, path) from exc
    except Exception as exc:
        text = str(exc)
        for code, words in ((errno.ENOSPC, "No space left"), (errno.EDQUOT, "quota exceeded"),
                            (errno.EROFS, "Read-only file system"), (errno.EACCES, "Permission denied")):
            if words.lower() in text.lower():
                raise storage_error(OSError(code, words), path) from exc
        if "write" in text.lower() and ("fail" in text.lower() or "error" in text.lower()):
            raise StorageError(f"the write failed ({' '.join(text.split())[:200]})", where=path,
                               fix="check the free space and permissions of the output directory") from exc
        raise


def _describe_foreign(head: bytes) -> str:
    """Name the format of a file that is not safetensors, for the error message."""
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "it looks like a Python pickle (e.g. a torch.save file renamed)"
    if head[:4] == b"PK\x03\x04":
        return "it looks like a zip archive (e.g. a torch.save file renamed)"
    return "its header is not a safetensors header"


def check_safetensors_header(data: bytes, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Validate the safetensors layout of ``data`` (8-byte little-endian length + JSON + tensors).

    Returns the parsed JSON header. Raises :class:`CheckpointError` for pickles, zips, truncated
    files and headers whose tensor offsets point past the end of the data.
    """
    fix = "re-export the weights with mie.io.save_weights (never load untrusted pickles)"
    if len(data) < 8:
        raise CheckpointError(f"{path} is truncated ({len(data)} bytes, no safetensors header); {fix}")
    header_len = int.from_bytes(data[:8], "little")
    if header_len < 2 or header_len > _MAX_HEADER_BYTES or header_len > len(data) - 8:
        reason = _describe_foreign(data[:8])
        if header_len <= _MAX_HEADER_BYTES and data[8:9] == b"{":
            reason = f"the file is truncated (header needs {header_len} bytes, {len(data) - 8} present)"
        raise CheckpointError(f"{path} is not a valid safetensors file: {reason}; {fix}")
    raw = data[8:8 + header_len]
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise CheckpointError(f"{path} is not a valid safetensors file: {_describe_foreign(data[:8])} "
                              f"({err}); {fix}") from err
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} has a safetensors header that is not a JSON object; {fix}")
    body = len(data) - 8 - header_len
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise CheckpointError(f"{path}: tensor {name!r} has no valid data_offsets; {fix}")
        end = max(end, offsets[1])
    if end > body:
        raise CheckpointError(f"{path} is truncated: tensors need {end} bytes of data, {body} present; "
                              "copy or download the file again")
    return header


def load_weights(path: str | os.PathLike[str], verify: bool = True,
                 device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load ``(state_dict, metadata)`` written by :func:`save_weights`; executes nothing.

    With ``verify=True`` (the default) the JSON sidecar must exist and its SHA-256 must match the
    weights file. With ``verify=False`` a missing sidecar gives empty metadata (for safetensors
    files from elsewhere) and the hash is not checked; the header is always checked.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"weights file not found: {file}")
    data = file.read_bytes()  # one read: the hash and the parse see the very same bytes
    check_safetensors_header(data, file)
    meta_file = sidecar_path(file)
    metadata: dict[str, Any] = {}
    if meta_file.is_file():
        try:
            metadata = json.loads(meta_file.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as err:
            raise CheckpointError(f"sidecar {meta_file} is not valid JSON ({type(err).__name__}); re-save the "
                                  "checkpoint or pass verify=False to skip metadata") from None
        if not isinstance(metadata, dict):
            raise CheckpointError(f"sidecar {meta_file} holds a JSON {type(metadata).__name__}, not an object; "
                                  "re-save the checkpoint or pass verify=False to skip metadata")
    elif verify:
        raise CheckpointError(f"{file} has no metadata sidecar {meta_file.name}; save with "
                              "mie.io.save_weights, or pass verify=False to load without the hash check")
    if verify:
        actual = hashlib.sha256(data).hexdigest()
        if metadata.get("sha256") != actual:
            raise CheckpointError(f"{file} does not match its sidecar {meta_file.name}: sha256 is {actual}, "
                                  f"sidecar says {metadata.get('sha256')}; the file is corrupt or was "
                                  "replaced - restore both files from the same save")
    try:
        tensors = _st_load(data)
    except Exception as err:  # safetensors raises its own SafetensorError for malformed content
        raise CheckpointError(f"{file} could not be parsed as safetensors ({err}); re-save it") from err
    if torch.device(device).type != "cpu":
        tensors = {name: tensor.to(device) for name, tensor in tensors.items()}
    return tensors, metadata


def _check_plain(obj: Any, where: str) -> None:
    """Raise if ``obj`` holds anything that ``torch.load(weights_only=True)`` would refuse."""
    if isinstance(obj, _PLAIN_TYPES):
        return
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, (str, int, float, bool, type(None))):
                raise ValueError(f"state key at {where} is a {type(key).__name__}; use str or int keys")
            _check_plain(value, f"{where}[{key!r}]")
        return
    if isinstance(obj, (list, tuple, set)):
        for index, value in enumerate(obj):
            _check_plain(value, f"{where}[{index}]")
        return
    raise ValueError(f"state value at {where} is a {type(obj).__name__}, which a weights_only load cannot "
                     "restore; convert it to tensors, numbers, strings, lists or dicts")


def save_state(path: str | os.PathLike[str], obj: Mapping[str, Any]) -> Path:
    """Write trainer state (plain dicts/lists/numbers/strings/tensors) atomically with ``torch.save``."""
    _check_plain(obj, "state")
    with _storage_errors(Path(path)), atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def load_state(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> Any:
    """Read a state file with ``torch.load(weights_only=True)``: no code is executed, ever."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"state file not found: {file}")
    try:
        return torch.load(file, map_location=map_location, weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError (bad zip), EOFError (truncated)
        raise CheckpointError(f"{file} is not a safe trainer-state file ({type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''}); it was not written by "
                              "mie.io.save_state or is corrupt - resume from another checkpoint") from err
