"""Re-ranking retrieval: a pair scorer (an ITM head) re-orders the dual encoder's top-k candidates.

Image->text queries rank every caption, text->image queries every image (``owner[t]`` is the image of
caption ``t``, as in ``mie.evaluation.retrieval``). The dual encoder's similarities pick each query's
top ``k``; ``score_pairs(image_index, text_index) -> scores`` (e.g. ITM logits) re-orders them. R@K for
``K <= k`` is read from the re-ordered list (candidates past ``k`` cannot move up)::

    metrics = rerank_retrieval(image_embeds @ text_embeds.T, owner, k=10, score_pairs=itm_scores)
    metrics["mean_R@1"], metrics["i2t_R@1"], metrics["t2i_R@1"]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

PairScorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def rerank_topk(sim: torch.Tensor, k: int, score_pairs: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
                ) -> torch.Tensor:
    """Each row's top-``k`` columns of ``sim [Q, C]``, re-ordered by ``score_pairs(rows, cols)`` (best first).

    ``score_pairs`` gets flat ``[Q * k]`` row and column indices and returns ``[Q * k]`` scores;
    ties keep the similarity order. Returns ``[Q, k]`` column indices.
    """
    k = min(k, sim.shape[1])
    top = sim.topk(k, dim=1).indices  # (Q, k), best similarity first
    rows = torch.arange(sim.shape[0]).repeat_interleave(k)
    scores = score_pairs(rows, top.flatten()).float().cpu().view(-1, k)
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    return top.gather(1, order)


def _recalls(hits: torch.Tensor, ks: Sequence[int], prefix: str) -> dict[str, float]:
    """``hits [Q, k]`` bool (is the candidate a right answer) -> R@K for each ``K <= k``."""
    return {f"{prefix}_R@{K}": float(hits[:, :K].any(dim=1).float().mean()) for K in ks if K <= hits.shape[1]}


def rerank_retrieval(sim: torch.Tensor, owner: torch.Tensor, k: int, score_pairs: PairScorer,
                     ks: Sequence[int] = (1, 5, 10), batch_size: int = 256) -> dict[str, float]:
    """R@K both ways after re-ranking the top ``k`` of ``sim [N images, T texts]``; and ``mean_R@1``.

    ``score_pairs(image_index, text_index)`` scores pairs (called on chunks of ``batch_size`` queries).
    """
    sim, owner = sim.float().cpu(), owner.long().cpu()

    def run(matrix: torch.Tensor, scorer: PairScorer) -> torch.Tensor:
        return torch.cat([rerank_topk(matrix[i:i + batch_size], k,
                                      lambda r, c, start=i: scorer(r + start, c))
                          for i in range(0, matrix.shape[0], batch_size)])

    i2t = run(sim, score_pairs)  # (N, k) text indices
    t2i = run(sim.T, lambda texts, images: score_pairs(images, texts))  # (T, k) image indices
    out = {**_recalls(owner[i2t] == torch.arange(sim.shape[0])[:, None], ks, "i2t"),
           **_recalls(t2i == owner[:, None], ks, "t2i")}
    out["mean_R@1"] = (out["i2t_R@1"] + out["t2i_R@1"]) / 2
    return out
