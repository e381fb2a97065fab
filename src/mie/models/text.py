"""Causal text transformer pooled at the end-of-text token (as in CLIP's text tower)."""

from __future__ import annotations

import torch
from torch import nn

from mie.models.blocks import init_transformer_
from mie.models.positional import LearnedPositionalEmbedding
from mie.models.trunk import Transformer, rename_legacy_trunk_keys


def eot_positions(ids: torch.Tensor, eos_id: int, check: bool = True) -> torch.Tensor:
    """Index of the first ``eos_id`` in each row of ``ids`` ``[B, L]``; raises if a row has none (always on
    the CPU; elsewhere when ``check``, since that reads a value back from the device).

    Ids are arbitrary integers, so "argmax of the ids" (CLIP's shortcut, valid only when EOS has the
    largest id) is not used.
    """
    is_eos = ids == eos_id
    has_eos = is_eos.any(dim=1)
    # Reading the check back is a host sync on an accelerator: only on the CPU, or when asked (evaluation).
    if (check or ids.device.type == "cpu") and not bool(has_eos.all()):
        rows = torch.nonzero(~has_eos).flatten().tolist()
        raise ValueError(
            f"rows {rows[:10]} of the token ids have no end-of-text id {eos_id}; the text encoder pools "
            "there, so tokenize with the same tokenizer (its eos_id) and a context_length that keeps <eos>"
        )
    # argmax over a bool tensor returns the first True (ties resolve to the lowest index).
    return is_eos.int().argmax(dim=1)


class TextEncoder(nn.Module):
    """Token + learned position embeddings and a causal ``Transformer`` trunk (pre-norm blocks, final
    norm); ``forward`` returns the feature at each row's first end-of-text token, ``[B, width]``.

    No padding mask is needed: under causal masking a token only sees earlier positions, so the pads
    after ``<eos>`` can never influence the ``<eos>`` feature (or any token before it). ``pad_id`` is kept
    so callers can build padding masks for per-token uses (e.g. ``CrossModalFusion``).
    """

    def __init__(
        self,
        vocab_size: int,
        *,
        eos_id: int,
        pad_id: int,
        context_length: int = 32,
        width: int = 256,
        layers: int = 4,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        norm: str = "layernorm",
    ) -> None:
        super().__init__()
        if vocab_size <= 0:
            raise ValueError(f"vocab_size must be positive, got {vocab_size}; take it from the tokenizer")
        for name, value in (("eos_id", eos_id), ("pad_id", pad_id)):
            if not 0 <= value < vocab_size:
                raise ValueError(f"{name}={value} is outside the vocabulary [0, {vocab_size})")
        self.vocab_size, self.context_length, self.width = vocab_size, context_length, width
        self.eos_id, self.pad_id = eos_id, pad_id
        self.token_embed = nn.Embedding(vocab_size, width)
        self.pos_embed = LearnedPositionalEmbedding(context_length, width)
        self.dropout = nn.Dropout(dropout)
        self.trunk = Transformer(width, layers, heads, mlp_ratio=mlp_ratio, dropout=dropout, norm=norm)
        init_transformer_(self, layers, std=width ** -0.5)  # see init_transformer_ on why not 0.02
        # The private registration: the public register_load_state_dict_pre_hook needs torch >= 2.5.
        self._register_load_state_dict_pre_hook(rename_legacy_trunk_keys, with_module=True)

    def padding_mask(self, ids: torch.Tensor) -> torch.Tensor:
        """Bool ``[B, L]``, True at every position after the first ``<eos>`` (the padding)."""
        positions = torch.arange(ids.shape[1], device=ids.device)
        return positions[None, :] > eot_positions(ids, self.eos_id)[:, None]

    def forward_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """Per-token features after the final norm, ``[B, L, width]``."""
        self._check_ids(ids)
        x = self.dropout(self.pos_embed(self.token_embed(ids)))
        return self.trunk(x, is_causal=True)

    def _check_ids(self, ids: torch.Tensor) -> None:
        if ids.dim() != 2:
            raise ValueError(f"expected token ids [B, L], got shape {tuple(ids.shape)}")
        if ids.shape[1] > self.context_length:
            raise ValueError(
                f"got {ids.shape[1]} tokens but context_length is {self.context_length}; tokenize with "
                f"context_length={self.context_length}"
            )

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Text features ``[B, width]`` taken at each row's first ``eos_id``."""
        self._check_ids(ids)
        positions = eot_positions(ids, self.eos_id, check=not self.training)
        # Attention is causal, so tokens after the last end-of-text in the batch cannot change any
        # pooled feature: drop those padding columns (captions are often half the context length). The
        # cut is a host sync, so an accelerator's training steps keep the full context instead.
        if ids.device.type == "cpu" or not self.training:
            ids = ids[:, : int(positions.max()) + 1]
        x = self.dropout(self.pos_embed(self.token_embed(ids)))
        # The last block runs its query side on the end-of-text tokens only (Transformer.forward_at).
        return self.trunk.forward_at(x, positions, is_causal=True)
