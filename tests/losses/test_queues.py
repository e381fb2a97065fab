"""MoCo / memory-queue behaviour: FIFO order, wrap-around, no gradient into the queue, EMA updates."""

import pytest
import torch
import torch.nn.functional as F

from mie.losses import EMAMoCoLoss, MemoryQueueContrastiveLoss, MoCoLoss, ema_update
from mie.losses.infonce import info_nce


def test_moco_loss_matches_reference_and_enqueues_fifo():
    loss_fn = MoCoLoss(embed_dim=4, queue_size=5, temperature=0.2)
    queue = loss_fn.queue.clone()
    q, k = torch.randn(3, 4, requires_grad=True), torch.randn(3, 4)
    loss = loss_fn(q, k)
    uq, uk = F.normalize(q.detach(), dim=-1), F.normalize(k, dim=-1)
    rows = []
    for i in range(3):
        logits = torch.cat([(uq[i] @ uk[i]).view(1), queue @ uq[i]]) / 0.2
        rows.append(torch.logsumexp(logits, 0) - logits[0])
    assert loss.item() == pytest.approx(float(torch.stack(rows).mean()), abs=1e-6)
    assert torch.equal(loss_fn.queue, queue)  # keys wait for the optimizer step
    loss_fn.after_optimizer_step()
    assert torch.allclose(loss_fn.queue[:3], uk) and torch.equal(loss_fn.queue[3:], queue[3:])
    assert int(loss_fn.queue_ptr) == 3
    loss.backward()
    assert q.grad is not None and not loss_fn.queue.requires_grad
    # Wrap-around: the next 3 keys fill slots 3, 4, 0; slots 1, 2 keep the first batch.
    k2 = torch.randn(3, 4)
    loss_fn(torch.randn(3, 4), k2)
    loss_fn.after_optimizer_step()
    uk2 = F.normalize(k2, dim=-1)
    assert torch.allclose(loss_fn.queue[[3, 4, 0]], uk2) and torch.allclose(loss_fn.queue[1:3], uk[1:])
    assert int(loss_fn.queue_ptr) == 1


def test_moco_key_gets_no_gradient_and_eval_does_not_enqueue():
    loss_fn = MoCoLoss(embed_dim=4, queue_size=8)
    k = torch.randn(2, 4, requires_grad=True)
    loss_fn(torch.randn(2, 4, requires_grad=True), k).backward()
    assert k.grad is None
    loss_fn.after_optimizer_step()
    loss_fn.eval()
    before = loss_fn.queue.clone()
    loss_fn(torch.randn(2, 4), torch.randn(2, 4))
    loss_fn.after_optimizer_step()
    assert torch.equal(before, loss_fn.queue)


def test_moco_micro_batches_of_one_step_enter_the_queue_in_order():
    loss_fn = MoCoLoss(embed_dim=2, queue_size=6, normalize=False)
    k1, k2 = torch.randn(2, 2), torch.randn(2, 2)
    loss_fn(torch.randn(2, 2), k1)
    loss_fn(torch.randn(2, 2), k2)  # gradient accumulation: two micro-batches, one optimizer step
    loss_fn.after_optimizer_step()
    assert torch.equal(loss_fn.queue[:4], torch.cat([k1, k2])) and int(loss_fn.queue_ptr) == 4
    loss_fn.after_optimizer_step()  # nothing stashed: nothing changes
    assert int(loss_fn.queue_ptr) == 4


def test_moco_batch_larger_than_queue_keeps_latest_keys():
    loss_fn = MoCoLoss(embed_dim=2, queue_size=3, normalize=False)
    keys = torch.arange(10.0).view(5, 2)
    loss_fn.enqueue(keys)
    assert torch.equal(loss_fn.queue, keys[2:]) and int(loss_fn.queue_ptr) == 0


def test_moco_errors():
    with pytest.raises(ValueError, match="queue holds dim 4"):
        MoCoLoss(embed_dim=4)(torch.randn(2, 3), torch.randn(2, 3))
    with pytest.raises(ValueError, match="positive"):
        MoCoLoss(queue_size=0)


