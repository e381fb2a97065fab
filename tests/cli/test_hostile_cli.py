"""Hostile command lines and standard input (issue 26, findings 6 and 7): every refusal is one line of
ours, ``mie <cmd>: error: ...`` with exit status 1, reached before any model or data loads."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

import mie.text_input as text_input
from mie.cli import error_line, main
from mie.errors import DataError, LimitError
from mie.text_input import read_input_lines, read_text_input

BINARY = bytes(range(256)) * 64  # 16 KiB with a NUL at 0 and undecodable bytes from 128


def _stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    """A real-looking stdin: text on top of bytes, as Python gives a process."""
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


def _one_error(capsys: pytest.CaptureFixture[str], command: str) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"mie {command}: error: "), lines[0]
    return lines[0].removeprefix(f"mie {command}: error: ")


# --- arguments -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "command", "message"), [
    (["search", "run", "\udcff"], "search", "argument 3 is not valid UTF-8 (byte 0: \\xff)"),
    (["search", "runs/x", "r\udcffed"], "search", "argument 3 is not valid UTF-8 (byte 1: r\\xffed)"),
    (["generate", "--model", "m", "--prompt", "caf\udce9 \udcff"], "generate",
     "argument 5 (--prompt) is not valid UTF-8 (byte 3: caf\\xe9 \\xff)"),
    (["translate", "runs/t", "\udcff"], "translate", "argument 3 is not valid UTF-8 (byte 0: \\xff)"),
    (["safety", "evaluate", "in\udcff.txt"], "safety", "argument 3 is not valid UTF-8 (byte 2: in\\xff.txt)"),
    (["train", "c.yaml", "--set", "name=\udcff"], "train", "argument 4 (--set) is not valid UTF-8 (byte 5: name=\\xff)"),
    (["search", "run", "\ud800"], "search", "argument 3 is not valid UTF-8 (byte 0: \\ud800)"),
])
def test_invalid_utf8_arguments_are_refused_before_anything_loads(capsys, argv, command, message):
    assert main(argv) == 1
    assert _one_error(capsys, command) == f"{message} — pass UTF-8 text; check the encoding of the terminal or script"


def test_an_invalid_utf8_command_name_is_refused_too(capsys):
    assert main(["\udcff", "x"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["mie: error: argument 1 is not valid UTF-8 (byte 0: \\xff) — pass UTF-8 text; check the "
                   "encoding of the terminal or script"]


@pytest.mark.parametrize(("argv", "command", "flag", "value"), [
    (["safety", "redteam", "--target", "echo", "--limit", str(2**70)], "safety", "--limit", 2**70),
    (["search", "runs/x", "a red circle", "--k", str(2**63)], "search", "--k", 2**63),
    (["tokenizer", "decode", "-t", "tok.json", "1", str(-2**64)], "tokenizer", "ids", -2**64),
])
def test_integers_no_64_bit_field_can_hold_are_one_line(capsys, argv, command, flag, value):
    assert main(argv) == 1
    assert _one_error(capsys, command) == f"{flag}: {value} is out of range — use a whole number between -2**63 " \
                                          "and 2**63 - 1"


@pytest.mark.parametrize(("value", "shown"), [("-1", "-1"), ("0", "0"), ("4097", "4097")])
def test_redteam_max_new_tokens_is_checked_at_the_edge(tmp_path, capsys, value, shown):
    out = tmp_path / "rt"
    assert main(["safety", "redteam", "--target", "echo", "--max-new-tokens", value, "--output-dir", str(out)]) == 1
    assert _one_error(capsys, "safety") == (f"--max-new-tokens: got {shown}; must be between 1 and 4096 — a red-team "
                                            "reply needs a few dozen tokens (default 64)")
    assert not out.exists()


@pytest.mark.parametrize(("query", "message"), [
    ("", "QUERY: is empty — give some text, e.g. \"a red circle\""),
    (" \t", "QUERY: is empty — give some text, e.g. \"a red circle\""),
    ("a" * 1001, "QUERY: is 1,001 characters; the limit is 1,000 — describe the image in a sentence"),
])
def test_search_query_is_checked_before_the_run_loads(capsys, query, message):
    assert main(["search", "no/such/run", query]) == 1  # the run folder is never looked at
    assert _one_error(capsys, "search") == message


# --- standard input --------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["safety", "evaluate", "--methods", "rules", "-"],
    ["safety", "filter", "--methods", "rules", "-"],
    ["translate", "no/such/run", "-"],
    ["tokenizer", "decode", "-t", "no/such/tokenizer.json"],
])
def test_binary_stdin_is_refused_at_its_first_bad_byte(monkeypatch, capsys, argv):
    _stdin(monkeypatch, b"fine line\n" + BINARY)
    assert main(argv) == 1
    assert _one_error(capsys, argv[0]) == "stdin: byte 10 is a NUL byte: this is binary data, not text — pipe " \
                                          "UTF-8 text into it"


@pytest.mark.parametrize("command", ["evaluate", "filter"])
def test_stdin_and_the_same_bytes_as_a_file_are_refused_alike(tmp_path, monkeypatch, capsys, command):
    data = "caf\u00e9 ok\n".encode() + b"\xff\xfe rest\n"
    path = tmp_path / "in.txt"
    path.write_bytes(data)
    assert main(["safety", command, "--methods", "rules", str(path)]) == 1
    from_file = _one_error(capsys, "safety")
    _stdin(monkeypatch, data)
    assert main(["safety", command, "--methods", "rules", "-"]) == 1
    from_stdin = _one_error(capsys, "safety")
    assert from_file == f"{path}: byte 9 is not UTF-8 text — save the file as UTF-8 text"
    assert from_stdin == "stdin: byte 9 is not UTF-8 text — pipe UTF-8 text into it"


def test_stdin_over_the_size_cap_is_refused(monkeypatch, capsys):
    monkeypatch.setattr(text_input, "MAX_INPUT_BYTES", 1 << 20)
    _stdin(monkeypatch, b"hello\n" * 200_000)  # 1.2 MB
    assert main(["safety", "evaluate", "--methods", "rules", "-"]) == 1
    assert _one_error(capsys, "safety") == "stdin: holds more than 1 MiB of text — split the input into smaller files"
    _stdin(monkeypatch, b"hello\n" * 3)
    assert main(["safety", "evaluate", "--methods", "rules", "--format", "jsonl", "-"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


@pytest.mark.parametrize("command", ["evaluate", "filter"])
def test_a_line_longer_than_the_evaluator_reads_is_refused_by_number(monkeypatch, capsys, command):
    _stdin(monkeypatch, b"hello\n\n" + b"a" * 100_001 + b"\nbye\n")
    assert main(["safety", command, "--methods", "rules", "-"]) == 1
    assert _one_error(capsys, "safety") == "stdin: line 3 is 100,001 characters; the limit is 100,000 — split it " \
                                           "into shorter lines"


def test_tokenizer_decode_names_the_word_that_is_no_id(monkeypatch, capsys):
    _stdin(monkeypatch, "1 2 \u00b2 4".encode())
    assert main(["tokenizer", "decode", "-t", "no/such.json"]) == 1
    assert "'²' is not one" in _one_error(capsys, "tokenizer")
    _stdin(monkeypatch, b"1 " + b"9" * 5000)  # int() would say "Exceeds the limit (4300 digits)"
    assert main(["tokenizer", "decode", "-t", "no/such.json"]) == 1
    message = _one_error(capsys, "tokenizer")
    assert "is not one — pass ids such as `0 17 42`" in message and "4300" not in message


def test_reader_decodes_characters_split_across_chunks_and_counts_offsets(tmp_path, monkeypatch):
    monkeypatch.setattr(text_input, "CHUNK_BYTES", 3)
    good = "h\u00e9llo \u4e16\u754c \U0001f600\nsecond\n"
    path = tmp_path / "t.txt"
    path.write_text(good, encoding="utf-8")
    assert read_text_input(path) == good
    assert read_input_lines(path, max_line_chars=20) == [(1, "h\u00e9llo \u4e16\u754c \U0001f600"), (2, "second")]
    path.write_bytes(good.encode() + b"ok \xe4\xb8")  # ends inside a character
    with pytest.raises(DataError, match=rf"byte {len(good.encode()) + 3} is not UTF-8 text"):
        read_text_input(path)
    path.write_bytes(b"abcdefg\xc3\x28")  # a bad continuation byte in the third chunk
    with pytest.raises(DataError, match="byte 7 is not UTF-8 text"):
        read_text_input(path)
    with pytest.raises(DataError, match="does not exist or is not a file"):
        read_text_input(tmp_path)
    path.write_text("ok\n\nsecond\n", encoding="utf-8")
    assert read_input_lines(path, max_line_chars=6, keep_blank=True) == [(1, "ok"), (2, ""), (3, "second")]
    with pytest.raises(LimitError, match="line 3 is 6 characters; the limit is 5"):
        read_input_lines(path, max_line_chars=5)


def test_a_text_stream_without_bytes_is_checked_too(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("one\n\x00two\n"))
    with pytest.raises(DataError, match="stdin: character 4 is a NUL byte"):
        read_text_input("-")


# --- errors and output -----------------------------------------------------------------------------

def test_python_errors_from_bad_input_read_as_ours():
    assert error_line(RecursionError("maximum recursion depth exceeded while decoding a JSON array")) == (
        "input: nested too deeply to read (deeper than Python's recursion limit) — flatten the JSON or YAML given "
        "to mie (a real file nests a few levels)")
    surrogate = UnicodeEncodeError("utf-8", "probe \ud800 x", 6, 7, "surrogates not allowed")
    assert error_line(surrogate) == ("text: holds \\ud800, a lone surrogate: not a Unicode character, so it cannot "
                                     "be written — remove it from the input (or write the input as UTF-8)")
    latin = UnicodeEncodeError("ascii", "caf\u00e9", 3, 4, "ordinal not in range(128)")
    assert error_line(latin).startswith("text: holds \\xe9, which the ascii encoding cannot write")


def test_deep_nesting_reached_through_a_command_is_one_line(monkeypatch, capsys):
    import mie.cli.safety as safety_cli

    def deep(args):  # what json.loads does with 60,000 '[' in a file no reader guards
        return json.loads("[" * 60_000 + "]" * 60_000)

    monkeypatch.setattr(safety_cli, "run_evaluate", deep)
    assert main(["safety", "evaluate", "x.txt"]) == 1
    assert _one_error(capsys, "safety").startswith("input: nested too deeply to read")


def test_a_lone_surrogate_from_a_json_probe_file_is_one_line(tmp_path, capsys):
    probes = tmp_path / "p.jsonl"
    probes.write_text(json.dumps({"id": "x", "probe": "family", "prompt": "hi \ud800"}) + "\n", encoding="utf-8")
    assert main(["safety", "redteam", "--target", "echo", "--probes", str(probes), "--methods", "rules",
                 "--output-dir", str(tmp_path / "rt")]) == 1
    assert _one_error(capsys, "safety").startswith("text: holds \\ud800, a lone surrogate")


def test_output_the_terminal_cannot_encode_is_escaped_not_an_error(monkeypatch, capsys):
    out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    monkeypatch.setattr("sys.stdout", out)
    _stdin(monkeypatch, "caf\u00e9 \u4e16\n".encode())
    assert main(["safety", "evaluate", "--methods", "rules", "-"]) == 0
    out.flush()
    assert out.buffer.getvalue() == b"ok [0.00] caf\\xe9 \\u4e16\n"


class _ClosedPipe(io.StringIO):
    """A stdout whose reader has gone: every write fails as a closed pipe does."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_closed_stdout_ends_quietly(monkeypatch, capsys):
    _stdin(monkeypatch, b"hello\nworld\n")
    monkeypatch.setattr("sys.stdout", _ClosedPipe())
    assert main(["safety", "evaluate", "--methods", "rules", "-"]) == 141
    assert capsys.readouterr().err == ""


