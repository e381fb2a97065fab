"""The error types of the web app (an HTTP status and a message the page shows as it is), and the
scrubbing that keeps absolute paths of this machine out of every message a client can read."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

# An absolute path inside a message: a "/" after a start, a space, a quote or a bracket, then path characters.
_ABSOLUTE = re.compile(r"(?<![\w.~-])/(?:[\w.@+-]+/)*[\w.@+-]+")


class ApiError(Exception):
    """A request the app answers with ``status`` and ``{"error": message}`` (never a stack trace);
    ``retry_after`` (seconds) adds a ``Retry-After`` header, for a 503 of a full queue."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.retry_after = status, message, retry_after

    @property
    def headers(self) -> dict[str, str] | None:
        """The response's extra headers (``Retry-After``), or None."""
        return None if self.retry_after is None else {"retry-after": str(self.retry_after)}


class ClientGone(Exception):
    """The client closed the connection before its request was read: nothing to answer, nothing to fix."""


def public_text(text: str, named: Iterable[tuple[Path, str]] = ()) -> str:
    """``text`` without this machine's absolute paths: each ``(folder, name)`` in ``named`` (e.g. the run
    directory and its folder name) becomes ``name``, and any other absolute path keeps only its last two
    parts (``…/checkpoints/best.safetensors``), so a message still says which file without saying where."""
    for folder, name in named:
        for form in {str(folder), str(Path(folder).resolve()), os.path.abspath(folder)}:
            if len(form) > 1 and os.path.isabs(form):
                text = text.replace(form, name)
    return _ABSOLUTE.sub(_tail, text)


def _tail(match: re.Match[str]) -> str:
    parts = match.group(0).split("/")
    return match.group(0) if len(parts) <= 3 else "…/" + "/".join(parts[-2:])
