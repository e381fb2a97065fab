"""The batches a queue-based loss stashes between optimizer steps.

A training-mode call stashes its detached keys; ``after_optimizer_step`` writes them into the FIFO
queue in order (``LossBase.after_optimizer_step``). Gradient accumulation stashes several micro-batches
per step; a standalone user who never calls ``after_optimizer_step`` must not grow memory without
bound, so only what the queue could still hold is kept.
"""

from __future__ import annotations

from torch import Tensor


class PendingBatches:
    """Detached batches (tuples of tensors with the same number of rows) waiting for the next step.

    Once the newer batches alone hold at least ``capacity`` rows, an older batch would be entirely
    overwritten when everything is enqueued, so it is dropped and only counted: ``take`` returns how
    far the queue pointer moves for the dropped rows (``min(rows, capacity)`` per batch, as writing a
    batch larger than the queue keeps its last ``capacity`` rows) and the batches still to write.
    Enqueueing those after moving the pointer gives exactly the queue that writing every batch gives.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = int(capacity)
        self._batches: list[tuple[Tensor, ...]] = []
        self._rows = 0
        self._skipped = 0

    def __len__(self) -> int:
        """The number of batches held."""
        return len(self._batches)

    def add(self, *tensors: Tensor) -> None:
        """Stash one batch (detached), then drop the oldest ones the newer ones would overwrite."""
        self._batches.append(tuple(t.detach() for t in tensors))
        self._rows += tensors[0].shape[0]
        while len(self._batches) > 1 and self._rows - self._batches[0][0].shape[0] >= self.capacity:
            dropped = self._batches.pop(0)[0].shape[0]
            self._rows -= dropped
            self._skipped += min(dropped, self.capacity)

    def take(self) -> tuple[int, list[tuple[Tensor, ...]]]:
        """``(pointer advance for dropped rows, batches to enqueue in order)``; empties the stash."""
        out = (self._skipped, self._batches)
        self._batches, self._rows, self._skipped = [], 0, 0
        return out
