"""``mie tokenizer ...`` run in-process through the real ``mie`` entry point."""

from __future__ import annotations

import io
import json

import pytest

from mie.cli import main
from mie.tokenization import BPETokenizer
from mie.tokenization.stats import corpus_stats


@pytest.fixture()
def corpus_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("the cat sat on the mat. the cat ate the rat.\n" * 20 + "Ünïcödé 😀\n", encoding="utf-8")
    return path


@pytest.fixture()
def tok_path(tmp_path, corpus_file, capsys):
    path = tmp_path / "tok.json"
    assert main(["tokenizer", "train", str(corpus_file), "-o", str(path), "--vocab-size", "300"]) == 0
    out = capsys.readouterr().out
    tok = BPETokenizer.load(path)
    # min_frequency 2 stops early on this small corpus: the vocab is at most the requested size.
    assert out == f"wrote {path} (vocab {tok.vocab_size}, {len(tok.model.merges)} merges)\n"
    assert 260 < tok.vocab_size <= 300
    return path


def test_train_encode_decode(tok_path, capsys, monkeypatch):
    tok = BPETokenizer.load(tok_path)
    assert tok.normalizer.to_dict() == {"type": "nfc"}
    assert main(["tokenizer", "encode", "-t", str(tok_path), "the cat 😀"]) == 0
    ids = [int(x) for x in capsys.readouterr().out.split()]
    assert ids == tok.encode("the cat 😀")
    assert main(["tokenizer", "decode", "-t", str(tok_path), *map(str, ids)]) == 0
    assert capsys.readouterr().out == "the cat 😀\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(" ".join(map(str, [tok.bos_id, *ids]))))
    assert main(["tokenizer", "decode", "-t", str(tok_path), "--keep-special"]) == 0
    assert capsys.readouterr().out == "<bos>the cat 😀\n"
    assert main(["tokenizer", "encode", "-t", str(tok_path), "the mat", "--tokens"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "".join(out["tokens"]) == "the mat" and out["ids"] == tok.encode("the mat")


def test_encode_file_and_options(tmp_path, corpus_file, capsys):
    path = tmp_path / "lower.json"
    args = ["tokenizer", "train", str(corpus_file), "-o", str(path), "--vocab-size", "280", "--lowercase",
            "--clean-whitespace", "--no-nfc", "--pattern", "cl100k", "--special-tokens", "<s>", "</s>",
            "--context-length", "16", "--progress"]
    assert main(args) == 0
    assert "bpe: done" in capsys.readouterr().err
    tok = BPETokenizer.load(path)
    assert tok.encode("THE  Cat") == tok.encode("the cat") and tok.context_length == 16
    assert tok.pre_tokenizer.style == "cl100k" and tok.bos_id == 0 and tok.eos_id == 1
    assert main(["tokenizer", "encode", "-t", str(path), "--file", str(corpus_file)]) == 0
    assert len(capsys.readouterr().out.split()) == len(tok.encode(corpus_file.read_text(encoding="utf-8")))


def test_stats(tok_path, corpus_file, capsys):
    assert main(["tokenizer", "stats", "-t", str(tok_path), str(corpus_file), "--json", "--top", "3"]) == 0
    stats = json.loads(capsys.readouterr().out)
    tok = BPETokenizer.load(tok_path)
    text = corpus_file.read_text(encoding="utf-8")
    n_bytes = len(text.encode("utf-8"))
    assert stats["bytes"] == n_bytes and stats["tokens"] == len(tok.encode(text))
    assert stats["bytes_per_token"] == pytest.approx(n_bytes / len(tok.encode(text)))
    # By the definitions: " cat" is one token, so word coverage is high but below 1 (the emoji line is not).
    words = tok.pre_tokenizer(text)
    one = sum(len(tok.encode(w)) == 1 for w in words)
    assert stats["word_coverage"] == pytest.approx(one / len(words)) and 0.5 < stats["word_coverage"] < 1
    assert 0 < stats["byte_coverage"] < 1 and len(stats["longest_tokens"]) == 3
    lengths = [len(t.encode()) for t in stats["longest_tokens"]]
    assert lengths == sorted(lengths, reverse=True)
    assert main(["tokenizer", "stats", "-t", str(tok_path), str(corpus_file)]) == 0
    out = capsys.readouterr().out
    assert "bytes/token" in out and f"vocab size      {tok.vocab_size} " in out


def test_stats_byte_coverage_by_hand():
    # Vocab with no merges: every byte is a single-byte fallback, every 1-byte word is one token.
    tok = BPETokenizer.train(["ab"], vocab_size=260, min_frequency=5)
    stats = corpus_stats(tok, ["ab\nc"])  # words "ab", "\n", "c": the last two are one byte, one token
    assert stats["byte_coverage"] == 0.0 and stats["word_coverage"] == pytest.approx(2 / 3)
    assert corpus_stats(tok, []).keys() == {"vocab_size", "merges", "special_tokens", "longest_tokens"}


def test_cli_errors(tmp_path, capsys, monkeypatch):
    assert main(["tokenizer", "encode", "-t", str(tmp_path / "none.json"), "x"]) == 1
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "c.txt").write_text("abc", encoding="utf-8")
    assert main(["tokenizer", "train", str(tmp_path / "c.txt"), "-o", str(tmp_path / "t.json"),
                 "--vocab-size", "10"]) == 1
    assert "vocab_size must be in" in capsys.readouterr().err
    BPETokenizer.train(["abc"], vocab_size=260).save(tmp_path / "t.json")
    monkeypatch.setattr("sys.stdin", io.StringIO("1 two 3"))
    assert main(["tokenizer", "decode", "-t", str(tmp_path / "t.json")]) == 1
    assert "integer ids" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["tokenizer"])  # an action is required
