"""TokenPrinter prints the growing text once, holding back bytes of an unfinished UTF-8 character."""

from __future__ import annotations

import io

from mie.tokenization.streaming import TokenPrinter


class ByteTokenizer:
    """One token per byte, as a byte-level BPE's base vocabulary."""

    def decode(self, ids: list[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")


def test_multibyte_characters_are_printed_whole_and_nothing_twice():
    out = io.StringIO()
    printer = TokenPrinter(ByteTokenizer(), out)
    for i, byte in enumerate("hé!".encode()):
        printer(0, byte)
        if i == 1:  # the first byte of "é" alone: held back
            assert out.getvalue() == "h"
    printer.finish()
    assert out.getvalue() == "hé!\n"


def test_finish_prints_an_unfinished_character_as_a_replacement():
    out = io.StringIO()
    printer = TokenPrinter(ByteTokenizer(), out)
    printer(0, "é".encode()[0])
    printer.finish()
    assert out.getvalue() == "\ufffd\n"
