"""MoCo: contrastive loss against a FIFO queue of past keys (He et al., 2020, "Momentum Contrast for
Unsupervised Visual Representation Learning"), and the momentum key encoder that produces them.

    >>> loss_fn = MoCoLoss(embed_dim=128, queue_size=4096)
    >>> loss = loss_fn(encoder(view1), key_encoder(view2))       # keys are detached and stashed
    >>> loss.backward(); optimizer.step()
    >>> loss_fn.after_optimizer_step()                           # the stashed keys join the queue

    >>> loss_fn = EMAMoCoLoss(embed_dim=128, momentum=0.999)
    >>> loss_fn.attach(encoder)                                  # copies it as the momentum encoder
    >>> loss = loss_fn(encoder(view1), view2)                    # second argument: raw key inputs
    >>> loss.backward(); optimizer.step()
    >>> loss_fn.after_optimizer_step()                           # enqueue, then the EMA update
"""

from __future__ import annotations

import copy
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mie.losses.base import LossBase, check_positive, diagnostics_enabled
from mie.losses.pending import PendingBatches
from mie.losses.registry import register_loss


@torch.no_grad()
def ema_update(target: nn.Module, source: nn.Module, momentum: float) -> None:
    """``target <- momentum * target + (1 - momentum) * source`` for parameters; buffers are copied."""
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    target_params, source_params = dict(target.named_parameters()), dict(source.named_parameters())
    if target_params.keys() != source_params.keys():
        raise ValueError("ema_update: target and source modules have different parameters")
    for name, param in target_params.items():
        param.lerp_(source_params[name].detach(), 1.0 - momentum)
    source_buffers = dict(source.named_buffers())
    for name, buf in target.named_buffers():
        buf.copy_(source_buffers[name])


@register_loss("moco")
class MoCoLoss(LossBase):
    """InfoNCE of queries vs. their keys (positive) and a queue of past keys (negatives).

    The queue starts as random unit vectors (as in the paper) and is a buffer (no gradient flows into
    it). Each training-mode call stashes the batch's detached keys; ``after_optimizer_step`` writes
    every stashed batch, in order, over the oldest entries (once per optimizer step, so several
    micro-batches of one step all enter; eval-mode calls change nothing).
    """

    consumes: ClassVar[dict[str, str]] = {"query": "image_embeds", "key": "text_embeds"}

    def __init__(
        self, embed_dim: int = 128, queue_size: int = 4096, temperature: float = 0.07, normalize: bool = True
    ) -> None:
        super().__init__()
        if int(embed_dim) < 1 or int(queue_size) < 1:
            raise ValueError(f"embed_dim and queue_size must be positive, got {embed_dim} and {queue_size}")
        self.temperature = check_positive(temperature, "temperature")
        self.normalize = normalize
        self.register_buffer("queue", F.normalize(torch.randn(int(queue_size), int(embed_dim)), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        # Keys of the training-mode calls since the last optimizer step (not state: empty after a step).
        self._pending = PendingBatches(int(queue_size))

    @torch.no_grad()
    def enqueue(self, keys: Tensor, skip: int = 0) -> None:
        """Overwrite the oldest entries with ``keys`` (FIFO, wrapping around), after moving the pointer
        over ``skip`` entries; the pointer stays a device tensor (no read-back)."""
        size = self.queue.shape[0]
        keys = keys.detach()[-size:].to(self.queue.device, self.queue.dtype)
        start = self.queue_ptr + skip
        index = (start + torch.arange(keys.shape[0], device=self.queue.device)) % size
        self.queue[index] = keys
        self.queue_ptr.copy_((start + keys.shape[0]) % size)

    def forward(self, query: Tensor, key: Tensor) -> Tensor:
        """Cross-entropy with the key as the positive among ``1 + queue_size`` candidates (a scalar)."""
        q, k = self.check_pair(query, key, "query", "key")
        if q.shape[1] != self.queue.shape[1]:
            raise ValueError(
                f"embeddings have dim {q.shape[1]} but the queue holds dim {self.queue.shape[1]}; set embed_dim"
            )
        k = k.detach()
        if self.normalize:
            q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        positive = (q * k).sum(-1, keepdim=True)
        # A copy: an enqueue (after_optimizer_step) before this call's backward must not alter a
        # tensor saved for it.
        negative = q @ self.queue.to(q.dtype, copy=True).T
        logits = torch.cat([positive, negative], dim=1) / self.temperature
        loss = F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))
        if diagnostics_enabled():
            accuracy = (logits.argmax(1) == 0).float().mean()
            self.record(loss=loss, pos_sim=positive.mean(), neg_sim=negative.mean(), accuracy=accuracy)
        else:
            self.record()
        if self.training:
            self._pending.add(k)
        return loss

    def after_optimizer_step(self) -> None:
        """Enqueue the keys stashed since the last optimizer step, in the order of the calls."""
        skip, batches = self._pending.take()
        for i, (keys,) in enumerate(batches):
            self.enqueue(keys, skip if i == 0 else 0)
        super().after_optimizer_step()


@register_loss("ema_moco")
class EMAMoCoLoss(MoCoLoss):
    """MoCo with its own momentum key encoder: an EMA copy of the query encoder made by ``attach``.

    A call encodes the key inputs with the key encoder, without gradient, and applies the MoCo loss.
    ``after_optimizer_step`` enqueues the stashed keys and then moves the key encoder towards the
    query encoder (``ema_update``): once per optimizer step, right after the weights changed (a
    standalone user calls it after ``optimizer.step()``; without it the key encoder never moves).
    """

    consumes: ClassVar[dict[str, str]] = {"query": "image_embeds", "key_inputs": "key_inputs"}

    def __init__(
        self,
        embed_dim: int = 128,
        queue_size: int = 4096,
        temperature: float = 0.07,
        momentum: float = 0.999,
        normalize: bool = True,
    ) -> None:
        super().__init__(embed_dim, queue_size, temperature, normalize)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        self.momentum = float(momentum)
        self.register_module("key_encoder", None)
        self._source: list[nn.Module] = []  # a plain list so the query encoder is not registered twice

    def attach(self, encoder: nn.Module) -> EMAMoCoLoss:
        """Use ``encoder`` as the query encoder; its frozen deep copy becomes the key encoder."""
        self.key_encoder = copy.deepcopy(encoder).requires_grad_(False)
        self._source = [encoder]
        return self

    def forward(self, query: Tensor, key_inputs: Tensor) -> Tensor:  # type: ignore[override]
        """MoCo loss of ``query`` against ``key_encoder(key_inputs)``."""
        if self.key_encoder is None:
            raise ValueError(
                "EMAMoCoLoss has no key encoder: call loss.attach(query_encoder) before the first step"
            )
        with torch.no_grad():
            key = self.key_encoder(key_inputs)
        return super().forward(query, key)

    def after_optimizer_step(self) -> None:
        """Enqueue the stashed keys, then the momentum (EMA) update of the key encoder towards the
        query encoder (call it right after ``optimizer.step()``)."""
        super().after_optimizer_step()
        if self.key_encoder is not None:
            ema_update(self.key_encoder, self._source[0], self.momentum)
