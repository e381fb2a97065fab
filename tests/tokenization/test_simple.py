"""Word- and character-level tokenizers: vocabulary building, round trips, <unk>, truncation, files."""

import json

import pytest
import torch

from mie.tokenization.base import SPECIAL_TOKENS
from mie.tokenization.simple import CharTokenizer, SimpleTokenizer

CAPTIONS = ["A red circle.", "a blue square", "A red square, small!", "don't stop"]


def test_build_puts_specials_first_then_words_by_frequency():
    tok = SimpleTokenizer.build(CAPTIONS)
    assert tok.id_to_token[:4] == list(SPECIAL_TOKENS)
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3)
    # "a" x3, "red" x2, "square" x2, then the singletons alphabetically.
    assert tok.id_to_token[4:7] == ["a", "red", "square"]
    assert tok.id_to_token[7:] == sorted(tok.id_to_token[7:])
    assert {"don't", ",", "!", "."} <= set(tok.id_to_token)
    assert tok.vocab_size == len(tok.id_to_token)


def test_round_trip_splits_punctuation_and_lowercases():
    tok = SimpleTokenizer.build(CAPTIONS)
    ids = tok.encode("A Red square, don't!")
    assert [tok.id_to_token[i] for i in ids] == ["a", "red", "square", ",", "don't", "!"]
    assert tok.decode(ids) == "a red square , don't !"
    assert tok.decode(tok.encode(tok.decode(ids))) == tok.decode(ids)


def test_case_is_kept_without_lowercase():
    tok = SimpleTokenizer.build(CAPTIONS, lowercase=False)
    assert "A" in tok.token_to_id and "a" in tok.token_to_id
    assert tok.encode("A") != tok.encode("a")


def test_unknown_words_map_to_unk_and_decode_drops_specials():
    tok = SimpleTokenizer.build(CAPTIONS)
    ids = tok.encode("a green circle")
    assert ids == [tok.token_to_id["a"], tok.unk_id, tok.token_to_id["circle"]]
    assert tok.decode([tok.bos_id, *ids, tok.eos_id, tok.pad_id]) == "a circle"
    with pytest.raises(ValueError, match=r"token id \d+ is not in the vocabulary \(0\.\.\d+\)"):
        tok.decode([tok.vocab_size])


def test_min_freq_and_max_size():
    tok = SimpleTokenizer.build(CAPTIONS, min_freq=2)
    assert tok.id_to_token[4:] == ["a", "red", "square"]
    tok = SimpleTokenizer.build(CAPTIONS, max_size=6)
    assert tok.id_to_token == [*SPECIAL_TOKENS, "a", "red"]
    with pytest.raises(ValueError, match="max_size=3"):
        SimpleTokenizer.build(CAPTIONS, max_size=3)


def test_call_pads_and_truncation_keeps_eos():
    tok = SimpleTokenizer.build(CAPTIONS)
    batch = tok(["a red circle", "a blue square , small ! a red"], context_length=6)
    assert batch.dtype == torch.long and batch.shape == (2, 6)
    assert batch[0].tolist() == [tok.bos_id, *tok.encode("a red circle"), tok.eos_id, tok.pad_id]
    assert batch[1].tolist() == [tok.bos_id, *tok.encode("a blue square ,"), tok.eos_id]


def test_save_and_load_round_trip(tmp_path):
    tok = SimpleTokenizer.build(CAPTIONS, lowercase=False)
    path = tmp_path / "sub" / "tokenizer.json"
    tok.save(path)
    payload = json.loads(path.read_text())
    assert payload["type"] == "simple" and payload["vocab"][:4] == list(SPECIAL_TOKENS)
    loaded = SimpleTokenizer.load(path)
    assert loaded.id_to_token == tok.id_to_token and loaded.lowercase is False
    assert loaded.encode("A red square") == tok.encode("A red square")


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        SimpleTokenizer.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        SimpleTokenizer.load(bad)
    CharTokenizer.build(["abc"]).save(tmp_path / "char.json")
    with pytest.raises(ValueError, match="type 'char', not 'simple'"):
        SimpleTokenizer.load(tmp_path / "char.json")
    bad.write_text(json.dumps({"type": "simple"}))
    with pytest.raises(ValueError, match="no 'vocab' list"):
        SimpleTokenizer.load(bad)
    bad.write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match="the top level is a list"):
        SimpleTokenizer.load(bad)


def test_vocabulary_validation():
    with pytest.raises(ValueError, match="must start with the special tokens"):
        SimpleTokenizer(["a", "b"])
    with pytest.raises(ValueError, match=r"repeats token\(s\) \['a'\]"):
        SimpleTokenizer([*SPECIAL_TOKENS, "a", "a"])


def test_char_tokenizer_round_trip_and_file(tmp_path):
    tok = CharTokenizer.build(["hello world", "ab"])
    assert tok.id_to_token[4] == "l"  # the most frequent character
    ids = tok.encode("hold")
    assert len(ids) == 4 and tok.decode(ids) == "hold"
    assert tok.encode("z") == [tok.unk_id]
    assert tok.decode(tok.encode("Hello")) == "ello"  # no lowercasing by default: "H" is unknown
    lower = CharTokenizer.build(["hello"], lowercase=True)
    assert lower.decode(lower.encode("HELLO")) == "hello"
    tok.save(tmp_path / "char.json")
    assert CharTokenizer.load(tmp_path / "char.json").id_to_token == tok.id_to_token
    assert tok(["hello"], context_length=4)[0].tolist() == [tok.bos_id, *tok.encode("he"), tok.eos_id]
