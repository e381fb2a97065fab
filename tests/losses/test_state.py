"""Loss state (queues, pointers, step counters, momentum key encoders) changes only in
``after_optimizer_step``, once per optimizer step however many micro-batches it had, and lives in
``state_dict()`` so that a resumed run continues exactly."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from mie.losses import LOSSES, EMAMoCoLoss, MemoryQueueContrastiveLoss, MoCoLoss, ema_update
from mie.losses.base import LossBase, diagnostics

STATEFUL = {"moco": {"queue", "queue_ptr"}, "ema_moco": {"queue", "queue_ptr", "key_encoder.weight",
                                                         "key_encoder.bias"},
            "memory_queue": {"image_queue", "text_queue", "queue_ptr", "queue_count"},
            "dynamic_temperature": {"step"}, "hybrid_vicreg": {"step"}}


def snapshot(loss: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the state dict."""
    return {k: v.detach().clone() for k, v in loss.state_dict().items()}


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Equal keys and bit-identical tensors."""
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_forward_never_changes_state(name, make_loss, loss_context):
    loss = make_loss(name).train()
    before = snapshot(loss)
    loss.forward_context(loss_context()).backward()
    with diagnostics(False):
        loss.forward_context(loss_context(seed=1)).backward()
    assert_same_state(before, snapshot(loss))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_eval_calls_leave_the_next_step_unchanged(name, make_loss, loss_context):
    """Validation between two optimizer steps stashes nothing: the step does what it would without it."""
    a, b = make_loss(name), make_loss(name)
    b.load_state_dict(a.state_dict())
    a.eval()
    with torch.no_grad():
        a.forward_context(loss_context())
    assert_same_state(snapshot(a), snapshot(b))
    a.after_optimizer_step()
    b.after_optimizer_step()
    assert_same_state(snapshot(a), snapshot(b))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_a_resumed_loss_continues_exactly(name, make_loss, loss_context):
    a = make_loss(name).train()
    for seed in (0, 1):
        a.forward_context(loss_context(seed=seed)).backward()
        a.after_optimizer_step()
    b = make_loss(name).train()
    b.load_state_dict(a.state_dict())  # as from a checkpoint taken after the step
    assert set(STATEFUL.get(name, ())) <= set(a.state_dict())
    torch.testing.assert_close(b.forward_context(loss_context(seed=2)), a.forward_context(loss_context(seed=2)),
                               rtol=0, atol=0)
    a.after_optimizer_step()
    b.after_optimizer_step()
    assert_same_state(snapshot(a), snapshot(b))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_all_tensor_state_is_registered(name, make_loss):
    """Every tensor a loss keeps is a parameter or a saved buffer (nothing escapes the state dict)."""
    loss = make_loss(name)
    keys = set(loss.state_dict())
    for prefix, module in loss.named_modules():
        registered = {**dict(module.named_parameters(recurse=False)), **dict(module.named_buffers(recurse=False))}
        for attr, value in vars(module).items():
            if isinstance(value, torch.Tensor):
                assert attr in registered, f"{name}: {prefix}.{attr} is a tensor outside the state dict"
        for buffer in dict(module.named_buffers(recurse=False)):
            assert f"{prefix}.{buffer}".lstrip(".") in keys, f"{name}: buffer {prefix}.{buffer} is not saved"


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_after_optimizer_step_reaches_every_sub_loss_once(name, make_loss):
    loss = make_loss(name)
    calls: dict[int, int] = {}
    nested = [m for m in loss.modules() if isinstance(m, LossBase)]
    for module in nested:
        def spy(module=module, inner=module.after_optimizer_step):
            calls[id(module)] = calls.get(id(module), 0) + 1
            inner()

        module.after_optimizer_step = spy
    loss.after_optimizer_step()
    assert calls == {id(m): 1 for m in nested}


@pytest.mark.parametrize("cls", [MoCoLoss, MemoryQueueContrastiveLoss])
@pytest.mark.parametrize("sizes", [(2, 3), (4, 1, 3, 5, 2), (9, 2), (2, 9, 1)])
def test_micro_batches_of_one_step_enter_the_queue_in_order(cls, sizes):
    """k micro-batches then one step give the queue that enqueueing each batch in turn gives, however
    many rows the stash had to drop to stay within the queue size (6 rows here)."""
    loss = cls(embed_dim=3, queue_size=6, normalize=False)
    twin = copy.deepcopy(loss)
    batches = [(torch.randn(n, 3), torch.randn(n, 3)) for n in sizes]
    for q, k in batches:
        loss(q, k)
    assert torch.equal(snapshot(loss)["queue_ptr"], twin.queue_ptr)  # nothing yet
    assert sum(len(b[0]) for b in loss._pending._batches) < 6 + max(sizes)  # bounded memory
    loss.after_optimizer_step()
    for q, k in batches:
        twin.enqueue(q, k) if cls is MemoryQueueContrastiveLoss else twin.enqueue(k)
    assert_same_state(snapshot(loss), snapshot(twin))
    if sum(sizes) <= 6:  # nothing wrapped: the batches sit one after another from slot 0
        queue = loss.text_queue if cls is MemoryQueueContrastiveLoss else loss.queue
        assert torch.equal(queue[: sum(sizes)], torch.cat([k for _, k in batches]))
        assert int(loss.queue_ptr) == sum(sizes)


def test_memory_queue_count_and_mask_follow_the_steps():
    loss = MemoryQueueContrastiveLoss(embed_dim=3, queue_size=4, temperature=0.5, normalize=False)
    a1, b1 = torch.randn(2, 3), torch.randn(2, 3)
    loss(a1, b1)
    loss(a1, b1)
    assert int(loss.queue_count) == 0
    loss.after_optimizer_step()
    assert int(loss.queue_count) == 4 and int(loss.queue_ptr) == 0
    assert torch.equal(loss.image_queue, torch.cat([a1, a1]))


def test_ema_update_happens_only_after_the_step_and_follows_the_formula():
    torch.manual_seed(3)
    encoder = torch.nn.Linear(4, 4)
    loss = EMAMoCoLoss(embed_dim=4, queue_size=8, momentum=0.9).attach(encoder)
    optimizer = torch.optim.SGD(encoder.parameters(), lr=0.5)
    x1, x2 = torch.randn(3, 4), torch.randn(2, 4)
    key_before = copy.deepcopy(loss.key_encoder)
    for x in (x1, x2):  # two micro-batches
        loss(encoder(x), x).backward()
    assert all(torch.equal(p, q) for p, q in zip(loss.key_encoder.parameters(), key_before.parameters()))
    optimizer.step()
    assert all(torch.equal(p, q) for p, q in zip(loss.key_encoder.parameters(), key_before.parameters()))
    loss.after_optimizer_step()
    want = copy.deepcopy(key_before)
    ema_update(want, encoder, 0.9)
    for p, q, old in zip(loss.key_encoder.parameters(), want.parameters(), key_before.parameters()):
        torch.testing.assert_close(p, q)
        assert not torch.equal(p, old)
    # The keys that entered the queue came from the key encoder as it was during the forwards.
    with torch.no_grad():
        keys = F.normalize(key_before(torch.cat([x1, x2])), dim=-1)
    torch.testing.assert_close(loss.queue[:5], keys)
    assert int(loss.queue_ptr) == 5
    loss.after_optimizer_step()  # a second step without forwards: only the EMA moves
    assert int(loss.queue_ptr) == 5


@pytest.mark.parametrize("name", ["dynamic_temperature", "hybrid_vicreg"])
def test_step_counters_advance_once_per_step_and_survive_a_checkpoint(name, make_loss, loss_context):
    kwargs = {"warmup_steps": 1, "transition_steps": 4} if name == "hybrid_vicreg" else {"period": 6}
    loss = make_loss(name, **kwargs).train()
    ctx = loss_context(requires_grad=False)
    ids = {"match_ids": ctx["match_ids"]} if "match_ids" in loss.accepted_inputs() else {}

    def at(step: int) -> torch.Tensor:
        return loss(ctx["image_embeds"], ctx["text_embeds"], step=step, **ids)

    for step in range(3):
        for _ in range(2):  # micro-batches of one optimizer step see the same schedule value
            value = loss.forward_context(ctx)
            torch.testing.assert_close(value, at(step))
            assert loss.last_metrics["step"] == step
        loss.after_optimizer_step()
        assert isinstance(loss.step, torch.Tensor) and "step" in dict(loss.named_buffers())
        assert int(loss.state_dict()["step"]) == step + 1
    resumed = make_loss(name, **kwargs)
    resumed.load_state_dict(loss.state_dict())
    with diagnostics(False):  # the restored counter is used without reading it back
        got = resumed.forward_context(ctx)
    torch.testing.assert_close(got, at(3))


def test_dynamic_temperature_from_the_counter_matches_the_schedule(make_loss, loss_context):
    loss = make_loss("dynamic_temperature", min_temperature=0.2, max_temperature=0.8, period=5)
    ctx = loss_context(requires_grad=False)
    for step in range(7):
        with diagnostics(False):
            got = loss.forward_context(ctx)
        # The schedule written out, through the plain contrastive loss at that temperature.
        temperature = 0.2 + 0.6 * (1 + torch.cos(torch.tensor(2 * torch.pi * step / 5, dtype=torch.float64))) / 2
        want = LOSSES["contrastive"](temperature=float(temperature))(ctx["image_embeds"], ctx["text_embeds"],
                                                                      match_ids=ctx["match_ids"])
        torch.testing.assert_close(got, want)
        assert float(loss.temperature_at(loss.step)) == pytest.approx(float(temperature))
        loss.after_optimizer_step()


def test_hybrid_follows_its_buffer_when_diagnostics_are_on(make_loss, loss_context):
    loss = make_loss("hybrid_vicreg", warmup_steps=0, transition_steps=4)
    ctx = loss_context(requires_grad=False)
    with torch.no_grad():
        loss.step.fill_(2)  # set directly, not through after_optimizer_step
    torch.testing.assert_close(loss.forward_context(ctx), loss(ctx["image_embeds"], ctx["text_embeds"], step=2))
    with diagnostics(False):
        torch.testing.assert_close(loss.forward_context(ctx), loss(ctx["image_embeds"], ctx["text_embeds"], step=2))
