"""All-gather with gradients for distributed contrastive losses (the open_clip "local loss" layout).

Each rank compares its local features against the features gathered from all ranks and offsets its
labels by ``rank * B``, so memory grows linearly with world size instead of quadratically. The
backward all-reduces (sums) the gradient of the gathered tensor and keeps this rank's slice: each rank's
local gradient is then the gradient of the *sum* of all ranks' losses, which DDP's gradient averaging
turns into the gradient of the mean loss, i.e. the single-process loss on the concatenated batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from mie.losses.base import diagnostics_enabled


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group, ``(0, 1)`` when not running distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _check_equal_batches(x: Tensor, world_size: int) -> None:
    sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(world_size)]
    dist.all_gather(sizes, torch.tensor([x.shape[0]], dtype=torch.long, device=x.device))
    got = [int(s) for s in sizes]
    if len(set(got)) != 1:
        raise ValueError(
            f"gather_distributed needs the same batch size on every rank, got {got}; use drop_last=True"
        )


class _GatherWithGrad(torch.autograd.Function):
    """all_gather forward; backward sums the incoming gradients over ranks and returns the local slice."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        """Autograd forward (see the class docstring)."""
        rank, world_size = world()
        ctx.rank, ctx.batch = rank, x.shape[0]
        parts = [torch.empty_like(x) for _ in range(world_size)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        """Autograd backward (see the class docstring)."""
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.batch : (ctx.rank + 1) * ctx.batch]


def gather_with_grad(x: Tensor) -> tuple[Tensor, int]:
    """Concatenate ``x`` from all ranks (differentiable); return it and this rank's row offset.

    Without an initialised process group this is the identity with offset 0. Every rank must pass
    the same batch size (``drop_last=True``); that is checked, with a collective and a read-back, only
    while diagnostics are on (every rank is on the same step, so all of them check or none does).
    """
    rank, world_size = world()
    if world_size == 1:
        return x, 0
    if diagnostics_enabled():
        _check_equal_batches(x, world_size)
    return _GatherWithGrad.apply(x), rank * x.shape[0]


def gather_no_grad(x: Tensor) -> Tensor:
    """Concatenate a tensor that needs no gradient (ids, labels) from all ranks."""
    _, world_size = world()
    if world_size == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world_size)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)
