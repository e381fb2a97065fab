"""The routes of ``mie serve``: a Starlette app, JSON in and out, one page of plain HTML and JavaScript.

Every error becomes ``{"error": message}`` with its status (400 bad input, 413 too large, 415 not JSON,
403/421 not this machine's page (:mod:`mie.serve.guard`), 503 still loading or busy (with ``Retry-After``),
500 a failure, logged with its traceback on the server); the page shows the message as text. No message
names an absolute path of this machine (:meth:`ServeState.public`); a client that hangs up is logged as such.

=============================  ==============================================================
``GET /``                      the page (``static/index.html``; ``/static/*`` its script and style)
``GET /api/status``            kind, tabs, readiness and loading progress
``POST /api/search``           ``{"query", "k"}`` -> the k best test images with cosine scores
``GET /api/image/{i}``         image ``i`` of the searched split
``POST /api/caption``          the raw bytes of an image (``?k=``) -> the best captions of the split
``GET /api/report``            report.md, results.json, the plots' names and the run's folder name
``GET /api/plot/{n}``          a PNG under the run's ``plots/``
``POST /api/chat``             ``{"messages", "filter"}`` -> server-sent events (tokens, then the verdict)
``POST /api/evaluate``         ``{"text"}`` -> the safety evaluator's verdict per principle, with reasons
``POST /api/explain/image``    ``{"row", "query", "method"}`` -> a searched image's heat map (:mod:`mie.serve.explain`)
``POST /api/explain/safety``   ``{"text", "principle", "method"}`` -> the classifier's token attributions
=============================  ==============================================================
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from mie.errors import error_line
from mie.serve.errors import ApiError, ClientGone
from mie.serve.explain import ExplainGate, explain_image, explain_safety
from mie.serve.guard import RequestGuard, SecurityHeaders
from mie.serve.state import ServeState
from mie.serve.uploads import (
    MAX_UPLOAD_BYTES,
    bool_field,
    int_field,
    open_upload,
    query_int,
    read_body,
    read_json,
    text_field,
)

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
MAX_QUERY_CHARS = 1_000
MAX_CHAT_CHARS = 8_000
MAX_EVALUATE_CHARS = 20_000  # a page of text; the rules and the sentence encoder gain nothing from more


def create_app(source: str, *, checkpoint: str = "best", safety_methods: str = "auto", cache_dir: Path | None = None,
               loader: Callable[[ServeState], None] | None = None, start: bool = True,
               hosts: Iterable[str] = ()) -> Any:
    """The app serving ``source`` (a clip or lm run directory, or a pretrained chat model name).

    Loading starts in a background thread at once (``start=False`` leaves it to ``app.state.serve.start()``);
    ``app.state.serve`` is the :class:`ServeState`. Bad ``source`` fails here, before anything is served.
    Requests must name 127.0.0.1, localhost, ::1 or one of ``hosts`` (``mie serve --host``) in their Host
    header, and state-changing ones must come from the page itself (:class:`~mie.serve.guard.RequestGuard`).
    """
    state = ServeState(source, checkpoint, safety_methods, cache_dir, loader)
    routes = [
        Route("/", _page), Route("/api/status", _status), Route("/api/search", _search, methods=["POST"]),
        Route("/api/image/{row}", _image), Route("/api/caption", _caption, methods=["POST"]),
        Route("/api/report", _report), Route("/api/plot/{name}", _plot),
        Route("/api/chat", _chat, methods=["POST"]), Route("/api/evaluate", _evaluate, methods=["POST"]),
        Route("/api/explain/image", explain_image, methods=["POST"]),
        Route("/api/explain/safety", explain_safety, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={ApiError: _api_error, HTTPException: _http_error,
                                                       ClientGone: _client_gone, ClientDisconnect: _client_gone,
                                                       Exception: _server_error})
    app.state.serve = state
    app.state.explain_gate = ExplainGate()
    if start:
        state.start()
    return SecurityHeaders(RequestGuard(app, hosts), app.state)


def _state(request: Request) -> ServeState:
    return request.app.state.serve


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse({"error": _state(request).public(exc.message)}, status_code=exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": _state(request).public(str(exc.detail))}, status_code=exc.status_code)


async def _client_gone(request: Request, exc: Exception) -> Response:
    log.info("mie serve: %s %s: the client went away before its request was read", request.method, request.url.path)
    return Response(status_code=400)  # nobody is there to read it


async def _server_error(request: Request, exc: Exception) -> Response:
    # Starlette re-raises the exception after this response, so the server's log gets its traceback once.
    line = _state(request).public(error_line(exc))
    log.error("mie serve: %s %s failed: %s", request.method, request.url.path, line)
    return JSONResponse({"error": line}, status_code=500)


def _need_kind(state: ServeState, tab: str) -> None:
    if tab not in state.tabs:
        raise ApiError(404, f"this server has no {tab} tab: {state.name} is a {state.kind} model")


async def _page(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", media_type="text/html")


async def _status(request: Request) -> Response:
    return JSONResponse(_state(request).status())


async def _search(request: Request) -> Response:
    state = _state(request)
    _need_kind(state, "search")
    payload = await read_json(request)
    query = text_field(payload, "query", "query")
    if len(query) > MAX_QUERY_CHARS:
        raise ApiError(400, f"the query is {len(query):,} characters; the limit is {MAX_QUERY_CHARS:,}")
    k = int_field(payload, "k", 8, 1, 100)
    state.need("model")

    def work() -> dict[str, Any]:
        started = time.perf_counter()
        hits = state.index.top_images(state.run.encode_text([query])[0], k)
        elapsed = 1000 * (time.perf_counter() - started)
        index = state.index
        return {"query": query, "split": index.split, "elapsed_ms": round(elapsed, 2),
                "results": [{"rank": rank, "row": row, "score": round(score, 4), "id": index.image_ids[row],
                             "name": Path(index.paths[row]).name, "image": f"/api/image/{row}"}
                            for rank, (row, score) in enumerate(hits, 1)]}

    return JSONResponse(await run_in_threadpool(work))


async def _image(request: Request) -> Response:
    state = _state(request)
    state.need("model")
    raw = request.path_params["row"]
    row = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 9 else -1
    if state.index is None or not 0 <= row < len(state.index.paths):
        raise ApiError(404, f"no image {raw[:20]!r} in the searched split")
    path = Path(state.index.paths[row])  # from the run's own dataset, never from the request
    if not path.is_file():
        raise ApiError(404, f"image {state.index.image_ids[row]} is not a file that can be shown")
    return FileResponse(path, headers={"cache-control": "max-age=3600"})


async def _caption(request: Request) -> Response:
    state = _state(request)
    _need_kind(state, "caption")
    state.need("model")
    k = query_int(request, "k", 5, 1, 50)
    gate = state.uploads
    async with gate.admitted_upload():  # bounded bodies and decoding: peak memory stays small
        data = await read_body(request, MAX_UPLOAD_BYTES)
        async with gate.decoding():
            return JSONResponse(await run_in_threadpool(_caption_work, state, data, k))


def _caption_work(state: ServeState, data: bytes, k: int) -> dict[str, Any]:
    """Decode the upload and rank the split's captions for it (in a worker thread)."""
    image, (width, height) = open_upload(data)
    started = time.perf_counter()
    hits = state.index.top_captions(state.run.encode_image(image)[0], k)
    return {"width": width, "height": height, "elapsed_ms": round(1000 * (time.perf_counter() - started), 2),
            "captions": [{"rank": rank, "text": text, "score": round(score, 4)}
                         for rank, (text, score) in enumerate(hits, 1)]}


