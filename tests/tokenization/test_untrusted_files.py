"""Tokenizer files are untrusted input (issue 11): a file cannot choose the regex that runs, every malformed
entry or byte is one TokenizerError/LimitError naming the file, and ``decode`` refuses unknown ids."""

from __future__ import annotations

import copy
import json

import pytest

from mie.errors import LimitError, TokenizerError
from mie.tokenization.factory import load_any_tokenizer
from mie.tokenization.pre_tokenizers import PATTERNS, RegexPreTokenizer
from mie.tokenization.simple import CharTokenizer, SimpleTokenizer
from mie.tokenization.tokenizer import BPETokenizer, load_tokenizer

# Exponential in the ``regex`` package: findall on 48 "a"s and a "!" would run for days.
EVIL = {"type": "regex", "style": None, "pattern": "(a|aa)+$", "ignore_case": False}


def write(tmp_path, data, name="tokenizer.json"):
    """Write ``data`` as JSON to ``tmp_path / name`` and return the path."""
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def raises_in_file(path, match, kind=TokenizerError, loader=load_tokenizer):
    """Assert ``loader(path)`` raises one line of ``kind`` that starts with the path and matches ``match``."""
    with pytest.raises(kind, match=match) as info:
        loader(path)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)
    return info.value


# -- 1. the pre-tokenizer regex comes from a known set --------------------------------------------------
def test_catastrophic_backtracking_pattern_is_refused_at_load(trained, tmp_path):
    path = write(tmp_path, {**trained.to_dict(), "pre_tokenizer": EVIL})
    error = raises_in_file(path, "pre_tokenizer.pattern is not a known pre-tokenizer pattern")
    assert error.fix == "retrain the tokenizer or use one of: cl100k, clip, gpt2"
    raises_in_file(path, "pre_tokenizer.pattern", loader=load_any_tokenizer)


@pytest.mark.parametrize("style", sorted(PATTERNS))
def test_files_of_earlier_versions_that_store_a_known_pattern_still_load(trained, tmp_path, style):
    pattern, ignore_case = PATTERNS[style]
    old = {"type": "regex", "style": style, "pattern": pattern, "ignore_case": ignore_case}
    assert load_tokenizer(write(tmp_path, {**trained.to_dict(), "pre_tokenizer": old})).pre_tokenizer.style == style
    no_style = {"type": "regex", "pattern": pattern, "ignore_case": ignore_case}
    assert RegexPreTokenizer.from_dict(no_style).style == style


def test_a_saved_tokenizer_stores_the_style_name_not_the_pattern(trained):
    assert trained.to_dict()["pre_tokenizer"] == {"type": "regex", "style": "gpt2"}
    assert "(?!\\S)" not in trained.to_json()


@pytest.mark.parametrize(("spec", "match"), [
    ({"type": "regex", "style": "bert"}, "pre_tokenizer.style 'bert' is not a known pre-tokenizer"),
    ({"type": "regex", "style": "gpt2", "pattern": "(a+)+$"}, "not the pattern of style 'gpt2'"),
    ({"type": "regex", "pattern": PATTERNS["clip"][0], "ignore_case": False}, "not a known pre-tokenizer pattern"),
    ({"type": "regex", "style": "clip", "ignore_case": False}, "ignore_case must be True"),
    ({"type": "regex", "style": ["gpt2"]}, "pre_tokenizer.style must be a string or null, got a list"),
    ({"type": "regex", "pattern": 7}, "pre_tokenizer.pattern must be a string or null, got 7"),
    ({"type": "regex"}, "pre_tokenizer has no 'style'"),
    ({"type": "split"}, "pre_tokenizer must be"),
])
def test_unknown_or_inconsistent_pre_tokenizers_are_refused(trained, tmp_path, spec, match):
    raises_in_file(write(tmp_path, {**trained.to_dict(), "pre_tokenizer": spec}), match)


# -- 2. decode refuses ids outside the vocabulary ------------------------------------------------------
def test_decode_refuses_negative_and_too_large_ids(trained):
    last = trained.vocab_size - 1
    for bad in (-1, trained.vocab_size):
        with pytest.raises(TokenizerError) as info:
            trained.decode([5, bad, 6])
        assert info.value.what == f"token id {bad} is not in the vocabulary (0..{last})"
    with pytest.raises(TokenizerError, match="token id -1 is not in the vocabulary"):
        trained.model.decode_bytes([-1])
    with pytest.raises(TokenizerError, match="token ids must be integers"):
        trained.decode(["five"])
    with pytest.raises(TokenizerError, match="token id -3 is not in the vocabulary"):
        trained.id_to_token(-3)
    assert trained.decode([]) == ""


def test_simple_tokenizer_decode_refuses_negative_ids():
    tok = SimpleTokenizer.build(["a red circle"])
    with pytest.raises(TokenizerError, match=rf"token id -1 is not in the vocabulary \(0\.\.{tok.vocab_size - 1}\)"):
        tok.decode([-1])


