"""Preference losses: DPO (Rafailov et al., 2023) and the Bradley–Terry reward-model loss, with soft labels.

Pure functions over per-sequence scores, so a task can feed them from any model::

    pc = sequence_logprobs(policy, chosen_ids, chosen_mask, chosen_response_mask)        # [B]
    with torch.no_grad():
        rc = sequence_logprobs(reference, chosen_ids, chosen_mask, chosen_response_mask)  # [B]
    ...
    loss, chosen_rewards, rejected_rewards = dpo_loss(pc, pr, rc, rr, beta=0.1)
    loss = bradley_terry_loss(reward_chosen, reward_rejected)            # reward-model training

Soft labels (``target``, the probability that the chosen response is preferred) carry AI-feedback
preferences of Constitutional AI (Bai et al., 2022), whose feedback model gives a probability rather
than a hard choice: the loss is the binary cross-entropy ``-(p log σ(d) + (1 - p) log σ(-d))``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mie.losses.logprobs import sequence_logprobs  # noqa: F401 - re-exported: it was defined here


def _preferred_probability(target: torch.Tensor | float | None, label_smoothing: float,
                           like: torch.Tensor) -> torch.Tensor | float:
    """``p`` of the soft-label BCE: ``target`` (1 when None) pulled towards 1/2 by ``label_smoothing``."""
    if not 0.0 <= label_smoothing <= 0.5:
        raise ValueError(f"label_smoothing must lie in [0, 0.5], got {label_smoothing}")
    p = 1.0 if target is None else target
    if isinstance(p, torch.Tensor):
        p = p.to(device=like.device, dtype=like.dtype)
    # cDPO: the label is flipped with probability eps, so P(chosen preferred) = p (1 - eps) + (1 - p) eps
    return p * (1.0 - label_smoothing) + (1.0 - p) * label_smoothing


def _soft_logistic_loss(d: torch.Tensor, p: torch.Tensor | float) -> torch.Tensor:
    """Mean ``-(p log σ(d) + (1 - p) log σ(-d))``; ``p = 1`` skips the second term (exactly -log σ(d))."""
    if isinstance(p, float) and p == 1.0:
        return -F.logsigmoid(d).mean()
    return -(p * F.logsigmoid(d) + (1.0 - p) * F.logsigmoid(-d)).mean()


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor, margin: torch.Tensor | float | None = None,
                       target: torch.Tensor | float | None = None) -> torch.Tensor:
    """Reward-model loss ``mean(-log σ(r_chosen - r_rejected - margin))`` (InstructGPT; margin as in Llama 2).

    ``target`` in [0, 1] (scalar or ``[B]``) is the probability that the chosen response is preferred;
    the loss is then ``-(p log σ(d) + (1 - p) log σ(-d))`` with ``d = r_chosen - r_rejected - margin``.
    """
    d = r_chosen.float() - r_rejected.float()
    if margin is not None:
        d = d - margin
    return _soft_logistic_loss(d, _preferred_probability(target, 0.0, d))


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float = 0.1, label_smoothing: float = 0.0,
             target: torch.Tensor | float | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The sigmoid DPO loss of summed response log-probabilities ``[B]``; returns ``(loss, chosen_rewards,
    rejected_rewards)``, the rewards ``beta * (log π - log π_ref)`` per pair, detached.

    ``loss = mean(-log σ(beta * ((pc - rc) - (pr - rr))))``. ``label_smoothing`` eps is conservative DPO
    (cDPO: labels flipped with probability eps), as TRL's ``sigmoid`` loss; ``target`` is a soft label
    (the probability that chosen is preferred), itself smoothed by eps when both are given.
    """
    chosen_logratio = policy_chosen.float() - ref_chosen.float()
    rejected_logratio = policy_rejected.float() - ref_rejected.float()
    d = beta * (chosen_logratio - rejected_logratio)
    loss = _soft_logistic_loss(d, _preferred_probability(target, label_smoothing, d))
    return loss, beta * chosen_logratio.detach(), beta * rejected_logratio.detach()
