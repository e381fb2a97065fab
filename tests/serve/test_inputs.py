"""Every input of ``mie serve`` is checked at the edge and answered in our own words (issue 26, finding 6):
no Python exception text ("invalid literal for int()", "Exceeds the limit", a codec error, RecursionError)
ever reaches a client, and every refusal is one line."""

from __future__ import annotations

import pytest
from tests.serve.conftest import IMAGE, local_client

pytestmark = pytest.mark.usefixtures("one_thread")
JSON = {"content-type": "application/json"}
PYTHON = ("invalid literal", "Exceeds the limit", "codec", "surrogates not allowed", "RecursionError", "bug in mie",
          "Expecting", "Traceback", "line 1 column", "char 0")


@pytest.fixture(scope="module")
def client(clip_app):
    return local_client(clip_app, raise_server_exceptions=False)


@pytest.fixture(scope="module")
def chat_client(lm_app):
    return local_client(lm_app, raise_server_exceptions=False)


def ours(response, status: int, message: str) -> None:
    error = response.json()["error"]
    assert response.status_code == status, error
    assert error == message or error.startswith(message), error
    assert "\n" not in error and not any(p in response.text for p in PYTHON), error


@pytest.mark.parametrize("k, message", [
    ("²", "k must be a whole number from 1 to 50, got '²'"),
    ("٣", "k must be a whole number from 1 to 50, got '٣'"),
    ("9" * 5000, "k must be a whole number from 1 to 50, got '" + "9" * 36 + "..."),
    ("-1", "k must be a whole number from 1 to 50, got '-1'"),
    ("0", "k must be a whole number from 1 to 50, got 0"),
    ("51", "k must be a whole number from 1 to 50, got 51"),
    ("", "k must be a whole number from 1 to 50, got ''"),
])
def test_a_bad_k_in_the_query_string(client, k, message):
    ours(client.post(f"/api/caption?k={k}", content=b"\x89PNG", headers=IMAGE), 400, message)


@pytest.mark.parametrize("body, message", [
    (b'{"query": "a", "k": ' + b"9" * 5000 + b"}",
     "the request body has a number of 5,000 characters; numbers have at most 30 digits"),
    (b'{"query": "a", "k": 1e' + b"9" * 400 + b"}",
     "the request body has a number of 402 characters; numbers have at most 30 digits"),
    (b'{"query": "\\ud800"}',
     "the request body has text that is not valid Unicode (the escape \\ud800 is half of a character pair)"),
    (b'{"query": "ok", "x": {"\\udfff": 1}}',
     "the request body has text that is not valid Unicode (the escape \\udfff is half of a character pair)"),
    (b"[" * 60_000, "the request body is nested too deeply (the limit is 16 levels)"),
    (b'{"query": ' + b"[" * 20 + b"]" * 20 + b"}", "the request body is nested too deeply (the limit is 16 levels)"),
    (b'{"query": "a", "k": NaN}', "the request body has NaN, which is not a JSON number: send a plain number"),
    (b'{"query": "a", "k": Infinity}', "the request body has Infinity, which is not a JSON number"),
    (b"{nope", "the request body is not JSON (line 1, column 2: check the brackets, quotes and commas)"),
    (b"", "the request body is not JSON (line 1, column 1"),
    (b'{"query": "\xff\xfe"}', "the request body is not UTF-8 text (a bad byte at position 11)"),
    (b'"a red circle"', "the request body must be a JSON object"),
    (b'{"query": "a", "k": 2.0}', "k must be a whole number from 1 to 100, got 2.0"),
    (b'{"query": "a", "k": true}', "k must be a whole number from 1 to 100, got True"),
    (b'{"query": 5}', "the query is empty: type some text first"),
])
def test_bad_json_bodies_get_our_words(client, body, message):
    ours(client.post("/api/search", content=body, headers=JSON), 400, message)


@pytest.mark.parametrize("payload, message", [
    ({"messages": [{"role": "user", "content": "hi"}], "filter": "no"}, "filter must be true or false, got 'no'"),
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}, "temperature must be a number from 0"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_new_tokens": 10**20},
     "max_new_tokens must be a whole number from 1 to 512, got 100000000000000000000"),
    ({"messages": "hi"}, "the message is empty: type some text first"),
    ({"messages": [["user", "hi"]]}, 'each message must be {"role": "user" or "assistant", "content": text}'),
])
def test_bad_chat_values_get_our_words(chat_client, payload, message):
    ours(chat_client.post("/api/chat", json=payload), 400, message)


def test_a_lone_surrogate_in_a_chat_or_an_evaluation(chat_client):
    body = b'{"messages": [{"role": "user", "content": "hi \\ud83d"}]}'
    ours(chat_client.post("/api/chat", content=body, headers=JSON), 400,
         "the request body has text that is not valid Unicode (the escape \\ud83d is half")
    ours(chat_client.post("/api/evaluate", content=b'{"text": "\\udc00 x"}', headers=JSON), 400,
         "the request body has text that is not valid Unicode")
    emoji = chat_client.post("/api/evaluate", content=b'{"text": "ok \\ud83d\\ude00"}', headers=JSON)
    assert emoji.status_code == 200  # a whole surrogate pair is one character, and fine


@pytest.mark.parametrize("row", ["9" * 5000, "%C2%B2", "-1", "1e3", "99999"])
def test_a_bad_image_row_is_404_in_our_words(client, row):
    response = client.get(f"/api/image/{row}")
    assert response.status_code == 404 and response.json()["error"].startswith("no image ")
    assert not any(p in response.text for p in PYTHON)


@pytest.mark.parametrize("declared", ["²", "9" * 5000, "-5", "12abc"])
def test_a_bad_content_length_is_ours(client, declared):
    # httpx refuses to send such a header itself, so the ASGI app is driven directly.
    import anyio

    from mie.serve.errors import ApiError
    from mie.serve.uploads import read_body

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    from starlette.requests import Request

    request = Request({"type": "http", "method": "POST", "path": "/",
                       "headers": [(b"content-length", declared.encode())]}, receive)
    with pytest.raises(ApiError) as caught:
        anyio.run(read_body, request, 1000)
    assert caught.value.status == 400
    assert caught.value.message == "the Content-Length header is not a whole number of bytes"


def test_a_plot_name_of_any_length_is_ours(client):
    response = client.get("/api/plot/" + "x" * 5000)
    ours(response, 404, "no plot named 'xxxxxxxx")
    assert len(response.json()["error"]) < 120


def test_a_text_to_evaluate_has_a_length_limit(client):
    ours(client.post("/api/evaluate", json={"text": "a" * 20_001}), 400,
         "the text is 20,001 characters; the limit is 20,000: evaluate it in parts")
