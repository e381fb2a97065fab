"""Contrastive warm-up followed by a scheduled switch to VICReg: InfoNCE gives a well-spread embedding
early, VICReg (Bardes et al., 2022) then trains without negatives.

``loss = (1 - w) * InfoNCE + w * VICReg`` with ``w = 0`` for ``step < warmup_steps``, rising linearly to 1
over ``transition_steps``.

    >>> loss_fn = HybridPretrainVICRegLoss(warmup_steps=500, transition_steps=500)
    >>> loss = loss_fn(image_embeds, text_embeds)            # at the step counter's weight
    >>> loss.backward(); optimizer.step()
    >>> loss_fn.after_optimizer_step()                       # advances the counter
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from mie.losses.base import LossBase, diagnostics_enabled
from mie.losses.contrastive import ContrastiveLoss
from mie.losses.registry import register_loss
from mie.losses.vicreg import VICRegLoss


@register_loss("hybrid_vicreg")
class HybridPretrainVICRegLoss(LossBase):
    """Step-scheduled blend of symmetric InfoNCE and VICReg; the step counter is a saved buffer."""

    consumes: ClassVar[dict[str, str]] = {"a": "image_embeds", "b": "text_embeds"}

    min_batch = 2

    def __init__(
        self,
        warmup_steps: int = 1000,
        transition_steps: int = 1000,
        temperature: float = 0.07,
        sim_coeff: float = 25.0,
        std_coeff: float = 25.0,
        cov_coeff: float = 1.0,
    ) -> None:
        super().__init__()
        if int(warmup_steps) < 0 or int(transition_steps) < 0:
            raise ValueError(
                f"warmup_steps and transition_steps must be >= 0, got {warmup_steps}, {transition_steps}"
            )
        self.warmup_steps, self.transition_steps = int(warmup_steps), int(transition_steps)
        self.contrastive = ContrastiveLoss(temperature=temperature)
        self.vicreg = VICRegLoss(sim_coeff=sim_coeff, std_coeff=std_coeff, cov_coeff=cov_coeff)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        # A host copy of the counter: the schedule decides which terms to compute at all, and with
        # diagnostics off forward must not read the buffer back from the device. The buffer is the
        # truth (checkpoints hold it): load_state_dict and every diagnostics-on call re-read it.
        self._host_step = 0
        self.register_load_state_dict_post_hook(_sync_host_step)

    def vicreg_weight(self, step: int) -> float:
        """Weight of the VICReg term at ``step`` (0 during warm-up, 1 after the transition)."""
        if step < self.warmup_steps:
            return 0.0
        if self.transition_steps == 0:
            return 1.0
        return min(1.0, (step - self.warmup_steps) / self.transition_steps)

    def forward(self, a: Tensor, b: Tensor, step: int | None = None) -> Tensor:
        """The blended loss at ``step`` (default: the internal counter, advanced by ``after_optimizer_step``)."""
        a, b = self.check_pair(a, b)
        if step is not None:
            current = int(step)
        elif diagnostics_enabled():
            current = self._host_step = int(self.step)
        else:
            current = self._host_step
        weight = self.vicreg_weight(current)
        metrics: dict[str, Any] = {"vicreg_weight": weight, "step": current}
        loss = a.new_zeros(())
        if weight < 1.0:
            contrastive = self.contrastive(a, b)
            loss = loss + (1 - weight) * contrastive
            metrics["loss_contrastive"] = contrastive.detach()
        if weight > 0.0:
            vicreg = self.vicreg(a, b)
            loss = loss + weight * vicreg
            metrics["loss_vicreg"] = vicreg.detach()
        self.record(loss=loss, **metrics)
        return loss

    def after_optimizer_step(self) -> None:
        """Advance the step counter (once per optimizer step, however many micro-batches it had)."""
        self.step += 1
        self._host_step += 1
        super().after_optimizer_step()


def _sync_host_step(module: nn.Module, incompatible_keys: object) -> None:
    """After ``load_state_dict``: the host copy of the step counter follows the loaded buffer."""
    module._host_step = int(module.step)
