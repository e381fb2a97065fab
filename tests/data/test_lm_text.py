"""LM text data: files by glob, a disjoint train/val split of the token stream, packing, bytes per token."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mie.data.lm_text import (
    build_lm_text,
    lm_train_loader,
    lm_val_indices,
    resolve_text_files,
    split_stream,
    target_bytes_per_token,
    token_byte_lengths,
)
from mie.data.text import LMBlockDataset
from mie.errors import DataError
from mie.tokenization.normalizers import build_normalizer
from mie.tokenization.tokenizer import BPETokenizer

TEXT = "The quick brown fox jumps over the lazy dog. Vim is a text editor; :help opens help.\n" * 12


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("lmtext")
    for i in range(3):
        (root / f"f{i}.txt").write_text(f"File {i}. " + TEXT + "é ü ✓\n", encoding="utf-8")
    tokenizer = BPETokenizer.train([TEXT], vocab_size=300, min_frequency=1, normalizer=build_normalizer(lowercase=False))
    return root, tokenizer


def test_globs_resolve_sorted_with_fallback_and_one_line_error(corpus, tmp_path):
    root, _ = corpus
    files = resolve_text_files([str(root / "f*.txt"), str(root / "f0.txt")])
    assert [f.name for f in files] == ["f0.txt", "f1.txt", "f2.txt"]
    assert resolve_text_files([str(tmp_path / "none*.txt")], [str(root / "f1.txt")])[0].name == "f1.txt"
    with pytest.raises(DataError, match=r"data.files: no text file matches .*none\*.txt"):
        resolve_text_files([str(tmp_path / "none*.txt")])
    assert resolve_text_files(["{stdlib}/os.py"])  # Python's own sources: the lm_tiny fallback


def test_split_is_disjoint_and_covers_the_stream():
    arrays = [np.arange(0, 10), np.arange(10, 25), np.arange(25, 40)]
    train, val = split_stream(arrays, 0.25)
    assert np.concatenate(train).tolist() == list(range(30))
    assert np.concatenate(val).tolist() == list(range(30, 40))
    with pytest.raises(DataError, match="too few"):
        split_stream([np.arange(5)], 0.5, min_tokens=4)


def test_packing_covers_the_training_stream_exactly_once_per_epoch():
    stream = np.arange(1000, dtype=np.int64)
    data = LMBlockDataset([stream[:300], stream[300:1000]], block_size=16)
    loader = lm_train_loader(data, batch_size=1, seed=0)
    seen = []
    for x, y in loader:
        assert torch.equal(y[0, :-1], x[0, 1:]) and int(y[0, -1]) == int(x[0, -1]) + 1
        seen += x[0].tolist()
    assert sorted(seen) == list(range(len(data) * 16))  # every position once, none twice
    assert len(data) == (1000 - 1) // 16


def test_the_epoch_order_depends_on_the_seed_only():
    data = LMBlockDataset([np.arange(500)], block_size=8)
    order = [[x[:, 0].tolist() for x, _ in lm_train_loader(data, 4, seed=s)] for s in (1, 1, 2)]
    assert order[0] == order[1] != order[2]
    assert len(list(lm_train_loader(data, 4, seed=0, blocks_per_epoch=12))) == 3
    assert lm_val_indices(LMBlockDataset([np.arange(500)], 8), 5) == [0, 15, 30, 45, 61]


def test_build_splits_the_corpus_and_counts_bytes_per_token(corpus, tmp_path):
    root, tokenizer = corpus
    files = resolve_text_files([str(root / "*.txt")])
    text = build_lm_text(tokenizer, files, tmp_path / "cache", block_size=16, val_fraction=0.1)
    assert text.train.n_tokens + text.val.n_tokens == text.n_tokens
    assert text.val.n_tokens == round(text.n_tokens * 0.1)
    assert text.corpus_bytes == sum(f.stat().st_size for f in files)
    # bytes per target token by hand: decode the scored targets of every validation block
    lengths = token_byte_lengths(tokenizer)
    targets = np.concatenate([text.val.tokens(i * 16 + 1, 16) for i in range(len(text.val))])
    by_hand = sum(len(tokenizer.decode([int(t)]).encode("utf-8")) for t in targets if t != tokenizer.eos_id)
    assert text.val_bytes_per_token == pytest.approx(by_hand / len(targets))
    assert target_bytes_per_token(text.val, lengths, [0]) == pytest.approx(
        lengths[text.val.tokens(1, 16)].sum() / 16)
    again = build_lm_text(tokenizer, files, tmp_path / "cache", block_size=16, val_fraction=0.1)
    assert again.val_bytes_per_token == text.val_bytes_per_token  # the cache is reused, same split