# -- 3. the vocabulary, merges and every other entry are checked at load --------------------------------
def _vocab(data, token, value):
    data["model"]["vocab"][token] = value


def _swap_merges(data):
    data["model"]["merges"][0] = ["zz-not-a-token", data["model"]["merges"][0][1]]


@pytest.mark.parametrize(("change", "match"), [
    (lambda d: _vocab(d, "a", -1), r"vocabulary entry 'a': id -1 is outside 0\.\.399"),
    (lambda d: _vocab(d, "a", True), "vocabulary entry 'a': id True is not an integer"),
    (lambda d: _vocab(d, "a", 3.0), "vocabulary entry 'a': id 3.0 is not an integer"),
    (lambda d: _vocab(d, "a", "3"), "vocabulary entry 'a': id '3' is not an integer"),
    (lambda d: _vocab(d, "a", 400), "vocabulary entry 'a': id 400 is outside"),  # leaves a gap
    (lambda d: _vocab(d, "zz-extra", 0), "vocabulary entries '<pad>' and 'zz-extra' share id 0"),
    (lambda d: _vocab(d, "a", d["model"]["vocab"]["b"]), "vocabulary entries .* share id"),
    (lambda d: d["model"]["vocab"].update(zz=400) or d["model"]["vocab"].pop("a"),
     "vocabulary entry 'zz': id 400 is outside"),
    (_swap_merges, "merge 0 left part 'zz-not-a-token' is missing from the vocabulary"),
    (lambda d: d["model"]["merges"].append(["a", "b", "c"]), r"model.merges\[\d+\] must be a list of two strings"),
    (lambda d: d["model"]["merges"].append("a b"), r"model.merges\[\d+\] must be a list of two strings"),
    (lambda d: d["model"].update(vocab=[]), "model.vocab must be an object, got a list"),
    (lambda d: d["model"].update(merges={}), "model.merges must be a list, got an object"),
    (lambda d: d["model"].update(end_of_word_suffix=0), "model.end_of_word_suffix must be a string"),
    (lambda d: d.update(model=[]), "model must be an object, got a list"),
    (lambda d: d.update(special_tokens={"<pad>": 0}), "special_tokens must be a list"),
    (lambda d: d.update(special_tokens=[["<pad>"]]), r"special_tokens\[0\] must be a string"),
    (lambda d: d.update(special_tokens=["<nope>"]), "special token '<nope>' is missing from the vocabulary"),
    (lambda d: d.update(bos_token=["<bos>"]), "bos_token must be a string, got a list"),
    (lambda d: d.update(pad_token=0), "pad_token must be a string or null, got 0"),
    (lambda d: d.update(eos_token="a"), "eos_token 'a' is not a special token"),
    (lambda d: d.update(post_processor=[77]), "post_processor must be an object"),
    (lambda d: d.update(post_processor={"context_length": "77"}), "post_processor.context_length must be an int"),
    (lambda d: d.update(post_processor={"context_length": 10**12}), r"context_length 1000000000000 is outside"),
    (lambda d: d.update(normalizer=["nfc"]), "normalizer must be an object, got a list"),
    (lambda d: d.update(normalizer={"type": ["nfc"]}), "unknown normalizer type a list"),
    (lambda d: d.update(normalizer={"type": "sequence", "stages": {}}), "normalizer.stages must be a list"),
    (lambda d: d.update(normalizer={"type": "sequence", "stages": [3]}), r"normalizer.stages\[0\] must be an obj"),
    (lambda d: d.update(version=True), "unsupported mie.tokenizer version True"),
    (lambda d: d.update(format=["mie.tokenizer"]), "not a mie.tokenizer document"),
    (lambda d: d.update(pattern="(a|aa)+$"), "the document has unknown key 'pattern'"),
    (lambda d: d["model"].update(bad=-1), "model has unknown key 'bad'"),
    (lambda d: d["normalizer"].update(bad=-1), "normalizer has unknown key 'bad'"),
    (lambda d: d["pre_tokenizer"].update(regex="(a|aa)+$"), "pre_tokenizer has unknown key 'regex'"),
    (lambda d: d["post_processor"].update(pad_id=-1), "post_processor has unknown key 'pad_id'"),
])
def test_malformed_entries_are_refused_naming_the_file_and_entry(trained, tmp_path, change, match):
    data = copy.deepcopy(trained.to_dict())
    change(data)
    raises_in_file(write(tmp_path, data), match)


def test_normalizer_nesting_and_stage_counts_are_limited(trained, tmp_path):
    nested = {"type": "nfc"}
    for _ in range(6):
        nested = {"type": "sequence", "stages": [nested]}
    raises_in_file(write(tmp_path, {**trained.to_dict(), "normalizer": nested}), "levels of sequences", LimitError)
    many = {"type": "sequence", "stages": [{"type": "nfc"}] * 1000}
    raises_in_file(write(tmp_path, {**trained.to_dict(), "normalizer": many}), "more than 32 stages", LimitError)


