"""The errors a user can cause, one type per layer, each printed by the CLI as one line.

Every error the engine raises for bad input derives from :class:`MieError`. Its message reads
``<where>: <what> — <fix>``: the file or config key at fault, what is wrong with it, and what to do.
The ``mie`` command prints it as ``mie <cmd>: error: <message>`` and exits 1 (``-v`` adds the
traceback). Library code raises the type of its own layer; it never prints.

The concrete types also derive from the builtin a caller would naturally catch (``ValueError``,
``OSError``, ``FloatingPointError``, ``RuntimeError``), so code written against the builtins keeps working.
"""

from __future__ import annotations

import errno
import os

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DistributedError",
    "LimitError",
    "MieError",
    "NonFiniteLossError",
    "StorageError",
    "TokenizerError",
    "error_line",
    "storage_error",
]


class MieError(Exception):
    """Base of every user-facing error: ``str(error)`` is ``<where>: <what> — <fix>``.

    ``MieError("dataset.json: not a JSON object", fix="regenerate it")`` or
    ``MieError("not a JSON object", where="dataset.json", fix="regenerate it")``: ``where`` and
    ``fix`` are optional, and a message that already names its file is kept as written.
    """

    def __init__(self, what: str, *, where: str | os.PathLike[str] | None = None, fix: str | None = None):
        self.what = str(what)
        self.where = None if where is None else os.fspath(where)
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """The one-line form: ``<where>: <what> — <fix>`` (parts that are unset are left out)."""
        text = f"{self.where}: {self.what}" if self.where else self.what
        return f"{text} — {self.fix}" if self.fix else text

    def __str__(self) -> str:
        return self.message


class ConfigError(MieError, ValueError):
    """A config value, key or file is wrong; the message names the dotted key, the value and the fix."""

    key: str | None = None  # the dotted key of a type mismatch, when there is one


class DataError(MieError, ValueError):
    """A dataset file (manifest, annotation, CSV, image, shard) is missing, malformed or of the wrong type."""


class TokenizerError(MieError, ValueError):
    """A tokenizer file or an id sequence is invalid (bad JSON, unsafe regex, out-of-range id)."""


class CheckpointError(MieError, ValueError):
    """A checkpoint file is missing its sidecar, corrupt, truncated, not safetensors, unsafe or for another model."""


class LimitError(MieError, ValueError):
    """An input exceeds a safety limit (image pixels, tar member size, YAML aliases or nesting, regex time)."""


class NonFiniteLossError(MieError, FloatingPointError):
    """Training produced a NaN or infinite loss; the message names the step and the stage."""


class DistributedError(MieError, RuntimeError):
    """A distributed rank failed or stalled past the process-group timeout; the message names the rank."""


class StorageError(MieError, OSError):
    """The disk is full, read-only or refuses a write; the message names the path and the fix."""


_STORAGE_FIXES = {
    errno.ENOSPC: ("no space left on the device", "free some space or choose another output_dir"),
    errno.EDQUOT: ("disk quota exceeded", "free some space or choose another output_dir"),
    errno.EROFS: ("the file system is read-only", "choose a writable output_dir"),
    errno.EACCES: ("permission denied", "choose a directory you can write to, or fix its permissions"),
    errno.EPERM: ("operation not permitted", "choose a directory you can write to, or fix its permissions"),
    errno.ENOTDIR: ("a file stands where a folder is needed on this path", "choose another path or move the file"),
    errno.EISDIR: ("is a folder, not a file", "pass a file path"),
}


def storage_error(exc: OSError, path: str | os.PathLike[str] | None = None) -> MieError:
    """Turn an ``OSError`` from a read or write into a one-line :class:`MieError` naming the file.

    Full and read-only disks, permission problems and missing files each get their own fix.
    """
    where = path if path is not None else (exc.filename or None)
    what, fix = _STORAGE_FIXES.get(exc.errno or -1, (exc.strerror or str(exc) or type(exc).__name__, None))
    if isinstance(exc, FileNotFoundError):
        what, fix = "no such file or directory", "check the path"
    error = StorageError(what, where=where, fix=fix)
    error.errno = exc.errno
    return error


def error_line(exc: BaseException) -> str:
    """One line for an error: a :class:`~mie.errors.MieError` as written, a disk error with its fix.

    Python errors that bad input causes deep inside a parser get our wording rather than Python's:
    nesting too deep for the interpreter (``[[[[...`` in a JSON file) and text holding lone surrogates
    that cannot be written. Anything else is a bug in ``mie`` rather than in the user's input; it
    still gets one line, which says so and how to see the traceback.
    """
    if isinstance(exc, OSError) and not isinstance(exc, MieError) and exc.errno is not None:
        exc = storage_error(exc)
    if isinstance(exc, RecursionError):
        return str(LimitError("nested too deeply to read (deeper than Python's recursion limit)", where="input",
                              fix="flatten the JSON or YAML given to mie (a real file nests a few levels)"))
    if isinstance(exc, UnicodeEncodeError):
        chars = exc.object[exc.start:exc.end]
        bad = chars.encode("ascii", "backslashreplace").decode("ascii")[:40]
        if all("\ud800" <= c <= "\udfff" for c in chars):  # JSON can spell one: "\ud800"
            what = f"holds {bad}, a lone surrogate: not a Unicode character, so it cannot be written"
        else:
            what = f"holds {bad}, which the {exc.encoding} encoding cannot write"
        return str(DataError(what, where="text", fix="remove it from the input (or write the input as UTF-8)"))
    if isinstance(exc, (MieError, ValueError, FloatingPointError, OSError)):
        return " ".join(str(exc).split()) or type(exc).__name__
    detail = " ".join(str(exc).split())[:200]
    return (f"unexpected {type(exc).__name__}{': ' + detail if detail else ''} — this is a bug in mie; "
            "rerun with -v for the traceback and report it")
