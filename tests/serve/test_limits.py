"""Abandoned or oversized work never blocks ``mie serve`` (issue 26, finding 5): a chat stops when its client
goes away, has a prompt, token and time budget, and waits in a bounded queue; uploads are decoded a few at a
time. The ASGI app is driven directly where a client must hang up (a TestClient never does)."""

from __future__ import annotations

import io
import json
import logging
import threading
import time

import anyio
import pytest
from PIL import Image
from tests.serve.conftest import IMAGE, local_client

import mie.serve.chat as chat_module
from mie.serve.chat import ChatTurn, chat_events
from mie.serve.errors import ApiError
from mie.serve.uploads import DecodeGate, decode_image, open_upload

pytestmark = pytest.mark.usefixtures("one_thread")
HI = {"messages": [{"role": "user", "content": "hello there"}], "filter": False, "max_new_tokens": 512}


@pytest.fixture
def slow_model(lm_app, monkeypatch):
    """The lm app's chat with a generate that makes a token every 50 ms (up to its budget), counting them."""
    chat = lm_app.state.serve.chat
    token = chat.tokenizer.encode(" a")[0]
    made: list[int] = []

    def generate(model, ids, max_new_tokens, on_token=None, **kwargs):
        for _ in range(max_new_tokens):
            time.sleep(0.05)
            on_token(0, token)
            made.append(token)
        return [[token] * max_new_tokens]

    monkeypatch.setattr(chat_module, "generate", generate)
    chat.made = made
    yield chat
    deadline = time.monotonic() + 10
    while chat.admitted and time.monotonic() < deadline:  # every turn of the test has ended
        time.sleep(0.02)
    assert chat.admitted == 0


def scope(path: str, spec: str, headers: dict[str, str] | None = None, query: bytes = b"") -> dict:
    headers = {"host": "127.0.0.1:7860", "content-type": "application/json", **(headers or {})}
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": spec}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query,
            "root_path": "", "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 7860)}


