"""Vocabulary tokenizers without merges: ``SimpleTokenizer`` (words and punctuation) and ``CharTokenizer``.

Both keep a list of tokens whose index is the id, with ``SPECIAL_TOKENS`` (``<pad>`` ``<unk>`` ``<bos>``
``<eos>``) first, map unknown pieces to ``<unk>``, and save to one JSON file::

    {"type": "simple", "lowercase": true, "vocab": ["<pad>", "<unk>", "<bos>", "<eos>", "a", ...]}
"""

from __future__ import annotations

import json
import re
from abc import abstractmethod
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TypeVar

from mie.tokenization.base import SPECIAL_TOKENS, BaseTokenizer

# A word is a run of letters/digits/underscores (apostrophes inside, as in "don't"); any other
# non-space character is a token of its own, so "red," -> ["red", ","].
WORD_PATTERN = re.compile(r"\w+(?:'\w+)*|[^\w\s]")

VocabT = TypeVar("VocabT", bound="_VocabTokenizer")


class _VocabTokenizer(BaseTokenizer):
    """Shared machinery: the id <-> token tables, special ids, decoding and the JSON file format."""

    type_name = ""
    separator = ""

    def __init__(self, vocab: Sequence[str], lowercase: bool = True) -> None:
        vocab = list(vocab)
        if tuple(vocab[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(
                f"a vocabulary must start with the special tokens {list(SPECIAL_TOKENS)}, got {vocab[:4]}"
            )
        duplicates = sorted(token for token, count in Counter(vocab).items() if count > 1)
        if duplicates:
            raise ValueError(f"the vocabulary repeats token(s) {duplicates[:10]}")
        self.lowercase = lowercase
        self.id_to_token = vocab
        self.token_to_id = {token: index for index, token in enumerate(vocab)}

    @abstractmethod
    def split(self, text: str) -> list[str]:
        """The pieces of ``text`` that become tokens (after optional lowercasing)."""

    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included."""
        return len(self.id_to_token)

    @property
    def pad_id(self) -> int:
        """Id of ``<pad>``."""
        return self.token_to_id["<pad>"]

    @property
    def unk_id(self) -> int:
        """Id of ``<unk>``: every piece not in the vocabulary."""
        return self.token_to_id["<unk>"]

    @property
    def bos_id(self) -> int:
        """Id of ``<bos>``."""
        return self.token_to_id["<bos>"]

    @property
    def eos_id(self) -> int:
        """Id of ``<eos>``."""
        return self.token_to_id["<eos>"]

    def encode(self, text: str) -> list[int]:
        """Ids of the pieces of ``text``; unknown pieces become ``<unk>``."""
        unk = self.unk_id
        return [self.token_to_id.get(piece, unk) for piece in self.split(text)]

    def decode(self, ids: Sequence[int]) -> str:
        """Pieces of ``ids`` joined by the separator, special tokens dropped."""
        pieces = []
        for index in ids:
            index = int(index)
            if not 0 <= index < self.vocab_size:
                raise ValueError(f"id {index} is outside the vocabulary [0, {self.vocab_size})")
            if index >= len(SPECIAL_TOKENS):
                pieces.append(self.id_to_token[index])
        return self.separator.join(pieces)

    @classmethod
    def _count(cls, texts: Iterable[str], lowercase: bool) -> Counter[str]:
        splitter = cls([*SPECIAL_TOKENS], lowercase=lowercase)
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(splitter.split(text))
        return counts

    @classmethod
    def _vocab_from_counts(cls, counts: Counter[str], min_freq: int, max_size: int | None) -> list[str]:
        if max_size is not None and max_size < len(SPECIAL_TOKENS):
            raise ValueError(f"max_size={max_size} cannot hold the {len(SPECIAL_TOKENS)} special tokens")
        # Most frequent first, ties alphabetical, so the same texts always give the same ids.
        ranked = sorted(
            (t for t, c in counts.items() if c >= min_freq and t not in SPECIAL_TOKENS),
            key=lambda t: (-counts[t], t),
        )
        if max_size is not None:
            ranked = ranked[: max_size - len(SPECIAL_TOKENS)]
        return [*SPECIAL_TOKENS, *ranked]

    def save(self, path: str | Path) -> None:
        """Write the tokenizer to one JSON file (parent folders are created)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"type": self.type_name, "lowercase": self.lowercase, "vocab": self.id_to_token}
        path.write_text(json.dumps(payload, ensure_ascii=False, indent=1), encoding="utf-8")

    @classmethod
    def load(cls: type[VocabT], path: str | Path) -> VocabT:
        """Read a tokenizer written by ``save``."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer file {path} does not exist; build one and save() it first")
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"tokenizer file {path} is not valid JSON: {error}") from error
        if not isinstance(payload, dict) or payload.get("type") != cls.type_name:
            found = payload.get("type") if isinstance(payload, dict) else type(payload).__name__
            raise ValueError(
                f"{path} holds a tokenizer of type {found!r}, not {cls.type_name!r} ({cls.__name__})"
            )
        if not isinstance(payload.get("vocab"), list):
            raise ValueError(f"tokenizer file {path} has no 'vocab' list")
        return cls(payload["vocab"], lowercase=bool(payload.get("lowercase", True)))


class SimpleTokenizer(_VocabTokenizer):
    """Word-level tokenizer: words and punctuation marks are tokens, ``decode`` joins them with spaces.

    >>> tok = SimpleTokenizer.build(["A red circle.", "a blue square"])
    >>> tok.decode(tok.encode("a red square"))
    'a red square'
    """

    type_name = "simple"
    separator = " "

    def split(self, text: str) -> list[str]:
        """Words and single punctuation characters of ``text``."""
        return WORD_PATTERN.findall(text.lower() if self.lowercase else text)

    @classmethod
    def build(
        cls, texts: Iterable[str], min_freq: int = 1, max_size: int | None = None, lowercase: bool = True
    ) -> SimpleTokenizer:
        """Vocabulary of the words seen at least ``min_freq`` times, most frequent first; ``max_size``
        caps the whole vocabulary, special tokens included."""
        return cls(cls._vocab_from_counts(cls._count(texts, lowercase), min_freq, max_size), lowercase)


class CharTokenizer(_VocabTokenizer):
    """Character-level tokenizer (every character, spaces included, is a token); for tests and demos."""

    type_name = "char"
    separator = ""

    def split(self, text: str) -> list[str]:
        """The characters of ``text``."""
        return list(text.lower() if self.lowercase else text)

    @classmethod
    def build(
        cls, texts: Iterable[str], min_freq: int = 1, max_size: int | None = None, lowercase: bool = False
    ) -> CharTokenizer:
        """Vocabulary of the characters seen at least ``min_freq`` times, most frequent first."""
        return cls(cls._vocab_from_counts(cls._count(texts, lowercase), min_freq, max_size), lowercase)
