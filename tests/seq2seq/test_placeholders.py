"""Placeholder masking for translation: what counts as a placeholder, masking a source and its reference
with the same sentinels, restoring them (and the accelerator) in a translation, the survival check."""

from __future__ import annotations

import pytest

from mie.data.placeholders import (
    escape_newlines,
    map_between,
    mask,
    mask_target,
    placeholders,
    strip_sentinels,
    survival_rate,
    survives,
    unmask,
    wrap_breaks,
)


@pytest.mark.parametrize(("text", "found"), [
    ("Cannot open %s: %d errors (100%%)", ["%s", "%d", "%%"]),
    ("%1$s: invalid option -- '%2$c'", ["%1$s", "%2$c"]),
    ("%(name)s has %-10lu bytes, %.2f%%", ["%(name)s", "%-10lu", "%.2f", "%%"]),
    ("Key {0} in {section.key} and ${HOME} or {}", ["{0}", "{section.key}", "${HOME}", "{}"]),
    ("<b>Bold</b> <span weight=\"bold\">x</span> &amp; &#169;", ["<b>", "</b>", '<span weight="bold">', "</span>",
                                                                   "&amp;", "&#169;"]),
    ("\\nUsage: cp <source> <dest>\\nmore\\n", ["\\n", "\\n"]),  # usage metavariables are words; inner breaks wrap
    ("50% of the disk, 5 % d", []),  # a percent sign in prose is no conversion
])
def test_placeholders_found(text: str, found: list[str]) -> None:
    assert placeholders(text) == found


def test_mask_and_unmask_round_trip_with_the_reference() -> None:
    source = "Can't open <b>%s</b> &amp; _Save %s"
    masked = mask(source)
    assert masked.text == "Can't open <ph0><ph1><ph2> <ph3> Save <ph4>"
    assert masked.slots == ["<b>", "%s", "</b>", "&amp;", "%s"] and masked.accelerator == ("_", "S")
    target = mask_target("Kann <b>%s</b> &amp; %s nicht _speichern", masked)
    assert target == "Kann <ph0><ph1><ph2> <ph3> <ph4> nicht speichern"
    assert unmask(target, masked) == "Kann <b>%s</b> &amp; %s nicht _speichern"
    # a translation that reorders the slots gets each original back where the model put it
    assert unmask("<ph3> <ph0>x<ph2>", mask("%d <b>a</b> %s")) == "%s %dx</b>"


def test_accelerator_goes_before_the_same_letter_or_the_first_letter() -> None:
    assert unmask("Speichern", mask("_Save")) == "_Speichern"
    assert unmask("Beenden", mask("_Quit")) == "_Beenden"  # no q: before the first letter
    assert unmask("Datei <ph0>", mask("&Edit %s")) == "Dat&ei %s"  # the first e, case-insensitive
    assert unmask("<ph0> speichern", mask("_Save <b>")) == "<b> _speichern"  # never inside a restored slot
    assert mask("R&D and file_name").accelerator is None  # mid-word markers are no mnemonics
    assert mask("&amp; _Open").accelerator == ("_", "O")  # an entity's & is markup


def test_mask_target_refuses_pairs_whose_placeholders_differ() -> None:
    source = mask("Cannot cast %s to %s")
    assert mask_target("Kann %s nicht in %s umwandeln", source) == "Kann <ph0> nicht in <ph1> umwandeln"
    assert mask_target("Kann %2$s nicht in %1$s umwandeln", source) is None  # reordered by position
    assert mask_target("Kann nicht umwandeln", source) is None  # dropped
    assert mask_target("Kann %s nicht in %s umwandeln: %d", source) is None  # invented


def test_line_breaks_frame_or_wrap() -> None:
    assert escape_newlines("Usage:\n   app  FILE\n") == "Usage:\\napp FILE\\n"
    assert wrap_breaks("\\nab\\ncd\\n") == "\\nab<nl>cd\\n"
    masked = mask("\\nfirst line\\nsecond\\n")  # the framing breaks are taken off, inner ones wrap
    assert (masked.text, masked.frame, masked.slots) == ("first line<nl>second", ("\\n", "\\n"), [])
    assert mask_target("\\nerste\\nZeile\\nzweite\\n", masked) == "erste<nl>Zeile<nl>zweite"
    assert mask_target("erste Zeile zweite\\n", masked) is None  # a framing break lost
    assert unmask("erste<nl>zweite", masked) == "\\nerste\\nzweite\\n"
    assert unmask("<nl> erste<nl>zweite <nl>", masked) == "\\nerste\\nzweite\\n"  # no wrap at an edge


def test_survival() -> None:
    assert survives("Open %s", "Öffne %s") is True
    assert survives("Open %s", "Öffne") is False
    assert survives("Open %s", "Öffne %s %s") is False
    assert survives("Open file", "Datei öffnen") is None
    assert survives("_Open", "Öffnen") is False and survives("_Open", "Ö_ffnen") is True
    assert survives("line\\nwrapped\\n", "Zeile umbrochen\\n") is True  # the inner break is layout
    assert survives("line\\n", "Zeile") is False
    assert survival_rate(["a %s", "b", "c %d"], ["x %s", "y", "z"]) == (50.0, 2)
    assert survival_rate(["a"], ["b"]) == (100.0, 0)


def test_map_between_leaves_sentinels_alone() -> None:
    text = mask("open %s now<b>x</b>\\nab\\ncd").text
    assert map_between(str.upper, text) == "OPEN <ph0> NOW<ph1>X<ph2><nl>AB<nl>CD"
    assert strip_sentinels(text) == "open now x ab cd"
