"""``mie.cli.waiting``: a status line on a terminal for the wait, erased after; nothing elsewhere."""

import io

import pytest

from mie.cli.waiting import ERASE, waiting


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_on_a_terminal_the_line_is_shown_then_erased_even_on_failure():
    out = Terminal()
    with waiting("scoring runs/demo on test", out):
        assert out.getvalue() == "scoring runs/demo on test …"
    assert out.getvalue() == "scoring runs/demo on test …" + ERASE
    out = Terminal()
    with pytest.raises(ValueError), waiting("x", out):
        raise ValueError("boom")
    assert out.getvalue().endswith(ERASE)


def test_a_pipe_or_log_file_gets_nothing():
    out = io.StringIO()
    with waiting("scoring", out):
        pass
    assert out.getvalue() == ""
