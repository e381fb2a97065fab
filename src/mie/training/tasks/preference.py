"""Preference training: a reward model on (chosen, rejected) pairs, and DPO on a policy against a frozen reference.

Batches are dicts of ``[B, T]`` tensors (chosen and rejected may differ in length and padding side)::

    task = RewardModelTask(RewardModel(backbone))
    # batch: chosen_ids, chosen_mask, rejected_ids, rejected_mask[, target]
    task = DPOTask(policy, reference, beta=0.1)
    # batch: chosen_ids, chosen_mask, chosen_response_mask, rejected_ids, rejected_mask,
    #        rejected_response_mask[, target][, ref_chosen_logps, ref_rejected_logps]

``target`` (``[B]`` in [0, 1]) is a soft label: the probability that the chosen response is preferred,
as an AI feedback model gives it (Constitutional AI). Each pair's chosen and rejected rows run through
the model in one forward pass, concatenated along the batch.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mie.losses.logprobs import sequence_logprobs
from mie.losses.preference import bradley_terry_loss, dpo_loss
from mie.training.task import Task
from mie.training.tasks.reference import FrozenReference


def _cat_padded(a: torch.Tensor, b: torch.Tensor, value: int = 0) -> torch.Tensor:
    """``[Ba + Bb, max(Ta, Tb)]``: ``a`` over ``b``, the shorter right-padded with ``value``.

    Masks pad with 0, so an extra masked tail changes no real token's positions or attention, whichever
    side the rows were padded on.
    """
    T = max(a.shape[1], b.shape[1])
    return torch.cat([F.pad(a, (0, T - a.shape[1]), value=value), F.pad(b, (0, T - b.shape[1]), value=value)])


def _pair_metrics(chosen: torch.Tensor, rejected: torch.Tensor) -> dict[str, torch.Tensor]:
    """Share of pairs ranked right and mean margin of two ``[B]`` scores (detached, on the device)."""
    chosen, rejected = chosen.detach().float(), rejected.detach().float()
    return {"accuracy": (chosen > rejected).float().mean(), "margin": (chosen - rejected).mean()}


class RewardModelTask(Task):
    """Bradley–Terry training of a reward model ``model(ids, attention_mask) -> [B]``.

    Returns ``loss`` with ``accuracy`` (share of pairs with ``r_chosen > r_rejected``) and ``margin``
    (mean ``r_chosen - r_rejected``); validation reports the same, averaged over all pairs.
    ``margin`` in the batch (``"margin"``, ``[B]``) is Llama 2's preference-strength margin.
    """

    def rewards(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(r_chosen, r_rejected)``, each ``[B]``, from one forward pass over both."""
        B = batch["chosen_ids"].shape[0]
        ids = _cat_padded(batch["chosen_ids"], batch["rejected_ids"])
        mask = _cat_padded(batch["chosen_mask"], batch["rejected_mask"])
        rewards = self.model(ids, mask)  # (2B,)
        return rewards[:B], rewards[B:]

    def training_forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Bradley–Terry loss of the batch (soft when it has ``target``) and the pair metrics."""
        chosen, rejected = self.rewards(batch)
        loss = bradley_terry_loss(chosen, rejected, margin=batch.get("margin"), target=batch.get("target"))
        return {"loss": loss, **_pair_metrics(chosen, rejected)}

    @torch.no_grad()
    def validation_forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Loss, pairwise accuracy and mean margin of a validation batch."""
        return self.training_forward(batch)


class DPOTask(Task):
    """Direct Preference Optimization (Rafailov et al., 2023) of ``policy`` against a frozen ``reference``.

    The reference is kept out of the module tree (a plain attribute, not a submodule), so checkpoints,
    the optimizer and ``task.train()`` hold only the policy; it is put in eval mode, frozen, run under
    ``no_grad`` and moved to the batch's device on first use. A batch may carry the reference's summed
    log-probabilities (``ref_chosen_logps``, ``ref_rejected_logps``, ``[B]``) precomputed, and then the
    reference is not run.

    Returns ``loss``, ``reward_accuracy`` (share of pairs whose implicit reward ``beta * (log π - log π_ref)``
    ranks chosen first), ``chosen_rewards``, ``rejected_rewards`` and ``reward_margin`` (batch means,
    detached tensors); validation reports loss, reward accuracy and mean margin over all pairs.
    """

    def __init__(self, policy: nn.Module, reference: nn.Module, beta: float = 0.1,
                 label_smoothing: float = 0.0) -> None:
        if beta <= 0:
            raise ValueError(f"beta must be > 0, got {beta}")
        super().__init__(policy)
        self._reference = FrozenReference(reference)
        self.beta, self.label_smoothing = beta, label_smoothing

    @property
    def reference(self) -> nn.Module:
        """The frozen reference model (not a submodule)."""
        return self._reference.module

    def _logps(self, model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed response log-probabilities ``(chosen [B], rejected [B])`` from one forward pass."""
        B = batch["chosen_ids"].shape[0]
        ids = _cat_padded(batch["chosen_ids"], batch["rejected_ids"])
        mask = _cat_padded(batch["chosen_mask"], batch["rejected_mask"])
        response = _cat_padded(batch["chosen_response_mask"], batch["rejected_response_mask"])
        logps = sequence_logprobs(model, ids, mask, response)  # (2B,)
        return logps[:B], logps[B:]

    @torch.no_grad()
    def reference_logps(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """The reference's ``(chosen, rejected)`` log-probabilities: the batch's precomputed ones, or run it."""
        if "ref_chosen_logps" in batch and "ref_rejected_logps" in batch:
            return batch["ref_chosen_logps"], batch["ref_rejected_logps"]
        return self._logps(self._reference.on(batch["chosen_ids"].device), batch)

    def training_forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        """DPO loss of the batch and its implicit-reward metrics."""
        policy_chosen, policy_rejected = self._logps(self.model, batch)
        ref_chosen, ref_rejected = self.reference_logps(batch)
        loss, chosen, rejected = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=self.beta,
                                          label_smoothing=self.label_smoothing, target=batch.get("target"))
        pair = _pair_metrics(chosen, rejected)
        return {"loss": loss, "reward_accuracy": pair["accuracy"], "reward_margin": pair["margin"],
                "chosen_rewards": chosen.mean(), "rejected_rewards": rejected.mean()}

    @torch.no_grad()
    def validation_forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Loss, reward accuracy and mean implicit reward margin of a validation batch."""
        out = self.training_forward(batch)
        return {key: out[key] for key in ("loss", "reward_accuracy", "reward_margin")}
