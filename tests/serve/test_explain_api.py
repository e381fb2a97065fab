"""``mie serve``'s explanations through Starlette's TestClient: a searched image's heat map (the same map
``mie.explain`` computes), the safety classifier's token attributions, the cache, the busy 503, the guard,
and each bad request answered with one JSON message."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tests.serve.conftest import local_client

from mie.serve.explain import MAX_EXPLAIN_CHARS, ExplainGate

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def client(clip_app):
    return local_client(clip_app)


@pytest.fixture
def gate(clip_app):
    """Swap in a fresh gate (an empty cache: other tests share the app) for the test; the old one comes back."""
    old = clip_app.state.explain_gate
    clip_app.state.explain_gate = ExplainGate()
    yield clip_app.state.explain_gate
    clip_app.state.explain_gate = old


def _first_hit(client, query="a red circle") -> dict:
    return client.post("/api/search", json={"query": query, "k": 1}).json()["results"][0]


def test_a_searched_image_gets_the_heat_map_mie_explain_computes(client, clip_app, gate):
    from mie.data.transforms import LoadImage
    from mie.explain import gradcam

    hit = _first_hit(client)
    data = client.post("/api/explain/image", json={"row": hit["row"], "query": "a red circle"}).json()
    assert data["method"] == "gradcam" and data["row"] == hit["row"] and data["cached"] is False
    state = clip_app.state.serve
    run = state.run
    image = LoadImage(run.config.data.max_image_pixels)(Path(state.index.paths[hit["row"]]))
    expected = gradcam(run.model, run.transform(image), run.tokenize("a red circle"))
    torch.testing.assert_close(torch.tensor(data["map"]), expected.values, atol=6e-4, rtol=0)
    assert max(map(max, data["map"])) == 1.0 and min(map(min, data["map"])) >= 0
    assert data["peak"] == list(expected.peak_xy(*image.size))
    assert [data["width"], data["height"]] == list(image.size)
    side = min(image.size)
    assert data["box"] == [(image.size[0] - side) // 2, (image.size[1] - side) // 2, side, side]
    assert data["score"] == pytest.approx(expected.score, abs=1e-4)
    again = client.post("/api/explain/image", json={"row": hit["row"], "query": "a red circle"}).json()
    assert again["cached"] is True and again["map"] == data["map"]


def test_rollout_has_no_score_and_the_same_grid(client):
    hit = _first_hit(client, "a blue square")
    gradcam = client.post("/api/explain/image", json={"row": hit["row"], "query": "a blue square"}).json()
    rollout = client.post("/api/explain/image", json={"row": hit["row"], "query": "a blue square",
                                                      "method": "rollout"}).json()
    assert rollout["method"] == "rollout" and rollout["score"] is None
    assert len(rollout["map"]) == len(gradcam["map"]) == len(rollout["map"][0])


@pytest.mark.parametrize("payload, message", [
    ({"row": 0, "query": "a red circle", "method": "ig"}, "method must be one of gradcam, rollout, got 'ig'"),
    ({"row": 99, "query": "a red circle"}, "row"),
    ({"row": "0", "query": "a red circle"}, "row"),
    ({"query": "a red circle"}, "row is missing: name the searched image by its row (a search result's row)"),
    ({"row": 0, "query": "  "}, "query"),
    ({"row": 0, "query": "x" * 1001}, "the query is 1,001 characters; the limit is 1,000"),
])
def test_bad_heat_map_requests_get_one_message(client, payload, message):
    response = client.post("/api/explain/image", json=payload)
    assert response.status_code == 400 and set(response.json()) == {"error"}
    assert message in response.json()["error"]


def test_the_explanations_stay_under_the_guard(client):
    body = '{"row": 0, "query": "a red circle"}'
    form = client.post("/api/explain/image", content=body, headers={"content-type": "text/plain"})
    assert form.status_code == 415
    foreign = client.post("/api/explain/safety", content='{"text": "hi"}',
                          headers={"content-type": "application/json", "origin": "http://attacker.example"})
    assert foreign.status_code == 403 and "not allowed" in foreign.json()["error"]
    assert client.get("/api/explain/image").status_code == 405


def test_a_busy_server_answers_503_with_retry_after(client, gate):
    gate.wait_s = 0.05
    assert gate._running.acquire(blocking=False)  # another request holds the slot
    response = client.post("/api/explain/image", json={"row": 1, "query": "a green triangle"})
    assert response.status_code == 503 and response.headers["retry-after"] == "2"
    assert response.json() == {"error": "the server is busy explaining other results; try again in a few seconds"}


def test_the_cache_keeps_only_its_newest_entries():
    import asyncio

    gate = ExplainGate(entries=2)
    calls = []

    def work(key):
        return lambda: calls.append(key) or {"key": key}

    async def ask(key):
        return await gate.answer((key,), work(key))

    for key in ("a", "b", "a", "c", "b"):  # "b" was pushed out by "c" (least recently used)
        asyncio.run(ask(key))
    assert calls == ["a", "b", "c", "b"]


def test_an_lm_server_has_no_heat_maps_and_a_rules_server_no_attributions(client, lm_app):
    response = local_client(lm_app).post("/api/explain/image", json={"row": 0, "query": "a red circle"})
    assert response.status_code == 404 and "has no image heat maps" in response.json()["error"]
    status = client.get("/api/status").json()
    assert status["explain"] == {"image": True, "safety": False}
    response = client.post("/api/explain/safety", json={"text": "how do I poison my neighbour's dog"})
    assert response.status_code == 404
    assert response.json()["error"] == (
        "token attributions explain the embedding classifier, which this server does not run (safety methods: "
        "rules); start mie serve with --safety-methods rules,embeddings")


@pytest.fixture(scope="module")
def safety_client(safety_app):
    return local_client(safety_app)


def test_a_flagged_text_gets_its_tokens_attributions(safety_client):
    from mie.explain.safety_attr import safety_attributions
    from mie.serve.explain import classifier_of

    text = "how do I poison my neighbour's dog"
    assert safety_client.get("/api/status").json()["explain"] == {"image": True, "safety": True}
    data = safety_client.post("/api/explain/safety", json={"text": text}).json()
    assert data["principle"] == "harm_prevention" and data["method"] == "ig" and "[PAD]" in data["baseline"]
    tokens = data["tokens"]
    assert tokens[0]["token"] == "[CLS]" and max(tokens, key=lambda t: t["score"])["token"] == "poison"
    assert data["relative_gap"] < 0.01  # completeness: the scores add up to the logit's change
    classifier = classifier_of(safety_client.app.state.serve.evaluator)
    expected = safety_attributions(classifier, text, "harm_prevention", "ig")
    assert [t["score"] for t in tokens] == pytest.approx(expected.scores, abs=1e-4)
    other = safety_client.post("/api/explain/safety", json={"text": text, "principle": "privacy",
                                                            "method": "gradxinput"}).json()
    assert other["principle"] == "privacy" and other["method"] == "gradxinput" and "steps" not in other


@pytest.mark.parametrize("payload, message", [
    ({"text": "hi", "principle": "kindness"}, "principle must be one of harm_prevention, truthfulness, fairness"),
    ({"text": "hi", "method": "saliency"}, "method must be one of ig, gradxinput, got 'saliency'"),
    ({"text": "x" * (MAX_EXPLAIN_CHARS + 1)}, "token attributions take at most 2,000: explain a part of it"),
    ({"text": ""}, "text"),
])
def test_bad_attribution_requests_get_one_message(safety_client, payload, message):
    response = safety_client.post("/api/explain/safety", json=payload)
    assert response.status_code == 400 and message in response.json()["error"]



def test_the_page_loads_the_explanations_script_which_writes_no_markup(client):
    page = client.get("/").text
    assert page.index('src="/static/app.js"') < page.index('src="/static/explain.js"')  # it uses app.js's helpers
    script = client.get("/static/explain.js")
    assert script.status_code == 200 and "textContent" in script.text and "/api/explain/image" in script.text
    assert "innerHTML" not in script.text and "insertAdjacentHTML" not in script.text and "eval(" not in script.text
