"""Fixtures of the ``mie serve`` tests: a tiny clip run and a tiny lm run, trained once per session
through ``mie train`` (seconds), and apps over them that are loaded before the test starts."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import yaml
from tests.tiny import TINY_LM, train_tiny_run

TEXT = "the cat sat on the mat. a dog ran in the park. hello there, how are you today? " * 30


@pytest.fixture(scope="session")
def clip_run(tmp_path_factory) -> Path:
    """A finished tiny clip run (``<tmp>/runs/demo``, its shapes data beside it)."""
    root = tmp_path_factory.mktemp("serve_clip")
    (root / "runs").mkdir()  # mie train creates no missing parent folders
    return train_tiny_run(root)


@pytest.fixture(scope="session")
def lm_run(tmp_path_factory) -> Path:
    """A finished tiny lm run (one epoch on a few KB of text; 64 positions so a chat turn fits)."""
    from mie.cli import main

    root = tmp_path_factory.mktemp("serve_lm")
    (root / "doc.txt").write_text(TEXT, encoding="utf-8")
    raw = json.loads(json.dumps(TINY_LM))
    raw["epochs"], raw["data"]["files"] = 1, [str(root / "doc.txt")]
    raw["model"]["max_seq_len"], raw["sample"] = 64, {"max_new_tokens": 2, "num_samples": 1}
    (root / "lm.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert main(["train", str(root / "lm.yaml"), "--output-dir", str(root / "run"), "-q"]) == 0
    return root / "run"


BASE_URL = "http://127.0.0.1:7860"  # the Host the app answers (a TestClient's own "testserver" is refused)
IMAGE = {"content-type": "image/png"}  # what the page sends with an upload (it must not be a form's type)


def local_client(app, **kwargs):
    """A TestClient addressing the app as the page does: Host 127.0.0.1:7860, no Origin (same-origin)."""
    from starlette.testclient import TestClient

    return TestClient(app, base_url=BASE_URL, **kwargs)


def loaded_app(source: str | Path, cache_dir: Path | None = None, safety_methods: str = "rules", **kwargs):
    """An app over ``source`` (rules-only safety by default, so no pretrained package is needed), fully loaded."""
    from mie.serve import create_app

    app = create_app(str(source), safety_methods=safety_methods, cache_dir=cache_dir, **kwargs)
    assert app.state.serve.wait(timeout=120), app.state.serve.error
    return app


@pytest.fixture(scope="session")
def clip_app(clip_run, tmp_path_factory):
    """The app over the tiny clip run, loaded (its embeddings cached in a temporary folder)."""
    return loaded_app(clip_run, tmp_path_factory.mktemp("serve_cache"))


@pytest.fixture(scope="module")
def safety_app(clip_run, tmp_path_factory):
    """The app over the tiny clip run with the embedding classifier too (its verdicts' token attributions);
    skipped where the all-MiniLM-L6-v2 package is missing. One per test module: each starts with empty caches."""
    from mie.pretrained.sentence import encoder_installed

    if not encoder_installed():
        pytest.skip("needs the all-MiniLM-L6-v2 package (make setup installs it)")
    return loaded_app(clip_run, tmp_path_factory.mktemp("cache"), safety_methods="rules,embeddings")


@pytest.fixture(scope="session")
def lm_app(lm_run):
    """The app over the tiny lm run, loaded."""
    return loaded_app(lm_run)


@pytest.fixture
def held_app(clip_run, tmp_path):
    """An app over the clip run whose model loading waits for ``app.release`` (an Event): it answers as
    while a real model loads. Released at teardown so its thread ends."""
    from mie.serve import create_app

    release = threading.Event()

    def loader(state) -> None:
        assert release.wait(timeout=60)
        state.progress = "still loading"

    app = create_app(str(clip_run), safety_methods="rules", cache_dir=tmp_path, loader=loader)
    app.release = release
    yield app
    release.set()
    app.state.serve.wait(timeout=30)
