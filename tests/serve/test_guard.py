"""Only the app's own page may drive ``mie serve`` (issue 26, finding 4): a Host allow-list on every request,
Origin and Content-Type checked on every POST, no CORS, and no absolute path of the machine in any answer."""

from __future__ import annotations

import pytest
from tests.serve.conftest import BASE_URL, IMAGE, local_client

from mie.serve.guard import RequestGuard, split_host

pytestmark = pytest.mark.usefixtures("one_thread")
JSON = {"content-type": "application/json"}
SEARCH = b'{"query": "a red circle", "k": 2}'


@pytest.fixture(scope="module")
def client(clip_app):
    return local_client(clip_app)


def no_cors(response) -> bool:
    return not [name for name in response.headers if name.lower().startswith("access-control-")]


@pytest.mark.parametrize("host", ["127.0.0.1:7860", "localhost:7860", "[::1]:7860", "127.0.0.1", "LOCALHOST:7860"])
def test_loopback_hosts_are_answered(client, host):
    assert client.get("/api/status", headers={"host": host}).status_code == 200


@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:7860", "127.0.0.1.attacker.example:7860",
                                  "user@127.0.0.1:7860", "127.0.0.1:port", "", "192.168.1.5:7860"])
@pytest.mark.parametrize("path", ["/api/report", "/api/status", "/", "/static/app.js", "/api/image/0"])
def test_a_foreign_host_is_refused_on_every_route(client, host, path):
    response = client.get(path, headers={"host": host})
    assert response.status_code == 421
    assert response.json()["error"].startswith("this server answers only to 127.0.0.1, ::1, localhost, not to ")
    assert "runs" not in response.text and no_cors(response)
    assert response.headers["x-frame-options"] == "DENY"  # the refusal carries the security headers too


def test_a_rebinding_post_is_refused_before_it_runs(client, clip_app, monkeypatch):
    monkeypatch.setattr(clip_app.state.serve.index, "top_images", lambda *a: pytest.fail("the search ran"))
    response = client.post("/api/search", content=SEARCH, headers={**JSON, "host": "attacker.example:7860"})
    assert response.status_code == 421


def test_the_host_given_to_mie_serve_is_answered(clip_run, tmp_path):
    from tests.serve.conftest import loaded_app

    app = loaded_app(clip_run, tmp_path, hosts=["192.168.1.5"])
    client = local_client(app)
    assert client.get("/api/status", headers={"host": "192.168.1.5:7860"}).status_code == 200
    assert client.get("/api/status", headers={"host": "192.168.1.6:7860"}).status_code == 421


@pytest.mark.parametrize("origin", [BASE_URL, "http://localhost:7860", "http://[::1]:7860"])
def test_the_page_itself_may_post(client, origin):
    response = client.post("/api/search", content=SEARCH, headers={**JSON, "origin": origin})
    assert response.status_code == 200 and len(response.json()["results"]) == 2 and no_cors(response)


@pytest.mark.parametrize("origin", ["http://attacker.example", "https://attacker.example:7860", "null",
                                    "http://127.0.0.1:3000", "http://127.0.0.1", "file://", "chrome-extension://x"])
@pytest.mark.parametrize("path, body, headers", [
    ("/api/search", SEARCH, {"content-type": "text/plain"}),
    ("/api/search", SEARCH, JSON),
    ("/api/evaluate", b"text=hello", {"content-type": "application/x-www-form-urlencoded"}),
    ("/api/chat", b'{"messages": []}', JSON),
    ("/api/caption", b"\x89PNG", IMAGE),
])
def test_a_cross_origin_post_is_refused(client, origin, path, body, headers):
    response = client.post(path, content=body, headers={**headers, "origin": origin})
    assert response.status_code == 403 and no_cors(response)
    assert response.json()["error"] == (f"requests from {origin!r} are not allowed: only the page this server "
                                        "serves may send them")


@pytest.mark.parametrize("site, status", [("cross-site", 403), ("same-site", 403), ("same-origin", 200), ("none", 200)])
def test_without_origin_sec_fetch_site_decides(client, site, status):
    response = client.post("/api/search", content=SEARCH, headers={**JSON, "sec-fetch-site": site})
    assert response.status_code == status