def _plots(run_dir: Path) -> list[str]:
    folder = run_dir / "plots"
    return sorted(p.name for p in folder.glob("*.png") if p.is_file()) if folder.is_dir() else []


async def _report(request: Request) -> Response:
    from mie.io import read_json as read_json_file

    state = _state(request)
    _need_kind(state, "report")
    run_dir = state.run_dir
    assert run_dir is not None
    report = run_dir / "report.md"
    results = run_dir / "results.json"
    # The run is named by its folder only, never by where it lies on this machine (the report and results
    # name the run directory and the data path: they are shown with those paths cut).
    markdown = report.read_text(encoding="utf-8", errors="replace") if report.is_file() else None
    return JSONResponse({"run_dir": state.name, "markdown": state.public(markdown) if markdown is not None else None,
                         "results": _public_json(read_json_file(results), state.public) if results.is_file() else None,
                         "plots": _plots(run_dir)})


def _public_json(value: Any, public: Callable[[str], str]) -> Any:
    """``value`` (parsed JSON) with ``public`` applied to every string in it."""
    if isinstance(value, dict):
        return {key: _public_json(item, public) for key, item in value.items()}
    if isinstance(value, list):
        return [_public_json(item, public) for item in value]
    return public(value) if isinstance(value, str) else value


async def _plot(request: Request) -> Response:
    state = _state(request)
    _need_kind(state, "report")
    name = request.path_params["name"]
    assert state.run_dir is not None
    if name not in _plots(state.run_dir):  # only a listed file name: no path from the request is opened
        raise ApiError(404, f"no plot named {name[:60]!r} in the run")
    return FileResponse(state.run_dir / "plots" / name, media_type="image/png")


