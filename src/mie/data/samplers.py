"""Batch samplers: one image per batch for caption-expanded data, and length buckets for translation.

Both are seeded and distributed-aware: every rank builds the same epoch plan from ``seed + epoch``
(the trainer calls ``set_epoch``, which is what makes exact resumption possible) and takes its own
part of it, so ranks never overlap and all run the same number of steps.

A contrastive batch with two captions of one image has two "positives" for each; unless the loss
is told (``match_ids``), one is scored as a negative. ``PerCaptionDataset`` expands a dataset to one
entry per caption and ``UniqueImageBatchSampler`` keeps those entries of one image apart::

    expanded = PerCaptionDataset(FlickrDataset("data/flickr30k", "train", transform=t))
    sampler = UniqueImageBatchSampler(expanded.image_keys, batch_size=256, seed=0)
    loader = DataLoader(expanded, batch_sampler=sampler, collate_fn=collate)
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping, Sequence

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, Sampler

from mie.data.image_text import ImageTextSample


def _rank_and_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """The given rank / world size, else torch.distributed's, else (0, 1)."""
    initialised = dist.is_available() and dist.is_initialized()
    world = world_size if world_size is not None else (dist.get_world_size() if initialised else 1)
    rank = rank if rank is not None else (dist.get_rank() if initialised else 0)
    if not 0 <= rank < world:
        raise ValueError(f"rank must be in [0, world_size); got rank {rank}, world_size {world}")
    return rank, world


def _permutation(n: int, seed: int) -> list[int]:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()


class PerCaptionDataset(Dataset):
    """One entry per (image, caption) of an image–text dataset: each sample carries that one caption.

    ``image_keys[i]`` names the image of entry ``i`` (for ``UniqueImageBatchSampler``); the image is
    decoded (and cached, if the inner dataset caches) by the inner dataset.
    """

    def __init__(self, dataset: Dataset) -> None:
        records = getattr(dataset, "records", None)
        if records is None:
            raise TypeError(f"{type(dataset).__name__} has no 'records'; expected an ImageTextDataset")
        self.dataset = dataset
        self.entries = [(i, k) for i, record in enumerate(records) for k in range(len(record.captions))]
        self.image_keys = [records[i].image_id for i, _ in self.entries]

    @property
    def skipped(self) -> Mapping[str, int]:
        """What the inner dataset skipped."""
        return getattr(self.dataset, "skipped", {})

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> ImageTextSample | None:
        image_index, caption_index = self.entries[index]
        sample = self.dataset[image_index]
        if sample is None:
            return None
        return ImageTextSample(sample.image, [sample.captions[caption_index]], sample.image_id, sample.attributes)