@pytest.mark.parametrize("path, media", [
    ("/api/search", "text/plain"), ("/api/search", "application/x-www-form-urlencoded"),
    ("/api/evaluate", "multipart/form-data; boundary=x"), ("/api/search", None), ("/api/chat", "text/plain"),
    ("/api/caption", "text/plain"), ("/api/caption", "application/x-www-form-urlencoded"),
    ("/api/caption", "multipart/form-data; boundary=x"), ("/api/caption", None),
])
def test_a_body_of_another_type_is_415(client, path, media):
    headers = {"content-type": media} if media else {}
    response = client.post(path, content=SEARCH, headers=headers)
    assert response.status_code == 415 and no_cors(response)
    expected = "image/* or application/octet-stream" if path == "/api/caption" else "application/json"
    assert expected in response.json()["error"]


def test_json_with_a_charset_and_images_of_any_type_pass(client):
    ok = client.post("/api/search", content=SEARCH, headers={"content-type": "application/json; charset=utf-8"})
    assert ok.status_code == 200
    for media in ("image/png", "image/jpeg", "application/octet-stream"):
        response = client.post("/api/caption", content=b"not an image", headers={"content-type": media})
        assert response.status_code == 400 and "not an image" in response.json()["error"]


def test_a_preflight_is_never_granted(client):
    response = client.options("/api/search", headers={"origin": "http://attacker.example",
                                                      "access-control-request-method": "POST",
                                                      "access-control-request-headers": "content-type"})
    assert response.status_code == 405 and no_cors(response)
    for path in ("/", "/api/status", "/api/report"):
        assert no_cors(client.get(path, headers={"origin": "http://attacker.example"}))


def test_no_answer_names_where_the_run_lies(client, clip_run):
    absolute = str(clip_run.resolve())
    report = client.get("/api/report").json()
    assert report["run_dir"] == clip_run.name == "demo"
    status = client.get("/api/status").json()
    assert status["source"] == "demo"
    for response in (client.get("/api/report"), client.get("/api/status"), client.get("/api/plot/nope.png"),
                     client.post("/api/chat", json={"messages": [{"role": "user", "content": "hi"}]})):
        assert absolute not in response.text and str(clip_run.parent) not in response.text


def test_a_failed_load_and_a_crash_do_not_show_the_path(clip_run, tmp_path, clip_app, monkeypatch):
    from mie.serve import create_app

    where = clip_run.resolve() / "checkpoints" / "best.safetensors"

    def loader(state):
        raise FileNotFoundError(f"{where} not found")

    app = create_app(str(clip_run.resolve()), safety_methods="rules", cache_dir=tmp_path, loader=loader)
    assert not app.state.serve.wait(timeout=30)
    client = local_client(app)
    assert client.get("/api/status").json()["error"] == "demo/checkpoints/best.safetensors not found"
    response = client.post("/api/search", json={"query": "a red circle"})
    assert response.json()["error"] == "loading demo failed: demo/checkpoints/best.safetensors not found"
    monkeypatch.setattr(clip_app.state.serve.index, "top_images", lambda *a: open("/nonexistent/deep/folder/x.bin"))
    crash = local_client(clip_app, raise_server_exceptions=False).post("/api/search", json={"query": "a red circle"})
    assert crash.status_code == 500 and "/nonexistent" not in crash.text and "…/folder/x.bin" in crash.text


@pytest.mark.parametrize("value, expected", [
    ("127.0.0.1:7860", ("127.0.0.1", 7860)), ("[::1]:80", ("::1", 80)), ("LocalHost", ("localhost", 443)),
    ("a:b", None), ("a/b", None), ("u@h", None), ("", None),
])
def test_split_host(value, expected):
    assert split_host(value, 443) == expected


def test_the_guard_lets_lifespan_through():
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])

    import anyio

    anyio.run(RequestGuard(app), {"type": "lifespan"}, None, None)
    assert seen == ["lifespan"]