@pytest.mark.parametrize("vocab", [["<pad>", "<unk>", "<bos>", "<eos>", 5], ["<pad>", "<unk>", "<bos>", "<eos>", []]])
def test_simple_tokenizer_files_with_non_string_tokens_are_refused(tmp_path, vocab):
    path = write(tmp_path, {"type": "simple", "vocab": vocab})
    raises_in_file(path, r"vocab\[4\] must be a string", loader=SimpleTokenizer.load)
    raises_in_file(path, r"vocab\[4\] must be a string", loader=load_any_tokenizer)
    raises_in_file(write(tmp_path, {"type": "char", "vocab": [], "lowercase": "yes"}),
                   "lowercase must be a boolean", loader=CharTokenizer.load)
    unknown = {"type": "simple", "vocab": ["<pad>", "<unk>", "<bos>", "<eos>"], "pre_tokenizer": "(a|aa)+$"}
    raises_in_file(write(tmp_path, unknown), "a simple tokenizer has unknown key 'pre_tokenizer'",
                   loader=load_any_tokenizer)


# -- 4. any bytes on disk ------------------------------------------------------------------------------
HOSTILE_BYTES = {
    "latin1": ('{"format": "mie.tokenizer", "x": "caf\xe9"}'.encode("latin-1"), "undecodable byte at offset 37"),
    "not_json": (b"format: mie.tokenizer\n", "not valid JSON"),
    "empty": (b"", "not valid JSON"),
    "deep": (b"[" * 100_000, "JSON nested too deeply to read"),
    "deep_object": (b'{"a":' * 100_000, "JSON nested too deeply to read"),
    "list": (b"[1, 2]", "the top level is a list, not a JSON object"),
    "number": (b"42", "the top level is an integer, not a JSON object"),
    "huge_int": (b'{"version": ' + b"9" * 5000 + b"}", "not valid JSON"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_BYTES))
@pytest.mark.parametrize("loader", [load_tokenizer, load_any_tokenizer, SimpleTokenizer.load, BPETokenizer.load],
                         ids=["load_tokenizer", "load_any_tokenizer", "SimpleTokenizer.load", "BPETokenizer.load"])
def test_hostile_bytes_give_one_tokenizer_error_naming_the_file(tmp_path, name, loader):
    raw, match = HOSTILE_BYTES[name]
    path = tmp_path / f"{name}.json"
    path.write_bytes(raw)
    error = raises_in_file(path, match, loader=loader)
    if name == "latin1":
        assert error.fix == "save it as UTF-8"


def test_from_json_text_errors_are_tokenizer_errors():
    with pytest.raises(TokenizerError, match="JSON nested too deeply"):
        BPETokenizer.from_json("[" * 100_000)
    with pytest.raises(TokenizerError, match="the top level is null"):
        BPETokenizer.from_json("null")


# -- 6. the CLI prints one line and exits 1 on every hostile file ----------------------------------------
def _hostile_files(trained, tmp_path):
    """``{name: path}`` of every hostile tokenizer file of this module."""
    files = {}
    for name, (raw, _) in HOSTILE_BYTES.items():
        files[name] = tmp_path / f"{name}.json"
        files[name].write_bytes(raw)
    files["evil_regex"] = write(tmp_path, {**trained.to_dict(), "pre_tokenizer": EVIL}, "evil_regex.json")
    bad_vocab = copy.deepcopy(trained.to_dict())
    bad_vocab["model"]["vocab"]["a"] = -1
    files["negative_id"] = write(tmp_path, bad_vocab, "negative_id.json")
    files["wrong_type"] = write(tmp_path, {**trained.to_dict(), "model": []}, "wrong_type.json")
    return files


@pytest.mark.parametrize("action", [["encode", "a" * 48 + "!"], ["decode", "1", "2"], ["stats"]])
def test_cli_prints_one_line_and_exits_1_on_hostile_files(trained, tmp_path, capsys, action):
    from mie.cli import main

    for name, path in _hostile_files(trained, tmp_path).items():
        code = main(["tokenizer", action[0], "-t", str(path), *action[1:]])
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert code == 1, (name, captured)
        assert len(lines) == 1 and lines[0].startswith(f"mie tokenizer: error: {path}: "), (name, lines)
        assert "Traceback" not in captured.err + captured.out and "bug in mie" not in captured.err


def test_cli_decode_of_an_unknown_id_is_one_line(trained, tmp_path, capsys):
    from mie.cli import main

    path = trained.save(tmp_path / "tok.json")
    assert main(["tokenizer", "decode", "-t", str(path), "--", "-1"]) == 1
    err = capsys.readouterr().err
    assert err == f"mie tokenizer: error: token id -1 is not in the vocabulary (0..{trained.vocab_size - 1}) — " \
                  "use only ids this tokenizer produced\n"
