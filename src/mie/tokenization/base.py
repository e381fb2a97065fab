"""The tokenizer interface every tokenizer in the engine implements (simple word-level, BPE, ...)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch

SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>")


class BaseTokenizer(ABC):
    """Text <-> ids. Subclasses implement ``encode``, ``decode``, ``vocab_size`` and the special ids.

    ``tokenizer(texts, context_length)`` returns a ``[len(texts), context_length]`` LongTensor:
    ``<bos> tokens... <eos>`` then ``<pad>``; a text too long is truncated so that ``<eos>`` is kept
    as the last token (the text encoder pools at ``<eos>``).
    """

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of ids, special tokens included."""

    @property
    @abstractmethod
    def pad_id(self) -> int:
        """Id used for padding."""

    @property
    @abstractmethod
    def bos_id(self) -> int:
        """Id put before every text."""

    @property
    @abstractmethod
    def eos_id(self) -> int:
        """Id put after every text; the text encoder pools here."""

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` without special tokens."""

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``; special tokens are dropped."""

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """``encode`` over many texts (subclasses may do this faster)."""
        return [self.encode(t) for t in texts]

    def __call__(self, texts: str | Sequence[str], context_length: int) -> torch.Tensor:
        """Encode, add BOS/EOS, pad and truncate (keeping EOS) into a LongTensor."""
        if isinstance(texts, str):
            texts = [texts]
        if context_length < 2:
            raise ValueError(f"context_length must be >= 2 to hold <bos> and <eos>, got {context_length}")
        out = torch.full((len(texts), context_length), self.pad_id, dtype=torch.long)
        for row, ids in enumerate(self.encode_batch(texts)):
            ids = [self.bos_id, *ids[: context_length - 2], self.eos_id]
            out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out
