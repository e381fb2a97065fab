"""Request bodies with a size limit, strict JSON, checked fields, and uploaded images decoded in memory.

A body is refused (413) from its declared ``Content-Length`` before any byte is read, and, for a
chunked body that declares none, as soon as the bytes read pass the limit: a client cannot make the
server buffer more than the limit. A client that hangs up mid-body is :class:`ClientGone` (logged as
such, never as a failure). JSON is parsed strictly: no numbers over 30 digits, no NaN or Infinity, no
text that is not valid Unicode (a lone surrogate), at most :data:`MAX_JSON_DEPTH` levels of nesting —
each a 400 in our own words, never Python's.

Uploads never touch the disk. :func:`open_upload` reads the header first (over :data:`MAX_IMAGE_PIXELS`
is a 413 before decoding), then decodes at most :data:`MAX_DECODE_SIDE` pixels a side (a JPEG is decoded
at a reduced scale; others are decoded, then shrunk before the RGB copy). At most :data:`DECODE_SLOTS`
uploads are decoded and embedded at once and :data:`DECODE_WAITING` more are read or wait (up to
:data:`DECODE_WAIT_S` s for a slot); beyond that a 503 with ``Retry-After``. So decoding holds at most
``DECODE_SLOTS x ~70 MB`` (a 4096x4096 RGBA PNG: 64 MB decoded plus its 3 MB thumbnail), and bodies at most
``(DECODE_SLOTS + DECODE_WAITING) x MAX_UPLOAD_BYTES`` = 256 MB (twice that for the moment a body's chunks
are joined): at most about 0.7 GB above the loaded server, which stays under 2 GB. Measured with
``acceptance/hostile_serve.py`` (tiny clip run, loaded at 0.3 GB): 80 concurrent uploads of a 49 KB
all-zero 4096x4096 PNG peak at about 0.5 GB RSS for the whole server (5.2 GB before these bounds), and
80 concurrent 8 MB bodies at about 0.8 GB.
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
import warnings
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
from PIL import Image
from starlette.requests import ClientDisconnect, Request

from mie.serve.errors import ApiError, ClientGone

MAX_UPLOAD_BYTES = 8 * 1024 * 1024  # an image upload
MAX_JSON_BYTES = 64 * 1024  # a query, a chat turn, a text to evaluate
MAX_JSON_DEPTH = 16  # the deepest request is {"messages": [{...}]}: 3 levels
MAX_NUMBER_DIGITS = 30
MAX_IMAGE_PIXELS = 4096 * 4096  # declared by the header; more is refused before decoding
MAX_DECODE_SIDE = 1024  # captions need a few hundred pixels a side; a larger image is shrunk while decoding
DECODE_SLOTS, DECODE_WAITING, DECODE_WAIT_S = 2, 30, 20.0
_DIGITS = re.compile(r"[0-9]{1,18}")  # ASCII digits only: "²".isdigit() is True, but int("²") fails
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, TypeError, IndexError, KeyError, EOFError,
                  ZeroDivisionError, OverflowError)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or a 413 :class:`ApiError` once it is (or declares to be) over ``limit`` bytes;
    :class:`ClientGone` when the client hangs up before the end."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not _DIGITS.fullmatch(declared.strip()):
            raise ApiError(400, "the Content-Length header is not a whole number of bytes")
        if int(declared) > limit:
            raise ApiError(413, f"the upload is {int(declared):,} bytes; the limit is {limit:,} bytes")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"the upload is over the limit of {limit:,} bytes")
            chunks.append(chunk)
    except ClientDisconnect as exc:
        raise ClientGone() from exc
    return b"".join(chunks)


def _big_number(text: str) -> Any:
    raise ApiError(400, f"the request body has a number of {len(text):,} characters; numbers have at most "
                        f"{MAX_NUMBER_DIGITS} digits")


def _no_constant(name: str) -> Any:
    raise ApiError(400, f"the request body has {name}, which is not a JSON number: send a plain number")


async def read_json(request: Request, limit: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """The JSON object in the body (a 400 :class:`ApiError` in our own words for anything else)."""
    body = await read_body(request, limit)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"the request body is not UTF-8 text (a bad byte at position {exc.start})") from exc
    try:
        value = json.loads(text, parse_int=lambda s: int(s) if len(s) <= MAX_NUMBER_DIGITS else _big_number(s),
                           parse_float=lambda s: float(s) if len(s) <= MAX_NUMBER_DIGITS else _big_number(s),
                           parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"the request body is not JSON (line {exc.lineno}, column {exc.colno}: "
                            "check the brackets, quotes and commas)") from exc
    except RecursionError as exc:
        raise ApiError(400, f"the request body is nested too deeply (the limit is {MAX_JSON_DEPTH} levels)") from exc
    if not isinstance(value, dict):
        raise ApiError(400, "the request body must be a JSON object")
    _check_values(value)
    return value


def _check_values(value: Any) -> None:
    """Every string of ``value`` is valid Unicode and the nesting is at most :data:`MAX_JSON_DEPTH` deep."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ApiError(400, f"the request body is nested too deeply (the limit is {MAX_JSON_DEPTH} levels)")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
            stack.extend((k, depth) for k in item)
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ApiError(400, f"the request body has text that is not valid Unicode (the escape "
                                    f"\\u{ord(item[exc.start]):04x} is half of a character pair)") from exc


