"""The chat box: an LM's next assistant turn, streamed token by token, with the safety filter and verdict.

:class:`ChatModel` runs ``mie.models.generation.generate`` in a worker thread and hands the text to the
response as it grows (the same incremental decoding as ``mie generate``, so a multi-byte character is
sent once complete). :func:`chat_events` wraps one turn in the events the page reads:

* ``token`` ``{"text"}`` — more of the answer;
* ``refused`` ``{"text", "reasons"}`` — with the filter on, an input it blocks (no generation);
* ``verdict`` ``{"flagged", "verdicts", "filtered"}`` — the evaluator's per-principle verdict on the answer;
* ``done`` ``{"tokens", "elapsed_ms", "stopped"}`` (``stopped``: ``"time"`` when the answer ran out of
  its time budget, else null) and ``error`` ``{"error"}``.

With the filter on, the answer is released a sentence at a time, each sentence through
``SafetyFilter.filter_output(mode="rewrite")``, so a flagged sentence is never shown, not even briefly.

Abandoned work never blocks anyone (:class:`ChatTurn`): an answer is produced in its own thread and
stops at its next token once the client goes away (the response watches for ``http.disconnect``), once
it has run :data:`ANSWER_SECONDS`, or after ``max_new_tokens`` (at most :data:`MAX_NEW_TOKENS`). The prompt
is counted in tokens before the prefill, which no token check can interrupt: over :data:`MAX_PROMPT_TOKENS`
the oldest turns are left out, and a last message that alone is longer is refused (400). 512 tokens keep the
prefill of SmolLM2-135M under 5 s on 2 cores: a model of its shape took 6-7 s at 512 tokens and 8-14 s at
1,024 on 2 cores that other work kept twice busy (load 4), so about half that alone. A 24 KB message of rare
CJK characters is ~24,000 tokens: it held the model for 100 s before this cap.
One answer is generated at a time and at most :data:`CHAT_WAITING` more wait for the model; another request
waits up to :data:`ADMIT_WAIT_S` s for a place, then gets 503 with ``Retry-After``.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import anyio
import torch
from starlette.requests import ClientDisconnect, Request
from starlette.responses import StreamingResponse

from mie.errors import error_line
from mie.models.generation import generate
from mie.safety.filter import split_sentences
from mie.safety.targets import ChatTarget
from mie.serve.errors import ApiError
from mie.tokenization.streaming import TokenPrinter

log = logging.getLogger(__name__)
_END = object()
MAX_NEW_TOKENS = 512
MAX_PROMPT_TOKENS = 512
ANSWER_SECONDS = 60.0
CHAT_WAITING = 2
ADMIT_WAIT_S = 2.0  # a full queue is given this long to free a place (a client just left) before the 503


class _Cancelled(Exception):
    """The client went away: stop generating."""


class StopSignal:
    """How an answer is told to stop: ``cancel`` (the client went away) or its wall-time budget of
    ``seconds``, counted from its first step; ``reason`` is ``"cancelled"`` or ``"time"`` once it stopped."""

    def __init__(self, seconds: float = ANSWER_SECONDS) -> None:
        self.cancel = threading.Event()
        self.seconds = seconds
        self.deadline: float | None = None
        self.reason: str | None = None

    def check(self) -> None:
        """Raise :class:`_Cancelled` when the answer must stop now."""
        if self.cancel.is_set():
            self.reason = self.reason or "cancelled"
        elif self.deadline is not None and time.monotonic() > self.deadline:
            self.reason = "time"
        if self.reason is not None:
            raise _Cancelled


class _QueueWriter:
    """A text stream (``write``/``flush``) that puts what is written on a queue."""

    def __init__(self, out: queue.Queue) -> None:
        self.out = out

    def write(self, text: str) -> None:
        if text:
            self.out.put(text)

    def flush(self) -> None:
        pass


class ChatModel:
    """A causal LM and its tokenizer behind the chat box; one answer is generated at a time and at most
    ``waiting`` more are admitted (:meth:`admit`)."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, max_prompt_tokens: int = MAX_PROMPT_TOKENS,
                 answer_seconds: float = ANSWER_SECONDS, waiting: int = CHAT_WAITING) -> None:
        self.target = ChatTarget(model, tokenizer)
        self.model, self.tokenizer = self.target.model, tokenizer
        self.max_prompt_tokens, self.answer_seconds, self.waiting = max_prompt_tokens, answer_seconds, waiting
        self._lock = threading.Lock()  # two answers at once would only halve each one's speed on CPU
        self._admission = threading.Lock()
        self.admitted = 0

    def admit(self) -> None:
        """Count one more answer in (running or waiting); a 503 :class:`ApiError` when the queue is full."""
        with self._admission:
            if self.admitted > self.waiting:
                raise ApiError(503, f"the model is answering {self.admitted} other chats; try again in a few seconds",
                               retry_after=5)
            self.admitted += 1

    def leave(self) -> None:
        """One admitted answer ended (finished, stopped or failed)."""
        with self._admission:
            self.admitted -= 1

    def prompt_ids(self, messages: Sequence[dict[str, str]], max_new_tokens: int) -> tuple[list[int], int]:
        """The conversation's ids and the token budget, before any model work: over
        :attr:`max_prompt_tokens` tokens the oldest turns are left out (the last message always stays; alone
        over the limit, it is a 400 :class:`ApiError`), then the ids are cut to fit the model's context."""
        kept = list(messages)
        ids = self.target.conversation_ids(kept)
        while len(ids) > self.max_prompt_tokens and len(kept) > 1:
            kept = kept[1:]
            while len(kept) > 1 and kept[0]["role"] != "user":  # a conversation starts with the user
                kept = kept[1:]
            ids = self.target.conversation_ids(kept)
        if len(ids) > self.max_prompt_tokens:
            raise ApiError(400, f"the message is {len(ids):,} tokens; the limit is {self.max_prompt_tokens:,}: "
                                "send a shorter one")
        context = int(self.model.config.max_seq_len)
        max_new_tokens = max(1, min(max_new_tokens, MAX_NEW_TOKENS, context // 2))
        return ids[-(context - max_new_tokens):], max_new_tokens

    def stream(self, messages: Sequence[dict[str, str]], max_new_tokens: int = 128, temperature: float = 0.0,
               seed: int = 0, stop: StopSignal | None = None) -> Iterator[str]:
        """The next assistant turn's text, piece by piece, as it is generated; ``stop`` (default: this
        model's time budget) ends it early. Closing the iterator stops the worker at its next token."""
        ids, budget = self.prompt_ids(messages, max_new_tokens)
        stop = stop or StopSignal(self.answer_seconds)
        pieces: queue.Queue = queue.Queue()
        printer = TokenPrinter(self.tokenizer, _QueueWriter(pieces))

        def on_token(row: int, token: int) -> None:
            stop.check()
            printer(row, token)

        def work() -> None:
            try:
                while not self._lock.acquire(timeout=0.05):  # waiting in line; leave it once cancelled
                    if stop.cancel.is_set():
                        return
                try:
                    stop.deadline = time.monotonic() + stop.seconds
                    with torch.inference_mode():
                        generate(self.model, [ids], max_new_tokens=budget, temperature=temperature, seed=seed,
                                 stop_ids=self.target.stop_ids(), pad_id=getattr(self.tokenizer, "pad_id", 0) or 0,
                                 on_token=on_token)
                finally:
                    self._lock.release()
                printer.finish()
            except _Cancelled:
                if stop.reason == "time":
                    printer.finish()
            except Exception as exc:  # noqa: BLE001 - handed to the response, which reports it in one line
                pieces.put(exc)
            finally:
                pieces.put(_END)

        thread = threading.Thread(target=work, name="mie-serve-generate", daemon=True)
        thread.start()
        finished = False
        try:
            while (item := pieces.get()) is not _END:
                if isinstance(item, Exception):
                    raise item
                yield item
            finished = True
        finally:
            if not finished:
                stop.cancel.set()  # a closed iterator stops the worker at its next token


def chat_events(chat: ChatModel, evaluator: Any, safety_filter: Any, messages: Sequence[dict[str, str]],
                use_filter: bool, max_new_tokens: int = 128, temperature: float = 0.0,
                stop: StopSignal | None = None) -> Iterator[tuple[str, dict]]:
    """``(event, data)`` pairs of one chat turn (see the module docstring); the last message is the user's.
    ``stop`` ends the answer early; a cancelled one ends without a verdict (nobody is there to read it)."""
    stop = stop or StopSignal(getattr(chat, "answer_seconds", ANSWER_SECONDS))
    started = time.perf_counter()
    question = messages[-1]["content"]
    if use_filter:
        check = safety_filter.check_input(question)
        if not check.allowed:
            yield "refused", {"text": safety_filter.config.refusal_message, "reasons": check.reasons}
            yield "verdict", _verdict(evaluator.evaluate(question), filtered=True, judged="question")
            yield "done", {"tokens": 0, "elapsed_ms": _ms(started), "stopped": None}
            return
    raw, shown, pending = [], [], ""
    for piece in chat.stream(messages, max_new_tokens, temperature, stop=stop):
        raw.append(piece)
        if not use_filter:
            yield "token", {"text": piece}
            continue
        pending += piece
        spans = split_sentences(pending)
        if len(spans) > 1:  # every sentence but the last is complete: release it, filtered
            complete, pending = pending[:spans[-1][0]], pending[spans[-1][0]:]
            shown.append(safety_filter.filter_output(complete, mode="rewrite").text)
            yield "token", {"text": shown[-1]}
    if use_filter and pending:
        shown.append(safety_filter.filter_output(pending, mode="rewrite").text)
        yield "token", {"text": shown[-1]}
    if stop.cancel.is_set():
        return
    answer = "".join(raw).strip()
    filtered = use_filter and "".join(shown).strip() != answer
    yield "verdict", _verdict(evaluator.evaluate(answer, prompt=question), filtered=filtered, judged="answer")
    yield "done", {"tokens": len(chat.tokenizer.encode(answer)) if answer else 0, "elapsed_ms": _ms(started),
                   "stopped": stop.reason}


class ChatTurn:
    """One chat answer: :func:`chat_events` run in its own thread (admitted by ``chat.admit`` first),
    its events queued for :meth:`sse`; :meth:`cancel` stops the model at its next token."""

    def __init__(self, chat: Any, make_events: Callable[[StopSignal], Iterator[tuple[str, dict]]]) -> None:
        self.chat = chat
        self.stop = StopSignal(chat.answer_seconds)
        self.events: queue.Queue = queue.Queue()
        self.delivered = False  # every event reached the client
        chat.admit()
        try:
            self.thread = threading.Thread(target=self._work, args=(make_events,), name="mie-serve-chat", daemon=True)
            self.thread.start()
        except BaseException:
            chat.leave()
            raise

    def _work(self, make_events: Callable[[StopSignal], Iterator[tuple[str, dict]]]) -> None:
        try:
            for event in make_events(self.stop):
                self.events.put(event)
        except Exception as exc:  # noqa: BLE001 - the stream has started: the error becomes its last event
            log.error("mie serve: chat failed", exc_info=exc)
            self.events.put(("error", {"error": error_line(exc)}))
        finally:
            self.chat.leave()
            self.events.put(_END)

    @classmethod
    async def begin(cls, chat: Any, make_events: Callable[[StopSignal], Iterator[tuple[str, dict]]],
                    wait_s: float | None = None) -> ChatTurn:
        """A new turn, waiting up to ``wait_s`` s (default :data:`ADMIT_WAIT_S`) for a place in a full queue
        (without holding a thread); then the 503 :class:`ApiError` of :meth:`ChatModel.admit`."""
        deadline = time.monotonic() + (ADMIT_WAIT_S if wait_s is None else wait_s)
        while True:
            try:
                return cls(chat, make_events)
            except ApiError as exc:
                if exc.status != 503 or time.monotonic() > deadline:
                    raise
            await anyio.sleep(0.05)

    def cancel(self) -> None:
        """Stop the answer at its next token (or before it starts, while it waits for the model)."""
        self.stop.cancel.set()

    async def sse(self, request: Request, public: Callable[[str], str] = str) -> AsyncIterator[str]:
        """The events as server-sent events, until the last one or until the client goes away (checked
        between events, a few times a second); the answer is cancelled when this ends, however it ends."""
        checked = time.monotonic()
        try:
            while True:
                try:
                    item = self.events.get_nowait()
                except queue.Empty:
                    if time.monotonic() - checked > 0.2:
                        checked = time.monotonic()
                        if await request.is_disconnected():
                            return
                    await anyio.sleep(0.01)
                    continue
                if item is _END:
                    self.delivered = True
                    return
                event, data = item
                if event == "error":
                    data = {"error": public(data["error"])}
                yield f"event: {event}\ndata: {json.dumps(data)}\n\n"
        finally:
            self.cancel()


class ChatResponse(StreamingResponse):
    """The server-sent events of a :class:`ChatTurn`; the turn is cancelled when the response ends for
    any reason (finished, client gone, send failed, or never started)."""

    def __init__(self, turn: ChatTurn, request: Request, public: Callable[[str], str] = str) -> None:
        super().__init__(turn.sse(request, public), media_type="text/event-stream", headers={"cache-control": "no-cache"})
        self.turn = turn

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        try:
            await super().__call__(scope, receive, send)
        except (ClientDisconnect, OSError):
            pass  # a server of ASGI spec 2.4 says the client went away by failing a send: logged below
        finally:
            if not self.turn.delivered:
                log.info("mie serve: the chat client went away; its answer stops")
            self.turn.cancel()


def _verdict(evaluation: Any, filtered: bool, judged: str) -> dict[str, Any]:
    out = evaluation.to_dict()
    return {"judged": judged, "flagged": out["flagged"], "verdicts": out["verdicts"], "filtered": filtered}


def _ms(started: float) -> float:
    return round(1000 * (time.perf_counter() - started), 1)