class UniqueImageBatchSampler(Sampler[list[int]]):
    """Shuffled batches in which no image appears twice (entries are grouped by ``image_keys``).

    The epoch is planned as global batches of ``batch_size * world_size`` distinct images, and rank
    ``r`` takes slice ``r`` of each, so the batch gathered across ranks (as a distributed contrastive
    loss sees it) has no duplicate either. An entry that would repeat an image waits for a later
    batch. ``drop_last`` drops a final short global batch (the usual choice for contrastive training).
    """

    def __init__(
        self,
        image_keys: Sequence[Hashable],
        batch_size: int,
        seed: int = 0,
        drop_last: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.image_keys = list(image_keys)
        self.batch_size = batch_size
        self.seed = seed
        self.drop_last = drop_last
        self.rank, self.world_size = _rank_and_world(rank, world_size)
        distinct = len(set(self.image_keys))
        if distinct < batch_size * self.world_size:
            raise ValueError(f"{distinct} distinct images cannot fill a global batch of {batch_size} x "
                             f"{self.world_size} ranks without repeats; lower batch_size")
        self.epoch = 0
        self._plan: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Use the shuffle of ``epoch`` (``seed + epoch``) from the next iteration on."""
        self.epoch = epoch

    def global_batches(self) -> list[list[int]]:
        """This epoch's global batches (identical on every rank), built greedily from a shuffle."""
        if self._plan is not None and self._plan[0] == self.epoch:
            return self._plan[1]
        size = self.batch_size * self.world_size
        keys = self.image_keys

        def fill(batch: list[int], seen: set[Hashable], candidates: list[int]) -> list[int]:
            """Add candidates of new images to ``batch`` up to ``size``; return the ones left out."""
            rest = []
            for index in candidates:
                if len(batch) < size and keys[index] not in seen:
                    batch.append(index)
                    seen.add(keys[index])
                else:
                    rest.append(index)
            return rest

        batches: list[list[int]] = []
        batch: list[int] = []
        seen: set[Hashable] = set()
        waiting: list[int] = []  # entries whose image was already in the batch being filled
        for index in _permutation(len(keys), self.seed + self.epoch):
            waiting += fill(batch, seen, [index])
            while len(batch) == size:
                # Entries that waited get the first places of the next batch, so none waits long.
                batches.append(batch)
                batch, seen = [], set()
                waiting = fill(batch, seen, waiting)
        pending = batch + waiting
        while pending:
            batch, seen = [], set()
            rest = fill(batch, seen, pending)
            if len(batch) < size and self.drop_last:
                break  # rest only repeats images of this short batch: it cannot fill one either
            batches.append(batch)
            pending = rest
        self._plan = (self.epoch, batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.global_batches():
            local = batch[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]
            if local:
                yield local

    def __len__(self) -> int:
        return sum(1 for b in self.global_batches() if b[self.rank * self.batch_size:(self.rank + 1) * self.batch_size])


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of similar-length examples (little padding), in a seeded random order.

    The shuffled indices are cut into pools of ``bucket_size_multiplier * batch_size``; each pool is
    sorted by ``lengths`` and cut into batches, and the batches are shuffled. Rank ``r`` takes
    batches ``r, r + world_size, ...`` up to the same count on every rank.

    With ``max_tokens`` a batch also stops before its padded size, ``len(batch) * max(lengths)``,
    would exceed ``max_tokens`` (an example longer than that alone makes a batch of one), so short
    examples come in large batches and long ones in small: every step costs about the same::

        BucketBatchSampler(data.lengths, batch_size=512, max_tokens=2048, seed=0)
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        seed: int = 0,
        drop_last: bool = False,
        bucket_size_multiplier: int = 100,
        rank: int | None = None,
        world_size: int | None = None,
        max_tokens: int = 0,
    ) -> None:
        if batch_size < 1 or bucket_size_multiplier < 1:
            raise ValueError(f"batch_size and bucket_size_multiplier must be >= 1, got {batch_size} and "
                             f"{bucket_size_multiplier}")
        if max_tokens < 0 or (max_tokens and drop_last):
            raise ValueError(f"max_tokens must be >= 0 (0 = no token budget) and cannot go with drop_last; got "
                             f"{max_tokens}, drop_last={drop_last}")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.seed = seed
        self.drop_last = drop_last
        self.pool = bucket_size_multiplier * batch_size
        self.rank, self.world_size = _rank_and_world(rank, world_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the shuffle of ``epoch`` (``seed + epoch``) from the next iteration on."""
        self.epoch = epoch

    def global_batches(self) -> list[list[int]]:
        """All batches of this epoch, in order, before the split across ranks."""
        order = _permutation(len(self.lengths), self.seed + self.epoch)
        batches: list[list[int]] = []
        for start in range(0, len(order), self.pool):
            pool = sorted(order[start:start + self.pool], key=lambda i: self.lengths[i])
            batches += self._cut(pool)
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        return [batches[i] for i in _permutation(len(batches), self.seed + self.epoch + 1)]

    def _cut(self, pool: list[int]) -> list[list[int]]:
        """Consecutive batches of a length-sorted pool: ``batch_size`` examples, or fewer where
        ``max_tokens`` says (the pool ascends, so the newest example is the batch's longest)."""
        if not self.max_tokens:
            return [pool[i:i + self.batch_size] for i in range(0, len(pool), self.batch_size)]
        batches: list[list[int]] = []
        batch: list[int] = []
        for index in pool:
            if batch and (len(batch) == self.batch_size or (len(batch) + 1) * self.lengths[index] > self.max_tokens):
                batches.append(batch)
                batch = []
            batch.append(index)
        return batches + [batch] if batch else batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.global_batches()
        per_rank = len(batches) // self.world_size if self.world_size > 1 else len(batches)
        yield from batches[self.rank::self.world_size][:per_rank]

    def __len__(self) -> int:
        batches = len(self.global_batches())
        return batches // self.world_size if self.world_size > 1 else batches
