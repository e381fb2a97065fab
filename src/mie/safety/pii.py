"""Personal identifiers in text: emails, phone numbers, US SSNs, payment cards (Luhn-checked) and IPv4.

:func:`find_pii` returns non-overlapping spans in text order; :func:`redact_pii` replaces exactly
those spans and leaves every other character as it was::

    redact_pii("mail ana@example.com or call 555-867-5309.")
    # 'mail [REDACTED EMAIL] or call [REDACTED PHONE].'
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# Card numbers: 13-19 digits, optionally grouped by single spaces or hyphens.
CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
# SSNs in their written form only (a bare nine-digit run is too often something else); area 000,
# 666 and 9xx, group 00 and serial 0000 are never issued.
SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}(?![\d-])")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV4 = re.compile(rf"(?<![\d.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\d]|\.\d)")
EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}\b")
# North-American numbers ((555) 867-5309, 555.867.5309, +1 555 867 5309) and international ones
# that start with + (+44 20 7946 0958).
PHONE = re.compile(
    r"(?<![\w+])(?:(?:\+?1[ .-]?)?(?:\(\d{3}\)|\d{3})[ .-]?\d{3}[ .-]\d{4}"
    r"|\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}\d)(?![\w-])")

KINDS = ("email", "phone", "ssn", "credit_card", "ipv4")


@dataclass(frozen=True)
class PIIMatch:
    """One identifier found in a text: its kind and ``text[start:end]``."""

    kind: str
    start: int
    end: int
    value: str


def luhn_valid(number: str) -> bool:
    """Whether the digits of ``number`` pass the Luhn checksum every payment card carries."""
    digits = [int(c) for c in number if c.isdigit()]
    if not 13 <= len(digits) <= 19 or len(set(digits)) == 1:  # all zeros pass Luhn but are no card
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_ok(value: str) -> bool:
    groups = re.split(r"[ -]", value)
    # Written cards use one separator style; a run of mixed separators is more likely a table of numbers.
    return luhn_valid(value) and len({len(g) for g in groups}) <= 3


_DETECTORS = (("credit_card", CARD, _card_ok), ("ssn", SSN, None), ("ipv4", IPV4, None),
              ("email", EMAIL, None), ("phone", PHONE, None))


def find_pii(text: str, kinds: Iterable[str] = KINDS) -> list[PIIMatch]:
    """Every identifier of ``kinds`` in ``text``, non-overlapping, in text order.

    Cards are tried first, then SSNs, IPs, emails and phones, so a card number is never also
    reported as a phone number.
    """
    wanted = set(kinds)
    unknown = wanted - set(KINDS)
    if unknown:
        raise ValueError(f"unknown PII kinds {sorted(unknown)}; choose from {', '.join(KINDS)}")
    taken: list[tuple[int, int]] = []
    found: list[PIIMatch] = []
    for kind, pattern, check in _DETECTORS:
        if kind not in wanted:
            continue
        for m in pattern.finditer(text):
            if check is not None and not check(m.group(0)):
                continue
            if any(m.start() < end and start < m.end() for start, end in taken):
                continue
            taken.append((m.start(), m.end()))
            found.append(PIIMatch(kind, m.start(), m.end(), m.group(0)))
    return sorted(found, key=lambda p: p.start)


def redact_pii(text: str, kinds: Iterable[str] = KINDS, skip: Iterable[tuple[int, int]] = (),
               label: str = "[REDACTED {kind}]") -> tuple[str, list[PIIMatch]]:
    """``text`` with each identifier replaced by ``label`` (``{kind}`` upper-cased) and the matches.

    Spans overlapping one of ``skip`` (allowlisted phrases) are left alone; nothing else changes.
    """
    skip = list(skip)
    matches = [m for m in find_pii(text, kinds) if not any(m.start < e and s < m.end for s, e in skip)]
    parts, last = [], 0
    for m in matches:
        parts += [text[last:m.start], label.format(kind=m.kind.upper().replace("_", " "))]
        last = m.end
    parts.append(text[last:])
    return "".join(parts), matches
