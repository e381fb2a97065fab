"""BPE model and trainer against references written here (hand-worked merges, naive recount trainer)."""

from __future__ import annotations

import random

import pytest

from mie.errors import TokenizerError
from mie.tokenization.bpe import (
    BYTE_TO_CHAR,
    BPEModel,
    BPETrainer,
    bytes_to_token,
    bytes_to_unicode,
    token_to_bytes,
)


def test_bytes_to_unicode_is_a_printable_bijection():
    table = bytes_to_unicode()
    assert sorted(table) == list(range(256))
    chars = list(table.values())
    assert len(set(chars)) == 256
    assert all(c.isprintable() and not c.isspace() for c in chars)
    assert table[ord("A")] == "A" and table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ"  # GPT-2's symbols
    assert list(table)[:3] == [33, 34, 35]  # CLIP's id order starts at "!"
    data = bytes(range(256))
    assert token_to_bytes(bytes_to_token(data)) == data
    assert token_to_bytes("<|x|>\u4e00") is None


def test_hand_worked_merges():
    # "aaabdaaabac": pairs aa:4 ab:2 ... -> merge (a,a). Word: aa a b d aa a b a c.
    # Then (aa,a):2 ties (a,b):2; bytes b"a" < b"aa" so (a,b) wins. Word: aa ab d aa ab a c.
    # Then (aa,ab):2 is the only pair seen twice.
    vocab, merges = BPETrainer(256 + 3, min_frequency=1).train({"aaabdaaabac": 1})
    assert merges == [("a", "a"), ("a", "b"), ("aa", "ab")]
    assert vocab["aaab"] == 258 and len(vocab) == 259
    # min_frequency=2 stops once every remaining pair occurs once, even with room in the vocab.
    _, merges2 = BPETrainer(300, min_frequency=2).train({"aaabdaaabac": 1})
    assert merges2 == merges


def test_word_counts_weight_pairs():
    # "xy" x3 beats "ab" x2 even though "ab" appears in more distinct words.
    _, merges = BPETrainer(257, min_frequency=1).train({"xy": 3, "ab": 1, "abz": 1})
    assert merges == [("x", "y")]


def _naive_train(words: dict[str, int], n_merges: int) -> list[tuple[bytes, bytes]]:
    """Reference: recount every pair of every word before each merge."""
    seqs = {w: [bytes([b]) for b in w.encode()] for w in words}
    merges = []
    for _ in range(n_merges):
        counts: dict[tuple[bytes, bytes], int] = {}
        for w, seq in seqs.items():
            for pair in zip(seq, seq[1:]):
                counts[pair] = counts.get(pair, 0) + words[w]
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], p))
        merges.append(best)
        for w, seq in seqs.items():
            out, i = [], 0
            while i < len(seq):
                if i + 1 < len(seq) and (seq[i], seq[i + 1]) == best:
                    out.append(seq[i] + seq[i + 1])
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            seqs[w] = out
    return merges


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_incremental_trainer_matches_naive_recount(seed):
    rng = random.Random(seed)
    words = {}
    for _ in range(60):
        word = "".join(rng.choice("abcab é") for _ in range(rng.randint(1, 9)))
        words[word] = rng.randint(1, 5)
    _, merges = BPETrainer(256 + 40, min_frequency=1).train(words)
    expected = _naive_train(words, 40)
    assert [(token_to_bytes(a), token_to_bytes(b)) for a, b in merges] == expected


def test_trainer_specials_first_and_validation():
    vocab, _ = BPETrainer(300, special_tokens=["<pad>", "<eos>"]).train({"hello": 3})
    assert vocab["<pad>"] == 0 and vocab["<eos>"] == 1 and vocab[BYTE_TO_CHAR[0]] == 2
    with pytest.raises(ValueError, match="vocab_size must be in"):
        BPETrainer(100)
    with pytest.raises(ValueError, match="min_frequency"):
        BPETrainer(300, min_frequency=0)
    with pytest.raises(ValueError, match="duplicates"):
        BPETrainer(300, special_tokens=["<a>", "<a>"])


def test_trainer_never_learns_a_special_token_string():
    # "ab" would be the first merge, but "ab" is a special token: the pair is skipped.
    vocab, merges = BPETrainer(256 + 1 + 1, min_frequency=1, special_tokens=["ab"]).train({"ab": 5, "cd": 1})
    assert merges == [("c", "d")] and vocab["ab"] == 0


def test_trainer_progress_goes_to_stderr(capsys):
    BPETrainer(256 + 2, min_frequency=1, show_progress=True).train({"abab": 2})
    captured = capsys.readouterr()
    assert "bpe: done, 2 merges" in captured.err and captured.out == ""


def _naive_encode(word: bytes, merges: list[tuple[str, str]]) -> list[str]:
    """GPT-2's string algorithm: merge the lowest-ranked adjacent pair until none is ranked."""
    ranks = {m: r for r, m in enumerate(merges)}
    parts = [BYTE_TO_CHAR[b] for b in word]
    while len(parts) > 1:
        pairs = [(ranks.get(p, 1e9), i) for i, p in enumerate(zip(parts, parts[1:]))]
        rank, i = min(pairs)
        if rank == 1e9:
            break
        pair = (parts[i], parts[i + 1])
        out, j = [], 0
        while j < len(parts):
            if j + 1 < len(parts) and (parts[j], parts[j + 1]) == pair:
                out.append(parts[j] + parts[j + 1])
                j += 2
            else:
                out.append(parts[j])
                j += 1
        parts = out
    return parts


def test_model_encode_matches_naive_string_bpe():
    rng = random.Random(7)
    words = {"".join(rng.choice("abcd é") for _ in range(rng.randint(1, 8))): rng.randint(1, 4) for _ in range(80)}
    vocab, merges = BPETrainer(256 + 30, min_frequency=1).train(words)
    model = BPEModel(vocab, merges)
    for word in list(words) + ["dcba", "ééé", "abcabcabc"]:
        expected = [vocab[t] for t in _naive_encode(word.encode(), merges)]
        assert list(model.encode_word(word)) == expected
        assert model.decode_bytes(model.encode_word(word)) == word.encode()


def test_model_validation_and_decode_errors():
    vocab = {c: i for i, c in enumerate(BYTE_TO_CHAR.values())}
    with pytest.raises(ValueError, match="merge 0 result 'ab' is missing"):
        BPEModel(vocab, [("a", "b")])
    with pytest.raises(ValueError, match="byte"):
        BPEModel({"a": 0}, [])
    model = BPEModel(vocab, [])
    assert model.vocab_size == 256 and model.encode_word("") == ()
    with pytest.raises(TokenizerError, match=r"token id 999 is not in the vocabulary \(0\.\.255\)"):
        model.decode_bytes([999])
    assert model.byte_ids == frozenset(range(256))