def test_mie_piped_into_head_exits_quietly(tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("".join(f"line {i}: how do I kill a stuck process?\n" for i in range(3000)), encoding="utf-8")
    mie = Path(sys.executable).with_name("mie")
    proc = subprocess.Popen([str(mie), "safety", "evaluate", "--methods", "rules", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # `| head -0`: the reader is gone before the first line
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 141
    assert err == b""


@pytest.mark.parametrize("content", ["{oops", "[" * 60_000, '{"pairs": 5, "packages": {"test": "x"}}'])
def test_a_broken_corpus_manifest_only_leaves_the_report_line_out(tmp_path, caplog, content):
    # It was read with json.loads after training, so "{oops" ended a finished run in Python's own words.
    from types import SimpleNamespace

    from mie.recipes.seq2seq.train import _corpus_summary

    (tmp_path / "manifest.json").write_text(content, encoding="utf-8")
    summary = _corpus_summary(SimpleNamespace(data=SimpleNamespace(path=str(tmp_path))), {"train": 3})
    assert summary["train pairs kept"] == 3 and "train pairs" not in summary
    if content.startswith("{oops") or content.startswith("[["):
        assert "leaving the corpus manifest out of the report" in caplog.text
    else:
        assert summary["test packages"] == ""


def test_a_config_integer_past_64_bits_is_refused_at_load(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "configs/lm_tiny.yaml", "--set", f"seed={2**70}", "--output-dir", str(out)]) == 1
    assert _one_error(capsys, "train") == f"seed: got {2**70}; must be a whole number between -2**63 and 2**63 - 1"
    assert not out.exists()


@pytest.mark.parametrize("host", ["..", "a" * 100])
def test_serve_host_names_idna_refuses_are_one_line(capsys, host):
    assert main(["serve", "no/such/run", "--host", host]) == 1
    assert _one_error(capsys, "serve") == f"--host: cannot resolve {host!r} (not a valid host name) — use e.g. " \
                                          "127.0.0.1"
