"""Batch samplers: no repeated image per (global) batch, coverage, seeding, ranks; length buckets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mie.data.image_text import ImageTextDataset, ImageTextRecord
from mie.data.samplers import BucketBatchSampler, PerCaptionDataset, UniqueImageBatchSampler


def _keys(images: int, captions: int) -> list[str]:
    """Caption-expanded keys, grouped as a dataset lists them: img0 x captions, img1 x captions, ..."""
    return [f"img{i}" for i in range(images) for _ in range(captions)]


@pytest.mark.parametrize("drop_last", [True, False])
def test_unique_batches_cover_all_entries(drop_last: bool) -> None:
    keys = _keys(images=23, captions=5)
    sampler = UniqueImageBatchSampler(keys, batch_size=8, seed=0, drop_last=drop_last)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    for batch in batches:
        assert len({keys[i] for i in batch}) == len(batch)  # no image twice
    flat = [i for b in batches for i in b]
    assert len(flat) == len(set(flat))  # no entry twice
    if drop_last:
        assert all(len(b) == 8 for b in batches) and len(flat) >= len(keys) - 8 * 5
    else:
        assert sorted(flat) == list(range(len(keys)))


def test_unique_batches_seeded_by_epoch() -> None:
    keys = _keys(30, 2)
    a = UniqueImageBatchSampler(keys, batch_size=6, seed=7)
    b = UniqueImageBatchSampler(keys, batch_size=6, seed=7)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)
    assert list(UniqueImageBatchSampler(keys, batch_size=6, seed=8)) != first


def test_unique_batches_across_ranks_form_a_duplicate_free_global_batch() -> None:
    keys = _keys(40, 3)
    ranks = [list(UniqueImageBatchSampler(keys, batch_size=4, seed=1, rank=r, world_size=2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) > 0
    for local0, local1 in zip(*ranks):
        global_keys = [keys[i] for i in local0 + local1]
        assert len(global_keys) == 8 and len(set(global_keys)) == 8
    flat = [i for r in ranks for b in r for i in b]
    assert len(flat) == len(set(flat))


def test_unique_sampler_errors() -> None:
    with pytest.raises(ValueError, match="3 distinct images cannot fill a global batch of 2 x 2 ranks"):
        UniqueImageBatchSampler(_keys(3, 4), batch_size=2, world_size=2, rank=0)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        UniqueImageBatchSampler(_keys(3, 1), batch_size=0)
    with pytest.raises(ValueError, match="rank must be in"):
        UniqueImageBatchSampler(_keys(9, 1), batch_size=2, rank=3, world_size=2)


def test_per_caption_dataset_with_the_sampler(tmp_path: Path, images) -> None:
    records = [ImageTextRecord(images.write(tmp_path / f"{i}.png", i), [f"a{i}", f"b{i}"], f"id{i}") for i in range(3)]
    records.append(ImageTextRecord(tmp_path / "missing.png", ["gone"], "id3"))
    expanded = PerCaptionDataset(ImageTextDataset(records))
    assert len(expanded) == 7 and expanded.image_keys == ["id0", "id0", "id1", "id1", "id2", "id2", "id3"]
    sample = expanded[3]
    assert sample.captions == ["b1"] and sample.image_id == "id1"
    assert expanded[6] is None and expanded.skipped["missing"] == 1
    loader = torch.utils.data.DataLoader(
        expanded, batch_sampler=UniqueImageBatchSampler(expanded.image_keys, 3, drop_last=False),
        collate_fn=lambda batch: [s.image_id for s in batch if s is not None])
    for ids in loader:
        assert len(ids) == len(set(ids))
    with pytest.raises(TypeError, match="has no 'records'"):
        PerCaptionDataset(list(range(3)))


def test_bucket_sampler_groups_lengths_and_splits_ranks() -> None:
    lengths = torch.randint(1, 200, (500,), generator=torch.Generator().manual_seed(0)).tolist()
    sampler = BucketBatchSampler(lengths, batch_size=10, seed=3, bucket_size_multiplier=10)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(500)) and len(sampler) == 50
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    random_spread = sum(max(lengths[i:i + 10]) - min(lengths[i:i + 10]) for i in range(0, 500, 10)) / 50
    assert spread < random_spread / 4  # buckets pad far less than random batches
    again = BucketBatchSampler(lengths, batch_size=10, seed=3, bucket_size_multiplier=10)
    assert list(again) == batches
    again.set_epoch(2)
    assert list(again) != batches
    parts = [list(BucketBatchSampler(lengths[:95], 10, seed=1, rank=r, world_size=3)) for r in range(3)]
    assert [len(p) for p in parts] == [3, 3, 3]
    flat = [i for p in parts for b in p for i in b]
    assert len(flat) == len(set(flat))
    dropped = BucketBatchSampler(lengths[:95], 10, drop_last=True)
    assert len(dropped) == 9 and all(len(b) == 10 for b in dropped)
    with pytest.raises(ValueError, match="batch_size and bucket_size_multiplier must be >= 1"):
        BucketBatchSampler(lengths, 0)


def test_bucket_sampler_token_budget_keeps_every_example_once_within_the_budget() -> None:
    lengths = torch.randint(1, 60, (700,), generator=torch.Generator().manual_seed(1)).tolist()
    lengths[5] = 300  # longer than the budget alone: a batch of one
    sampler = BucketBatchSampler(lengths, batch_size=100, seed=2, bucket_size_multiplier=4, max_tokens=256)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(700)) and len(sampler) == len(batches)
    assert [5] in batches
    for batch in batches:
        assert len(batch) <= 100
        assert len(batch) * max(lengths[i] for i in batch) <= 256 or len(batch) == 1
    sizes = {max(lengths[i] for i in b): len(b) for b in batches}
    assert sizes[min(sizes)] > sizes[max(sizes)] == 1  # short examples share large batches, long ones small
    # Within a pool the batches are cut greedily: adding the next (longer) example would break the budget.
    padded = [len(b) * max(lengths[i] for i in b) for b in batches if len(b) < 100]
    assert sum(padded) / len(padded) > 256 * 0.7
    assert list(BucketBatchSampler(lengths, 100, seed=2, bucket_size_multiplier=4, max_tokens=256)) == batches
    capped = BucketBatchSampler([1] * 50, batch_size=8, max_tokens=1000)
    assert sorted(len(b) for b in capped) == [2] + [8] * 6  # batch_size still caps short examples
    with pytest.raises(ValueError, match="max_tokens must be >= 0"):
        BucketBatchSampler(lengths, 10, max_tokens=-1)
    with pytest.raises(ValueError, match="cannot go with drop_last"):
        BucketBatchSampler(lengths, 10, max_tokens=64, drop_last=True)


def test_grouped_batches_hold_runs_of_one_key() -> None:
    from mie.data.samplers import GroupedBatchSampler

    keys = [k for k in "abcdefgh" for _ in range(12)]  # 8 keys x 12 entries
    sampler = GroupedBatchSampler(keys, batch_size=16, group_size=4, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 96 // 16
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(96))  # every entry once (12 = 3 full runs per key, nothing left over)
    for batch in batches:
        runs = [batch[i:i + 4] for i in range(0, 16, 4)]
        assert all(len({keys[i] for i in run}) == 1 for run in runs)  # each run of 4 shares its key
    sampler.set_epoch(1)
    assert list(sampler) != batches  # a new shuffle per epoch, the same for the same epoch
    assert list(GroupedBatchSampler(keys, 16, 4, seed=3)) == batches


def test_grouped_batches_mixed_and_ranks() -> None:
    from mie.data.samplers import GroupedBatchSampler

    keys = [k for k in "abcd" for _ in range(16)]
    mixed = list(GroupedBatchSampler(keys, batch_size=8, group_size=4, seed=0, mixed=0.5))
    assert len(mixed) == 8 and all(len(b) == 8 for b in mixed)
    assert len({i for b in mixed for i in b}) == 64  # the loose half still comes once each
    ranks = [list(GroupedBatchSampler(keys, 4, 4, seed=0, rank=r, world_size=2)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 8
    assert not {i for b in ranks[0] for i in b} & {i for b in ranks[1] for i in b}
    with pytest.raises(ValueError, match="mixed in"):
        GroupedBatchSampler(keys, 4, 4, mixed=1.5)


def test_neighbour_batches_hold_runs_of_nearest_neighbours() -> None:
    from mie.data.samplers import NeighbourBatchSampler

    # 4 tight clusters of 6 points on 4 orthogonal axes: a run of 6 is exactly one cluster.
    centres = torch.eye(4)
    cluster = torch.arange(24) // 6
    embeds = centres[cluster] + 0.01 * torch.randn(24, 4, generator=torch.Generator().manual_seed(0))
    sampler = NeighbourBatchSampler(embeds, batch_size=12, group_size=6, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 2
    assert sorted(i for b in batches for i in b) == list(range(24))
    for batch in batches:
        runs = [batch[:6], batch[6:]]
        assert all(len({int(cluster[i]) for i in run}) == 1 for run in runs)
    assert list(NeighbourBatchSampler(embeds, 12, 6, seed=1)) == batches  # seeded: the same plan again
    with pytest.raises(ValueError, match="need \\[N, D\\] embeddings"):
        NeighbourBatchSampler(torch.zeros(5), 4, 2)
