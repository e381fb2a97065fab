"""The web app's explanations, computed by :mod:`mie.explain` one result at a time, on demand.

``POST /api/explain/image`` ``{"row", "query", "method"}``: the heat map (Grad-CAM or attention rollout over
the ViT's patches) of one searched image for the query, as a 2-D list the page draws over the image, its
peak in the image's pixels and the centre-crop box the map covers. ``POST /api/explain/safety``
``{"text", "principle", "method"}``: the tokens' attributions to one principle's logit of the safety
evaluator's embedding classifier (integrated gradients or gradient x input).

A map costs tens of milliseconds to seconds, so nothing is computed with a search: the page asks for the
few it shows. Work is bounded per request (one image or one text of at most :data:`MAX_EXPLAIN_CHARS`), per
server (:data:`EXPLAIN_SLOTS` at once; a request waits up to :data:`EXPLAIN_WAIT_S` s for a slot, then gets
503 with ``Retry-After``), and repeats are answered from a small cache.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mie.serve.errors import ApiError
from mie.serve.uploads import held_slot, int_field, read_json, text_field

WEB_IMAGE_METHODS = ("gradcam", "rollout")  # integrated gradients (64 forward/backward passes) stays in the CLI
WEB_TEXT_METHODS = ("ig", "gradxinput")
MAX_EXPLAIN_QUERY_CHARS = 1_000  # as a search query
MAX_EXPLAIN_CHARS = 2_000  # the classifier reads its first 256 tokens; more text is only more tokenising
EXPLAIN_SLOTS = 1  # one map at a time: each uses the CPU cores the searches need too
EXPLAIN_WAIT_S = 10.0
CACHE_ENTRIES = 256
DIGITS = 3  # map values and token scores as sent (a 14 x 14 map is ~1.5 KB of JSON)


class ExplainGate:
    """At most ``slots`` explanations computed at once, a waiting request holding no thread; the answers
    of the last ``entries`` requests kept (least recently used first out)."""

    def __init__(self, slots: int = EXPLAIN_SLOTS, wait_s: float = EXPLAIN_WAIT_S, entries: int = CACHE_ENTRIES):
        self.wait_s, self.entries = wait_s, entries
        self._running = threading.Semaphore(slots)
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()

    def slot(self) -> AbstractAsyncContextManager[None]:
        """Hold a slot, waiting up to ``wait_s`` s for one; else a 503 that says to retry."""
        return held_slot(self._running, self.wait_s,
                         "the server is busy explaining other results; try again in a few seconds", retry_after=2)

    async def answer(self, key: tuple[Any, ...], work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The cached answer of ``key``, else ``work()`` run in a worker thread under a slot (and cached)."""
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return {**self._cache[key], "cached": True}
        async with self.slot():
            started = time.perf_counter()
            result = await run_in_threadpool(work)
            result["elapsed_ms"] = round(1000 * (time.perf_counter() - started), 1)
        with self._lock:
            self._cache[key] = result
            while len(self._cache) > self.entries:
                self._cache.popitem(last=False)
        return {**result, "cached": False}


def _gate(request: Request) -> ExplainGate:
    return request.app.state.explain_gate  # one per app (create_app)


def _choice(payload: dict[str, Any], name: str, choices: tuple[str, ...]) -> str:
    value = payload.get(name, choices[0])
    if value not in choices:
        raise ApiError(400, f"{name} must be one of {', '.join(choices)}, got {str(value)[:40]!r}")
    return value


async def explain_image(request: Request) -> Response:
    """The heat map of one searched image (``row``) for ``query`` (see the module docstring)."""
    state = request.app.state.serve
    if "search" not in state.tabs:
        raise ApiError(404, f"this server has no image heat maps: {state.name} is a {state.kind} model")
    payload = await read_json(request)
    query = text_field(payload, "query", "query")
    if len(query) > MAX_EXPLAIN_QUERY_CHARS:
        raise ApiError(400, f"the query is {len(query):,} characters; the limit is {MAX_EXPLAIN_QUERY_CHARS:,}")
    method = _choice(payload, "method", WEB_IMAGE_METHODS)
    state.need("model")
    index = state.index
    row = int_field(payload, "row", -1, 0, len(index.paths) - 1) if "row" in payload else None
    if row is None:
        raise ApiError(400, "row is missing: name the searched image by its row (a search result's row)")
    path = Path(index.paths[row])  # from the run's own dataset, never from the request
    if not path.is_file():
        raise ApiError(404, f"image {index.image_ids[row]} is not a file that can be shown")

    def work() -> dict[str, Any]:
        from mie.data.transforms import LoadImage
        from mie.explain import image_map

        run = state.run
        image = LoadImage(run.config.data.max_image_pixels)(path)
        heat = image_map(run.model, run.transform(image).to(run.device), run.tokenize(query).to(run.device), method)
        width, height = image.size
        side = min(width, height)
        return {"row": row, "query": query, "method": method, "width": width, "height": height,
                # the map covers the centre crop the model saw: [x, y, side, side] in the image's pixels
                "box": [(width - side) // 2, (height - side) // 2, side, side],
                "peak": list(heat.peak_xy(width, height)),
                "score": None if heat.score != heat.score else round(heat.score, 4),  # rollout: no score (nan)
                "map": [[round(v, DIGITS) for v in line] for line in heat.values.float().cpu().tolist()]}

    return JSONResponse(await _gate(request).answer(("image", row, query, method), work))


def classifier_of(evaluator: Any) -> Any:
    """The evaluator's embedding classifier, or None when it runs without one."""
    return next((m for m in getattr(evaluator, "methods", []) if getattr(m, "name", None) == "embeddings"), None)


async def explain_safety(request: Request) -> Response:
    """Token attributions of ``text`` to one principle of the embedding classifier (see the module docstring)."""
    state = request.app.state.serve
    payload = await read_json(request)
    text = text_field(payload, "text", "text to explain")
    if len(text) > MAX_EXPLAIN_CHARS:
        raise ApiError(400, f"the text is {len(text):,} characters; token attributions take at most "
                            f"{MAX_EXPLAIN_CHARS:,}: explain a part of it")
    method = _choice(payload, "method", WEB_TEXT_METHODS)
    principle = payload.get("principle")
    state.need("safety")
    classifier = classifier_of(state.evaluator)
    if classifier is None:
        raise ApiError(404, "token attributions explain the embedding classifier, which this server does not run "
                            f"(safety methods: {', '.join(state.methods)}); start mie serve with "
                            "--safety-methods rules,embeddings")
    if principle is not None and principle not in classifier.principles:
        raise ApiError(400, f"principle must be one of {', '.join(classifier.principles)}, "
                            f"got {str(principle)[:40]!r}")

    def work() -> dict[str, Any]:
        from mie.explain.safety_attr import safety_attributions

        attr = safety_attributions(classifier, text, principle, method)
        result = attr.as_dict()
        del result["scores"]
        result["tokens"] = [{"token": t, "score": round(s, DIGITS + 1)}
                            for t, s in zip(attr.tokens, attr.scores, strict=True)]
        result["principle"] = attr.target.removesuffix(" logit")
        return result

    return JSONResponse(await _gate(request).answer(("safety", text, principle, method), work))
