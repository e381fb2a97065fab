"""Post-processor: the last encode stage. Adds BOS/EOS, truncates keeping EOS, pads, builds the mask."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from mie.errors import TokenizerError


@dataclass
class PostProcessor:
    """Frame token ids as ``<bos> ids... <eos> <pad>...`` of a fixed ``context_length``.

    A text too long is cut so that EOS stays the last token (the text encoder pools at EOS; this is also
    CLIP's "force the final end-of-text" rule). ``bos_id`` / ``eos_id`` set to None leave that token out.
    The attention mask is 1 on real tokens (BOS and EOS included) and 0 on padding.
    """

    bos_id: int | None
    eos_id: int | None
    pad_id: int = 0
    context_length: int = 77

    def frame(self, ids: Sequence[int], context_length: int | None = None) -> list[int]:
        """BOS + ids + EOS, truncated to ``context_length`` keeping EOS (no padding)."""
        length = self.context_length if context_length is None else context_length
        head = [] if self.bos_id is None else [self.bos_id]
        tail = [] if self.eos_id is None else [self.eos_id]
        room = length - len(head) - len(tail)
        if room < 0:
            raise TokenizerError(f"context_length {length} cannot hold the BOS/EOS tokens",
                                 fix=f"use >= {len(head) + len(tail)}")
        return [*head, *ids[:room], *tail]

    def batch(
        self, batch_ids: Sequence[Sequence[int]], context_length: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ids, attention_mask)``, both LongTensors of shape ``[len(batch_ids), context_length]``."""
        length = self.context_length if context_length is None else context_length
        out = torch.full((len(batch_ids), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch_ids), length), dtype=torch.long)
        for row, ids in enumerate(batch_ids):
            framed = self.frame(ids, length)
            out[row, : len(framed)] = torch.tensor(framed, dtype=torch.long)
            mask[row, : len(framed)] = 1
        return out, mask

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PostProcessor:
        """Rebuild from ``to_dict`` output."""
        unknown = set(data) - {"bos_id", "eos_id", "pad_id", "context_length"}
        if unknown:
            raise ValueError(f"unknown post_processor keys {sorted(unknown)}")
        return cls(**data)
