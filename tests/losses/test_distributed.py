"""2-process gloo run: gathered local losses and gradients equal the single-process loss on the full batch."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mie.losses import build_loss
from mie.losses.base import diagnostics
from mie.losses.distributed import gather_no_grad, gather_with_grad, world

WORLD = 2
BATCH = 3  # per rank
DIM = 5
# name, kwargs, takes match_ids
CASES = [
    ("clip", {"temperature": 0.1}, False),
    ("clip", {"temperature": 0.1, "chunk_size": 2, "label_smoothing": 0.1}, True),
    ("contrastive", {"temperature": 0.2}, True),
    ("siglip", {}, False),
    ("siglip", {"chunk_size": 2}, True),
    ("ntxent", {"temperature": 0.5}, False),
    ("decoupled", {"temperature": 0.5}, False),
    ("supcon", {"temperature": 0.5}, True),
]


def _full_batch():
    g = torch.Generator().manual_seed(123)
    a = torch.randn(WORLD * BATCH, DIM, generator=g, dtype=torch.float64)
    b = torch.randn(WORLD * BATCH, DIM, generator=g, dtype=torch.float64)
    ids = torch.tensor([0, 1, 1, 2, 0, 3])
    return a, b, ids


def _call(loss_fn, name, a, b, ids, use_ids):
    if name == "supcon":
        return loss_fn(a, b, labels=ids)
    return loss_fn(a, b, match_ids=ids) if use_ids else loss_fn(a, b)


def _worker(rank, port, out_dir):
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        a, b, ids = _full_batch()
        rows = slice(rank * BATCH, (rank + 1) * BATCH)
        result = {}
        for i, (name, kwargs, use_ids) in enumerate(CASES):
            for suffix, enabled in (("", True), ("_off", False)):  # the trainer's unlogged steps: off
                loss_fn = build_loss(name, gather_distributed=True, **kwargs).double()
                la, lb = a[rows].clone().requires_grad_(), b[rows].clone().requires_grad_()
                with diagnostics(enabled):
                    loss = _call(loss_fn, name, la, lb, ids[rows], use_ids)
                    loss.backward()
                result[f"{i}_loss{suffix}"] = loss.detach()
                result[f"{i}_ga{suffix}"], result[f"{i}_gb{suffix}"] = la.grad, lb.grad
        # Different batch sizes on the ranks: with diagnostics on every rank gets a clear error.
        try:
            gather_with_grad(a[: BATCH - rank])
            result["unequal_error"] = torch.tensor(False)
        except ValueError as exc:
            result["unequal_error"] = torch.tensor("drop_last=True" in str(exc))
        result["world"] = torch.tensor(world())
        result["gathered_ids"] = gather_no_grad(ids[rows])
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_gather_is_identity_without_process_group():
    x = torch.randn(3, 2)
    gathered, offset = gather_with_grad(x)
    assert gathered is x and offset == 0 and gather_no_grad(x) is x and world() == (0, 1)


def test_two_process_losses_and_gradients_match_single_process(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    assert results[1]["world"].tolist() == [1, 2]
    a, b, ids = _full_batch()
    assert torch.equal(results[0]["gathered_ids"], ids)
    for i, (name, kwargs, use_ids) in enumerate(CASES):
        full_a, full_b = a.clone().requires_grad_(), b.clone().requires_grad_()
        loss = _call(build_loss(name, **kwargs).double(), name, full_a, full_b, ids, use_ids)
        loss.backward()
        # The mean of the per-rank losses is the full-batch loss.
        mean_loss = sum(r[f"{i}_loss"] for r in results) / WORLD
        assert torch.allclose(mean_loss, loss.detach(), atol=1e-10), name
        # Each rank's gradient is that of the sum of all ranks' losses; DDP divides by the world size.
        grad_a = torch.cat([r[f"{i}_ga"] for r in results]) / WORLD
        grad_b = torch.cat([r[f"{i}_gb"] for r in results]) / WORLD
        assert torch.allclose(grad_a, full_a.grad, atol=1e-10), name
        assert torch.allclose(grad_b, full_b.grad, atol=1e-10), name
        for r in results:  # diagnostics off: the same loss and gradients
            for key in ("loss", "ga", "gb"):
                torch.testing.assert_close(r[f"{i}_{key}_off"], r[f"{i}_{key}"], rtol=0, atol=1e-12)
    assert all(bool(r["unequal_error"]) for r in results)
