"""Language-modelling data: fixed-length blocks packed over a tokenized corpus, memory-mapped.

The corpus is tokenized once into a ``TokenCache`` (one ``.npy`` array per text file, each ending
with EOS), and the files are read as one long token stream. Block ``i`` covers tokens
``[i * block_size, i * block_size + block_size]`` (``block_size + 1`` of them, crossing file
boundaries freely); the input is all but the last, the target all but the first::

    cache = build_token_cache(tokenizer, ["books/a.txt", "books/b.txt"], "cache/lm")
    data = LMBlockDataset(cache, block_size=256)
    x, y = data[0]            # y[t] is the token after x[t]
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mie.tokenization.cache import TokenCache, build_token_cache
from mie.tokenization.tokenizer import BPETokenizer


class LMBlockDataset(Dataset):
    """``(input, target)`` LongTensor pairs of ``block_size`` tokens, the target shifted by one.

    ``cache`` is a ``TokenCache`` or a list of 1-D token arrays. ``stride`` (default ``block_size``,
    i.e. no overlap) is the distance between block starts. Only the slices a block needs are read
    from the memory-mapped arrays.
    """

    def __init__(self, cache: TokenCache | Sequence[np.ndarray], block_size: int, stride: int | None = None) -> None:
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        self.arrays = list(cache.arrays if isinstance(cache, TokenCache) else cache)
        self.block_size = block_size
        self.stride = stride or block_size
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")
        # starts[k] = position of file k's first token in the whole stream
        self.starts = np.concatenate([[0], np.cumsum([len(a) for a in self.arrays])]).tolist()
        self.n_tokens = int(self.starts[-1])
        if self.n_tokens < block_size + 1:
            raise ValueError(f"the corpus has {self.n_tokens} tokens; a block of {block_size} needs at least "
                             f"{block_size + 1} (a smaller block_size or more text)")

    def __len__(self) -> int:
        return (self.n_tokens - self.block_size - 1) // self.stride + 1

    def tokens(self, start: int, count: int) -> np.ndarray:
        """``count`` tokens of the stream from position ``start`` (may span several files)."""
        pieces = []
        file = bisect.bisect_right(self.starts, start) - 1
        while count > 0:
            offset = start - self.starts[file]
            piece = self.arrays[file][offset:offset + count]
            pieces.append(np.asarray(piece, dtype=np.int64))
            count -= len(piece)
            start += len(piece)
            file += 1
        return np.concatenate(pieces)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"block {index} out of range for {len(self)} blocks")
        index %= len(self)
        block = torch.from_numpy(self.tokens(index * self.stride, self.block_size + 1))
        return block[:-1], block[1:]


def lm_dataset_from_files(
    tokenizer: BPETokenizer,
    paths: Sequence[str | os.PathLike[str]],
    cache_dir: str | os.PathLike[str],
    block_size: int,
    workers: int = 1,
) -> LMBlockDataset:
    """Tokenize text files into the cache under ``cache_dir`` (reused when unchanged) and pack them."""
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"text corpus file(s) not found: {missing}; pass existing UTF-8 text files")
    return LMBlockDataset(build_token_cache(tokenizer, paths, cache_dir, workers=workers), block_size)
