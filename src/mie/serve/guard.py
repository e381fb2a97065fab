"""The ASGI wrappers in front of every route: only this machine's own page may drive the app.

:class:`RequestGuard` checks each request before the app sees it:

* **Host** (every request): the header must name an allowed host — ``127.0.0.1``, ``localhost``, ``::1``
  and the ``--host`` given, with any port. Anything else is 421 (a DNS-rebinding page at
  ``attacker.example`` that resolves to 127.0.0.1 sends its own name here).
* **Origin** (every request but GET and HEAD): when sent, it must be ``http(s)://`` an allowed host on
  the port of the Host header (the page itself); else 403. Browsers send Origin on every cross-origin
  POST; without one, ``Sec-Fetch-Site`` must be absent (curl, scripts) or ``same-origin``/``none``.
* **Content-Type** (the same requests): ``application/json`` (any charset), except ``/api/caption``,
  which takes the raw bytes of an image (``image/*`` or ``application/octet-stream``); else 415. The
  types an HTML form or a "simple" cross-site fetch can send (form, multipart, text/plain) never pass.
* **OPTIONS** is 405: a CORS preflight is never granted, and no response carries an
  ``Access-Control-*`` header (any such header is dropped on the way out).

:class:`SecurityHeaders` adds :data:`SECURITY_HEADERS` to every response, refusals included.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

# The page loads only its own script and style; images may come from this server or a local blob (a preview).
SECURITY_HEADERS = [(b"content-security-policy", b"default-src 'self'; img-src 'self' blob: data:; object-src 'none'"),
                    (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY")]
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
SAFE_METHODS = ("GET", "HEAD")
RAW_BODY_PATHS = ("/api/caption",)  # these take an image's bytes, not JSON
RAW_BODY_TYPES = ("image/", "application/octet-stream")
SAME_ORIGIN_FETCH = ("same-origin", "none")


def allowed_hosts(extra: Iterable[str] = ()) -> frozenset[str]:
    """The host names (lower case, IPv6 without brackets) the app answers: loopback and ``extra``."""
    return frozenset(h.strip().strip("[]").lower() for h in (*LOOPBACK_HOSTS, *extra) if h.strip())


def split_host(value: str, default_port: int | None = None) -> tuple[str, int | None] | None:
    """``(host, port)`` of a Host header value (``name``, ``name:port``, ``[v6]:port``); None if malformed."""
    try:
        parts = urlsplit("//" + value)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host or parts.path or parts.query or parts.fragment or "@" in value:
        return None
    return host.lower(), port if port is not None else default_port


class RequestGuard:
    """ASGI middleware refusing what only another web page would send (see the module docstring)."""

    def __init__(self, app: Callable, hosts: Iterable[str] = ()) -> None:
        self.app = app
        self.hosts = allowed_hosts(hosts)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        refusal = self.refusal(scope, headers)
        if refusal is not None:
            if scope["type"] == "websocket":  # no websocket route exists: close it before anything else
                await send({"type": "websocket.close", "code": 1008})
                return
            await _send_error(send, *refusal)
            return
        await self.app(scope, receive, _without_cors(send))

    def refusal(self, scope: dict, headers: dict[str, str]) -> tuple[int, str] | None:
        """``(status, message)`` when the request must not reach the app, else None."""
        host = split_host(headers.get("host", ""), 443 if scope.get("scheme") in ("https", "wss") else 80)
        if host is None or host[0] not in self.hosts:
            shown = headers.get("host", "")[:100] or "none"
            return 421, (f"this server answers only to {', '.join(sorted(self.hosts))}, not to the host {shown!r}: "
                         "open the page at http://127.0.0.1:PORT/")
        method = scope.get("method", "GET")
        if scope["type"] != "http" or method in SAFE_METHODS:
            return None
        if method == "OPTIONS":
            return 405, "cross-origin requests are not allowed: use the page this server serves"
        origin = headers.get("origin")
        if origin is not None:
            if not self._same_origin(origin, host[1]):
                return 403, (f"requests from {origin[:100]!r} are not allowed: "
                             "only the page this server serves may send them")
        elif headers.get("sec-fetch-site", "same-origin") not in SAME_ORIGIN_FETCH:
            return 403, "cross-site requests are not allowed: only the page this server serves may send them"
        media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if scope.get("path") in RAW_BODY_PATHS:
            if not media.startswith(RAW_BODY_TYPES):
                return 415, (f"the upload must be sent as image/* or application/octet-stream, not "
                             f"{media[:60] or 'no content type'!r}")
        elif media != "application/json":
            return 415, f"the request body must be application/json, not {media[:60] or 'no content type'!r}"
        return None

    def _same_origin(self, origin: str, port: int | None) -> bool:
        scheme = origin.split("://", 1)[0].lower() if "://" in origin else ""
        if scheme not in ("http", "https"):
            return False  # "null" (a sandboxed frame, a file), or anything that is not a web page's origin
        parsed = split_host(origin.split("://", 1)[1], 443 if scheme == "https" else 80)
        return parsed is not None and parsed[0] in self.hosts and parsed[1] == port


class SecurityHeaders:
    """ASGI wrapper adding :data:`SECURITY_HEADERS` to every response (streams and refusals included);
    ``.state`` is the app's state (``.state.serve`` the :class:`~mie.serve.state.ServeState`)."""

    def __init__(self, app: Callable, state: object) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _without_cors(send: Callable) -> Callable:
    async def send_plain(message: dict) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [(k, v) for k, v in message.get("headers", [])
                                  if not bytes(k).lower().startswith(b"access-control-")]
        await send(message)
    return send_plain


async def _send_error(send: Callable, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 405:
        headers.append((b"allow", b"GET, HEAD, POST"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
