"""Normalizers: the first pipeline stage, text -> text, applied before pre-tokenization.

Each stage is small and serializable (``to_dict`` / ``normalizer_from_dict``) so a whole tokenizer fits in
one JSON file. Stages compose with :class:`NormalizerSequence`.
"""

from __future__ import annotations

import html
import unicodedata
from collections.abc import Sequence
from typing import Any

import regex

from mie.errors import LimitError, TokenizerError
from mie.registry import Registry
from mie.tokenization.schema import RETRAIN_FIX, check_keys, field, short

MAX_STAGES = 32  # stages in one sequence
MAX_DEPTH = 4  # sequences inside sequences


class Normalizer:
    """A text -> text transform; subclasses set ``kind`` and implement ``__call__``."""

    kind = "identity"

    def __call__(self, text: str) -> str:
        """Return the normalized text (the identity here)."""
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description; ``normalizer_from_dict`` rebuilds the stage."""
        return {"type": self.kind}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Normalizer) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_dict()})"


class NFC(Normalizer):
    """Unicode canonical composition, so ``e`` + combining acute and ``é`` give the same tokens."""

    kind = "nfc"

    def __call__(self, text: str) -> str:
        # is_normalized is a fast scan; most text is already NFC and needs no copy.
        return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)


class Lowercase(Normalizer):
    """``str.lower`` (what CLIP does after cleaning)."""

    kind = "lowercase"

    def __call__(self, text: str) -> str:
        return text.lower()


_WHITESPACE_RUN = regex.compile(r"\s+")


class WhitespaceClean(Normalizer):
    """Collapse every run of Unicode whitespace into one space and strip both ends (CLIP's clean-up)."""

    kind = "whitespace_clean"

    def __call__(self, text: str) -> str:
        return _WHITESPACE_RUN.sub(" ", text).strip()


class HtmlUnescape(Normalizer):
    """Undo HTML escapes twice (``&amp;amp;`` -> ``&``) and strip, as CLIP's ``basic_clean`` does."""

    kind = "html_unescape"

    def __call__(self, text: str) -> str:
        return html.unescape(html.unescape(text)).strip()


_STRAIGHT_QUOTES = str.maketrans({"\u02bc": "'", "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'",
                                  "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"'})


class StraightenQuotes(Normalizer):
    """Curly quotes to straight ones (``’ ‘ ʼ`` -> ``'``, ``“ ”`` -> ``"``), as CLIP's ftfy clean-up does."""

    kind = "straighten_quotes"

    def __call__(self, text: str) -> str:
        return text.translate(_STRAIGHT_QUOTES)


class NormalizerSequence(Normalizer):
    """Apply several normalizers in order."""

    kind = "sequence"

    def __init__(self, stages: Sequence[Normalizer]) -> None:
        self.stages = list(stages)

    def __call__(self, text: str) -> str:
        for stage in self.stages:
            text = stage(text)
        return text

    def to_dict(self) -> dict[str, Any]:
        """This stage as a JSON-friendly dict (for the tokenizer file)."""
        return {"type": self.kind, "stages": [s.to_dict() for s in self.stages]}


_KINDS: Registry[type[Normalizer]] = Registry("normalizer type", error=TokenizerError)
for _cls in (Normalizer, NFC, Lowercase, WhitespaceClean, HtmlUnescape, StraightenQuotes):
    _KINDS.add(_cls.kind, _cls)
del _cls


def normalizer_from_dict(data: Any, key: str = "normalizer", depth: int = 0) -> Normalizer:
    """Rebuild a normalizer written by ``Normalizer.to_dict``; a malformed one is a TokenizerError naming ``key``."""
    if not isinstance(data, dict):
        raise TokenizerError(f"{key} must be an object, got {short(data)}", fix=RETRAIN_FIX)
    kind = data.get("type")
    check_keys(data, ("type", "stages") if kind == NormalizerSequence.kind else ("type",), key)
    if kind == NormalizerSequence.kind:
        stages = field(data, "stages", list, key, default=[])
        if depth >= MAX_DEPTH or len(stages) > MAX_STAGES:
            raise LimitError(f"{key} has more than {MAX_STAGES} stages or {MAX_DEPTH} levels of sequences",
                             fix=RETRAIN_FIX)
        return NormalizerSequence(
            [normalizer_from_dict(stage, f"{key}.stages[{i}]", depth + 1) for i, stage in enumerate(stages)]
        )
    if not isinstance(kind, str) or kind not in _KINDS:
        names = _KINDS.choices(also=[NormalizerSequence.kind])  # short(): the type comes from an untrusted file
        raise TokenizerError(f"unknown normalizer type {short(kind)} at {key}.type",
                             fix=f"retrain the tokenizer or use one of: {names}")
    return _KINDS[kind]()


def build_normalizer(nfc: bool = True, lowercase: bool = False, clean_whitespace: bool = False) -> Normalizer:
    """The usual pipeline: NFC, then optional whitespace clean-up, then optional lowercasing."""
    stages: list[Normalizer] = []
    if nfc:
        stages.append(NFC())
    if clean_whitespace:
        stages.append(WhitespaceClean())
    if lowercase:
        stages.append(Lowercase())
    if len(stages) == 1:
        return stages[0]
    return NormalizerSequence(stages) if stages else Normalizer()
