"""``BPETokenizer``: the whole pipeline, normalizer -> pre-tokenizer -> BPE model -> post-processor.

Decoding runs the model's byte table (the decoder stage) then UTF-8. For any text ``t``,
``decode(encode(t)) == normalizer(t)`` exactly with the GPT-2 and cl100k pre-tokenizers (they cover every
character); with the identity normalizer that is ``t`` itself.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import regex
import torch

from mie.errors import MieError, TokenizerError
from mie.io.atomic import TEMP_TAG
from mie.tokenization.base import SPECIAL_TOKENS, BaseTokenizer
from mie.tokenization.bpe import BPEModel, BPETrainer
from mie.tokenization.normalizers import NFC, Normalizer, normalizer_from_dict
from mie.tokenization.pre_tokenizers import RegexPreTokenizer
from mie.tokenization.processors import PostProcessor
from mie.tokenization.schema import (
    RETRAIN_FIX,
    check_keys,
    field,
    id_error,
    in_file,
    parse_tokenizer_json,
    read_tokenizer_json,
    short,
)

FORMAT_NAME = "mie.tokenizer"
FORMAT_VERSION = 1
DOCUMENT_KEYS = ("format", "version", "normalizer", "pre_tokenizer", "model", "special_tokens", "bos_token",
                 "eos_token", "pad_token", "post_processor", "split_special_tokens")
MAX_CONTEXT_LENGTH = 1 << 20  # a row of the id tensor; a file cannot ask for terabytes per text


def read_texts(paths: Iterable[str | Path]) -> Iterator[str]:
    """Yield each file's text (UTF-8; undecodable bytes become U+FFFD so one bad file cannot stop a run)."""
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"corpus file {path} does not exist (or is not a file)")
        yield path.read_text(encoding="utf-8", errors="replace")


