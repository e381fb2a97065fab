"""Contrastive loss with a temperature that follows a cosine schedule over training steps (Kukleva et al.,
2023, "Temperature Schedules for Self-Supervised Contrastive Methods on Long-Tail Data").

``T(step) = T_min + (T_max - T_min) * (1 + cos(2 pi step / period)) / 2``: a high temperature favours
group-wise (semantic) structure, a low one instance discrimination; oscillating between them helps both.

    >>> loss_fn = DynamicTemperatureLoss(min_temperature=0.1, max_temperature=1.0, period=400)
    >>> loss = loss_fn(image_embeds, text_embeds)           # at the step counter's temperature
    >>> loss.backward(); optimizer.step()
    >>> loss_fn.after_optimizer_step()                      # advances the counter
    >>> loss = loss_fn(image_embeds, text_embeds, step=1200)
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from mie.losses.base import LossBase, check_ids, check_positive
from mie.losses.infonce import info_nce
from mie.losses.registry import register_loss


@register_loss("dynamic_temperature")
class DynamicTemperatureLoss(LossBase):
    """Symmetric InfoNCE at the scheduled temperature; the step counter is a buffer (saved in checkpoints)."""

    consumes: ClassVar[dict[str, str]] = {"a": "image_embeds", "b": "text_embeds", "match_ids": "match_ids"}

    def __init__(
        self,
        min_temperature: float = 0.1,
        max_temperature: float = 1.0,
        period: int = 400,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        self.min_temperature = check_positive(min_temperature, "min_temperature")
        self.max_temperature = check_positive(max_temperature, "max_temperature")
        if self.max_temperature < self.min_temperature:
            raise ValueError(
                f"max_temperature ({max_temperature}) must be >= min_temperature ({min_temperature})"
            )
        if int(period) < 1:
            raise ValueError(f"period must be a positive number of steps, got {period}")
        self.period = int(period)
        self.normalize = normalize
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def temperature_at(self, step: int | Tensor) -> float | Tensor:
        """The scheduled temperature at ``step``: a float for an int, a tensor for a step tensor."""
        if isinstance(step, Tensor):
            # On the device, in float64 where it has it: no read-back of the counter.
            dtype = torch.float32 if step.device.type == "mps" else torch.float64
            phase = (1 + torch.cos(step.to(dtype) * (2 * math.pi) / self.period)) / 2
        else:
            phase = (1 + math.cos(2 * math.pi * step / self.period)) / 2
        return self.min_temperature + (self.max_temperature - self.min_temperature) * phase

    def forward(
        self, a: Tensor, b: Tensor, step: int | Tensor | None = None, match_ids: Tensor | None = None
    ) -> Tensor:
        """Loss at ``step`` (default: the ``step`` buffer, advanced by ``after_optimizer_step``)."""
        a, b = self.check_pair(a, b)
        if self.normalize:
            a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
        current = self.step if step is None else step if isinstance(step, Tensor) else int(step)
        temperature = self.temperature_at(current)
        ids = None if match_ids is None else check_ids(match_ids, a.shape[0]).to(a.device)
        if isinstance(temperature, Tensor):
            scale = (1.0 / temperature).to(a.device, a.dtype)
        else:
            scale = torch.full((), 1.0 / temperature, dtype=a.dtype, device=a.device)
        loss = (
            info_nce(a, b, scale, q_ids=ids, k_ids=ids).mean()
            + info_nce(b, a, scale, q_ids=ids, k_ids=ids).mean()
        ) / 2
        self.record(loss=loss, temperature=temperature, step=current, **self.pair_stats(a, b, ids))
        return loss

    def after_optimizer_step(self) -> None:
        """Advance the step counter (once per optimizer step, however many micro-batches it had)."""
        self.step += 1