async def abandoned(app, body: bytes, spec: str, after_s: float) -> list[dict]:
    """POST ``body`` to /api/chat and hang up ``after_s`` seconds later; the messages the app sent."""
    sent: list[dict] = []
    gone = anyio.Event()
    calls = 0

    async def receive():
        nonlocal calls
        calls += 1
        if calls == 1:
            return {"type": "http.request", "body": body, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        if gone.is_set() and spec >= "2.4":
            raise OSError("connection closed")  # what a server of spec 2.4 does on a send after a hang-up
        sent.append(message)

    async def hang_up():
        await anyio.sleep(after_s)
        gone.set()

    async with anyio.create_task_group() as group:
        group.start_soon(hang_up)
        await app(scope("/api/chat", spec), receive, send)  # a hang-up is no error of the app's
    return sent


@pytest.mark.parametrize("spec", ["2.3", "2.4"])
def test_a_chat_stops_when_its_client_goes_away(lm_app, slow_model, spec):
    started = time.monotonic()
    sent = anyio.run(abandoned, lm_app, json.dumps(HI).encode(), spec, 0.4)
    assert time.monotonic() - started < 2  # the response ended at once, not after 32 tokens x 50 ms
    assert sent[0]["status"] == 200
    time.sleep(0.3)
    assert 2 <= len(slow_model.made) <= 14  # a few tokens, then nothing more
    made = len(slow_model.made)
    time.sleep(0.3)
    assert len(slow_model.made) == made and slow_model.admitted == 0


def test_the_next_chat_starts_at_once_after_three_abandoned_ones(lm_app, slow_model):
    async def three():
        async with anyio.create_task_group() as group:
            for _ in range(3):
                group.start_soon(abandoned, lm_app, json.dumps(HI).encode(), "2.3", 0.3)

    anyio.run(three)
    started = time.monotonic()
    response = local_client(lm_app).post("/api/chat", json={**HI, "max_new_tokens": 3})
    assert time.monotonic() - started < 2 and response.status_code == 200
    assert '"tokens": 3, ' in response.text.split("event: done")[1]
    assert len(slow_model.made) <= 3 + 3 * 10  # the waiting two never generated: they left the queue


def test_a_full_queue_is_503_with_retry_after(lm_app, slow_model, monkeypatch):
    monkeypatch.setattr(chat_module, "ADMIT_WAIT_S", 0.3)
    monkeypatch.setattr(slow_model, "admitted", slow_model.waiting + 1)  # one answering, two waiting
    started = time.monotonic()
    response = local_client(lm_app).post("/api/chat", json=HI)
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    assert response.json()["error"] == "the model is answering 3 other chats; try again in a few seconds"
    assert 0.3 <= time.monotonic() - started < 2  # it waited a moment for a place first
    threading.Timer(0.2, lambda: setattr(slow_model, "admitted", 2)).start()  # a client leaves meanwhile
    response = local_client(lm_app).post("/api/chat", json={**HI, "max_new_tokens": 2})
    assert response.status_code == 200 and "event: done" in response.text
    monkeypatch.setattr(slow_model, "admitted", 0)


def test_queued_turns_run_one_at_a_time_and_a_cancelled_one_leaves_the_line(slow_model):
    def turn(n):
        return ChatTurn(slow_model, lambda stop: chat_events(slow_model, None, None, HI["messages"], False, n, stop=stop))

    first, second = turn(4), turn(4)
    second.cancel()  # its client left while it waited
    second.thread.join(timeout=2)
    assert not second.thread.is_alive()
    first.thread.join(timeout=5)
    assert len(slow_model.made) == 4 and slow_model.admitted == 0


def test_the_time_budget_ends_an_answer(lm_app, slow_model, monkeypatch):
    monkeypatch.setattr(slow_model, "answer_seconds", 0.3)
    response = local_client(lm_app).post("/api/chat", json=HI)
    done = json.loads(response.text.split("event: done\ndata: ")[1].split("\n")[0])
    assert done["stopped"] == "time" and 3 <= len(slow_model.made) <= 8
    assert "event: verdict" in response.text  # the answer so far is judged as usual


def test_a_long_prompt_is_refused_before_the_prefill(lm_app, slow_model):
    rare = "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(7_900))  # ~24 KB of rare CJK characters
    started = time.monotonic()
    response = local_client(lm_app).post("/api/chat", json={"messages": [{"role": "user", "content": rare}]})
    assert time.monotonic() - started < 3 and response.status_code == 400
    error = response.json()["error"]
    assert error.startswith("the message is ") and error.endswith(" tokens; the limit is 512: send a shorter one")
    assert slow_model.made == []


def png(size, mode="RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size).save(out, format="PNG", optimize=True)
    return out.getvalue()


def test_a_large_upload_is_decoded_small_and_reports_its_size(client_clip):
    data = png((4096, 4096))
    assert len(data) < 100_000
    image, size = open_upload(data)
    assert size == (4096, 4096) and image.size == (1024, 1024) and image.mode == "RGB"
    assert decode_image(png((300, 200), "L")).size == (300, 200)
    response = client_clip.post("/api/caption?k=2", content=data, headers=IMAGE)
    assert response.status_code == 200 and (response.json()["width"], response.json()["height"]) == (4096, 4096)


@pytest.fixture
def client_clip(clip_app):
    return local_client(clip_app)


def test_uploads_beyond_the_queue_get_503_with_retry_after(clip_app, client_clip, monkeypatch):
    gate = DecodeGate(slots=1, waiting=1, wait_s=0.2)
    monkeypatch.setattr(clip_app.state.serve, "uploads", gate)
    gate.admitted = 2
    response = client_clip.post("/api/caption", content=png((20, 20)), headers=IMAGE)
    assert response.status_code == 503 and response.headers["retry-after"] == "2"
    gate.admitted = 0
    assert gate._running.acquire(blocking=False)  # the one decoding slot is taken
    started = time.monotonic()
    busy = client_clip.post("/api/caption", content=png((20, 20)), headers=IMAGE)
    assert busy.status_code == 503 and busy.headers["retry-after"] == "5" and time.monotonic() - started >= 0.2
    assert "busy captioning" in busy.json()["error"] and gate.admitted == 0
    gate._running.release()
    assert client_clip.post("/api/caption", content=png((20, 20)), headers=IMAGE).status_code == 200


def test_at_most_two_uploads_decode_at_once(clip_app, monkeypatch):
    import mie.serve.app as app_module

    inside, most, lock = [0], [0], threading.Lock()
    real = app_module.open_upload

    def counting(data):
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.05)
        try:
            return real(data)
        finally:
            with lock:
                inside[0] -= 1

    monkeypatch.setattr(app_module, "open_upload", counting)
    client = local_client(clip_app)
    results = []

    def post():
        results.append(client.post("/api/caption", content=png((64, 64)), headers=IMAGE).status_code)

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results == [200] * 8 and most[0] <= 2


def test_a_client_that_hangs_up_mid_upload_is_logged_as_gone(clip_app, caplog):
    calls = 0

    async def receive():
        nonlocal calls
        calls += 1
        if calls == 1:
            return {"type": "http.request", "body": b"\x89PNG\r\n" + b"\0" * 1000, "more_body": True}
        return {"type": "http.disconnect"}

    sent = []

    async def send(message):
        sent.append(message)

    with caplog.at_level(logging.INFO, logger="mie.serve"):
        anyio.run(clip_app, scope("/api/caption", "2.3", {"content-type": "image/png"}), receive, send)
    messages = [r.getMessage() for r in caplog.records]
    assert any("POST /api/caption: the client went away" in m for m in messages)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert clip_app.state.serve.uploads.admitted == 0


def test_decode_gate_counts_back_down_on_errors():
    gate = DecodeGate(slots=1, waiting=0)

    async def fail_inside():
        async with gate.admitted_upload():
            raise ApiError(400, "bad")

    with pytest.raises(ApiError):
        anyio.run(fail_inside)
    assert gate.admitted == 0 and gate._running.acquire(blocking=False)


def test_a_long_conversation_leaves_out_its_oldest_turns(lm_app, monkeypatch):
    chat = lm_app.state.serve.chat
    monkeypatch.setattr(chat, "max_prompt_tokens", 60)
    old = [{"role": "user", "content": "tell me about the park " * 10}, {"role": "assistant", "content": "it is green"}]
    last = [{"role": "user", "content": "and the river?"}]
    assert len(chat.target.conversation_ids(old + last)) > 60
    ids, budget = chat.prompt_ids(old + last, 4)
    assert budget == 4 and ids == chat.target.conversation_ids(last)[-(64 - 4):]
    with pytest.raises(ApiError) as caught:
        chat.prompt_ids([{"role": "user", "content": "the park " * 40}], 4)
    assert caught.value.status == 400 and caught.value.message.endswith("tokens; the limit is 60: send a shorter one")