def count_words(
    texts: Iterable[str], normalizer: Normalizer, pre_tokenizer: RegexPreTokenizer
) -> Counter[str]:
    """``{pre-token: occurrences}`` over ``texts``: all a BPE trainer needs to see of a corpus."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(pre_tokenizer(normalizer(text)))  # Counter.update(iterable) counts in C
    return counts


class BPETokenizer(BaseTokenizer):
    """A byte-level BPE tokenizer built from pipeline stages (see the module docstring).

    ``bos_token`` / ``eos_token`` must be special tokens of the model; ``pad_token`` too, or None to pad
    with id 0 (CLIP's zero padding; the attention mask tells padding apart). With ``split_special_tokens``
    a special token written in the text (``<|im_start|>``) encodes to its own id, as HF tokenizers do;
    without it (the default) the text is ordinary characters.
    """

    def __init__(
        self,
        model: BPEModel,
        normalizer: Normalizer | None = None,
        pre_tokenizer: RegexPreTokenizer | None = None,
        bos_token: str = "<bos>",
        eos_token: str = "<eos>",
        pad_token: str | None = "<pad>",
        context_length: int = 77,
        split_special_tokens: bool = False,
    ) -> None:
        self.model = model
        self.normalizer = normalizer if normalizer is not None else Normalizer()
        self.pre_tokenizer = pre_tokenizer if pre_tokenizer is not None else RegexPreTokenizer.named("gpt2")
        self.bos_token, self.eos_token, self.pad_token = bos_token, eos_token, pad_token
        ids = {}
        for role, token in (("bos_token", bos_token), ("eos_token", eos_token), ("pad_token", pad_token)):
            if token is None:
                continue
            if not isinstance(token, str) or token not in model.special_tokens:
                raise TokenizerError(
                    f"{role} {short(token)} is not a special token of the model "
                    f"(special tokens: {short(sorted(model.special_tokens), 200)})",
                    fix="name one of the special tokens",
                )
            ids[role] = model.special_tokens[token]
        self.post_processor = PostProcessor(
            ids["bos_token"], ids["eos_token"], ids.get("pad_token", 0), context_length
        )
        self._special_ids = frozenset(model.special_tokens.values())
        self.split_special_tokens = bool(split_special_tokens)
        self._special_split = None
        if self.split_special_tokens and model.special_tokens:  # longest first: a token may prefix another
            names = sorted(model.special_tokens, key=len, reverse=True)
            self._special_split = regex.compile("(" + "|".join(map(regex.escape, names)) + ")").split

    # -- BaseTokenizer contract -------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included."""
        return self.model.vocab_size

    @property
    def pad_id(self) -> int:
        """Id used for padding (0 when there is no pad token)."""
        return self.post_processor.pad_id

    @property
    def bos_id(self) -> int:
        """Id put before every text."""
        return int(self.post_processor.bos_id)  # type: ignore[arg-type]

    @property
    def eos_id(self) -> int:
        """Id put after every text."""
        return int(self.post_processor.eos_id)  # type: ignore[arg-type]

    @property
    def context_length(self) -> int:
        """Default row length of ``__call__`` / ``encode_with_mask``."""
        return self.post_processor.context_length

    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` without added special tokens (BOS/EOS); see ``split_special_tokens``."""
        if self._special_split is None:
            return self.model.encode_words(self.pre_tokenizer(self.normalizer(text)))
        ids: list[int] = []
        for i, part in enumerate(self._special_split(text)):  # odd parts are the special tokens
            if i % 2:
                ids.append(self.model.special_tokens[part])
            elif part:
                ids.extend(self.model.encode_words(self.pre_tokenizer(self.normalizer(part))))
        return ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """``encode`` over many texts."""
        return [self.encode(t) for t in texts]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Text of ``ids``; special tokens are dropped unless ``skip_special_tokens`` is False."""
        try:
            ids = list(map(int, ids))
        except (TypeError, ValueError, OverflowError):
            raise TokenizerError("token ids must be integers", fix="pass integer ids") from None
        if skip_special_tokens:
            ids = [i for i in ids if i not in self._special_ids]
        return self.model.decode_bytes(ids).decode("utf-8", errors="replace")

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None) -> torch.Tensor:
        """``[len(texts), context_length]`` LongTensor: BOS, ids, EOS (kept on truncation), padding."""
        return self.encode_with_mask(texts, context_length)[0]

    def encode_with_mask(
        self, texts: str | Sequence[str], context_length: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Post-processed ``(ids, attention_mask)`` LongTensors for a text or a batch of texts."""
        if isinstance(texts, str):
            texts = [texts]
        return self.post_processor.batch(self.encode_batch(texts), context_length)

    # -- lookups --------------------------------------------------------------------------------
    def token_to_id(self, token: str) -> int | None:
        """Id of a vocab string (byte-level form), or None."""
        return self.model.vocab.get(token)

    def id_to_token(self, idx: int) -> str:
        """Vocab string (byte-level form) of an id."""
        if not hasattr(self, "_inverse"):
            self._inverse = {i: t for t, i in self.model.vocab.items()}
        if idx not in self._inverse:
            raise id_error(idx, self.vocab_size)
        return self._inverse[idx]

    # -- training ---------------------------------------------------------------------------------
    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int = 8192,
        min_frequency: int = 2,
        special_tokens: Sequence[str] = SPECIAL_TOKENS,
        normalizer: Normalizer | None = None,
        pre_tokenizer: RegexPreTokenizer | str = "gpt2",
        context_length: int = 77,
        show_progress: bool = False,
    ) -> BPETokenizer:
        """Train on an iterator of texts. Defaults: NFC normalizer, GPT-2 regex, specials from ``base``.

        The first three special tokens' roles are pad, bos and eos unless the list holds the usual names
        (``<pad>``, ``<bos>``, ``<eos>``), which are then used for those roles.
        """
        normalizer = NFC() if normalizer is None else normalizer
        if isinstance(pre_tokenizer, str):
            pre_tokenizer = RegexPreTokenizer.named(pre_tokenizer)
        pad, bos, eos = _special_roles(special_tokens)
        trainer = BPETrainer(vocab_size, min_frequency, special_tokens, show_progress)
        vocab, merges = trainer.train(count_words(texts, normalizer, pre_tokenizer))
        model = BPEModel(vocab, merges, special_tokens=special_tokens)
        return cls(model, normalizer, pre_tokenizer, bos, eos, pad, context_length)

    @classmethod
    def train_from_files(cls, paths: Iterable[str | Path], **kwargs: Any) -> BPETokenizer:
        """Train on text files (each file is one text); keyword arguments as in :meth:`train`."""
        return cls.train(read_texts(paths), **kwargs)

    # -- serialization ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The whole tokenizer as JSON-ready data (the single-file format)."""
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "normalizer": self.normalizer.to_dict(),
            "pre_tokenizer": self.pre_tokenizer.to_dict(),
            "model": {
                "type": "bpe",
                "end_of_word_suffix": self.model.end_of_word_suffix,
                "vocab": self.model.vocab,
                "merges": [list(m) for m in self.model.merges],
                **({"drop_missing_bytes": True} if self.model.drop_missing_bytes else {}),
            },
            "special_tokens": list(self.model.special_tokens),
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "pad_token": self.pad_token,
            "post_processor": {"context_length": self.context_length},
            **({"split_special_tokens": True} if self.split_special_tokens else {}),
        }

    @classmethod
    def from_dict(cls, data: Any) -> BPETokenizer:
        """Rebuild a tokenizer written by :meth:`to_dict`; anything malformed is a TokenizerError naming the key."""
        if not isinstance(data, dict):
            raise TokenizerError(f"the top level is {short(data)}, not a JSON object", fix=RETRAIN_FIX)
        if data.get("format") != FORMAT_NAME:
            raise TokenizerError(f"not a {FORMAT_NAME} document (format={short(data.get('format'))})",
                                 fix=RETRAIN_FIX)
        version = data.get("version")
        if type(version) is not int or version != FORMAT_VERSION:
            raise TokenizerError(f"unsupported {FORMAT_NAME} version {short(version)}; expected {FORMAT_VERSION}",
                                 fix=RETRAIN_FIX)
        check_keys(data, DOCUMENT_KEYS, "the document")
        spec = field(data, "model", dict)
        check_keys(spec, ("type", "end_of_word_suffix", "vocab", "merges", "drop_missing_bytes"), "model")
        if spec.get("type") != "bpe":
            raise TokenizerError(f"model type must be 'bpe', got {short(spec.get('type'))}", fix=RETRAIN_FIX)
        merges = field(spec, "merges", list, "model")
        for rank, merge in enumerate(merges):
            if not (isinstance(merge, list) and len(merge) == 2 and all(isinstance(p, str) for p in merge)):
                raise TokenizerError(f"model.merges[{rank}] must be a list of two strings, got {short(merge)}",
                                     fix=RETRAIN_FIX)
        specials = field(data, "special_tokens", list)
        for i, token in enumerate(specials):
            if not isinstance(token, str):
                raise TokenizerError(f"special_tokens[{i}] must be a string, got {short(token)}", fix=RETRAIN_FIX)
        model = BPEModel(
            field(spec, "vocab", dict, "model"),
            [tuple(m) for m in merges],
            field(spec, "end_of_word_suffix", str, "model", default=""),
            specials,
            drop_missing_bytes=field(spec, "drop_missing_bytes", bool, "model", default=False),
        )
        post = field(data, "post_processor", dict)
        check_keys(post, ("context_length",), "post_processor")
        context_length = field(post, "context_length", int, "post_processor")
        if not 2 <= context_length <= MAX_CONTEXT_LENGTH:
            raise TokenizerError(f"post_processor.context_length {context_length} is outside 2..{MAX_CONTEXT_LENGTH}",
                                 fix=RETRAIN_FIX)
        return cls(
            model,
            normalizer_from_dict(field(data, "normalizer", dict)),
            RegexPreTokenizer.from_dict(field(data, "pre_tokenizer", dict)),
            field(data, "bos_token", str),
            field(data, "eos_token", str),
            field(data, "pad_token", (str, type(None)), default=None),
            context_length,
            field(data, "split_special_tokens", bool, default=False),
        )

    def to_json(self) -> str:
        """The single-file JSON text (keys in a fixed order, so equal tokenizers give equal text)."""
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> BPETokenizer:
        """Rebuild from :meth:`to_json` text."""
        return cls.from_dict(parse_tokenizer_json(text))

    def save(self, path: str | Path) -> Path:
        """Write the single-file JSON; see :func:`save_tokenizer`."""
        return save_tokenizer(self, path)

    @classmethod
    def load(cls, path: str | Path) -> BPETokenizer:
        """Read a single-file JSON tokenizer; see :func:`load_tokenizer`."""
        return load_tokenizer(path)

    def __repr__(self) -> str:
        return (
            f"BPETokenizer(vocab_size={self.vocab_size}, pre_tokenizer={self.pre_tokenizer.style!r}, "
            f"normalizer={self.normalizer.to_dict()['type']!r})"
        )


def save_tokenizer(tokenizer: BPETokenizer, path: str | Path) -> Path:
    """Write ``tokenizer`` as one JSON file (atomically: a temp file then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{TEMP_TAG}")  # cleaned after a kill
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(tokenizer.to_dict(), fh, ensure_ascii=False, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_tokenizer(path: str | Path) -> BPETokenizer:
    """Read a tokenizer written by :func:`save_tokenizer`; any bad content is a TokenizerError naming the file."""
    data = read_tokenizer_json(path)
    try:
        return BPETokenizer.from_dict(data)
    except MieError as err:
        raise in_file(err, path) from None


def _special_roles(special_tokens: Sequence[str]) -> tuple[str | None, str, str]:
    """``(pad, bos, eos)`` among trained special tokens: by the usual names, else by position."""
    names = set(special_tokens)
    if {"<pad>", "<bos>", "<eos>"} <= names:
        return "<pad>", "<bos>", "<eos>"
    if len(special_tokens) >= 3:
        return special_tokens[0], special_tokens[1], special_tokens[2]
    if len(special_tokens) >= 1:  # one token (GPT-2's <|endoftext|>) serves as BOS and EOS
        return None, special_tokens[0], special_tokens[-1]
    raise TokenizerError("training a BPETokenizer needs at least one special token for BOS/EOS",
                         fix="pass special tokens, e.g. <pad> <bos> <eos>")
