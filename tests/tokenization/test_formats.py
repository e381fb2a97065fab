"""GPT-2 vocab/merges and CLIP merges files written here, read back, and encoded as those tokenizers do."""

from __future__ import annotations

import gzip
import json

import pytest

from mie.tokenization import from_clip_bpe, from_gpt2_files, load_tokenizer, save_tokenizer
from mie.tokenization.bpe import bytes_to_unicode


@pytest.fixture()
def gpt2_files(tmp_path):
    chars = sorted(bytes_to_unicode().values())  # an id order different from our trainer's
    merges = ["Ġ t", "h e", "Ġt he", "i n", "in g"]
    vocab = {c: i for i, c in enumerate(chars)}
    for m in merges:
        vocab["".join(m.split())] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return tmp_path / "vocab.json", tmp_path / "merges.txt", vocab


def test_gpt2_files(gpt2_files):
    vocab_path, merges_path, vocab = gpt2_files
    tok = from_gpt2_files(vocab_path, merges_path)
    assert tok.vocab_size == 256 + 5 + 1
    assert tok.encode(" the") == [vocab["Ġthe"]]
    # "the": no "Ġ", so t + he; "thing": t h in g -> (h,e) absent, (i,n) then (in,g).
    assert tok.encode("the thing") == [vocab["t"], vocab["he"], vocab["Ġt"], vocab["h"], vocab["ing"]]
    assert tok.encode("\n") == [vocab["Ċ"]]
    assert tok.bos_id == tok.eos_id == vocab["<|endoftext|>"] and tok.pad_id == 0
    assert tok.decode([tok.eos_id, *tok.encode(" the thing")]) == " the thing"
    assert tok.normalizer.to_dict() == {"type": "identity"}  # GPT-2 does not normalize


def test_gpt2_file_errors(gpt2_files, tmp_path):
    vocab_path, merges_path, _ = gpt2_files
    with pytest.raises(FileNotFoundError, match="nope.json does not exist"):
        from_gpt2_files(tmp_path / "nope.json", merges_path)
    with pytest.raises(ValueError, match="has no entry for special token"):
        from_gpt2_files(vocab_path, merges_path, eos_token="</s>")
    bad = tmp_path / "bad_merges.txt"
    bad.write_text("#version: 0.2\na b c\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2: a merge is two tokens"):
        from_gpt2_files(vocab_path, bad)
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        from_gpt2_files(tmp_path / "bad.json", merges_path)
    (tmp_path / "list.json").write_text("[1]", encoding="utf-8")
    with pytest.raises(ValueError, match="list.json: the top level is a list, not a JSON object"):
        from_gpt2_files(tmp_path / "list.json", merges_path)
    (tmp_path / "str.json").write_text('{"a": "0"}', encoding="utf-8")
    with pytest.raises(ValueError, match="str.json: must map token strings to integer ids"):
        from_gpt2_files(tmp_path / "str.json", merges_path)


@pytest.fixture()
def clip_file(tmp_path):
    merges = ["h e", "l o</w>", "he l", "hel lo</w>", "c a", "ca t</w>"]
    path = tmp_path / "bpe_simple_vocab_16e6.txt.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(["bpe_simple_vocab_16e6.txt#version: 0.2", *merges]) + "\n")
    return path


def _clip_byte_id(ch: str, end: bool = False) -> int:
    # CLIP's first ids are the printable ASCII from "!" (so id = ord - 33), then the same with </w>.
    return ord(ch) - 33 + (256 if end else 0)


def test_clip_reader_ids_and_word_ends(clip_file):
    tok = from_clip_bpe(clip_file)
    hello, cat = 512 + 3, 512 + 5
    sot, eot = 512 + 6, 512 + 7
    assert tok.vocab_size == 512 + 6 + 2 and (tok.bos_id, tok.eos_id, tok.pad_id) == (sot, eot, 0)
    assert tok.encode("hello") == [hello]
    # "hellos": the s ends the word, so lo</w> never forms: h e l l o s</w> -> he,l -> hel l o s</w>.
    assert tok.encode("hellos") == [512 + 2, _clip_byte_id("l"), _clip_byte_id("o"), _clip_byte_id("s", end=True)]
    # Lowercasing, HTML unescape, whitespace clean-up; words need no spaces (</w> marks their ends).
    assert tok.encode("  HELLO &amp;amp;\n\tCat ") == [hello, _clip_byte_id("&", end=True), cat]
    assert tok.encode("a") == [_clip_byte_id("a", end=True)]
    assert tok.encode("<|endoftext|>") == [eot]  # CLIP's pattern keeps its special tokens whole
    row = tok("Hello world")[0].tolist()
    assert row[:8] == [sot, hello, *[_clip_byte_id(c) for c in "worl"], _clip_byte_id("d", True), eot]
    assert len(row) == 77 and set(row[8:]) == {0}
    assert tok.decode(tok.encode("hello cat world")) == "hello cat world "


def test_clip_truncation_keeps_end_of_text(clip_file):
    tok = from_clip_bpe(clip_file)
    ids, mask = tok.encode_with_mask(["hello " * 100])
    row = ids[0].tolist()
    assert len(row) == 77 and row[0] == tok.bos_id and row[-1] == tok.eos_id
    assert set(row[1:76]) == {515} and mask.sum().item() == 77


def test_clip_reader_errors(tmp_path, clip_file):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        from_clip_bpe(tmp_path / "missing.txt.gz")
    plain = tmp_path / "plain.txt.gz"
    plain.write_text("not gzip", encoding="utf-8")
    with pytest.raises(ValueError, match="is not a gzip file"):
        from_clip_bpe(plain)
    dup = tmp_path / "dup.txt.gz"
    with gzip.open(dup, "wt", encoding="utf-8") as fh:
        fh.write("#version\na b\na b\n")
    with pytest.raises(ValueError, match="produce a token twice"):
        from_clip_bpe(dup)
    assert from_clip_bpe(clip_file, max_merges=2).vocab_size == 512 + 2 + 2  # CLIP caps its merges


def test_save_load_round_trip_of_imported_tokenizers(clip_file, gpt2_files, tmp_path):
    for tok in (from_clip_bpe(clip_file), from_gpt2_files(*gpt2_files[:2])):
        path = save_tokenizer(tok, tmp_path / "t.json")
        loaded = load_tokenizer(path)
        assert loaded.to_dict() == tok.to_dict()
        text = "Hello &amp; the Cat  thing!"
        assert loaded.encode(text) == tok.encode(text)
        assert loaded(text).tolist() == tok(text).tolist()


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="mie tokenizer train"):
        load_tokenizer(tmp_path / "none.json")
    (tmp_path / "x.json").write_text("{oops", encoding="utf-8")
    with pytest.raises(ValueError, match="x.json: not valid JSON"):
        load_tokenizer(tmp_path / "x.json")
    (tmp_path / "y.json").write_text('{"format": "other"}', encoding="utf-8")
    with pytest.raises(ValueError, match="y.json: not a mie.tokenizer document"):
        load_tokenizer(tmp_path / "y.json")
