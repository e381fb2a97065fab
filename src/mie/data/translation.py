"""Parallel corpora for translation, as Europarl / WMT / IWSLT / OpenSubtitles distribute them.

Two layouts: line-aligned files (``corpus.src`` / ``corpus.tgt``, ``europarl-v7.de-en.de`` /
``europarl-v7.de-en.en``, IWSLT's ``train.tags.de-en.de`` / ``.en``, ``OpenSubtitles.de-en.de`` /
``.en``: line ``k`` of one translates line ``k`` of the other) or a TSV of pairs (``source<TAB>target``,
as in WMT's ``*.tsv`` releases). Pairs are filtered by token length and by length ratio, and
``BucketBatchSampler`` (``mie.data.samplers``) batches them by length::

    pairs = read_parallel_files("europarl-v7.de-en.de", "europarl-v7.de-en.en")
    data = TranslationDataset(pairs, src_tokenizer, tgt_tokenizer, max_length=128, max_ratio=2.5)
    loader = DataLoader(data, batch_sampler=BucketBatchSampler(data.lengths, 64, seed=0),
                        collate_fn=functools.partial(collate_translation, pad_id=src_tokenizer.pad_id))
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence
from itertools import zip_longest
from pathlib import Path

import torch
from torch.utils.data import Dataset

from mie.errors import DataError
from mie.io.cache import read_text_lines
from mie.tokenization.base import BaseTokenizer

logger = logging.getLogger(__name__)

PARALLEL_LAYOUT = (
    "two line-aligned UTF-8 files (line k of the source translates line k of the target, e.g. "
    "corpus.src / corpus.tgt or europarl-v7.de-en.de / europarl-v7.de-en.en), or one TSV of "
    "'source<TAB>target' lines"
)


def _is_markup(line: str) -> bool:
    """IWSLT's raw files interleave XML metadata lines (``<url>...</url>``) with the text."""
    stripped = line.strip()
    return stripped.startswith("<") and stripped.endswith(">")


def read_parallel_files(
    src_path: str | os.PathLike[str], tgt_path: str | os.PathLike[str], skip_markup: bool = True
) -> list[tuple[str, str]]:
    """Line-aligned (source, target) pairs; the two files must have the same number of lines."""
    src_path, tgt_path = Path(src_path), Path(tgt_path)
    for path in (src_path, tgt_path):
        if not path.is_file():
            raise FileNotFoundError(f"parallel corpus file {path} not found; expected {PARALLEL_LAYOUT}")
    pairs = []
    with read_text_lines(src_path) as src, read_text_lines(tgt_path) as tgt:
        for lineno, (s, t) in enumerate(zip_longest(src, tgt), start=1):
            if s is None or t is None:
                shorter = src_path if s is None else tgt_path
                raise DataError(f"{shorter} ends at line {lineno - 1} but the other file goes on: {src_path} and "
                                f"{tgt_path} are not line-aligned", fix="give both files the same number of lines")
            if skip_markup and _is_markup(s) and _is_markup(t):
                continue
            pairs.append((s.rstrip("\n"), t.rstrip("\n")))
    return pairs


def read_tsv_pairs(path: str | os.PathLike[str], src_column: int = 0, tgt_column: int = 1,
                   skipped: Counter[str] | None = None) -> list[tuple[str, str]]:
    """(source, target) pairs from the given columns of a TSV; short rows are counted as ``malformed line``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"TSV corpus {path} not found; expected {PARALLEL_LAYOUT}")
    pairs = []
    with read_text_lines(path) as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if len(fields) <= max(src_column, tgt_column):
                if skipped is not None and line.strip():
                    skipped["malformed line"] += 1
                continue
            pairs.append((fields[src_column], fields[tgt_column]))
    return pairs


def find_parallel_files(folder: str | os.PathLike[str], src_lang: str, tgt_lang: str) -> list[tuple[Path, Path]]:
    """Every ``X.<src_lang>`` in ``folder`` that has a ``X.<tgt_lang>`` beside it, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"corpus folder {folder} not found")
    pairs = [(p, p.with_suffix(f".{tgt_lang}")) for p in sorted(folder.glob(f"*.{src_lang}"))
             if p.with_suffix(f".{tgt_lang}").is_file()]
    if not pairs:
        raise FileNotFoundError(f"no *.{src_lang} file with a matching *.{tgt_lang} in {folder}; "
                                f"expected {PARALLEL_LAYOUT}")
    return pairs