def _messages(payload: dict[str, Any]) -> list[dict[str, str]]:
    """The conversation of a chat request, checked: user/assistant turns of text, the last one the user's."""
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "the message is empty: type some text first")
    clean = []
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant") or not isinstance(m.get("content"), str):
            raise ApiError(400, 'each message must be {"role": "user" or "assistant", "content": text}')
        clean.append({"role": m["role"], "content": m["content"]})
    if clean[-1]["role"] != "user" or not clean[-1]["content"].strip():
        raise ApiError(400, "the message is empty: type some text first")
    if sum(len(m["content"]) for m in clean) > MAX_CHAT_CHARS:
        raise ApiError(400, f"the conversation is over {MAX_CHAT_CHARS:,} characters: start a new one")
    return clean


async def _chat(request: Request) -> Response:
    from mie.serve.chat import MAX_NEW_TOKENS, ChatResponse, ChatTurn, chat_events

    state = _state(request)
    _need_kind(state, "chat")
    payload = await read_json(request)
    messages = _messages(payload)
    max_new_tokens = int_field(payload, "max_new_tokens", 128, 1, MAX_NEW_TOKENS)
    temperature = payload.get("temperature", 0.0)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
        raise ApiError(400, f"temperature must be a number from 0 to 2, got {str(temperature)[:40]}")
    use_filter = bool_field(payload, "filter", True)
    state.need("model")
    state.need("safety")
    chat = state.chat
    await run_in_threadpool(chat.prompt_ids, messages, max_new_tokens)  # too many tokens: a 400 before any work

    def events(stop: Any) -> Any:
        return chat_events(chat, state.evaluator, state.filter, messages, use_filter, max_new_tokens,
                           float(temperature), stop=stop)

    return ChatResponse(await ChatTurn.begin(chat, events), request, state.public)


async def _evaluate(request: Request) -> Response:
    state = _state(request)
    payload = await read_json(request)
    text = text_field(payload, "text", "text to evaluate")
    if len(text) > MAX_EVALUATE_CHARS:
        raise ApiError(400, f"the text is {len(text):,} characters; the limit is {MAX_EVALUATE_CHARS:,}: "
                            "evaluate it in parts")
    state.need("safety")

    def work() -> dict[str, Any]:
        started = time.perf_counter()
        result = state.evaluator.evaluate(text).to_dict()
        return {"methods": state.methods, "flagged": result["flagged"], "verdicts": result["verdicts"],
                "elapsed_ms": round(1000 * (time.perf_counter() - started), 1)}

    return JSONResponse(await run_in_threadpool(work))
