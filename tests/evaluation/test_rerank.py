"""Re-ranking: a perfect matching head lifts R@1 to 1 when the answer is in the top k; hard negatives."""

from __future__ import annotations

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
