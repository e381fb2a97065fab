"""The InfoNCE cross-entropy shared by ``clip``, ``contrastive`` and the queue-based losses.

For query ``q[i]`` against keys ``k`` with logits ``z_ij = scale * q_i . k_j`` the per-row loss is the
cross-entropy with soft targets ``t_ij``:

    loss_i = logsumexp_j z_ij - sum_j t_ij z_ij

Without ids the target is the key at ``offset + i`` (the diagonal, shifted by ``rank * B`` in the
distributed local-loss layout). With ids the target mass is spread uniformly over every key sharing
the query's id. Label smoothing mixes in ``eps / N`` everywhere (the ``F.cross_entropy`` convention).
The target term is linear in the keys, so it is computed from per-id key means in O(B * D); only the
log-sum-exp touches all pairs, and it has a chunked O(B * chunk) variant.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mie.losses.base import diagnostics_enabled
from mie.losses.chunked import chunked_logsumexp


def positive_key_sums(q_ids: Tensor, k: Tensor, k_ids: Tensor) -> tuple[Tensor, Tensor]:
    """For each query, the sum of the keys sharing its id (``[B, D]``) and how many there are (``[B]``).

    Grouping by id keeps this O((B + N) * D): no B x N mask is built. The groups come from sorting the
    key ids, so no output size depends on the data (no host synchronisation): key ``j`` is summed
    into the slot of its id's first position in the sorted ids, and a query finds its id's slot and
    count with a binary search. With diagnostics on, a query id with no key at all (it would have no
    positive) raises ``ValueError``; with them off its count is 0 and its mean key NaN.
    """
    sorted_ids = torch.sort(k_ids).values
    k_slot = torch.searchsorted(sorted_ids, k_ids.contiguous())
    sums = k.new_zeros(k.shape).index_add(0, k_slot, k)
    first = torch.searchsorted(sorted_ids, q_ids.contiguous())
    counts = (torch.searchsorted(sorted_ids, q_ids.contiguous(), right=True) - first).to(k.dtype)
    if diagnostics_enabled() and bool((counts == 0).any()):
        missing = sorted(set(q_ids[counts == 0].tolist()))
        raise ValueError(
            f"match_ids {missing} have no positive among the keys; every id needs a matching pair"
        )
    # A query id absent from the keys points at another id's slot (or past the end): no keys.
    found = counts > 0
    return sums[first.clamp(max=k.shape[0] - 1)] * found[:, None].to(k.dtype), counts


def mean_positive_keys(q_ids: Tensor, k: Tensor, k_ids: Tensor) -> Tensor:
    """For each query id, the mean of the keys with the same id (shape ``[B, D]``)."""
    sums, counts = positive_key_sums(q_ids, k, k_ids)
    return sums / counts[:, None]


def info_nce(
    q: Tensor,
    k: Tensor,
    scale: Tensor,
    *,
    offset: int = 0,
    q_ids: Tensor | None = None,
    k_ids: Tensor | None = None,
    label_smoothing: float = 0.0,
    chunk_size: int | None = None,
) -> Tensor:
    """Per-row InfoNCE loss (shape ``[B]``) of queries ``q`` ``[B, D]`` against keys ``k`` ``[N, D]``."""
    if chunk_size:
        lse = chunked_logsumexp(q, k, scale, chunk_size)
    else:
        lse = torch.logsumexp(scale * (q @ k.T), dim=1)
    if q_ids is not None and k_ids is not None:
        target_key = mean_positive_keys(q_ids, k, k_ids)
    else:
        target_key = k[offset : offset + q.shape[0]]
    target = (1.0 - label_smoothing) * (q * target_key).sum(-1)
    if label_smoothing:
        target = target + label_smoothing * (q @ k.mean(0))
    return lse - scale * target
