"""Shared fixtures: small trained tokenizers (trained once per session; training takes ~0.1 s)."""

from __future__ import annotations

import pytest

from mie.tokenization.normalizers import Normalizer
from mie.tokenization.tokenizer import BPETokenizer

CORPUS = [
    "The quick brown fox jumps over the lazy dog. " * 3,
    "def tokenize(text):\n    return [t for t in text.split() if t]\n\n",
    "Tokenizers split text into tokens; the tokens map to ids. Ids map back to text!\n",
    "naïve café résumé — 東京 😀 emoji, tabs\tand  double  spaces\r\n",
    "for i in range(10):\n    print(i, i ** 2)  # squares\n",
]


@pytest.fixture(scope="session")
def trained() -> BPETokenizer:
    """A GPT-2 pattern, NFC tokenizer with 400 ids."""
    return BPETokenizer.train(CORPUS * 4, vocab_size=400, min_frequency=2)


@pytest.fixture(scope="session")
def trained_raw() -> BPETokenizer:
    """No normalizer (exact round-trip of any text), cl100k pattern."""
    return BPETokenizer.train(CORPUS * 4, vocab_size=350, normalizer=Normalizer(), pre_tokenizer="cl100k")
