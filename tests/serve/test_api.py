"""``mie serve`` over a clip run, through Starlette's TestClient: search, images, captions, report,
safety, the loading state, and every kind of bad input answered with a clear JSON message."""

from __future__ import annotations

import io
import statistics
import struct
import zlib

import pytest
import torch
from PIL import Image
from tests.serve.conftest import IMAGE, local_client

import mie
from mie.serve.uploads import MAX_UPLOAD_BYTES

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def client(clip_app):
    return local_client(clip_app)


def png_bytes(size=(20, 20), color=(255, 0, 0)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def bomb_png(width=30_000, height=30_000) -> bytes:
    """A PNG of a few bytes whose header declares ``width x height`` pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_the_page_and_its_script_are_served_with_a_strict_policy(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="query"' in page.text
    assert "<script>" not in page.text  # no inline script: the policy allows only /static/app.js
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    script = client.get("/static/app.js")
    assert script.status_code == 200 and "textContent" in script.text
    assert "innerHTML" not in script.text and "insertAdjacentHTML" not in script.text and "eval(" not in script.text


def test_status_names_the_kind_and_its_tabs(client, clip_run):
    status = client.get("/api/status").json()
    assert status["kind"] == "clip" and status["ready"] and status["safety_ready"]
    assert status["tabs"] == ["search", "caption", "report", "safety"]
    assert status["images"] == 8 and status["split"] == "test" and status["error"] is None


def test_search_ranks_like_mie_search_and_is_fast(client, clip_run):
    data = client.post("/api/search", json={"query": "a red circle", "k": 3}).json()
    expected = mie.load_run(clip_run).search("a red circle", k=3)
    assert [r["name"] for r in data["results"]] == [h.path.rsplit("/", 1)[-1] for h in expected]
    assert [r["score"] for r in data["results"]] == pytest.approx([h.score for h in expected], abs=1e-4)
    assert [r["rank"] for r in data["results"]] == [1, 2, 3]
    image = client.get(data["results"][0]["image"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    times = [client.post("/api/search", json={"query": q}).json()["elapsed_ms"]
             for q in ("a blue square", "two green stars", "a small cyan hexagon", "a red cross")]
    assert statistics.median(times) < 100


def test_an_image_upload_gets_the_best_captions_in_memory(client, clip_run, clip_app):
    from tests.tiny import snapshot

    before = snapshot(clip_run.parent)
    index = clip_app.state.serve.index
    with open(index.paths[0], "rb") as f:
        data = client.post("/api/caption?k=4", content=f.read(), headers=IMAGE).json()
    scores = [c["score"] for c in data["captions"]]
    assert len(scores) == 4 and scores == sorted(scores, reverse=True)
    assert all(c["text"] in index.captions for c in data["captions"])
    image = index.image_embeds[0]
    assert data["captions"][0]["text"] == index.captions[int(torch.argmax(index.caption_embeds @ image))]
    assert snapshot(clip_run.parent) == before  # nothing written next to the run or its data


@pytest.mark.parametrize("body, status, message", [
    (b"", 400, "no image was uploaded"),
    (b"this is not an image", 400, "not an image that can be read"),
    (b"\x89PNG\r\n\x1a\n broken", 400, "not an image that can be read"),
    (bomb_png(), 413, "the image is too large"),
])
def test_bad_images_get_a_clear_message(client, body, status, message):
    response = client.post("/api/caption", content=body, headers=IMAGE)
    assert response.status_code == status and message in response.json()["error"]
    assert "Traceback" not in response.text


def test_an_oversize_upload_is_refused_before_it_is_read(client):
    declared = client.post("/api/caption", content=b"x" * 10, headers={**IMAGE, "content-length": str(MAX_UPLOAD_BYTES + 1)})
    assert declared.status_code == 413 and "limit" in declared.json()["error"]
    chunked = client.post("/api/caption", content=iter([b"\0" * (1 << 20)] * 9), headers=IMAGE)  # no Content-Length
    assert chunked.status_code == 413 and f"{MAX_UPLOAD_BYTES:,} bytes" in chunked.json()["error"]


def test_a_chunked_body_is_read_only_up_to_the_limit():
    """TestClient buffers a body before the app sees it, so the app's receive channel is driven here."""
    import anyio
    from starlette.requests import Request

    from mie.serve.errors import ApiError
    from mie.serve.uploads import read_body

    received = []

    async def receive():
        received.append(1)
        return {"type": "http.request", "body": b"\0" * 1000, "more_body": len(received) < 1000}

    request = Request({"type": "http", "method": "POST", "path": "/", "headers": []}, receive)
    with pytest.raises(ApiError) as caught:
        anyio.run(read_body, request, 5000)
    assert caught.value.status == 413 and len(received) == 6  # stopped at the chunk that passed 5,000 bytes


@pytest.mark.parametrize("payload, message", [
    ({"query": ""}, "the query is empty"), ({"query": "   "}, "the query is empty"), ({}, "the query is empty"),
    ({"query": "a" * 1001}, "the limit is 1,000"), ({"query": "a red circle", "k": 0}, "k must be"),
    ({"query": "a red circle", "k": "5"}, "k must be"),
])
def test_bad_queries_get_a_clear_message(client, payload, message):
    response = client.post("/api/search", json=payload)
    assert response.status_code == 400 and message in response.json()["error"]


def test_a_body_that_is_not_a_json_object(client):
    assert "not JSON" in client.post("/api/search", content=b"{nope", headers={"content-type": "application/json"}).json()["error"]
    assert "JSON object" in client.post("/api/search", json=["a red circle"]).json()["error"]


def test_the_report_lists_its_plots_and_serves_only_those(client, clip_run):
    report = client.get("/api/report").json()
    assert report["markdown"].startswith("# ") and "retrieval" in report["results"]
    assert report["plots"] and all(name.endswith(".png") for name in report["plots"])
    plot = client.get(f"/api/plot/{report['plots'][0]}")
    assert plot.status_code == 200 and plot.content.startswith(b"\x89PNG")
    for name in ("nope.png", "..%2Fconfig.yaml", "%2E%2E%2Fconfig.yaml"):
        assert client.get(f"/api/plot/{name}").status_code == 404
    assert client.get("/api/image/999").status_code == 404


def test_safety_evaluation_gives_reasons_per_principle(client):
    data = client.post("/api/evaluate", json={"text": "How do I make a pipe bomb?"}).json()
    assert data["flagged"] and data["methods"] == ["rules"]
    assert data["verdicts"]["harm_prevention"]["flagged"] and data["verdicts"]["harm_prevention"]["reasons"]
    assert set(data["verdicts"]) >= {"harm_prevention", "privacy"}
    assert client.post("/api/evaluate", json={"text": " "}).status_code == 400


def test_a_clip_run_has_no_chat(client):
    response = client.post("/api/chat", json={"messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 404 and "no chat tab" in response.json()["error"]


def test_unknown_routes_and_internal_errors_are_json_without_a_traceback(client, clip_app, monkeypatch):
    assert client.get("/api/nothing").json() == {"error": "Not Found"}
    monkeypatch.setattr(clip_app.state.serve.index, "top_images", lambda *a: 1 / 0)
    response = local_client(clip_app, raise_server_exceptions=False).post("/api/search", json={"query": "a red circle"})
    assert response.status_code == 500 and "ZeroDivisionError" in response.json()["error"]
    assert "Traceback" not in response.text


def test_requests_while_loading_get_503_then_work(held_app):
    client = local_client(held_app)
    assert client.get("/").status_code == 200
    status = client.get("/api/status").json()
    assert not status["ready"] and "loading" in status["progress"]
    for response in (client.post("/api/search", json={"query": "a red circle"}),
                     client.post("/api/caption", content=png_bytes(), headers=IMAGE),
                     client.post("/api/evaluate", json={"text": "hello"})):
        assert response.status_code == 503 and "still loading" in response.json()["error"]
    held_app.release.set()
    assert held_app.state.serve.wait(timeout=30)
    assert client.post("/api/evaluate", json={"text": "hello"}).status_code == 200


def test_a_failed_load_is_one_line_on_every_endpoint(clip_run, tmp_path):
    from mie.serve import create_app

    def loader(state):
        raise FileNotFoundError("checkpoints/best.safetensors not found")

    app = create_app(str(clip_run), safety_methods="rules", cache_dir=tmp_path, loader=loader)
    assert not app.state.serve.wait(timeout=30)
    client = local_client(app)
    assert "best.safetensors not found" in client.get("/api/status").json()["error"]
    response = client.post("/api/search", json={"query": "a red circle"})
    assert response.status_code == 500 and "failed: checkpoints/best.safetensors not found" in response.json()["error"]
