"""Build or load any of the engine's tokenizers by name, so configs and run directories can name one.

``TokenizerConfig.name`` picks ``simple`` (word level), ``char`` or ``bpe``; a saved tokenizer JSON
says which it is (``"type"`` for the vocabulary tokenizers, ``"format"`` for BPE), so
``load_any_tokenizer`` needs only the path.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from mie.tokenization.base import BaseTokenizer

TOKENIZER_NAMES = ("simple", "char", "bpe")


def train_tokenizer(name: str, texts: Iterable[str], vocab_size: int = 4096, lowercase: bool = True) -> BaseTokenizer:
    """A tokenizer of kind ``name`` fitted to ``texts`` (BPE merges up to ``vocab_size``)."""
    if name == "simple":
        from mie.tokenization.simple import SimpleTokenizer

        return SimpleTokenizer.build(texts, max_size=vocab_size, lowercase=lowercase)
    if name == "char":
        from mie.tokenization.simple import CharTokenizer

        return CharTokenizer.build(texts, max_size=vocab_size, lowercase=lowercase)
    if name == "bpe":
        from mie.tokenization.normalizers import build_normalizer
        from mie.tokenization.tokenizer import BPETokenizer

        texts = list(texts)
        return BPETokenizer.train(texts, vocab_size=vocab_size, min_frequency=1,
                                  normalizer=build_normalizer(lowercase=lowercase))
    raise ValueError(f"unknown tokenizer {name!r}; choose one of {', '.join(TOKENIZER_NAMES)}")


def load_any_tokenizer(path: str | Path) -> BaseTokenizer:
    """Read a tokenizer JSON written by any of the engine's tokenizers' ``save``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer file {path} does not exist; train one or fix tokenizer.path")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"tokenizer file {path} is not valid JSON: {err}") from None
    kind = payload.get("type") if isinstance(payload, dict) else None
    if kind == "simple":
        from mie.tokenization.simple import SimpleTokenizer

        return SimpleTokenizer.load(path)
    if kind == "char":
        from mie.tokenization.simple import CharTokenizer

        return CharTokenizer.load(path)
    from mie.tokenization.tokenizer import load_tokenizer

    return load_tokenizer(path)
