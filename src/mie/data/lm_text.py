"""Language-model text: files (globs) -> memory-mapped token cache -> train/val token streams -> blocks.

The corpus is tokenized once into a :class:`~mie.tokenization.cache.TokenCache` (one ``.npy`` per
file, each ending with EOS) and read as one token stream, files in sorted path order. The last
``val_fraction`` of that stream is the validation stream, the rest the training stream, so the two
are disjoint and the split depends only on the files and the tokenizer. Each stream is cut into
contiguous blocks by :class:`~mie.data.text.LMBlockDataset` (``x`` = ``block_size`` tokens, ``y`` the
same shifted by one); an epoch visits every training block once, in an order drawn from the loader's
generator (reseeded per epoch by the trainer, so a resumed run replays the same batches)::

    files = resolve_text_files(["/usr/share/vim/vim90/doc/*.txt"])
    data = build_lm_text(tokenizer, files, "runs/lm/token_cache", block_size=128)
    x, y = data.train[0]                  # y[t] is the token after x[t]
    data.val_bytes_per_token              # for bits per byte: loss / ln 2 / bytes_per_token
"""

from __future__ import annotations

import glob
import itertools
import os
import sysconfig
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler, Sampler, Subset

from mie.config import POSITIVE, Rule
from mie.data.text import LMBlockDataset
from mie.errors import DataError
from mie.models.budget import usable_cores
from mie.tokenization.cache import build_token_cache
from mie.tokenization.tokenizer import BPETokenizer

#: ``{stdlib}`` in a pattern is replaced by the standard library's folder (``.../lib/python3.X``)
STDLIB = "{stdlib}"


@dataclass
class LMTextConfig:
    """The data section of an ``lm`` run: which text files, how they are cut and batched."""

    RULES: ClassVar[dict[str, Rule]] = {
        "block_size": POSITIVE, "batch_size": POSITIVE, "workers": POSITIVE,
        "val_fraction": (lambda v: 0.0 < v < 1.0, "a fraction in (0, 1)"),
        "blocks_per_epoch": (lambda v: v >= 0, ">= 0 (0 = every training block once per epoch)"),
        "max_val_blocks": (lambda v: v >= 0, ">= 0 (0 = the whole validation stream)"),
    }

    #: glob patterns of UTF-8 text files (``~`` and ``{stdlib}`` are expanded); their union is the corpus
    files: list[str] = field(default_factory=list)
    #: used only when ``files`` match nothing (e.g. Python's own sources where Vim's docs are absent)
    fallback_files: list[str] = field(default_factory=list)
    block_size: int = 128  # tokens per training example
    batch_size: int = 32
    val_fraction: float = 0.05  # the last part of the token stream, held out
    blocks_per_epoch: int = 0  # 0 = every block once; else this many random blocks (an eval interval)
    max_val_blocks: int = 0  # validation during training on at most this many blocks (the report uses all)
    cache_dir: str = ""  # the token cache; empty = <output_dir>/token_cache
    workers: int = 2  # processes that tokenize the files (1 = in-process; capped at the machine's cores)


def _expand(pattern: str) -> str:
    return os.path.expanduser(pattern.replace(STDLIB, sysconfig.get_paths()["stdlib"]))


def resolve_text_files(patterns: Sequence[str], fallback: Sequence[str] = (), key: str = "data.files") -> list[Path]:
    """The sorted, de-duplicated files matching ``patterns`` (else ``fallback``); one-line error if none."""
    for group in (patterns, fallback):
        found = sorted({Path(p).resolve() for pat in group for p in glob.glob(_expand(pat)) if Path(p).is_file()})
        if found:
            return found
    tried = ", ".join([*patterns, *fallback]) or "(no pattern)"
    raise DataError(f"no text file matches {tried}", where=key, fix="set data.files to globs of your UTF-8 text files")


