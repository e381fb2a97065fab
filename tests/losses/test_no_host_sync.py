"""With diagnostics off (the trainer's unlogged steps) no loss reads a value back from the device: the
forward, the backward and ``after_optimizer_step`` run while every way of doing so raises.

On the CPU a host synchronisation cannot be observed directly, so the guard refuses what would be one
on a GPU: reading a value (``item``, ``float``, ``bool``, ...), ops whose output size depends on the
data (``nonzero``, ``unique``, ``bincount``, boolean-mask indexing) and tensors built from host data
(``torch.tensor``: a blocking copy to the device). On a CUDA machine a second test runs the same losses
under ``torch.cuda.set_sync_debug_mode("error")``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import torch

from mie.losses import LOSSES
from mie.losses.base import diagnostics, diagnostics_enabled

_METHODS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "cpu", "numpy", "nonzero",
            "unique", "unique_consecutive", "bincount", "masked_select", "argwhere", "new_tensor")
_FUNCTIONS = ("nonzero", "unique", "unique_consecutive", "bincount", "masked_select", "argwhere", "tensor")


def _refuse(what: str):
    def refuse(*args, **kwargs):
        raise AssertionError(f"host synchronisation: {what}")

    return refuse


def _has_mask(index: object) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(p, torch.Tensor) and p.dtype in (torch.bool, torch.uint8) for p in parts)


@contextlib.contextmanager
def host_syncs_forbidden() -> Iterator[None]:
    """Make every host read-back, data-dependent shape and host-to-device copy raise."""
    saved_methods = {n: getattr(torch.Tensor, n) for n in _METHODS}
    saved_functions = {n: getattr(torch, n) for n in _FUNCTIONS}
    saved_as_tensor = torch.as_tensor
    get, put = torch.Tensor.__getitem__, torch.Tensor.__setitem__

    def getitem(self, index):
        if _has_mask(index):
            raise AssertionError("host synchronisation: boolean-mask indexing")
        return get(self, index)

    def setitem(self, index, value):
        if _has_mask(index):
            raise AssertionError("host synchronisation: boolean-mask assignment")
        return put(self, index, value)

    def as_tensor(data, *args, **kwargs):
        if not isinstance(data, torch.Tensor):
            raise AssertionError("host synchronisation: torch.as_tensor of host data")
        return saved_as_tensor(data, *args, **kwargs)

    for n in _METHODS:
        setattr(torch.Tensor, n, _refuse(f"Tensor.{n}"))
    for n in _FUNCTIONS:
        setattr(torch, n, _refuse(f"torch.{n}"))
    torch.as_tensor = as_tensor
    torch.Tensor.__getitem__, torch.Tensor.__setitem__ = getitem, setitem
    try:
        yield
    finally:
        for n, fn in saved_methods.items():
            setattr(torch.Tensor, n, fn)
        for n, fn in saved_functions.items():
            setattr(torch, n, fn)
        torch.as_tensor = saved_as_tensor
        torch.Tensor.__getitem__, torch.Tensor.__setitem__ = get, put


# Every registered loss with its defaults, plus the variants that take other code paths.
VARIANTS = [(name, {}) for name in sorted(LOSSES)] + [
    ("clip", {"chunk_size": 4, "label_smoothing": 0.1}),
    ("clip", {"learnable_temperature": True}),
    ("siglip", {"chunk_size": 4}),
    ("contrastive", {"symmetric": False}),
    ("decoupled", {"weighting": "vmf"}),
    ("hard_negative", {"mode": "semi_hard"}),
    ("decorrelation", {"mode": "correlation"}),
    ("simple_contrastive", {"reduction": "sum"}),
    ("hybrid_vicreg", {"warmup_steps": 0, "transition_steps": 4}),
    ("cross_entropy", {"label_smoothing": 0.1, "ignore_index": 0}),
    ("multimodal_mixed", {"ntxent_weight": 0.0}),
]


def run_step(loss: torch.nn.Module, ctx: dict) -> torch.Tensor:
    """Two accumulated micro-batches (forward + backward) and one optimizer step's state update."""
    total = None
    for _ in range(2):
        value = loss.forward_context(ctx)
        value.sum().backward()
        total = value.detach() if total is None else total + value.detach()
    loss.after_optimizer_step()
    return total


@pytest.mark.parametrize(("name", "kwargs"), VARIANTS, ids=[f"{n}{k or ''}" for n, k in VARIANTS])
def test_no_host_sync(name, kwargs, make_loss, loss_context):
    loss = make_loss(name, **kwargs).train()
    ctx = loss_context()
    with diagnostics(False), host_syncs_forbidden():
        total = run_step(loss, ctx)
        loss.eval()
        with torch.no_grad():
            loss.forward_context(ctx)  # validation
        loss.after_optimizer_step()
    assert loss.last_metrics == {}
    assert torch.isfinite(total).all()
    leaves = [t for t in ctx.values() if t.requires_grad and t.is_leaf]
    assert any(t.grad is not None and t.grad.abs().sum() > 0 for t in leaves)  # the backward ran
    loss.train()
    with diagnostics(True):
        loss.forward_context(loss_context())
    assert "loss" in loss.last_metrics  # on again: the usual metrics


@pytest.mark.parametrize("probe", [
    lambda: float(torch.tensor(1.0).exp()),
    lambda: torch.ones(2).sum().item(),
    lambda: bool(torch.ones(1) > 0),
    lambda: torch.ones(3)[torch.ones(3) > 0],
    lambda: torch.unique(torch.ones(3)),
    lambda: torch.bincount(torch.zeros(3, dtype=torch.long)),
    lambda: torch.ones(3).new_tensor(2.0),
    lambda: torch.as_tensor(2.0),
    lambda: torch.ones(4)[: torch.ones((), dtype=torch.long)],
])
def test_the_guard_catches_each_kind_of_sync(probe):
    probe()  # fine outside the guard
    with host_syncs_forbidden(), pytest.raises(AssertionError, match="host synchronisation"):
        probe()


def test_the_guard_leaves_torch_as_it_was():
    before = (torch.Tensor.item, torch.unique, torch.as_tensor, torch.Tensor.__getitem__)
    with host_syncs_forbidden():
        pass
    assert (torch.Tensor.item, torch.unique, torch.as_tensor, torch.Tensor.__getitem__) == before


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(("name", "kwargs"), VARIANTS, ids=[f"{n}{k or ''}" for n, k in VARIANTS])
def test_no_cuda_sync(name, kwargs, make_loss, loss_context):
    device = torch.device("cuda")
    loss = make_loss(name, **kwargs).to(device).train()
    ctx = {k: v.detach().to(device).requires_grad_(v.requires_grad) for k, v in loss_context().items()}
    for module in loss.modules():  # the query encoder a momentum loss follows must be on the device too
        if callable(getattr(module, "attach", None)):
            module.attach(torch.nn.Linear(ctx["key_inputs"].shape[1], ctx["image_embeds"].shape[1]).to(device))
    run_step(loss, ctx)  # warm-up: lazy initialisation may synchronise once
    torch.cuda.synchronize()
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with diagnostics(False):
            assert not diagnostics_enabled()
            run_step(loss, ctx)
    finally:
        torch.cuda.set_sync_debug_mode(previous)
