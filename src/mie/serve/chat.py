"""The chat box: an LM's next assistant turn, streamed token by token, with the safety filter and verdict.

:class:`ChatModel` runs ``mie.models.generation.generate`` in a worker thread and hands the text to the
response as it grows (the same incremental decoding as ``mie generate``, so a multi-byte character is
sent once complete). :func:`chat_events` wraps one turn in the events the page reads:

* ``token`` ``{"text"}`` — more of the answer;
* ``refused`` ``{"text", "reasons"}`` — with the filter on, an input it blocks (no generation);
* ``verdict`` ``{"flagged", "verdicts", "filtered"}`` — the evaluator's per-principle verdict on the answer;
* ``done`` ``{"tokens", "elapsed_ms"}`` and ``error`` ``{"error"}``.

With the filter on, the answer is released a sentence at a time, each sentence through
``SafetyFilter.filter_output(mode="rewrite")``, so a flagged sentence is never shown, not even briefly.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from mie.models.generation import generate
from mie.safety.filter import split_sentences
from mie.safety.targets import ChatTarget
from mie.tokenization.streaming import TokenPrinter

log = logging.getLogger(__name__)
_END = object()


class _Cancelled(Exception):
    """The client went away: stop generating."""


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
    """A causal LM and its tokenizer behind the chat box; one answer is generated at a time."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any) -> None:
        self.target = ChatTarget(model, tokenizer)
        self.model, self.tokenizer = self.target.model, tokenizer
        self._lock = threading.Lock()  # two answers at once would only halve each one's speed on CPU

    def prompt_ids(self, messages: Sequence[dict[str, str]], max_new_tokens: int) -> tuple[list[int], int]:
        """The conversation's ids and the token budget, cut to fit the model's context (oldest tokens first)."""
        ids = self.target.conversation_ids(messages)
        context = int(self.model.config.max_seq_len)
        max_new_tokens = max(1, min(max_new_tokens, context // 2))
        return ids[-(context - max_new_tokens):], max_new_tokens

    def stream(self, messages: Sequence[dict[str, str]], max_new_tokens: int = 128, temperature: float = 0.0,
               seed: int = 0) -> Iterator[str]:
        """The next assistant turn's text, piece by piece, as it is generated."""
        ids, budget = self.prompt_ids(messages, max_new_tokens)
        pieces: queue.Queue = queue.Queue()
        cancel = threading.Event()
        printer = TokenPrinter(self.tokenizer, _QueueWriter(pieces))

        def on_token(row: int, token: int) -> None:
            if cancel.is_set():
                raise _Cancelled
            printer(row, token)

        def work() -> None:
            try:
                with self._lock, torch.inference_mode():
                    generate(self.model, [ids], max_new_tokens=budget, temperature=temperature, seed=seed,
                             stop_ids=self.target.stop_ids(), pad_id=getattr(self.tokenizer, "pad_id", 0) or 0,
                             on_token=on_token)
                printer.finish()
            except _Cancelled:
                pass
            except Exception as exc:  # noqa: BLE001 - handed to the response, which reports it in one line
                pieces.put(exc)
            finally:
                pieces.put(_END)

        thread = threading.Thread(target=work, name="mie-serve-generate", daemon=True)
        thread.start()
        try:
            while (item := pieces.get()) is not _END:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            cancel.set()  # a closed response stops the worker at its next token


def chat_events(chat: ChatModel, evaluator: Any, safety_filter: Any, messages: Sequence[dict[str, str]],
                use_filter: bool, max_new_tokens: int = 128, temperature: float = 0.0) -> Iterator[tuple[str, dict]]:
    """``(event, data)`` pairs of one chat turn (see the module docstring); the last message is the user's."""
    started = time.perf_counter()
    question = messages[-1]["content"]
    if use_filter:
        check = safety_filter.check_input(question)
        if not check.allowed:
            yield "refused", {"text": safety_filter.config.refusal_message, "reasons": check.reasons}
            yield "verdict", _verdict(evaluator.evaluate(question), filtered=True, judged="question")
            yield "done", {"tokens": 0, "elapsed_ms": _ms(started)}
            return
    raw, shown, pending = [], [], ""
    for piece in chat.stream(messages, max_new_tokens, temperature):
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
    answer = "".join(raw).strip()
    filtered = use_filter and "".join(shown).strip() != answer
    yield "verdict", _verdict(evaluator.evaluate(answer, prompt=question), filtered=filtered, judged="answer")
    yield "done", {"tokens": len(chat.tokenizer.encode(answer)) if answer else 0, "elapsed_ms": _ms(started)}


def _verdict(evaluation: Any, filtered: bool, judged: str) -> dict[str, Any]:
    out = evaluation.to_dict()
    return {"judged": judged, "flagged": out["flagged"], "verdicts": out["verdicts"], "filtered": filtered}


def _ms(started: float) -> float:
    return round(1000 * (time.perf_counter() - started), 1)