def text_field(payload: dict[str, Any], name: str, what: str) -> str:
    """``payload[name]`` as non-blank text, else a 400 :class:`ApiError` that says what to type."""
    value = payload.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, f"the {what} is empty: type some text first")
    return value.strip()


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def int_field(payload: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    """``payload[name]`` as an int in ``[low, high]`` (``default`` when absent), else a 400."""
    value = payload.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ApiError(400, f"{name} must be a whole number from {low} to {high}, got {_shown(value)}")
    return value


def bool_field(payload: dict[str, Any], name: str, default: bool) -> bool:
    """``payload[name]`` as true or false (``default`` when absent), else a 400."""
    value = payload.get(name, default)
    if not isinstance(value, bool):
        raise ApiError(400, f"{name} must be true or false, got {_shown(value)}")
    return value


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    """The query parameter ``name`` as an int in ``[low, high]``: ASCII digits only, else a 400."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not _DIGITS.fullmatch(raw):
        raise ApiError(400, f"{name} must be a whole number from {low} to {high}, got {_shown(raw)}")
    return int_field({name: int(raw)}, name, default, low, high)


class DecodeGate:
    """At most ``slots + waiting`` uploads admitted (read, waiting or decoding) and at most ``slots``
    decoded at once; beyond either, a 503 with ``Retry-After``. Waiting holds no thread."""

    def __init__(self, slots: int = DECODE_SLOTS, waiting: int = DECODE_WAITING, wait_s: float = DECODE_WAIT_S):
        self.slots, self.waiting, self.wait_s = slots, waiting, wait_s
        self._running = threading.Semaphore(slots)
        self._lock = threading.Lock()
        self.admitted = 0

    @asynccontextmanager
    async def admitted_upload(self) -> AsyncIterator[None]:
        """Count one upload in while its body is read and decoded; a 503 when too many are in."""
        with self._lock:
            if self.admitted >= self.slots + self.waiting:
                raise ApiError(503, f"{self.admitted} images are being captioned; try again in a few seconds",
                               retry_after=2)
            self.admitted += 1
        try:
            yield
        finally:
            with self._lock:
                self.admitted -= 1

    def decoding(self) -> AbstractAsyncContextManager[None]:
        """Hold one of the ``slots`` decoding slots, waiting up to ``wait_s`` s for one; else a 503."""
        return held_slot(self._running, self.wait_s,
                         "the server is busy captioning other images; try again in a few seconds", retry_after=5)


def decode_image(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS, max_side: int = MAX_DECODE_SIDE) -> Image.Image:
    """The uploaded bytes as an RGB image of at most ``max_side`` pixels a side (see :func:`open_upload`)."""
    return open_upload(data, max_pixels, max_side)[0]


def open_upload(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS,
                max_side: int = MAX_DECODE_SIDE) -> tuple[Image.Image, tuple[int, int]]:
    """``(image, (width, height))``: the uploaded bytes as an RGB image of at most ``max_side`` pixels a
    side, decoded in memory, and the size the file declares; 400 for no image or bytes that are not one,
    413 for a header that declares more than ``max_pixels`` pixels (checked before decoding)."""
    if not data:
        raise ApiError(400, "no image was uploaded: choose an image file first")
    too_large = "the image is too large: it declares {} pixels, over the limit of {:,}; send a smaller image"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ApiError(413, too_large.format(f"{width}x{height} = {width * height:,}", max_pixels))
                image.draft("RGB", (max_side, max_side))  # JPEG: decode at 1/2, 1/4 or 1/8 scale
                if max(image.size) > max_side:
                    image.thumbnail((max_side, max_side))
                return image.convert("RGB"), (width, height)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ApiError(413, too_large.format("too many", max_pixels)) from exc
    except _DECODE_ERRORS as exc:
        raise ApiError(400, "the upload is not an image that can be read (send a PNG, JPEG, GIF, BMP or "
                            "WebP file)") from exc


@asynccontextmanager
async def held_slot(slots: threading.Semaphore, wait_s: float, busy: str, retry_after: int) -> AsyncIterator[None]:
    """Hold one of ``slots`` without blocking the event loop (polling every 20 ms for up to ``wait_s`` s);
    past that, a 503 saying ``busy`` with ``Retry-After``."""
    deadline = time.monotonic() + wait_s
    while not slots.acquire(blocking=False):
        if time.monotonic() > deadline:
            raise ApiError(503, busy, retry_after=retry_after)
        await anyio.sleep(0.02)
    try:
        yield
    finally:
        slots.release()
