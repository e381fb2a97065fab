"""The one key/value cache of ``mie.models``: causal LM generation and seq2seq beam search both use it.

>>> cache = KVCache(n_layers=4, max_len=128)  # doctest: +SKIP
>>> logits = model(ids, cache=cache)          # each layer calls cache.update(layer, k, v); the model advances it

A forward pass over ``T`` new tokens records their key mask once (:meth:`KVCache.extend_mask`, optional),
writes each layer's new keys/values (:meth:`KVCache.update`, which returns every key/value of that layer
so far), then marks the positions filled (:meth:`KVCache.advance`). ``len(cache)`` is the number of
filled positions, so a layer's new tokens sit at positions ``len(cache) .. len(cache) + T - 1``.

With ``max_len`` the tensors are preallocated on the first write (no copies while decoding); without it
they grow by concatenation. :meth:`select` keeps (and may repeat) batch rows: a generation drops finished
rows with it, a beam search reorders its beams onto their parents with :meth:`reorder`.
"""

from __future__ import annotations

import torch


class KVCache:
    """Per-layer keys/values ``[B, n_kv_heads, S, head_dim]`` and the key mask ``[B, S]`` (True = a real token)."""

    def __init__(self, n_layers: int, max_len: int | None = None) -> None:
        self.n_layers, self.max_len = n_layers, max_len
        self.keys: list[torch.Tensor | None] = [None] * n_layers
        self.values: list[torch.Tensor | None] = [None] * n_layers
        self.mask: torch.Tensor | None = None  # (B, capacity) bool, True = a real (non-padding) token
        self.length = 0

    def __len__(self) -> int:
        """Number of cached positions."""
        return self.length

    def _check(self, new: int) -> None:
        if self.max_len is not None and self.length + new > self.max_len:
            raise ValueError(f"KV cache full: {self.length} + {new} positions exceed max_len={self.max_len}; "
                             "build the cache with a larger max_len")

    def _write(self, store: torch.Tensor | None, new: torch.Tensor, dim: int) -> torch.Tensor:
        """Put ``new`` at positions ``length..length+T`` of ``store`` (allocating or growing it)."""
        if self.max_len is None:
            if store is None:
                return new
            return torch.cat((store.narrow(dim, 0, self.length), new), dim=dim)
        if store is None:
            shape = list(new.shape)
            shape[dim] = self.max_len
            store = new.new_empty(shape)  # only written positions are ever read; zeroing would touch it all
        store.narrow(dim, self.length, new.shape[dim]).copy_(new)
        return store

    def extend_mask(self, new_mask: torch.Tensor) -> torch.Tensor:
        """Record the mask ``[B, T]`` of the new tokens; return the mask ``[B, length + T]`` of all keys."""
        self._check(new_mask.shape[1])
        self.mask = self._write(self.mask, new_mask.bool(), dim=1)
        return self.mask[:, : self.length + new_mask.shape[1]]

    def update(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new ``[B, H, T, D]`` keys/values of ``layer``; return all its keys and values so far."""
        self._check(keys.shape[2])
        end = self.length + keys.shape[2]
        self.keys[layer] = self._write(self.keys[layer], keys, dim=2)
        self.values[layer] = self._write(self.values[layer], values, dim=2)
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def select(self, rows: torch.Tensor) -> None:
        """Keep only batch ``rows`` (a long index, repeats allowed), e.g. to drop finished sequences."""
        def pick(store: torch.Tensor | None, dim: int) -> torch.Tensor | None:
            if store is None:
                return None
            filled = store.narrow(dim, 0, self.length).index_select(0, rows)
            if self.max_len is None:
                return filled
            # Copy only the filled positions into a fresh store of full capacity for later writes.
            shape = list(filled.shape)
            shape[dim] = self.max_len
            out = filled.new_empty(shape)
            out.narrow(dim, 0, self.length).copy_(filled)
            return out

        self.keys = [pick(k, 2) for k in self.keys]
        self.values = [pick(v, 2) for v in self.values]
        self.mask = pick(self.mask, 1)

    def reorder(self, rows: torch.Tensor) -> None:
        """Put row ``rows[i]`` at row ``i`` (a beam search moves each new beam onto its parent's keys)."""
        self.select(rows)

    def advance(self, n: int) -> None:
        """Mark ``n`` more positions as filled (after every layer has been updated)."""
        self.length += n

    def reset(self) -> None:
        """Forget every cached position."""
        self.__init__(self.n_layers, self.max_len)
