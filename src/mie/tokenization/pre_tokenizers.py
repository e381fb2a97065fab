"""Pre-tokenizers: split normalized text into words; BPE merges never cross a word boundary.

The patterns are those of GPT-2, GPT-4 (tiktoken's ``cl100k_base``) and OpenAI CLIP, run through the
``regex`` package (the standard ``re`` has no ``\\p{L}`` classes). The GPT-2 and cl100k patterns cover
every character, so the concatenated words give back the text exactly; CLIP's drops whitespace, which its
BPE encodes with the ``</w>`` word-end marker instead.

Only these known patterns are ever compiled: a tokenizer file names its style (``"style": "gpt2"``), and
a file that stores a pattern (as earlier versions did) is accepted only when the text is exactly one of
them. A regex taken from a file would be untrusted code: ``(a|aa)+$`` on ``"aaaa…!"`` backtracks for ages.
"""

from __future__ import annotations

from typing import Any

import regex

from mie.errors import TokenizerError
from mie.tokenization.schema import RETRAIN_FIX, check_keys, field, short

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
CL100K_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
# SmolLM / StarCoder: every digit is its own word (HF ``Digits(individual_digits=True)``), then GPT-2's
# regex on the pieces between digits. One pattern does both: digits come first, `` ?\p{N}+`` is gone, and
# a whitespace run may end before a digit as it would end at the end of a piece.
SMOLLM_PATTERN = r"""\p{N}|'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?[^\s\p{L}\p{N}]+|\s+(?![^\s\p{N}])|\s+"""
# Qwen2: cl100k's split with single digits (``\p{N}``, not runs of up to three).
QWEN2_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
CLIP_PATTERN = (
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
)

# name -> (pattern, ignore_case); CLIP compiles its pattern with IGNORECASE.
PATTERNS: dict[str, tuple[str, bool]] = {
    "gpt2": (GPT2_PATTERN, False),
    "cl100k": (CL100K_PATTERN, False),
    "smollm": (SMOLLM_PATTERN, False),
    "qwen2": (QWEN2_PATTERN, False),
    "clip": (CLIP_PATTERN, True),
}
MODEL_STYLES = ("smollm", "qwen2")  # pretrained model families' splits, not offered for training
_STYLE_FIX = f"retrain the tokenizer or use one of: {', '.join(sorted(set(PATTERNS) - set(MODEL_STYLES)))}"


class RegexPreTokenizer:
    """Split text into the non-overlapping matches of a known regex (``regex.findall``), named by ``style``.

    Example: ``RegexPreTokenizer("cl100k")("Hello world") == ["Hello", " world"]``.
    """

    def __init__(self, style: str = "gpt2") -> None:
        if not isinstance(style, str) or style not in PATTERNS:
            raise TokenizerError(f"unknown pre-tokenizer style {short(style)}", fix=_STYLE_FIX)
        self.style = style
        self.pattern, self.ignore_case = PATTERNS[style]
        flags = regex.IGNORECASE if self.ignore_case else 0
        # No ``timeout=``: it triples the cost of each call, and these patterns run in linear time (every
        # alternative is a single character class run or a fixed word; no nested quantifiers).
        self._findall = regex.compile(self.pattern, flags).findall

    @classmethod
    def named(cls, name: str) -> RegexPreTokenizer:
        """The pre-tokenizer of a known style: ``gpt2``, ``cl100k``, ``smollm``, ``qwen2`` or ``clip``."""
        return cls(name)

    @classmethod
    def from_pattern(cls, pattern: str, ignore_case: bool = False) -> RegexPreTokenizer:
        """The known style whose pattern text is exactly ``pattern``; any other pattern is a TokenizerError."""
        for name, spec in PATTERNS.items():
            if spec == (pattern, ignore_case):
                return cls(name)
        raise TokenizerError(
            "pre_tokenizer.pattern is not a known pre-tokenizer pattern (custom regexes are not run)", fix=_STYLE_FIX
        )

    def __call__(self, text: str) -> list[str]:
        """The words of ``text`` in order."""
        return self._findall(text)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description: the style's name (never the pattern, which files cannot choose)."""
        return {"type": "regex", "style": self.style}

    @classmethod
    def from_dict(cls, data: Any) -> RegexPreTokenizer:
        """Rebuild from ``to_dict`` output, or from an earlier version's ``{"pattern": ..., "ignore_case": ...}``.

        A stored pattern must be exactly the text of a known style (and agree with ``style`` when both
        are given); anything else is refused rather than compiled.
        """
        if not isinstance(data, dict) or data.get("type") != "regex":
            raise TokenizerError(f"pre_tokenizer must be {{'type': 'regex', 'style': ...}}, got {short(data)}",
                                 fix=_STYLE_FIX)
        check_keys(data, ("type", "style", "pattern", "ignore_case"), "pre_tokenizer")
        style = field(data, "style", (str, type(None)), "pre_tokenizer", default=None)
        pattern = field(data, "pattern", (str, type(None)), "pre_tokenizer", default=None)
        if style is None and pattern is None:
            raise TokenizerError("pre_tokenizer has no 'style'", fix=_STYLE_FIX)
        if style is not None:
            if style not in PATTERNS:
                raise TokenizerError(f"pre_tokenizer.style {short(style)} is not a known pre-tokenizer", fix=_STYLE_FIX)
            known = cls(style)
            if pattern is not None and pattern != known.pattern:
                raise TokenizerError(
                    f"pre_tokenizer.pattern is not the pattern of style {style!r} (custom regexes are not run)",
                    fix=_STYLE_FIX,
                )
        else:
            ignore_case = field(data, "ignore_case", bool, "pre_tokenizer", default=False)
            known = cls.from_pattern(pattern, ignore_case)
        ignore_case = field(data, "ignore_case", bool, "pre_tokenizer", default=known.ignore_case)
        if ignore_case != known.ignore_case:
            raise TokenizerError(f"pre_tokenizer.ignore_case must be {known.ignore_case} for style {known.style!r}",
                                 fix=RETRAIN_FIX)
        return known

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RegexPreTokenizer) and self.style == other.style

    def __hash__(self) -> int:
        return hash(self.style)

    def __repr__(self) -> str:
        return f"RegexPreTokenizer(style={self.style!r})"
