"""Batch samplers: one image per batch for caption-expanded data, groups of look-alikes as hard negatives,
and length buckets for translation.

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


class GroupedBatchSampler(Sampler[list[int]]):
    """Shuffled batches made of runs of ``group_size`` entries that share a key: hard negatives by design.

    Contrastive learning only learns what tells a batch's pairs apart. Grouping entries whose images
    look alike in one respect (``group_keys``: the shapes data's colours, say) makes that respect useless
    inside a group, so the loss must use the rest (the shapes). Each epoch, every key's entries are
    shuffled and cut into runs of ``group_size`` (a key's last run may be shorter), the runs are shuffled
    and laid end to end, and the sequence is cut into batches of ``batch_size``; every entry comes once
    an epoch. ``mixed`` (a fraction) of each batch is left ungrouped, drawn at random, so that the groups
    are also contrasted with the rest of the data. With several ranks the epoch is planned as global
    batches of ``batch_size * world_size`` and rank ``r`` takes slice ``r`` of each::

        keys = [tuple(sorted(o["color"] for o in r.attributes["objects"])) for r in dataset.records]
        loader = DataLoader(dataset, batch_sampler=GroupedBatchSampler(keys, 256, group_size=16, seed=0))
    """

    def __init__(
        self,
        group_keys: Sequence[Hashable],
        batch_size: int,
        group_size: int,
        seed: int = 0,
        mixed: float = 0.0,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        if batch_size < 1 or group_size < 1 or not 0.0 <= mixed <= 1.0:
            raise ValueError(f"batch_size and group_size must be >= 1 and mixed in [0, 1]; got {batch_size}, "
                             f"{group_size} and {mixed}")
        self.group_keys = list(group_keys)
        self.batch_size = batch_size
        self.group_size = group_size
        self.seed = seed
        self.mixed = mixed
        self.rank, self.world_size = _rank_and_world(rank, world_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the shuffle of ``epoch`` (``seed + epoch``) from the next iteration on."""
        self.epoch = epoch

    def global_batches(self) -> list[list[int]]:
        """This epoch's full global batches (identical on every rank); a short last one is dropped."""
        size = self.batch_size * self.world_size
        order = _permutation(len(self.group_keys), self.seed + self.epoch)
        free = round(self.mixed * size)
        grouped, loose = order[free * (len(order) // size):], order[:free * (len(order) // size)]
        by_key: dict[Hashable, list[int]] = {}
        for index in grouped:
            by_key.setdefault(self.group_keys[index], []).append(index)
        runs = [members[i:i + self.group_size] for members in by_key.values()
                for i in range(0, len(members), self.group_size)]
        sequence = [index for r in _permutation(len(runs), self.seed + self.epoch + 1) for index in runs[r]]
        batches = []
        for b in range(len(order) // size):
            body = sequence[b * (size - free):(b + 1) * (size - free)]
            batch = body + loose[b * free:(b + 1) * free]
            if len(batch) == size:
                batches.append(batch)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.global_batches():
            yield batch[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]

    def __len__(self) -> int:
        return len(self.global_batches())


class NeighbourBatchSampler(Sampler[list[int]]):
    """Batches made of runs of ``group_size`` nearest neighbours under an encoder's ``embeddings [N, D]``.

    Each epoch visits the entries in a seeded random order; an entry not yet placed starts a run with
    its ``group_size - 1`` most similar (cosine) entries not yet placed; runs are laid end to end and cut
    into batches of ``batch_size`` (a short last batch is dropped). A model trained on such batches
    (a re-ranker) sees, inside its batch, the candidates the encoder itself confuses: its top-k.
    Single process only::

        sampler = NeighbourBatchSampler(image_embeds, batch_size=128, group_size=16, seed=0)
    """

    def __init__(self, embeddings: torch.Tensor, batch_size: int, group_size: int, seed: int = 0) -> None:
        if batch_size < 1 or group_size < 1 or embeddings.dim() != 2:
            raise ValueError(f"need [N, D] embeddings, batch_size and group_size >= 1; got "
                             f"{tuple(embeddings.shape)}, {batch_size} and {group_size}")
        self.embeddings = torch.nn.functional.normalize(embeddings.detach().float().cpu(), dim=-1)
        self.batch_size, self.group_size, self.seed = batch_size, group_size, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch`` (``seed + epoch``) from the next iteration on."""
        self.epoch = epoch

    def global_batches(self) -> list[list[int]]:
        """This epoch's batches of neighbour runs."""
        n = self.embeddings.shape[0]
        placed = torch.zeros(n, dtype=torch.bool)
        sequence: list[int] = []
        for start in _permutation(n, self.seed + self.epoch):
            if placed[start]:
                continue
            sim = (self.embeddings @ self.embeddings[start]).masked_fill(placed, float("-inf"))
            take = min(self.group_size, int((~placed).sum()))
            run = sim.topk(take).indices  # the start itself is its own nearest (cosine 1)
            placed[run] = True
            placed[start] = True
            sequence += [start] + [int(i) for i in run if int(i) != start][:take - 1]
        return [sequence[i:i + self.batch_size] for i in range(0, n - self.batch_size + 1, self.batch_size)]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.global_batches()

    def __len__(self) -> int:
        return self.embeddings.shape[0] // self.batch_size


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
