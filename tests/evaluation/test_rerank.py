"""Re-ranking: a perfect matching head lifts R@1 to 1 when the answer is in the top k; hard negatives."""

from __future__ import annotations

import pytest
import torch

from mie.evaluation.rerank import rerank_retrieval, rerank_topk
from mie.training.tasks.itm import pick_negatives


def test_a_perfect_itm_head_gives_r_at_1_of_one():
    torch.manual_seed(0)
    images, per_image = 6, 2
    owner = torch.arange(images).repeat_interleave(per_image)  # caption t belongs to image owner[t]
    sim = 0.3 * torch.rand(images, images * per_image)
    sim[owner, torch.arange(len(owner))] = 0.5  # right pairs score 0.5: in every query's top 3 ...
    for i in range(images):
        sim[i, (i * per_image + 2) % len(owner)] = 2.0  # ... but a wrong caption comes first
    plain = rerank_retrieval(sim, owner, k=3, score_pairs=lambda img, txt: torch.zeros(len(img)))
    assert plain["i2t_R@1"] == 0.0  # equal scores keep the similarity order, whose first is wrong
    perfect = lambda img, txt: (owner[txt] == img).float()  # noqa: E731
    metrics = rerank_retrieval(sim, owner, k=3, score_pairs=perfect, batch_size=4)
    assert metrics["i2t_R@1"] == 1.0 and metrics["t2i_R@1"] == 1.0 and metrics["mean_R@1"] == 1.0


def test_rerank_topk_reorders_only_the_top_k():
    sim = torch.tensor([[0.9, 0.8, 0.7, 0.1]])
    order = rerank_topk(sim, 3, lambda rows, cols: cols.float())  # prefer the highest column index
    assert order.tolist() == [[2, 1, 0]]


def test_hard_negatives_skip_positives():
    sim = torch.tensor([[0.9, 0.8, 0.1], [0.7, 0.9, 0.8], [0.0, 0.5, 0.4]])
    positive = torch.eye(3, dtype=torch.bool)
    assert pick_negatives(sim, positive, "hardest").tolist() == [1, 2, 1]
    sampled = pick_negatives(sim, positive, "softmax", temperature=0.05, generator=torch.Generator().manual_seed(0))
    assert not positive[torch.arange(3), sampled].any()


def test_negative_curriculum_anneals_geometrically_over_the_stage():
    from types import SimpleNamespace

    from mie.training.tasks.itm import NegativeCurriculum

    task = SimpleNamespace(temperature=0.05)
    curriculum = NegativeCurriculum(task, start=2.0, end=0.05)
    assert task.temperature == 2.0  # the first step samples near-uniform negatives
    seen = []
    for step in range(1, 11):  # a stage of 10 steps
        curriculum.on_step_end(SimpleNamespace(stage_step=step, total_steps=10), step, {})
        seen.append(task.temperature)
    assert seen[-1] == pytest.approx(0.05)
    assert seen[4] == pytest.approx((2.0 * 0.05) ** 0.5)  # halfway: the geometric mean
    assert all(a > b for a, b in zip(seen, seen[1:]))
    # a time budget that shrinks the schedule ends the anneal early, never past the end temperature
    curriculum.on_step_end(SimpleNamespace(stage_step=12, total_steps=10), 12, {})
    assert task.temperature == pytest.approx(0.05)
    with pytest.raises(ValueError, match="temperatures must be > 0"):
        NegativeCurriculum(task, start=0.0, end=0.05)
