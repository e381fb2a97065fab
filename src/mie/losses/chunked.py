"""Pairwise reductions over ``scale * q @ k.T (+ bias)`` that never hold the full B x N logits matrix.

The forward walks over column chunks of ``k`` and keeps only O(B) state; the backward recomputes each
chunk's logits from the saved inputs (activation recomputation), so peak memory is O(B * chunk + N * D)
instead of O(B * N). Used by the chunked modes of ``clip`` (row log-sum-exp) and ``siglip``
(sum of softplus over all pairs). Both match the dense computation to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(s + size, n)) for s in range(0, n, size)]


class _ChunkedLogSumExp(torch.autograd.Function):
    """``lse[i] = logsumexp_j(scale * q[i] . k[j])`` computed chunk by chunk over the rows of ``k``."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, scale: Tensor, chunk_size: int) -> Tensor:  # type: ignore[override]
        """Autograd forward (see the class docstring)."""
        lse = torch.full((q.shape[0],), float("-inf"), dtype=q.dtype, device=q.device)
        for s, e in _chunks(k.shape[0], chunk_size):
            lse = torch.logaddexp(lse, torch.logsumexp(scale * (q @ k[s:e].T), dim=1))
        ctx.save_for_backward(q, k, scale, lse)
        ctx.chunk_size = chunk_size
        return lse

    @staticmethod
    def backward(ctx, grad_lse: Tensor):  # type: ignore[override]
        """Autograd backward (see the class docstring)."""
        q, k, scale, lse = ctx.saved_tensors
        need_q, need_k, need_s, _ = ctx.needs_input_grad
        gq = torch.zeros_like(q) if need_q else None
        gk = torch.empty_like(k) if need_k else None
        gs = torch.zeros_like(scale) if need_s else None
        for s, e in _chunks(k.shape[0], ctx.chunk_size):
            kc = k[s:e]
            dots = q @ kc.T
            # d lse_i / d logit_ij = softmax_ij; weight by the incoming gradient of each row.
            p = torch.exp(scale * dots - lse[:, None]) * grad_lse[:, None]
            if need_q:
                gq += scale * (p @ kc)
            if need_k:
                gk[s:e] = scale * (p.T @ q)
            if need_s:
                gs += (p * dots).sum()
        return gq, gk, gs, None


class _ChunkedSoftplusSum(torch.autograd.Function):
    """``sum_ij softplus(scale * q[i] . k[j] + bias)`` computed chunk by chunk over the rows of ``k``."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, scale: Tensor, bias: Tensor, chunk_size: int) -> Tensor:  # type: ignore[override]
        """Autograd forward (see the class docstring)."""
        total = q.new_zeros(())
        for s, e in _chunks(k.shape[0], chunk_size):
            total = total + F.softplus(scale * (q @ k[s:e].T) + bias).sum()
        ctx.save_for_backward(q, k, scale, bias)
        ctx.chunk_size = chunk_size
        return total

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        """Autograd backward (see the class docstring)."""
        q, k, scale, bias = ctx.saved_tensors
        need_q, need_k, need_s, need_b, _ = ctx.needs_input_grad
        gq = torch.zeros_like(q) if need_q else None
        gk = torch.empty_like(k) if need_k else None
        gs = torch.zeros_like(scale) if need_s else None
        gb = torch.zeros_like(bias) if need_b else None
        for s, e in _chunks(k.shape[0], ctx.chunk_size):
            kc = k[s:e]
            dots = q @ kc.T
            sig = torch.sigmoid(scale * dots + bias) * grad  # softplus' = sigmoid
            if need_q:
                gq += scale * (sig @ kc)
            if need_k:
                gk[s:e] = scale * (sig.T @ q)
            if need_s:
                gs += (sig * dots).sum()
            if need_b:
                gb += sig.sum()
        return gq, gk, gs, gb, None


def _check_chunk(chunk_size: int) -> int:
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
    return int(chunk_size)


def chunked_logsumexp(q: Tensor, k: Tensor, scale: Tensor, chunk_size: int) -> Tensor:
    """Row-wise ``logsumexp(scale * q @ k.T, dim=1)`` with O(B * chunk_size) working memory."""
    return _ChunkedLogSumExp.apply(q, k, scale, _check_chunk(chunk_size))


def chunked_softplus_sum(q: Tensor, k: Tensor, scale: Tensor, bias: Tensor, chunk_size: int) -> Tensor:
    """``softplus(scale * q @ k.T + bias).sum()`` with O(B * chunk_size) working memory."""
    return _ChunkedSoftplusSum.apply(q, k, scale, bias, _check_chunk(chunk_size))
