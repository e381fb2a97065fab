"""Build or load any of the engine's tokenizers by name, so configs and run directories can name one.

``TokenizerConfig.name`` picks ``simple`` (word level), ``char`` or ``bpe``; a saved tokenizer JSON
says which it is (``"type"`` for the vocabulary tokenizers, ``"format"`` for BPE), so
``load_any_tokenizer`` needs only the path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from mie.errors import TokenizerError
from mie.registry import Registry
from mie.tokenization.base import BaseTokenizer
from mie.tokenization.schema import read_tokenizer_json

# Trainers and loaders by name: each imports its tokenizer only when used.
TOKENIZER_TRAINERS: Registry[Callable[[Iterable[str], int, bool], BaseTokenizer]] = Registry(
    "tokenizer", error=TokenizerError)
TOKENIZER_LOADERS: Registry[Callable[[str | Path], BaseTokenizer]] = Registry("tokenizer type", error=TokenizerError)


@TOKENIZER_TRAINERS.register("simple")
def _train_simple(texts: Iterable[str], vocab_size: int, lowercase: bool) -> BaseTokenizer:
    from mie.tokenization.simple import SimpleTokenizer

    return SimpleTokenizer.build(texts, max_size=vocab_size, lowercase=lowercase)


@TOKENIZER_TRAINERS.register("char")
def _train_char(texts: Iterable[str], vocab_size: int, lowercase: bool) -> BaseTokenizer:
    from mie.tokenization.simple import CharTokenizer

    return CharTokenizer.build(texts, max_size=vocab_size, lowercase=lowercase)


@TOKENIZER_TRAINERS.register("bpe")
def _train_bpe(texts: Iterable[str], vocab_size: int, lowercase: bool) -> BaseTokenizer:
    from mie.tokenization.normalizers import build_normalizer
    from mie.tokenization.tokenizer import BPETokenizer

    return BPETokenizer.train(list(texts), vocab_size=vocab_size, min_frequency=1,
                              normalizer=build_normalizer(lowercase=lowercase))


@TOKENIZER_LOADERS.register("simple")
def _load_simple(path: str | Path) -> BaseTokenizer:
    from mie.tokenization.simple import SimpleTokenizer

    return SimpleTokenizer.load(path)


@TOKENIZER_LOADERS.register("char")
def _load_char(path: str | Path) -> BaseTokenizer:
    from mie.tokenization.simple import CharTokenizer

    return CharTokenizer.load(path)


def _load_bpe(path: str | Path) -> BaseTokenizer:
    from mie.tokenization.tokenizer import load_tokenizer

    return load_tokenizer(path)


TOKENIZER_NAMES = tuple(TOKENIZER_TRAINERS)  # simple, char, bpe


def train_tokenizer(name: str, texts: Iterable[str], vocab_size: int = 4096, lowercase: bool = True) -> BaseTokenizer:
    """A tokenizer of kind ``name`` fitted to ``texts`` (BPE merges up to ``vocab_size``)."""
    return TOKENIZER_TRAINERS.lookup(name)(texts, vocab_size, lowercase)


def load_any_tokenizer(path: str | Path) -> BaseTokenizer:
    """Read a tokenizer JSON written by any of the engine's tokenizers' ``save``."""
    payload = read_tokenizer_json(path, "train one or fix tokenizer.path")
    kind = payload.get("type")
    # BPE files say "format" rather than "type"; its loader checks what the file holds.
    loader = TOKENIZER_LOADERS.get(kind, _load_bpe) if isinstance(kind, str) else _load_bpe
    return loader(path)