def split_stream(arrays: Sequence[np.ndarray], val_fraction: float,
                 min_tokens: int = 2) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Cut the stream of ``arrays`` into (train, val) at ``1 - val_fraction`` of its tokens.

    Both parts keep at least ``min_tokens``; the pieces are views (memory-mapped arrays stay mapped).
    """
    total = sum(len(a) for a in arrays)
    n_val = max(min_tokens, round(total * val_fraction))
    cut = total - n_val
    if cut < min_tokens:
        raise DataError(f"the corpus has {total} tokens, too few for a training and a validation part of "
                        f"{min_tokens} tokens each", where="data.files", fix="add text or lower data.block_size")
    train, val, start = [], [], 0
    for array in arrays:
        end = start + len(array)
        if end <= cut:
            train.append(array)
        elif start >= cut:
            val.append(array)
        else:
            train.append(array[: cut - start])
            val.append(array[cut - start:])
        start = end
    return train, val


def token_byte_lengths(tokenizer: Any) -> np.ndarray:
    """Bytes of text each id stands for (0 for special tokens such as EOS), as an int64 table."""
    model = getattr(tokenizer, "model", None)
    specials = {tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id}
    lengths = np.zeros(tokenizer.vocab_size, dtype=np.int64)
    for idx in range(tokenizer.vocab_size):
        if idx in specials:
            continue
        if model is not None and hasattr(model, "token_bytes"):
            lengths[idx] = len(model.token_bytes(idx))
        else:
            lengths[idx] = len(tokenizer.decode([idx]).encode("utf-8"))
    return lengths


def target_bytes_per_token(dataset: LMBlockDataset, lengths: np.ndarray, indices: Sequence[int] | None = None) -> float:
    """Mean bytes per *target* token over the blocks ``indices`` (all by default) of ``dataset``.

    Bits per byte of a mean loss ``L`` (nats per target token) is ``L / ln 2 / bytes_per_token``.
    """
    indices = range(len(dataset)) if indices is None else indices
    tokens = nbytes = 0
    for i in indices:
        target = dataset.tokens(i * dataset.stride + 1, dataset.block_size)
        tokens += len(target)
        nbytes += int(lengths[target].sum())
    if nbytes == 0:
        raise DataError("the validation text holds no byte (only special tokens)", where="data.files",
                        fix="add text or raise data.val_fraction")
    return nbytes / tokens


@dataclass
class LMText:
    """A packed corpus: ``train`` and ``val`` block datasets, the files and the byte figures."""

    files: list[Path]
    train: LMBlockDataset
    val: LMBlockDataset
    corpus_bytes: int
    n_tokens: int
    val_bytes_per_token: float  # over the target tokens of every validation block

    @property
    def bytes_per_token(self) -> float:
        """Mean bytes per token over the whole corpus (EOS separators included)."""
        return self.corpus_bytes / max(1, self.n_tokens)


def build_lm_text(tokenizer: BPETokenizer, files: Sequence[Path], cache_dir: str | os.PathLike[str],
                  block_size: int, val_fraction: float = 0.05, workers: int = 1) -> LMText:
    """Tokenize ``files`` into the cache under ``cache_dir`` (reused when unchanged), split and pack them.

    ``workers`` is capped at this machine's cores: each process holds a tokenizer, and more of them than
    cores only cost memory (the recipes refuse a config that asks for many more)."""
    cache = build_token_cache(tokenizer, files, cache_dir, workers=max(1, min(workers, usable_cores())))
    train_arrays, val_arrays = split_stream(cache.arrays, val_fraction, min_tokens=block_size + 1)
    train, val = LMBlockDataset(train_arrays, block_size), LMBlockDataset(val_arrays, block_size)
    lengths = token_byte_lengths(tokenizer)
    return LMText(list(files), train, val, sum(Path(f).stat().st_size for f in files), cache.n_tokens,
                  target_bytes_per_token(val, lengths))


class RankShard(Sampler[int]):
    """Rank ``rank``'s share (every ``world``-th index) of ``base``, which draws the same indices on every
    rank; all ranks get the same count, so they run the same number of steps."""

    def __init__(self, base: Sampler[int], rank: int, world: int) -> None:
        self.base, self.rank, self.world = base, rank, world

    def __len__(self) -> int:
        return len(self.base) // self.world  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[int]:
        drawn = itertools.islice(iter(self.base), len(self) * self.world)
        return itertools.islice(drawn, self.rank, None, self.world)


def lm_train_loader(dataset: LMBlockDataset, batch_size: int, seed: int, blocks_per_epoch: int = 0,
                    rank: int = 0, world: int = 1, pin_memory: bool = False) -> DataLoader:
    """Shuffled ``(x, y)`` batches: every block once per epoch, or ``blocks_per_epoch`` random ones.

    The order comes from the loader's generator, which the trainer reseeds each epoch, so the
    batches of an epoch depend only on the seed, the stage and the epoch (an exact resume). Under
    DDP (``world`` > 1) every rank draws the same order and takes its own share of it; ``batch_size``
    is one rank's batch. ``pin_memory`` (for a CUDA device) pins each batch so its copy need not wait.
    """
    generator = torch.Generator().manual_seed(seed)
    sampler: Sampler[int] = RandomSampler(dataset, num_samples=blocks_per_epoch or None, generator=generator)
    if world > 1:
        sampler = RankShard(sampler, rank, world)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=True, generator=generator,
                      pin_memory=pin_memory)


def lm_val_indices(dataset: LMBlockDataset, max_blocks: int = 0) -> list[int]:
    """Every validation block, or ``max_blocks`` of them evenly spaced over the stream."""
    n = len(dataset)
    if not max_blocks or max_blocks >= n:
        return list(range(n))
    return sorted({int(i) for i in np.linspace(0, n - 1, max_blocks)})


def lm_val_loader(dataset: LMBlockDataset, batch_size: int, indices: Sequence[int] | None = None,
                  pin_memory: bool = False) -> DataLoader:
    """Validation batches in stream order (all blocks, or those at ``indices``; pinned if ``pin_memory``)."""
    data = dataset if indices is None else Subset(dataset, list(indices))
    return DataLoader(data, batch_size=batch_size, shuffle=False, pin_memory=pin_memory)
