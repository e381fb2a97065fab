"""Request bodies with a size limit, and uploaded images decoded in memory.

A body is refused (413) from its declared ``Content-Length`` before any byte is read, and, for a
chunked body that declares none, as soon as the bytes read pass the limit: a client cannot make the
server buffer more than the limit. Uploads never touch the disk: the bytes are decoded from memory by
:func:`mie.data.transforms.open_image`, which checks the declared pixel count before decoding (a
decompression bomb is refused from its header).
"""

from __future__ import annotations

import io
import json
from typing import Any

from PIL import Image
from starlette.requests import Request

from mie.data.transforms import LoadImage
from mie.errors import DataError, LimitError
from mie.serve.errors import ApiError

MAX_UPLOAD_BYTES = 8 * 1024 * 1024  # an image upload
MAX_JSON_BYTES = 64 * 1024  # a query, a chat turn, a text to evaluate
MAX_IMAGE_PIXELS = 4096 * 4096


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or a 413 :class:`ApiError` once it is (or declares to be) over ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "the Content-Length header is not a number")
        if int(declared) > limit:
            raise ApiError(413, f"the upload is {int(declared):,} bytes; the limit is {limit:,} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the upload is over the limit of {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limit: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """The JSON object in the body (a 400 :class:`ApiError` for anything else)."""
    body = await read_body(request, limit)
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, f"the request body is not JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return value


def text_field(payload: dict[str, Any], name: str, what: str) -> str:
    """``payload[name]`` as non-blank text, else a 400 :class:`ApiError` that says what to type."""
    value = payload.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, f"the {what} is empty: type some text first")
    return value.strip()


def int_field(payload: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    """``payload[name]`` as an int in ``[low, high]`` (``default`` when absent), else a 400."""
    value = payload.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ApiError(400, f"{name} must be a whole number from {low} to {high}, got {value!r}")
    return value


def decode_image(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """The uploaded bytes as an RGB image, decoded in memory; 400 for no image, 413 for too many pixels."""
    if not data:
        raise ApiError(400, "no image was uploaded: choose an image file first")
    try:
        return LoadImage(max_pixels)(io.BytesIO(data), name="the upload")
    except LimitError as exc:
        raise ApiError(413, f"the image is too large: {exc.what}; send a smaller image") from exc
    except (DataError, OSError, ValueError) as exc:
        raise ApiError(400, "the upload is not an image that can be read (send a PNG, JPEG, GIF, BMP or "
                            "WebP file)") from exc