def test_ema_update_formula_and_errors():
    target, source = torch.nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    with torch.no_grad():
        source.weight.fill_(2.0)
        source.running_mean.fill_(5.0)
    ema_update(target, source, momentum=0.75)
    assert torch.allclose(target.weight, torch.full((3,), 0.75 * 1.0 + 0.25 * 2.0))
    assert torch.equal(target.running_mean, source.running_mean)  # buffers are copied
    with pytest.raises(ValueError, match="momentum"):
        ema_update(target, source, 1.5)
    with pytest.raises(ValueError, match="different parameters"):
        ema_update(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2, bias=False), 0.5)


def test_ema_moco_key_encoder_follows_query_encoder():
    encoder = torch.nn.Linear(4, 4)
    loss_fn = EMAMoCoLoss(embed_dim=4, queue_size=6, momentum=0.5)
    with pytest.raises(ValueError, match="attach"):
        loss_fn(torch.randn(2, 4), torch.randn(2, 4))
    loss_fn.attach(encoder)
    assert all(not p.requires_grad for p in loss_fn.key_encoder.parameters())
    start = loss_fn.key_encoder.weight.clone()
    with torch.no_grad():
        encoder.weight.add_(1.0)
    x = torch.randn(2, 4)
    loss = loss_fn(encoder(x), x)
    loss.backward()
    assert torch.equal(loss_fn.key_encoder.weight, start)  # the forward uses the key encoder as it is
    loss_fn.after_optimizer_step()
    assert torch.allclose(loss_fn.key_encoder.weight, 0.5 * start + 0.5 * encoder.weight.detach())
    assert int(loss_fn.queue_ptr) == 2
    assert encoder.weight.grad is not None and loss_fn.key_encoder.weight.grad is None
    # Only the frozen key copy is registered inside the loss, never the query encoder itself.
    own = {id(p) for p in encoder.parameters()}
    assert all(not p.requires_grad and id(p) not in own for p in loss_fn.parameters())
    with pytest.raises(ValueError, match="momentum"):
        EMAMoCoLoss(momentum=2.0)


def test_memory_queue_uses_in_batch_then_queued_negatives():
    loss_fn = MemoryQueueContrastiveLoss(embed_dim=3, queue_size=4, temperature=0.5)
    a1, b1 = F.normalize(torch.randn(3, 3), dim=-1), F.normalize(torch.randn(3, 3), dim=-1)
    scale = torch.tensor(2.0)
    first = loss_fn(a1, b1)
    want = (info_nce(a1, b1, scale).mean() + info_nce(b1, a1, scale).mean()) / 2
    assert torch.allclose(first, want, atol=1e-6) and int(loss_fn.queue_count) == 0
    loss_fn.after_optimizer_step()
    assert int(loss_fn.queue_count) == 3
    a2 = F.normalize(torch.randn(3, 3), dim=-1).requires_grad_()
    b2 = F.normalize(torch.randn(3, 3), dim=-1)
    second = loss_fn(a2, b2)
    # Naive: each image against its 3 in-batch texts plus the 3 queued texts, and vice versa.
    rows = []
    for q, keys in ((a2.detach(), torch.cat([b2, b1])), (b2, torch.cat([a2.detach(), a1]))):
        for i in range(3):
            logits = keys @ q[i] / 0.5
            rows.append(torch.logsumexp(logits, 0) - logits[i])
    assert second.item() == pytest.approx(float(sum(rows[:3]) / 3 + sum(rows[3:]) / 3) / 2, abs=1e-6)
    second.backward()
    loss_fn.after_optimizer_step()
    assert a2.grad is not None and not loss_fn.image_queue.requires_grad
    assert int(loss_fn.queue_count) == 4 and int(loss_fn.queue_ptr) == 2  # capped at the queue size
    assert torch.allclose(loss_fn.text_queue[[3, 0, 1]], b2)


def test_memory_queue_errors():
    with pytest.raises(ValueError, match="set embed_dim"):
        MemoryQueueContrastiveLoss(embed_dim=8)(torch.randn(2, 3), torch.randn(2, 3))
    with pytest.raises(ValueError, match="positive"):
        MemoryQueueContrastiveLoss(embed_dim=0)
