"""Image-text InfoNCE with in-batch plus queued negatives, for batches too small to hold enough
negatives (the memory bank of Wu et al., 2018, "Unsupervised Feature Learning via Non-Parametric
Instance Discrimination", applied to both modalities as in MoCo-style cross-modal retrieval).

    >>> loss_fn = MemoryQueueContrastiveLoss(embed_dim=256, queue_size=1024)
    >>> loss = loss_fn(image_embeds, text_embeds)            # the batch is stashed
    >>> loss.backward(); optimizer.step()
    >>> loss_fn.after_optimizer_step()                       # the stashed batches join the queues
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from mie.losses.base import LossBase, check_positive
from mie.losses.pending import PendingBatches
from mie.losses.registry import register_loss


@register_loss("memory_queue")
class MemoryQueueContrastiveLoss(LossBase):
    """Symmetric InfoNCE where each side's keys are the batch followed by a FIFO queue of past batches.

    The queues start empty (unfilled slots are masked out), hold detached embeddings (no gradient)
    and take the batches of the training-mode calls since the last step in ``after_optimizer_step``.
    """

    consumes: ClassVar[dict[str, str]] = {"image_embeds": "image_embeds", "text_embeds": "text_embeds"}

    def __init__(
        self, embed_dim: int = 256, queue_size: int = 1024, temperature: float = 0.07, normalize: bool = True
    ) -> None:
        super().__init__()
        if int(embed_dim) < 1 or int(queue_size) < 1:
            raise ValueError(f"embed_dim and queue_size must be positive, got {embed_dim} and {queue_size}")
        self.temperature = check_positive(temperature, "temperature")
        self.normalize = normalize
        self.register_buffer("image_queue", torch.zeros(int(queue_size), int(embed_dim)))
        self.register_buffer("text_queue", torch.zeros(int(queue_size), int(embed_dim)))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("queue_count", torch.zeros((), dtype=torch.long))
        # Batches of the training-mode calls since the last optimizer step (not state: empty after a step).
        self._pending = PendingBatches(int(queue_size))

    @torch.no_grad()
    def enqueue(self, image: Tensor, text: Tensor, skip: int = 0) -> None:
        """Write a batch into both queues (FIFO, wrapping around), after moving the pointer over ``skip``
        entries; pointer and count stay device tensors (no read-back)."""
        size = self.image_queue.shape[0]
        device = self.image_queue.device
        image, text = image.detach()[-size:], text.detach()[-size:]
        start = self.queue_ptr + skip
        index = (start + torch.arange(image.shape[0], device=device)) % size
        self.image_queue[index] = image.to(device, self.image_queue.dtype)
        self.text_queue[index] = text.to(device, self.text_queue.dtype)
        self.queue_ptr.copy_((start + image.shape[0]) % size)
        self.queue_count.copy_(torch.clamp(self.queue_count + skip + image.shape[0], max=size))

    def forward(self, image_embeds: Tensor, text_embeds: Tensor) -> Tensor:
        """Mean of image->(texts + queued texts) and text->(images + queued images) InfoNCE."""
        img, txt = self.check_pair(image_embeds, text_embeds, "image_embeds", "text_embeds")
        if img.shape[1] != self.image_queue.shape[1]:
            raise ValueError(
                f"embeddings have dim {img.shape[1]}, the queue holds {self.image_queue.shape[1]}; set embed_dim"
            )
        if self.normalize:
            img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
        # Unfilled slots are masked instead of sliced off: slicing by the count would read it back
        # from the device on every call.
        filled = torch.arange(self.image_queue.shape[0], device=img.device) < self.queue_count
        batch = torch.ones(img.shape[0], dtype=torch.bool, device=img.device)
        mask = torch.cat([batch, filled])
        text_keys = torch.cat([txt, self.text_queue.to(txt.dtype)])
        image_keys = torch.cat([img, self.image_queue.to(img.dtype)])
        loss = (self._masked_info_nce(img, text_keys, mask) + self._masked_info_nce(txt, image_keys, mask)) / 2
        self.record(loss=loss, queued=self.queue_count, **self.pair_stats(img, txt))
        if self.training:
            self._pending.add(img, txt)
        return loss

    def _masked_info_nce(self, q: Tensor, keys: Tensor, mask: Tensor) -> Tensor:
        """Mean InfoNCE of ``q`` whose positive is key ``i``, over the keys where ``mask`` is True."""
        logits = (q @ keys.T / self.temperature).masked_fill(~mask[None, :], float("-inf"))
        positive = (q * keys[: q.shape[0]]).sum(-1) / self.temperature
        return (torch.logsumexp(logits, dim=1) - positive).mean()

    def after_optimizer_step(self) -> None:
        """Write the batches of the calls since the last optimizer step into both queues, in order."""
        skip, batches = self._pending.take()
        for i, (image, text) in enumerate(batches):
            self.enqueue(image, text, skip if i == 0 else 0)
        super().after_optimizer_step()