class TranslationDataset(Dataset):
    """Tokenized (source, target) pairs after length and ratio filtering.

    ``dataset[i]`` is ``(source ids + [eos], [bos] + target ids + [eos])`` as LongTensors. A pair is
    dropped (and counted in ``skipped``) when a side is empty, a side has fewer than ``min_length``
    or more than ``max_length`` tokens, or the longer side exceeds ``max_ratio`` times the shorter
    (the usual sign of a misaligned pair). ``lengths[i]`` (the longer side) feeds the bucket sampler.
    """

    def __init__(
        self,
        pairs: Sequence[tuple[str, str]],
        src_tokenizer: BaseTokenizer,
        tgt_tokenizer: BaseTokenizer | None = None,
        min_length: int = 1,
        max_length: int = 256,
        max_ratio: float = 3.0,
    ) -> None:
        if min_length < 1 or max_length < min_length or max_ratio < 1:
            raise ValueError(f"need 1 <= min_length <= max_length and max_ratio >= 1; got {min_length}, "
                             f"{max_length}, {max_ratio}")
        self.src_tokenizer = src_tokenizer
        self.tgt_tokenizer = tgt_tokenizer or src_tokenizer
        self.skipped: Counter[str] = Counter()
        self.src_ids: list[list[int]] = []
        self.tgt_ids: list[list[int]] = []
        for src, tgt in pairs:
            if not src.strip() or not tgt.strip():
                self.skipped["empty"] += 1
                continue
            s, t = self.src_tokenizer.encode(src), self.tgt_tokenizer.encode(tgt)
            reason = self._reject(len(s), len(t), min_length, max_length, max_ratio)
            if reason:
                self.skipped[reason] += 1
                continue
            self.src_ids.append(s)
            self.tgt_ids.append(t)
        if self.skipped:
            logger.info("translation pairs kept %d, dropped %s", len(self.src_ids), dict(self.skipped))

    @staticmethod
    def _reject(ns: int, nt: int, min_length: int, max_length: int, max_ratio: float) -> str | None:
        """Why a pair of these token lengths is dropped, or None to keep it."""
        if min(ns, nt) < min_length:
            return "too short"
        if max(ns, nt) > max_length:
            return "too long"
        if max(ns, nt) > max_ratio * max(1, min(ns, nt)):
            return "length ratio"
        return None

    @property
    def lengths(self) -> list[int]:
        """Token length of the longer side of each kept pair."""
        return [max(len(s), len(t)) for s, t in zip(self.src_ids, self.tgt_ids)]

    def __len__(self) -> int:
        return len(self.src_ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        src = self.src_ids[index] + [self.src_tokenizer.eos_id]
        tgt = [self.tgt_tokenizer.bos_id] + self.tgt_ids[index] + [self.tgt_tokenizer.eos_id]
        return torch.tensor(src, dtype=torch.long), torch.tensor(tgt, dtype=torch.long)


def collate_translation(batch: Sequence[tuple[torch.Tensor, torch.Tensor]], pad_id: int,
                        tgt_pad_id: int | None = None) -> dict[str, torch.Tensor]:
    """Pad sources and targets to the longest in the batch: ``{"src": [B, S], "tgt": [B, T]}``."""
    if not batch:
        raise ValueError("collate_translation got an empty batch")
    tgt_pad = pad_id if tgt_pad_id is None else tgt_pad_id
    src = torch.nn.utils.rnn.pad_sequence([s for s, _ in batch], batch_first=True, padding_value=pad_id)
    tgt = torch.nn.utils.rnn.pad_sequence([t for _, t in batch], batch_first=True, padding_value=tgt_pad)
    return {"src": src, "tgt": tgt}
