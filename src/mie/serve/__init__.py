"""``mie serve``: a local web app over a finished run (or the pretrained SmolLM2 chat model).

The app is part of the application layer, beside ``mie.cli`` and ``mie.recipes``: it loads runs through
``mie.api``, ``mie.pretrained`` and the recipes, imports nothing from ``mie.cli``, and the library never
imports it. Modules:

* :mod:`mie.serve.state` — what is served and its background loading (503 until ready);
* :mod:`mie.serve.search` — the cached image and caption embeddings of a run's test split;
* :mod:`mie.serve.chat` — streamed chat answers with the safety filter and evaluator, stopped when the
  client goes away, with token and time budgets and a bounded queue;
* :mod:`mie.serve.uploads` — size-limited request bodies, strict JSON, and bounded in-memory image decoding;
* :mod:`mie.serve.guard` — the Host allow-list, Origin and content-type checks in front of every route;
* :mod:`mie.serve.errors` — the API error, and the scrubbing of absolute paths from what clients see;
* :mod:`mie.serve.app` — the Starlette routes; ``static/`` holds the page (plain HTML and JavaScript).

>>> from mie.serve import create_app
>>> app = create_app("runs/demo")          # doctest: +SKIP  (uvicorn.run(app, port=7860))
"""

from __future__ import annotations

from mie.serve.app import create_app
from mie.serve.state import ServeState

__all__ = ["ServeState", "create_app"]
