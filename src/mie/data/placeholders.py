"""Placeholders and markup of program messages: mask them before translation, restore them after.

A message such as ``"Can't open <b>%s</b>:\\n%(reason)s"`` holds pieces a translation must carry over
unchanged, or the program that shows it breaks: printf conversions (``%s``, ``%1$d``, ``%(name)s``,
``%%``), brace fields (``{0}``, ``{name}``, ``${var}``), Pango/HTML markup (``<b>``, ``</span>``,
``&amp;``) and line breaks (written ``\\n`` in the corpus files, one message a line). :func:`mask`
replaces each by a sentinel ``<ph0>``, ``<ph1>``, ... (one vocabulary token each) that the model learns to
copy, and :func:`unmask` puts the originals back::

    masked = mask("Can't open <b>%s</b>")      # masked.text == "Can't open <ph0><ph1><ph2>"
    unmask("Kann <ph0><ph1><ph2> nicht öffnen", masked)  # "Kann <b>%s</b> nicht öffnen"

A keyboard accelerator (``_Open``, ``&File``) is taken out of the text and put back before the same
letter of the translation (or its first letter), as translators place it (``Ö_ffnen``).
:func:`survives` tells whether a translation kept every placeholder of its source exactly.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_SLOTS = 16  # sentinels in the vocabulary; placeholders past the 16th of a message stay as text
SENTINELS = tuple(f"<ph{i}>" for i in range(MAX_SLOTS))
SENTINEL = re.compile(r"<ph(\d{1,2})>")
NEWLINE = "\\n"  # how a line break inside a message is written in the one-message-a-line corpus files
WRAP = "<nl>"  # a line break inside a message: layout the translation may move (its own vocabulary token)
SPECIAL_TOKENS = (*SENTINELS, WRAP)
_PIECES = re.compile(r"(<ph\d{1,2}>|<nl>)")  # a masked text split around its sentinels (kept)
_FRAME = re.compile(r"^((?:\\n\s*)*)(.*?)((?:\s*\\n)*)$", re.S)  # leading breaks, body, trailing breaks

_MARKUP_TAGS = ("a|b|big|br|code|div|em|font|i|img|kbd|li|markup|ol|p|s|small|span|strong|sub|sup|tt|u|ul")
PLACEHOLDER = re.compile(
    r"%%"  # a literal percent sign in a format string
    r"|%(?:\d+\$)?(?:\([^)\s]{1,40}\))?[-+#0']*(?:\d+|\*)?(?:\.(?:\d+|\*))?(?:hh|h|ll|l|L|q|j|z|Z|t)?"
    r"(?:<PRI\w+>|[diouxXeEfFgGaAcspnm])"  # printf and Python %-format conversions
    r"|\$?\{(?:\d*|[A-Za-z_][\w.\[\]]*)(?:![rsa])?(?::[^{}]*)?\}"  # str.format / shell brace fields
    rf"|</?(?:{_MARKUP_TAGS})(?:\s[^<>]*)?/?>"  # Pango / HTML markup (not usage metavariables like <file>)
    r"|&(?:[A-Za-z]+|#\d+|#x[0-9A-Fa-f]+);"  # character entities
    r"|\\n"  # a line break
)
ACCELERATOR = re.compile(r"(?<![\w&_])[_&](?=[^\W\d_])")  # a mnemonic marker before a word's first letter
_ANY_ACCELERATOR = re.compile(r"(?<![&_])[_&](?=[^\W\d_])")  # also mid-word (Ö_ffnen), for checking output


@dataclass
class Masked:
    """A message with its placeholders replaced: ``text`` holds ``<phK>`` where ``slots[K]`` was, and
    ``accelerator`` is the removed mnemonic (marker, letter), or None."""

    text: str
    slots: list[str] = field(default_factory=list)
    accelerator: tuple[str, str] | None = None
    frame: tuple[str, str] = ("", "")  # the line breaks that open and close the message, put back as they were


def escape_newlines(text: str) -> str:
    """``text`` on one line: line breaks written as ``\\n``, other whitespace runs as one space."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return NEWLINE.join(" ".join(line.split()) for line in lines).strip()


def _split_frame(text: str) -> tuple[str, str, str]:
    head, body, tail = _FRAME.match(text).groups()
    return head.replace(" ", ""), body, tail.replace(" ", "")


def wrap_breaks(text: str) -> str:
    """``text`` with the line breaks inside it written :data:`WRAP`; those that open or close it stay
    ``\\n`` (a program prints them: a help line ends in one), those inside are wrapping that translators
    redo (4% of German references break lines elsewhere or more often than their English)."""
    head, body, tail = _split_frame(text)
    return head + body.replace(NEWLINE, WRAP) + tail


def placeholders(text: str) -> list[str]:
    """The placeholders and markup of ``text``, in order (line breaks inside the text are not counted)."""
    return PLACEHOLDER.findall(wrap_breaks(text))


