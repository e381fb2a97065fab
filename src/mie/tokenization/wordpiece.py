"""WordPiece: the BERT tokenizer (uncased), written from its definition, ids equal to HF ``tokenizers``.

>>> tok = WordPieceTokenizer.from_file("model/tokenizer.json", max_length=256)  # doctest: +SKIP
>>> batch = tok.batch(["Hello, world!", "naïve café"])  # doctest: +SKIP
>>> batch.input_ids.shape, batch.attention_mask.shape  # doctest: +SKIP
(torch.Size([2, 6]), torch.Size([2, 6]))

The stages follow HF's ``BertNormalizer`` -> ``BertPreTokenizer`` -> ``WordPiece`` -> ``[CLS] ... [SEP]``:
special tokens written in the raw text (``[MASK]``) are split out first, as HF's added tokens are; the
rest is cleaned (control characters dropped, whitespace made a space), CJK ideographs spaced apart,
accents stripped (NFD, marks dropped), lowercased, split on whitespace and punctuation, and each word
matched greedily longest-first against the vocabulary with ``##`` on continuation pieces.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import regex
import torch

from mie.errors import TokenizerError
from mie.tokenization.base import BaseTokenizer

MAX_FILE_BYTES = 64 * 1024 * 1024  # a BERT tokenizer.json is ~0.5 MB; refuse anything absurd
WORD_CACHE_SIZE = 50_000  # words remembered with their ids; cleared when full
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

# The CJK ideograph blocks BERT (and HF's BertNormalizer) puts spaces around, so each is its own word.
_CJK = regex.compile("([\u4e00-\u9fff\u3400-\u4dbf\U00020000-\U0002a6df\U0002a700-\U0002b73f"
                     "\U0002b740-\U0002b81f\U0002b920-\U0002ceaf\uf900-\ufaff\U0002f800-\U0002fa1f])")
_KEEP_AS_SPACE = str.maketrans("\t\n\r", "   ")  # control characters that count as whitespace
_CONTROL = regex.compile(r"[\p{C}\x00\ufffd]")  # dropped by clean_text (all other Cc, Cf, Co, Cs, Cn)
_WHITESPACE = regex.compile(r"\s")
_ASCII_CONTROL = regex.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_MARK = regex.compile(r"\p{Mn}")
# BERT's punctuation: Unicode P* plus every ASCII non-alphanumeric symbol ($, +, <, =, >, ^, `, |, ~).
_PUNCT = r"\p{P}!-/:-@\[-`{-~"
_WORD = regex.compile(rf"[{_PUNCT}]|[^\s{_PUNCT}]+")


@dataclass(frozen=True)
class BatchEncoding:
    """Padded ids ``[N, L]`` and the mask ``[N, L]`` (1 on real tokens, 0 on padding), both int64."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor


class WordPieceTokenizer(BaseTokenizer):
    """BERT's WordPiece tokenizer over ``vocab`` (token -> id); ``max_length`` counts ``[CLS]`` and ``[SEP]``.

    ``strip_accents=None`` follows ``lowercase``, as in BERT. ``match_special_tokens`` splits special
    tokens written in the text out as their ids (HF's behaviour); turn it off for untrusted text that
    must not inject ``[SEP]``.
    """

    def __init__(self, vocab: Mapping[str, int], *, lowercase: bool = True, strip_accents: bool | None = None,
                 clean_text: bool = True, handle_chinese_chars: bool = True, max_length: int = 512,
                 max_input_chars_per_word: int = 100, continuing_prefix: str = "##",
                 match_special_tokens: bool = True):
        missing = [t for t in SPECIALS if t not in vocab]
        if missing:
            raise TokenizerError(f"WordPiece vocabulary lacks the special tokens {missing}",
                                 fix="use a BERT vocabulary (vocab.txt or tokenizer.json)")
        if max_length < 2:
            raise TokenizerError(f"max_length must be >= 2 to hold [CLS] and [SEP], got {max_length}")
        self.vocab = dict(vocab)
        self.inverse = {i: t for t, i in self.vocab.items()}
        self.lowercase = lowercase
        self.strip_accents = lowercase if strip_accents is None else strip_accents
        self.clean_text = clean_text
        self.handle_chinese_chars = handle_chinese_chars
        self.max_length = max_length
        self.max_input_chars_per_word = max_input_chars_per_word
        self.continuing_prefix = continuing_prefix
        self.match_special_tokens = match_special_tokens
        self.unk_id = self.vocab["[UNK]"]
        self._longest = max(len(t) for t in self.vocab)  # no piece is longer: bounds the greedy search
        self._special = regex.compile("|".join(regex.escape(t) for t in sorted(SPECIALS, key=len, reverse=True)))
        self._cache: dict[str, list[int]] = {}

    # -- loading -----------------------------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> WordPieceTokenizer:
        """Load a HF ``tokenizer.json`` (WordPiece model, BertNormalizer) or a ``vocab.txt`` (one token a line)."""
        path = Path(path)
        try:
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                raise TokenizerError(f"file of {size} bytes is too large for a vocabulary", where=path)
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise TokenizerError(f"cannot read ({exc.strerror or exc})", where=path,
                                 fix="check the path") from exc
        except UnicodeDecodeError as exc:
            raise TokenizerError("not UTF-8 text", where=path, fix="pass a tokenizer.json or vocab.txt") from exc
        if path.suffix == ".txt":
            vocab = {line: i for i, line in enumerate(text.splitlines())}
            return cls(vocab, **kwargs)
        return cls._from_json(text, path, **kwargs)

    @classmethod
    def _from_json(cls, text: str, path: Path, **kwargs: Any) -> WordPieceTokenizer:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TokenizerError(f"invalid JSON ({exc.msg} at line {exc.lineno})", where=path) from exc
        model = data.get("model") if isinstance(data, dict) else None
        if not isinstance(model, dict) or model.get("type") != "WordPiece" or not isinstance(model.get("vocab"), dict):
            raise TokenizerError("not a WordPiece tokenizer.json (model.type must be 'WordPiece' with a vocab)",
                                 where=path, fix="pass a BERT tokenizer.json or its vocab.txt")
        vocab = model["vocab"]
        if not all(isinstance(t, str) and isinstance(i, int) and 0 <= i < len(vocab) for t, i in vocab.items()):
            raise TokenizerError("model.vocab must map tokens to ids 0..N-1", where=path)
        options: dict[str, Any] = {
            "max_input_chars_per_word": int(model.get("max_input_chars_per_word", 100)),
            "continuing_prefix": str(model.get("continuing_subword_prefix", "##")),
        }
        norm = data.get("normalizer") or {}
        if isinstance(norm, dict) and norm.get("type") == "BertNormalizer":
            options.update(lowercase=bool(norm.get("lowercase", True)), strip_accents=norm.get("strip_accents"),
                           clean_text=bool(norm.get("clean_text", True)),
                           handle_chinese_chars=bool(norm.get("handle_chinese_chars", True)))
        options.update(kwargs)
        return cls(vocab, **options)

    # -- BaseTokenizer -----------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Number of ids (30522 for BERT uncased)."""
        return len(self.vocab)

    @property
    def pad_id(self) -> int:
        """The id of ``[PAD]``."""
        return self.vocab["[PAD]"]

    @property
    def bos_id(self) -> int:
        """The id of ``[CLS]``, put before every text."""
        return self.vocab["[CLS]"]

    @property
    def eos_id(self) -> int:
        """The id of ``[SEP]``, put after every text."""
        return self.vocab["[SEP]"]

    # -- the pipeline ------------------------------------------------------------------------------------
    def normalize(self, text: str) -> str:
        """BertNormalizer: clean, space CJK ideographs, strip accents, lowercase (HF's order)."""
        if text.isascii():  # the common case: no CJK, no accents, one-to-one lowercasing
            if self.clean_text:
                text = _ASCII_CONTROL.sub("", text).translate(_KEEP_AS_SPACE)
            return text.lower() if self.lowercase else text
        if self.clean_text:
            text = _WHITESPACE.sub(" ", _CONTROL.sub("", text.translate(_KEEP_AS_SPACE)))
        if self.handle_chinese_chars:
            text = _CJK.sub(r" \1 ", text)
        if self.strip_accents:
            text = _MARK.sub("", unicodedata.normalize("NFD", text))
        if self.lowercase:
            # Character by character, as HF does: str.lower() would turn a word-final Σ into ς.
            text = "".join(c.lower() for c in text) if "Σ" in text else text.lower()
        return text

    def pre_tokenize(self, text: str) -> list[str]:
        """BertPreTokenizer: words split on whitespace, each punctuation character a word of its own."""
        return _WORD.findall(text)

    def word_ids(self, word: str) -> list[int]:
        """Greedy longest-match-first WordPiece ids of one word; ``[UNK]`` alone if any part is unmatched."""
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        ids = self._match(word)
        if len(self._cache) >= WORD_CACHE_SIZE:
            self._cache.clear()
        self._cache[word] = ids
        return ids

    def _match(self, word: str) -> list[int]:
        if len(word) > self.max_input_chars_per_word:
            return [self.unk_id]
        ids, start, n = [], 0, len(word)
        while start < n:
            prefix = self.continuing_prefix if start > 0 else ""
            for end in range(min(n, start + self._longest), start, -1):
                found = self.vocab.get(prefix + word[start:end])
                if found is not None:
                    ids.append(found)
                    start = end
                    break
            else:
                return [self.unk_id]
        return ids

    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` without ``[CLS]``/``[SEP]`` and without truncation."""
        if not self.match_special_tokens:
            return self._encode_plain(text)
        ids: list[int] = []
        start = 0
        for match in self._special.finditer(text):
            ids += self._encode_plain(text[start:match.start()])
            ids.append(self.vocab[match.group()])
            start = match.end()
        return ids + self._encode_plain(text[start:])

    def _encode_plain(self, text: str) -> list[int]:
        ids: list[int] = []
        for word in self.pre_tokenize(self.normalize(text)):
            ids += self.word_ids(word)
        return ids

    def tokenize(self, text: str) -> list[str]:
        """The WordPiece tokens of ``text`` (no special tokens added), e.g. ``['un', '##aff', '##able']``."""
        return [self.inverse[i] for i in self.encode(text)]

    def encode_special(self, text: str, max_length: int | None = None) -> list[int]:
        """``[CLS] ids [SEP]``, truncated to ``max_length`` ids in all (default ``self.max_length``)."""
        limit = (max_length or self.max_length) - 2
        return [self.bos_id, *self.encode(text)[:limit], self.eos_id]

    def batch(self, texts: Sequence[str], max_length: int | None = None) -> BatchEncoding:
        """``[CLS] ... [SEP]`` per text, truncated to ``max_length``, right-padded to the longest row."""
        if isinstance(texts, str):
            texts = [texts]
        return self.pad([self.encode_special(t, max_length) for t in texts])

    def pad(self, rows: Sequence[Sequence[int]]) -> BatchEncoding:
        """Right-pad id rows with ``[PAD]`` to the longest one, with the matching attention mask."""
        width = max((len(r) for r in rows), default=2)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, :len(row)] = 1
        return BatchEncoding(input_ids, mask)

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``: special tokens dropped, ``##`` pieces glued to the piece before."""
        specials = {self.vocab[t] for t in SPECIALS}
        words: list[str] = []
        for i in ids:
            token = self.inverse.get(int(i))
            if token is None:
                raise TokenizerError(f"id {int(i)} is out of range for a vocabulary of {self.vocab_size}")
            if int(i) in specials:
                continue
            if words and token.startswith(self.continuing_prefix):
                words[-1] += token[len(self.continuing_prefix):]
            else:
                words.append(token)
        return " ".join(words)
