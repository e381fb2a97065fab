"""What ``mie serve`` serves, and its loading in a background thread.

The page comes up at once; the model (and, for a clip run, the embeddings of its test split) load in
a thread, and until they are there every endpoint that needs them answers 503 with a message that
says what is loading. A failed load is kept as one line and shown the same way (500).

Kinds: ``clip`` (a clip run: search, captions, report), ``lm`` (an lm run: chat, report) and
``pretrained`` (a pretrained chat model by name, e.g. ``smollm2-135m-instruct``: chat only). Every kind
has the safety evaluator (the Safety tab, and the verdict beside each chat answer).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mie.errors import ConfigError, error_line
from mie.serve.errors import ApiError, public_text
from mie.serve.search import EmbeddingIndex
from mie.serve.uploads import DecodeGate

log = logging.getLogger(__name__)
RUN_KINDS = {"clip": "clip", "lm": "lm"}  # recipe -> kind; other recipes have nothing to serve yet
TABS = {"clip": ["search", "caption", "report", "safety"], "lm": ["chat", "report", "safety"],
        "pretrained": ["chat", "safety"]}


def detect_kind(source: str) -> tuple[str, Path | None]:
    """``(kind, run_dir)`` of what ``mie serve SOURCE`` names: a pretrained model name or a run directory."""
    from mie.pretrained import MODELS

    if source in MODELS:
        return "pretrained", None
    from mie.config import load_config, read_yaml
    from mie.recipes import get_recipe, recipe_name
    from mie.recipes.run_dir import run_config_path

    run_dir = Path(source)
    path = run_config_path(run_dir)
    recipe = recipe_name(read_yaml(path))
    if recipe not in RUN_KINDS:
        raise ConfigError(f"is a {recipe} run; mie serve serves clip and lm runs", where=str(run_dir),
                          fix=f"serve a clip or lm run, or one of {', '.join(sorted(MODELS))}")
    # Loading the config checks the model's sizes (mie.models.budget): a run folder that asks for more than
    # the machine has is refused here, before the server starts, not later in the loading thread.
    load_config(path, get_recipe(recipe).load().Config)
    return RUN_KINDS[recipe], run_dir


class ServeState:
    """The model, embeddings and safety tools behind the app, loaded by :meth:`start` in a thread.

    ``loader`` replaces the model loading (tests use it to hold the app in its loading state); it gets
    this state and fills ``run``/``index`` or ``chat`` itself.
    """

    def __init__(self, source: str, checkpoint: str = "best", safety_methods: str = "auto",
                 cache_dir: Path | None = None, loader: Callable[[ServeState], None] | None = None) -> None:
        from mie.safety.methods import resolve_methods

        self.source, self.checkpoint = str(source), checkpoint
        self.kind, self.run_dir = detect_kind(self.source)
        self.methods = resolve_methods(safety_methods, where="--safety-methods")
        self.cache_dir = cache_dir if cache_dir is not None else (
            self.run_dir / "cache" if self.run_dir is not None else None)
        self._loader = loader or _load_model
        self.progress = "waiting to start"
        self.error: str | None = None
        self.model_ready, self.safety_ready = threading.Event(), threading.Event()
        self.run: Any = None  # mie.api.Run of a clip run
        self.index: EmbeddingIndex | None = None
        self.chat: Any = None  # mie.serve.chat.ChatModel of an lm run or a pretrained model
        self.evaluator: Any = None
        self.filter: Any = None
        self.load_seconds: float | None = None
        self.uploads = DecodeGate()  # image uploads decoded a few at a time
        self._thread: threading.Thread | None = None

    @property
    def name(self) -> str:
        """What is served, as a client may see it: the run's folder name (never its absolute path), or
        the pretrained model's name."""
        return self.run_dir.resolve().name if self.run_dir is not None else self.source

    def public(self, text: str) -> str:
        """``text`` as a client may see it: the run directory shown by its folder name, other absolute
        paths cut to their last two parts (:func:`~mie.serve.errors.public_text`)."""
        named = [(self.run_dir, self.name)] if self.run_dir is not None else []
        return public_text(text, named)

    @property
    def tabs(self) -> list[str]:
        """The page's tabs for this kind."""
        return TABS[self.kind]

    def start(self) -> threading.Thread:
        """Load everything in a daemon thread (once); returns the thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._load, name="mie-serve-load", daemon=True)
            self._thread.start()
        return self._thread

    def wait(self, timeout: float | None = None) -> bool:
        """Block until loading ended (ready or failed); True when everything is ready."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.model_ready.is_set() and self.safety_ready.is_set()

    def _load(self) -> None:
        started = time.perf_counter()
        try:
            self.progress = f"loading {self.name}"
            self._loader(self)
            self.model_ready.set()
            self.progress = f"loading the safety evaluator ({', '.join(self.methods)})"
            self._load_safety()
            self.safety_ready.set()
            self.load_seconds = time.perf_counter() - started
            self.progress = f"ready (loaded in {self.load_seconds:.1f} s)"
            log.info("mie serve: %s", self.progress)
        except Exception as exc:  # noqa: BLE001 - the page shows it in one line; the log keeps the traceback
            log.exception("mie serve: loading %s failed", self.source)
            self.error = error_line(exc)
            self.progress = "failed"

    def _load_safety(self) -> None:
        from mie.safety.evaluator import SafetyEvaluator
        from mie.safety.filter import SafetyFilter

        self.evaluator = SafetyEvaluator.create(methods=self.methods)
        self.filter = SafetyFilter(self.evaluator)

    def need(self, what: str = "model") -> None:
        """Raise the 500/503 :class:`ApiError` while ``what`` (``model`` or ``safety``) is not ready."""
        if self.error is not None:
            raise ApiError(500, f"loading {self.name} failed: {self.public(self.error)}")
        event = self.model_ready if what == "model" else self.safety_ready
        if not event.is_set():
            raise ApiError(503, f"the model is still loading ({self.public(self.progress)}); try again in a few seconds",
                           retry_after=2)

    def status(self) -> dict[str, Any]:
        """What the page shows at the top: kind, tabs, readiness, progress and the explanations on offer."""
        return {"source": self.name, "kind": self.kind, "tabs": self.tabs, "methods": self.methods,
                "ready": self.model_ready.is_set(), "safety_ready": self.safety_ready.is_set(),
                "progress": self.public(self.progress),
                "error": self.public(self.error) if self.error is not None else None,
                "images": len(self.index.paths) if self.index is not None else None,
                "split": self.index.split if self.index is not None else None,
                # which explanations the page may ask for (mie.serve.explain)
                "explain": {"image": self.kind == "clip", "safety": "embeddings" in self.methods}}


def _load_model(state: ServeState) -> None:
    """The default loader: a clip run and its cached test-split embeddings, or a chat model."""
    if state.kind == "clip":
        from mie.api import load_run
        from mie.serve.search import load_index

        state.run = load_run(state.run_dir, state.checkpoint, device="cpu")  # mie serve --device wins
        state.progress = "embedding the test split (once; cached in the run directory)"
        state.index = load_index(state.run, cache_dir=state.cache_dir)
        return
    from mie.pretrained.loading import load_language_model
    from mie.serve.chat import ChatModel
    from mie.training.device import resolve_device

    model, tokenizer = load_language_model(state.run_dir if state.run_dir is not None else state.source,
                                           checkpoint=state.checkpoint,
                                           device=resolve_device("cpu"))  # mie serve --device, else the CPU
    state.chat = ChatModel(model, tokenizer)
