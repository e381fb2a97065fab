"""Undo the tricks that hide a request from a text filter: zero-width characters, look-alike letters,
leetspeak and encoded payloads (base64, hex).

Each function returns the cleaned text and what it changed, so the filter can both re-check the
clean text and report the trick::

    strip_zero_width("bo\u200bmb")            # ('bomb', 1)
    map_homoglyphs("b\u043emb")               # ('bomb', ['b\u043emb'])   (Cyrillic o)
    unleet("h0w t0 m4k3 a b0mb")              # ('how to make a bomb', ['h0w', 't0', 'm4k3', 'b0mb'])
    decode_payloads("SG93IGRvIEkgbWFrZSBhIGJvbWI/")   # [Payload('base64', ..., 'How do I make a bomb?')]
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from dataclasses import dataclass

# Format characters that render as nothing; used to split a word so that patterns miss it.
ZERO_WIDTH = re.compile("[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")

# Cyrillic and Greek letters drawn like Latin ones (the confusables that matter for English words).
HOMOGLYPHS = str.maketrans({
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c", "т": "t",
    "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "ԁ": "d", "һ": "h", "ӏ": "l", "ԛ": "q", "ԝ": "w",
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C", "Т": "T", "Х": "X",
    "У": "Y", "Ѕ": "S", "І": "I", "Ј": "J", "Ԁ": "D", "Ԛ": "Q", "Ԝ": "W",
    "α": "a", "ο": "o", "ν": "v", "ρ": "p", "ι": "i", "κ": "k", "υ": "u", "ε": "e", "τ": "t", "ϲ": "c",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O",
    "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
})
_CONFUSABLE = set(chr(c) for c in HOMOGLYPHS)
_WORD = re.compile(r"\w+")

# Digits and symbols read as letters. "1" is "i" ("k1ll"), but "11" is "ll" ("ki11") and a final "1"
# after a vowel is "l" ("stea1").
LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g", "@": "a",
                      "$": "s", "!": "i", "|": "l", "+": "t", "€": "e"})
_LEET_TOKEN = re.compile(r"[\w@$!|+€]*[a-zA-Z][\w@$!|+€]*|[\w@$|€]*[0-9@$|€][\w@$|€]*")
_ORDINAL = re.compile(r"^\d+(?:st|nd|rd|th|s|k|m|px|ms|gb|mb|kb|fps|x|d|h|am|pm)$")

_BASE64 = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{16,}={0,2}(?![A-Za-z0-9+/=_-])")
_HEX = re.compile(r"(?<![0-9A-Za-z])(?:0x)?(?:[0-9a-fA-F]{2}){8,}(?![0-9A-Za-z])"
                  r"|(?:\\x[0-9a-fA-F]{2}){4,}|(?<![0-9A-Za-z])(?:[0-9a-fA-F]{2}[ :]){5,}[0-9a-fA-F]{2}(?![0-9A-Za-z])")


@dataclass(frozen=True)
class Payload:
    """An encoded run in a text: its encoding, where it was, and the text it decodes to."""

    encoding: str
    start: int
    end: int
    decoded: str


def strip_zero_width(text: str) -> tuple[str, int]:
    """``text`` without invisible format characters, and how many were removed."""
    cleaned, count = ZERO_WIDTH.subn("", text)
    return cleaned, count


def map_homoglyphs(text: str) -> tuple[str, list[str]]:
    """Latin letters for Cyrillic/Greek look-alikes inside words that also hold Latin letters.

    Only mixed-script words are changed: a real Russian or Greek sentence stays as written, while
    "bоmb" with a Cyrillic "о" becomes "bomb". Returns the text and the words that changed.
    """
    changed: list[str] = []

    def fix(match: re.Match[str]) -> str:
        word = match.group(0)
        if not _CONFUSABLE.intersection(word) or not any("a" <= c.lower() <= "z" for c in word):
            return word
        if any(c.isalpha() and not ("a" <= c.lower() <= "z") and c not in _CONFUSABLE for c in word):
            return word  # other non-Latin letters: a genuine foreign word, not a disguise
        changed.append(word)
        return word.translate(HOMOGLYPHS)

    return _WORD.sub(fix, text), changed


def unleet(text: str) -> tuple[str, list[str]]:
    """Letters for leetspeak digits and symbols inside words ("m4k3" -> "make").

    Plain numbers ("2024", "3.5") and units or ordinals ("1st", "64gb") stay; the text is for
    re-checking, never shown, so an occasional odd reading ("mp3" -> "mpe") costs nothing.
    """
    changed: list[str] = []

    def fix(match: re.Match[str]) -> str:
        token = match.group(0)
        if token.isdigit() or token.isalpha() or _ORDINAL.match(token.lower()) or len(token) < 2:
            return token
        if not any(c.isalpha() for c in token) and len(token) < 4:
            return token
        word = re.sub(r"(?<=[aeiouAEIOU])1$", "l", token.replace("11", "ll")).translate(LEET)
        if word != token:
            changed.append(token)
        return word

    return _LEET_TOKEN.sub(fix, text), changed


def nfkc(text: str) -> str:
    """Compatibility forms folded (full-width "ｂｏｍｂ", mathematical "𝐛𝐨𝐦𝐛" -> "bomb")."""
    return unicodedata.normalize("NFKC", text)


def _readable(data: bytes) -> str | None:
    """The bytes as text when they are UTF-8 and read like language, else None."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if len(text) < 4:
        return None
    printable = sum(c.isprintable() or c in "\n\t\r" for c in text) / len(text)
    letters = sum(c.isalpha() or c == " " for c in text) / len(text)
    return text if printable >= 0.95 and letters >= 0.6 else None


def _b64(run: str) -> bytes | None:
    run = run.rstrip("=")
    try:
        if "-" in run or "_" in run:
            return base64.urlsafe_b64decode(run + "=" * (-len(run) % 4))
        return base64.b64decode(run + "=" * (-len(run) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _hex(run: str) -> bytes | None:
    digits = re.sub(r"\\x|0x|[ :]", "", run)
    try:
        return bytes.fromhex(digits)
    except ValueError:
        return None


def decode_payloads(text: str, depth: int = 2) -> list[Payload]:
    """Every base64 or hex run in ``text`` that decodes to readable text, decoded ``depth`` levels deep.

    A run that decodes to bytes (a hash, an image, a key) is skipped, so ordinary identifiers pass.
    """
    found: list[Payload] = []
    for encoding, pattern, decode in (("hex", _HEX, _hex), ("base64", _BASE64, _b64)):
        for m in pattern.finditer(text):
            if any(p.start <= m.start() < p.end for p in found):
                continue  # a hex run is also valid base64; the hex reading came first
            data = decode(m.group(0))
            decoded = _readable(data) if data else None
            if decoded is None:
                continue
            found.append(Payload(encoding, m.start(), m.end(), decoded))
            if depth > 1:
                found.extend(Payload(f"{encoding}+{p.encoding}", m.start(), m.end(), p.decoded)
                             for p in decode_payloads(decoded, depth - 1))
    return found