def _take_accelerator(text: str) -> tuple[str, tuple[str, str] | None]:
    match = ACCELERATOR.search(text)
    if match is None or len(ACCELERATOR.findall(text)) != 1:  # several: not a mnemonic (e.g. "a & b" prose)
        return text, None
    return text[: match.start()] + text[match.end():], (match.group(0), text[match.end()])


def mask(text: str, accelerators: bool = True) -> Masked:
    """``text`` with each placeholder (the first :data:`MAX_SLOTS`) replaced by its sentinel; the line
    breaks that open or close it are taken off (``frame``) and put back by :func:`unmask` as they were."""
    head, text, tail = _split_frame(text)
    slots: list[str] = []

    def replace(match: re.Match[str]) -> str:
        if len(slots) >= MAX_SLOTS:
            return match.group(0)
        slots.append(match.group(0))
        return SENTINELS[len(slots) - 1]

    text = PLACEHOLDER.sub(replace, text.replace(NEWLINE, WRAP))  # first: an entity's & is no accelerator
    accelerator = None
    if accelerators:
        text, accelerator = _take_accelerator(text)
    return Masked(text, slots, accelerator, (head, tail))


def mask_target(target: str, source: Masked) -> str | None:
    """A reference translation masked with its source's sentinels (each placeholder takes the next unused
    slot holding the same string), its accelerator marker dropped; None when the placeholders differ
    (a pair that would teach the model to drop or invent one)."""
    head, target, tail = _split_frame(target)
    if (head, tail) != source.frame:
        return None
    if source.accelerator is not None:
        marker = source.accelerator[0]
        if target.count(marker) == 1:  # translators may put it mid-word: Ö_ffnen
            target = re.sub(re.escape(marker) + r"(?=\w)", "", target)
    free: dict[str, list[int]] = {}
    for index, slot in enumerate(source.slots):
        free.setdefault(slot, []).append(index)
    used = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal used
        ids = free.get(match.group(0))
        if not ids:
            return match.group(0)
        used += 1
        return SENTINELS[ids.pop(0)]

    masked = PLACEHOLDER.sub(replace, target.replace(NEWLINE, WRAP))
    if used != len(source.slots) or Counter(PLACEHOLDER.findall(masked)) != Counter(PLACEHOLDER.findall(source.text)):
        return None
    return masked


def _put_accelerator(text: str, accelerator: tuple[str, str]) -> str:
    """``text`` (with sentinels) with ``marker`` before the first ``letter`` outside a sentinel, or else
    before its first letter."""
    marker, letter = accelerator
    free = SENTINEL.sub(lambda m: "\x00" * len(m.group(0)), text)  # same offsets, sentinels blanked
    at = free.lower().find(letter.lower())
    if at < 0:
        first = re.search(r"[^\W\d_]", free)
        if first is None:
            return text
        at = first.start()
    return text[:at] + marker + text[at:]


def unmask(text: str, masked: Masked) -> str:
    """The translation ``text`` of ``masked`` with its placeholders and accelerator put back; a sentinel the
    source did not have is dropped."""
    def replace(match: re.Match[str]) -> str:
        index = int(match.group(1))
        return masked.slots[index] if index < len(masked.slots) else ""

    text = " ".join(text.split())
    while text.startswith(WRAP) or text.endswith(WRAP):  # a wrap at an edge would add a framing line break
        text = text.removeprefix(WRAP).removesuffix(WRAP).strip()
    if masked.accelerator:
        text = _put_accelerator(text, masked.accelerator)
    head, tail = masked.frame
    return head + SENTINEL.sub(replace, text).replace(WRAP, NEWLINE) + tail


def map_between(function: Callable[[str], str], masked_text: str) -> str:
    """``masked_text`` with ``function`` applied to each piece between its sentinels (a word-by-word
    dictionary translates the words and leaves ``<ph0>`` alone)."""
    return "".join(piece if i % 2 else function(piece) for i, piece in enumerate(_PIECES.split(masked_text)))


def strip_sentinels(masked_text: str) -> str:
    """``masked_text`` without its sentinels (for statistics over words only)."""
    return " ".join(_PIECES.sub(" ", masked_text).split())


def survives(source: str, translation: str) -> bool | None:
    """Whether ``translation`` holds exactly the placeholders of ``source`` (as a multiset) and, when the
    source has an accelerator, one too; None when the source has neither (nothing to keep)."""
    expected = Counter(placeholders(source))
    has_accelerator = ACCELERATOR.search(PLACEHOLDER.sub(" ", wrap_breaks(source))) is not None
    if not expected and not has_accelerator:
        return None
    if Counter(placeholders(translation)) != expected:
        return False
    return not has_accelerator or _ANY_ACCELERATOR.search(PLACEHOLDER.sub(" ", wrap_breaks(translation))) is not None


def survival_rate(sources: list[str], translations: list[str]) -> tuple[float, int]:
    """Percentage of the sources with placeholders whose translation keeps them all (:func:`survives`),
    and how many such sources there are (100.0 when there are none)."""
    verdicts = [v for v in map(survives, sources, translations) if v is not None]
    return (100.0 * sum(verdicts) / len(verdicts) if verdicts else 100.0), len(verdicts)
