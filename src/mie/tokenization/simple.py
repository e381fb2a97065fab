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

from mie.errors import MieError, TokenizerError
from mie.tokenization.base import SPECIAL_TOKENS, BaseTokenizer
from mie.tokenization.schema import (
    RETRAIN_FIX,
    check_keys,
    field,
    id_error,
    in_file,
    read_tokenizer_json,
    short,
)

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
        for index, token in enumerate(vocab):
            if not isinstance(token, str):
                raise TokenizerError(f"vocab[{index}] must be a string, got {short(token)}", fix=RETRAIN_FIX)
        if tuple(vocab[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise TokenizerError(
                f"a vocabulary must start with the special tokens {list(SPECIAL_TOKENS)}, "
                f"got {[t[:20] for t in vocab[:4]]}", fix=RETRAIN_FIX
            )
        duplicates = sorted(token for token, count in Counter(vocab).items() if count > 1)
        if duplicates:
            raise TokenizerError(f"the vocabulary repeats token(s) {[t[:20] for t in duplicates[:10]]}",
                                 fix=RETRAIN_FIX)
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
        try:
            ids = list(map(int, ids))
        except (TypeError, ValueError, OverflowError):
            raise TokenizerError("token ids must be integers", fix="pass integer ids") from None
        if ids:  # one min and one max per call; a negative index would silently wrap around
            low, high = min(ids), max(ids)
            if low < 0 or high >= self.vocab_size:
                raise id_error(low if low < 0 else high, self.vocab_size)
        first = len(SPECIAL_TOKENS)
        pieces = [self.id_to_token[index] for index in ids if index >= first]
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
            raise TokenizerError(f"max_size={max_size} cannot hold the {len(SPECIAL_TOKENS)} special tokens")
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
        payload = read_tokenizer_json(path, "build one and save() it first")
        try:
            if payload.get("type") != cls.type_name:
                raise TokenizerError(f"holds a tokenizer of type {short(payload.get('type'))}, not "
                                     f"{cls.type_name!r} ({cls.__name__})", fix="load it with its own class")
            check_keys(payload, ("type", "lowercase", "vocab"), f"a {cls.type_name} tokenizer")
            if not isinstance(payload.get("vocab"), list):
                raise TokenizerError("has no 'vocab' list", fix=RETRAIN_FIX)
            return cls(payload["vocab"], lowercase=field(payload, "lowercase", bool, default=True))
        except MieError as err:
            raise in_file(err, path) from None


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
