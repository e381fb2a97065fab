"""LM blocks over the token cache, parallel corpora (line-aligned and TSV) with filtering, collation."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mie.data.samplers import BucketBatchSampler
from mie.data.text import LMBlockDataset, lm_dataset_from_files
from mie.data.translation import (
    TranslationDataset,
    collate_translation,
    find_parallel_files,
    read_parallel_files,
    read_tsv_pairs,
)
from mie.tokenization.base import BaseTokenizer
from mie.tokenization.tokenizer import BPETokenizer


class WordTokenizer(BaseTokenizer):
    """Each whitespace word -> 10 + its length (enough to count tokens and check ids)."""

    vocab_size = 100
    pad_id, bos_id, eos_id = 0, 1, 2

    def encode(self, text: str) -> list[int]:
        return [10 + len(w) for w in text.split()]

    def decode(self, ids: Sequence[int]) -> str:
        return " ".join("x" * (i - 10) for i in ids if i >= 10)


def test_lm_blocks_match_naive_concatenation() -> None:
    arrays = [np.arange(0, 7, dtype=np.uint16), np.arange(100, 103, dtype=np.uint16), np.arange(200, 212)]
    stream = np.concatenate([a.astype(np.int64) for a in arrays])
    data = LMBlockDataset(arrays, block_size=4)
    assert len(data) == (len(stream) - 1) // 4
    for i in range(len(data)):
        x, y = data[i]
        assert x.dtype == torch.long and x.tolist() == stream[4 * i:4 * i + 4].tolist()
        assert y.tolist() == stream[4 * i + 1:4 * i + 5].tolist()
    assert data[-1][0].tolist() == data[len(data) - 1][0].tolist()
    overlapping = LMBlockDataset(arrays, block_size=5, stride=2)
    assert len(overlapping) == (len(stream) - 6) // 2 + 1
    last_x, last_y = overlapping[len(overlapping) - 1]
    assert last_y[-1].item() <= stream[-1] and last_x.tolist() == stream[2 * (len(overlapping) - 1):][:5].tolist()
    with pytest.raises(IndexError, match="out of range"):
        data[len(data)]
    with pytest.raises(ValueError, match="has 22 tokens; a block of 30 needs at least 31"):
        LMBlockDataset(arrays, block_size=30)
    with pytest.raises(ValueError, match="block_size must be >= 1"):
        LMBlockDataset(arrays, block_size=0)


def test_lm_dataset_from_files_uses_the_token_cache(tmp_path: Path) -> None:
    texts = ["the cat sat on the mat. " * 20, "a dog ran in the park! " * 20]
    paths = []
    for i, text in enumerate(texts):
        paths.append(tmp_path / f"{i}.txt")
        paths[-1].write_text(text)
    tokenizer = BPETokenizer.train(texts, vocab_size=300, min_frequency=2)
    data = lm_dataset_from_files(tokenizer, paths, tmp_path / "cache", block_size=16)
    expected = tokenizer.encode(texts[0]) + [tokenizer.eos_id] + tokenizer.encode(texts[1]) + [tokenizer.eos_id]
    assert data.n_tokens == len(expected)
    x, y = data[1]
    assert x.tolist() == expected[16:32] and y.tolist() == expected[17:33]
    assert isinstance(data.arrays[0], np.memmap)
    with pytest.raises(FileNotFoundError, match="text corpus file"):
        lm_dataset_from_files(tokenizer, [tmp_path / "nope.txt"], tmp_path / "cache", 4)


def test_line_aligned_files_markup_and_misalignment(tmp_path: Path) -> None:
    (tmp_path / "train.de").write_text("<url>http://x</url>\nein Hund\nzwei Katzen\n")
    (tmp_path / "train.en").write_text("<url>http://x</url>\na dog\ntwo cats\n")
    (tmp_path / "corpus.src").write_text("a\nb\n")
    (tmp_path / "corpus.tgt").write_text("A\n")
    assert read_parallel_files(tmp_path / "train.de", tmp_path / "train.en") == [
        ("ein Hund", "a dog"), ("zwei Katzen", "two cats")]
    assert len(read_parallel_files(tmp_path / "train.de", tmp_path / "train.en", skip_markup=False)) == 3
    with pytest.raises(ValueError, match="corpus.tgt ends at line 1 but the other file goes on"):
        read_parallel_files(tmp_path / "corpus.src", tmp_path / "corpus.tgt")
    with pytest.raises(FileNotFoundError, match="parallel corpus file .*nope.src not found"):
        read_parallel_files(tmp_path / "nope.src", tmp_path / "corpus.tgt")
    assert find_parallel_files(tmp_path, "de", "en") == [(tmp_path / "train.de", tmp_path / "train.en")]
    with pytest.raises(FileNotFoundError, match=r"no \*.fr file with a matching \*.en"):
        find_parallel_files(tmp_path, "fr", "en")


def test_tsv_pairs_and_filters(tmp_path: Path) -> None:
    lines = ["hallo welt\thello world", "kaputt", "\tempty source", "eins zwei drei vier\tone",
             "a b c d e f g h\tone two three four five six seven eight", "gut\tgood\textra", ""]
    (tmp_path / "pairs.tsv").write_text("\n".join(lines) + "\n")
    from collections import Counter

    malformed: Counter[str] = Counter()
    pairs = read_tsv_pairs(tmp_path / "pairs.tsv", skipped=malformed)
    assert len(pairs) == 5 and malformed == {"malformed line": 1}
    assert read_tsv_pairs(tmp_path / "pairs.tsv", src_column=1, tgt_column=2) == [("good", "extra")]
    data = TranslationDataset(pairs, WordTokenizer(), max_length=6, max_ratio=3.0)
    assert data.skipped == {"empty": 1, "length ratio": 1, "too long": 1}
    assert len(data) == 2 and data.lengths == [2, 1]
    src, tgt = data[0]
    assert src.tolist() == [15, 14, 2] and tgt.tolist() == [1, 15, 15, 2]
    strict = TranslationDataset(pairs, WordTokenizer(), min_length=2, max_length=100, max_ratio=10)
    assert strict.skipped["too short"] == 2 and len(strict) == 2
    with pytest.raises(ValueError, match="need 1 <= min_length <= max_length"):
        TranslationDataset(pairs, WordTokenizer(), min_length=5, max_length=2)
    with pytest.raises(FileNotFoundError, match="TSV corpus"):
        read_tsv_pairs(tmp_path / "none.tsv")


def test_translation_loader_with_buckets() -> None:
    pairs = [(" ".join(["w"] * n), " ".join(["v"] * (n + 1))) for n in range(1, 21)]
    data = TranslationDataset(pairs, WordTokenizer(), max_length=50)
    sampler = BucketBatchSampler(data.lengths, batch_size=4, seed=0)
    loader = DataLoader(data, batch_sampler=sampler, collate_fn=functools.partial(collate_translation, pad_id=0))
    seen = 0
    for batch in loader:
        lengths = (batch["src"] != 0).sum(1)
        assert batch["src"].shape[1] == lengths.max() and batch["tgt"].shape[1] == lengths.max() + 2
        seen += len(lengths)
    assert seen == 20
    padded = collate_translation([data[0], data[5]], pad_id=0, tgt_pad_id=9)
    assert padded["tgt"][0].tolist()[-1] == 9 and padded["src"].shape == (2, 7)
    with pytest.raises(ValueError, match="empty batch"):
        collate_translation([], pad_id=0)
