"""Pre-tokenizers: split normalized text into words; BPE merges never cross a word boundary.

The patterns are those of GPT-2, GPT-4 (tiktoken's ``cl100k_base``) and OpenAI CLIP, run through the
``regex`` package (the standard ``re`` has no ``\\p{L}`` classes). The GPT-2 and cl100k patterns cover
every character, so the concatenated words give back the text exactly; CLIP's drops whitespace, which its
BPE encodes with the ``</w>`` word-end marker instead.
"""

from __future__ import annotations

from typing import Any

import regex

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
CL100K_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
CLIP_PATTERN = (
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
)

# name -> (pattern, ignore_case); CLIP compiles its pattern with IGNORECASE.
PATTERNS: dict[str, tuple[str, bool]] = {
    "gpt2": (GPT2_PATTERN, False),
    "cl100k": (CL100K_PATTERN, False),
    "clip": (CLIP_PATTERN, True),
}


class RegexPreTokenizer:
    """Split text into the non-overlapping matches of one regex (``regex.findall``)."""

    def __init__(self, pattern: str = GPT2_PATTERN, ignore_case: bool = False) -> None:
        self.pattern = pattern
        self.ignore_case = ignore_case
        flags = regex.IGNORECASE if ignore_case else 0
        self._findall = regex.compile(pattern, flags).findall

    @classmethod
    def named(cls, name: str) -> RegexPreTokenizer:
        """The pre-tokenizer of a known style: ``gpt2``, ``cl100k`` or ``clip``."""
        if name not in PATTERNS:
            raise ValueError(f"unknown pre-tokenizer style {name!r}; expected one of {sorted(PATTERNS)}")
        pattern, ignore_case = PATTERNS[name]
        return cls(pattern, ignore_case)

    def __call__(self, text: str) -> list[str]:
        """The words of ``text`` in order."""
        return self._findall(text)

    @property
    def style(self) -> str | None:
        """The name of the known style this pattern is, or None for a custom pattern."""
        for name, spec in PATTERNS.items():
            if spec == (self.pattern, self.ignore_case):
                return name
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (the pattern itself is stored, so custom patterns survive)."""
        return {"type": "regex", "style": self.style, "pattern": self.pattern, "ignore_case": self.ignore_case}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RegexPreTokenizer:
        """Rebuild from ``to_dict`` output."""
        if data.get("type") != "regex" or "pattern" not in data:
            raise ValueError(f"pre_tokenizer must be {{'type': 'regex', 'pattern': ...}}, got {data!r}")
        return cls(data["pattern"], bool(data.get("ignore_case", False)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RegexPreTokenizer) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"RegexPreTokenizer(style={self.style!r})"
