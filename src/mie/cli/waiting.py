"""``waiting("scoring ...")``: a status line on a terminal while a command works, gone when it is done.

Commands whose work takes seconds to minutes before they print anything (``mie eval`` re-scoring a run,
``embed``, ``search``, ``translate``) say what they are doing on stderr, but only on a terminal and only
for the wait: the line is erased when the block ends (or fails), so a pipe, a log file or a one-line error
gets nothing extra::

    with waiting(f"scoring {run_dir} on test"):
        result = evaluate(...)
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import IO

ERASE = "\r\033[K"  # back to the line's start, clear to its end


@contextlib.contextmanager
def waiting(text: str, stream: IO[str] | None = None) -> Iterator[None]:
    """Show ``text …`` on ``stream`` (stderr) while the block runs, when it is a terminal."""
    out = stream if stream is not None else sys.stderr
    isatty = getattr(out, "isatty", None)
    shown = bool(isatty and isatty())
    if shown:
        out.write(f"{text} …")
        out.flush()
    try:
        yield
    finally:
        if shown:
            out.write(ERASE)
            out.flush()
