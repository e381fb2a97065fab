"""Build or load any of the engine's tokenizers by name, so configs and run directories can name one.

``TokenizerConfig.name`` picks ``simple`` (word level), ``char`` or ``bpe``; a saved tokenizer JSON
says which it is (``"type"`` for the vocabulary tokenizers, ``"format"`` for BPE), so
``load_any_tokenizer`` needs only the path.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from mie.errors import TokenizerError
from mie.tokenization.base import BaseTokenizer
from mie.tokenization.schema import read_tokenizer_json

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
    raise TokenizerError(f"unknown tokenizer {name!r}", fix=f"choose one of {', '.join(TOKENIZER_NAMES)}")


def load_any_tokenizer(path: str | Path) -> BaseTokenizer:
    """Read a tokenizer JSON written by any of the engine's tokenizers' ``save``."""
    payload = read_tokenizer_json(path, "train one or fix tokenizer.path")
    kind = payload.get("type")
    if kind == "simple":
        from mie.tokenization.simple import SimpleTokenizer

        return SimpleTokenizer.load(path)
    if kind == "char":
        from mie.tokenization.simple import CharTokenizer

        return CharTokenizer.load(path)
    from mie.tokenization.tokenizer import load_tokenizer

    return load_tokenizer(path)
