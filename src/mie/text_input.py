"""Read user text from a file or standard input with the same checks and a size cap.

A command that takes ``FILE`` or ``-`` reads both the same way: bytes, at most ``max_bytes`` of them,
checked as they arrive. A NUL byte means binary data and an undecodable byte means not UTF-8; either
is refused at once with its byte offset, so piping an image or ``/dev/urandom`` into ``mie safety
evaluate -`` ends in one line instead of feeding megabytes of garbage to the rules. Lines longer
than a caller's limit are refused with their line number (a rule set or model cannot use more)::

    lines = read_input_lines("-", max_line_chars=100_000)   # [(line number, text), ...]
"""

from __future__ import annotations

import codecs
import os
import sys
from pathlib import Path
from typing import IO, Any

from mie.errors import DataError, LimitError, storage_error

STDIN = "-"
MAX_INPUT_BYTES = 32 << 20  # 32 MiB: hundreds of thousands of lines; more is split into several files
MAX_LINE_CHARS = 100_000  # a default line limit for commands whose model reads a few hundred tokens
CHUNK_BYTES = 1 << 20


def _where(source: str) -> str:
    return "stdin" if source == STDIN else source


def _fix(source: str) -> str:
    return "pipe UTF-8 text into it" if source == STDIN else "save the file as UTF-8 text"


def _mib(n: int) -> str:
    return f"{n / (1 << 20):g} MiB"


def read_text_input(source: str | os.PathLike[str], *, max_bytes: int | None = None,
                    stdin: IO[Any] | None = None) -> str:
    """The UTF-8 text of file ``source``, or of standard input when ``source`` is ``-``.

    Refuses (one-line :class:`~mie.errors.DataError` / :class:`~mie.errors.LimitError` naming the
    file or ``stdin``): a path that is not a regular file, more than ``max_bytes`` bytes, a NUL byte
    (binary data) and bytes that are not UTF-8 — each as soon as it is read. ``max_bytes`` defaults
    to :data:`MAX_INPUT_BYTES`.
    """
    source = os.fspath(source)
    max_bytes = MAX_INPUT_BYTES if max_bytes is None else max_bytes
    if source == STDIN:
        stream = sys.stdin if stdin is None else stdin
        binary = getattr(stream, "buffer", None)
        if binary is None:  # a text stream without bytes underneath (io.StringIO): already decoded
            return _checked_text(stream.read(max_bytes + 1), source, max_bytes)
        return _read_bytes(binary, source, max_bytes)
    path = Path(source)
    if not path.is_file():
        raise DataError("does not exist or is not a file", where=source, fix="pass a text file or - for stdin")
    try:
        with open(path, "rb") as handle:
            return _read_bytes(handle, source, max_bytes)
    except OSError as err:
        raise storage_error(err, path) from err


def _read_bytes(stream: IO[bytes], source: str, max_bytes: int) -> str:
    """Decode ``stream`` a chunk at a time, refusing at the first NUL or undecodable byte or past the cap."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    parts: list[str] = []
    total = 0
    while True:
        chunk = stream.read(min(CHUNK_BYTES, max_bytes + 1 - total))  # one byte past the cap tells
        if not chunk:
            break
        pending = len(decoder.getstate()[0])  # bytes of a character split across chunks
        nul = chunk.find(b"\0")
        try:
            parts.append(decoder.decode(chunk if nul < 0 else chunk[:nul]))
        except UnicodeDecodeError as err:
            raise DataError(f"byte {total - pending + err.start} is not UTF-8 text", where=_where(source),
                            fix=_fix(source)) from None
        if nul >= 0:
            raise DataError(f"byte {total + nul} is a NUL byte: this is binary data, not text",
                            where=_where(source), fix=_fix(source))
        total += len(chunk)
        if total > max_bytes:
            raise LimitError(f"holds more than {_mib(max_bytes)} of text", where=_where(source),
                             fix="split the input into smaller files")
    pending = len(decoder.getstate()[0])
    if pending:  # the input ends inside a character
        raise DataError(f"byte {total - pending} is not UTF-8 text", where=_where(source), fix=_fix(source))
    return "".join(parts)


def _checked_text(text: str, source: str, max_bytes: int) -> str:
    """The checks of :func:`_read_bytes` for text that is already decoded (sizes in characters)."""
    if len(text) > max_bytes:
        raise LimitError(f"holds more than {_mib(max_bytes)} of text", where=_where(source),
                         fix="split the input into smaller files")
    nul = text.find("\0")
    if nul >= 0:
        raise DataError(f"character {nul} is a NUL byte: this is binary data, not text", where=_where(source),
                        fix=_fix(source))
    return text


def read_input_lines(source: str | os.PathLike[str], *, max_line_chars: int, max_bytes: int | None = None,
                     keep_blank: bool = False, stdin: IO[Any] | None = None) -> list[tuple[int, str]]:
    """``(line number, line)`` for each line of :func:`read_text_input` (blank lines left out unless
    ``keep_blank``); a line over ``max_line_chars`` characters is a LimitError naming its number."""
    source = os.fspath(source)
    lines = read_text_input(source, max_bytes=max_bytes, stdin=stdin).splitlines()
    for number, line in enumerate(lines, start=1):
        if len(line) > max_line_chars:
            raise LimitError(f"line {number} is {len(line):,} characters; the limit is {max_line_chars:,}",
                             where=_where(source), fix="split it into shorter lines")
    return [(n, line) for n, line in enumerate(lines, start=1) if keep_blank or line.strip()]
