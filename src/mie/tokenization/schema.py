"""Reading and type-checking tokenizer JSON files: any bytes on disk give one :class:`TokenizerError` line.

``read_tokenizer_json`` turns every way a file's bytes can be wrong (not UTF-8, not JSON, nested too
deeply for the parser, a top level that is not an object) into a ``TokenizerError`` naming the file.
``field`` reads one key of a parsed document and checks its JSON type, naming the dotted key when it is
wrong. Readers raise without a file name and the loader adds it with :func:`in_file`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mie.errors import MieError, TokenizerError

RETRAIN_FIX = "retrain the tokenizer with `mie tokenizer train` or restore the file"
UTF8_FIX = "save it as UTF-8"
_MISSING = object()
_TYPE_NAMES = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number",
               bool: "a boolean", type(None): "null"}


def json_type(value: Any) -> str:
    """The JSON name of ``value``'s type, with its article: ``an object``, ``a list``, ``null``, ..."""
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def short(value: Any, limit: int = 60) -> str:
    """A one-line, bounded description of a JSON value for an error message (containers by type only)."""
    if isinstance(value, (dict, list)):
        return json_type(value)
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_tokenizer_json(text: str, where: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """``json.loads(text)`` as a JSON object; bad syntax, deep nesting or another top level is a TokenizerError."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise TokenizerError(f"not valid JSON ({err.msg} at line {err.lineno} column {err.colno})",
                             where=where, fix=RETRAIN_FIX) from None
    except RecursionError:
        # CPython's parser recurses once per '[' or '{'; '[' * 100000 exhausts the stack.
        raise TokenizerError("JSON nested too deeply to read", where=where, fix=RETRAIN_FIX) from None
    except ValueError as err:  # e.g. an integer of more than 4300 digits
        raise TokenizerError(f"not valid JSON ({err})", where=where, fix=RETRAIN_FIX) from None
    if not isinstance(data, dict):
        raise TokenizerError(f"the top level is {json_type(data)}, not a JSON object", where=where, fix=RETRAIN_FIX)
    return data


def read_tokenizer_json(path: str | os.PathLike[str], missing_fix: str = "train one with `mie tokenizer train`"
                        ) -> dict[str, Any]:
    """The JSON object in ``path``; a missing file is FileNotFoundError, any bad content a TokenizerError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer file {path} does not exist; {missing_fix}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise TokenizerError(f"not UTF-8 text: undecodable byte at offset {err.start}", where=path,
                             fix=UTF8_FIX) from None
    return parse_tokenizer_json(text, path)


def field(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], parent: str = "",
          default: Any = _MISSING) -> Any:
    """``data[key]`` checked to be of JSON type ``kind`` (a bool is never an int); errors name ``parent.key``.

    Example: ``field(spec, "vocab", dict, "model")`` raises ``model.vocab must be an object, got a list``.
    """
    name = f"{parent}.{key}" if parent else key
    if key not in data:
        if default is not _MISSING:
            return default
        raise TokenizerError(f"missing key {name!r}", fix=RETRAIN_FIX)
    value = data[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        expected = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
        raise TokenizerError(f"{name} must be {expected}, got {short(value)}", fix=RETRAIN_FIX)
    return value


def check_keys(data: Mapping[str, Any], allowed: tuple[str, ...], name: str) -> None:
    """Refuse a key of ``data`` outside ``allowed``: a file this version did not write may mean something else."""
    unknown = [key for key in data if key not in allowed]
    if unknown:
        raise TokenizerError(f"{name} has unknown key {short(unknown[0])} (known: {', '.join(allowed)})",
                             fix=RETRAIN_FIX)


def id_error(idx: int, size: int) -> TokenizerError:
    """``token id -1 is not in the vocabulary (0..N-1)``: the error of an id outside ``range(size)``."""
    return TokenizerError(f"token id {idx} is not in the vocabulary (0..{size - 1})",
                          fix="use only ids this tokenizer produced")


def in_file(error: MieError, path: str | os.PathLike[str]) -> MieError:
    """``error`` with ``path`` as its place, unless it already names one."""
    if error.where is not None:
        return error
    return type(error)(error.what, where=path, fix=error.fix)
