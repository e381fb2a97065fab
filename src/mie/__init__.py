"""MultiModal Insight Engine: transformers over text and images, trained and safety-checked in one engine.

The notebook API is imported on first use (PEP 562), so ``import mie`` and ``mie --help`` stay light
(no torch)::

    import mie
    run = mie.load_run("runs/demo")             # a finished run: run.encode_image, run.encode_text, ...
    model, train_tf, eval_tf = mie.create_model_and_transforms("demo", vocab_size=1000)
"""

from __future__ import annotations

from mie.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "load_run": "mie.api",
    "create_model_and_transforms": "mie.api",
    "Run": "mie.api",
}

__all__ = ["__version__", *sorted(_EXPORTS)]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
