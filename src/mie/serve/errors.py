"""The one error type of the web app: an HTTP status and a message the page shows as it is."""

from __future__ import annotations


class ApiError(Exception):
    """A request the app answers with ``status`` and ``{"error": message}`` (never a stack trace)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message
