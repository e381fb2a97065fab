"""Pieces of PPO for language-model policies (RLHF, RL-CAI): pure functions on ``[B, T]`` tensors and a
value head that shares the policy's trunk. ``PPOTask`` (``mie.training.tasks.ppo``) puts them together.

Every ``[B, T]`` tensor is per response token; ``mask`` is 1 for real tokens and 0 for padding. Means
are over the masked-in tokens of the whole batch (token-level, as in OpenAI's and TRL's PPO).

>>> adv, ret = gae(rewards, values, mask, gamma=1.0, lam=0.95)  # doctest: +SKIP
>>> loss, clipped = ppo_policy_loss(logp, old_logp, whiten(adv, mask), mask, clip=0.2)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from mie.losses.logprobs import logprobs_from_logits, token_logprobs  # noqa: F401 - re-exported

if TYPE_CHECKING:
    from mie.models.causal_lm import CausalLM


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over the entries where ``mask`` is 1 (0 when there are none)."""
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """``(x - mean) / std`` with mean and (population) std over the masked-in entries; padding becomes 0.

    ``shift_mean=False`` only rescales (keeps the mean), as some PPO variants do for rewards.
    """
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask.to(x.dtype)


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al., 2016) per token: ``(advantages, returns)``.

    ``delta_t = r_t + gamma * V_{t+1} - V_t`` and ``A_t = delta_t + gamma * lam * A_{t+1}``, where the
    next token counts only if it is masked in: a masked-out token ends the episode (``V`` after the last
    token is 0). ``returns = advantages + values``. Both are 0 on padding.
    """
    mask = mask.to(values.dtype)
    B, T = values.shape
    advantages = torch.zeros_like(values)
    running = values.new_zeros(B)  # A_{t+1}
    for t in reversed(range(T)):  # T is a response length: a short Python loop, vectorised over B
        nxt = mask[:, t + 1] if t + 1 < T else values.new_zeros(B)
        next_value = values[:, t + 1] * nxt if t + 1 < T else values.new_zeros(B)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * nxt * running) * mask[:, t]
        advantages[:, t] = running
    return advantages, (advantages + values) * mask


def per_token_kl(logp: torch.Tensor, logp_ref: torch.Tensor, kind: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) at tokens sampled from the policy.

    ``k1`` is ``logp - logp_ref`` (unbiased, can be negative: the usual RLHF penalty); ``k3`` is
    ``exp(r) - 1 - r`` with ``r = logp_ref - logp`` (unbiased and >= 0; Schulman's "Approximating KL").
    """
    if kind == "k1":
        return logp - logp_ref
    if kind == "k3":
        log_ratio = logp_ref - logp
        return torch.expm1(log_ratio) - log_ratio
    raise ValueError(f"kl estimator must be 'k1' or 'k3', got {kind!r}")


def ppo_policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                    clip: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate, as a loss: ``mean(max(-A r, -A clamp(r, 1-clip, 1+clip)))`` with
    ``r = exp(logp - old_logp)``; returns ``(loss, fraction of tokens where the clipped term won)``.

    Where the clipped term wins the loss is constant in ``logp``: no gradient pushes ``r`` further out.
    """
    ratio = torch.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip, 1.0 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clip_fraction = masked_mean((clipped > unclipped).to(logp.dtype), mask)
    return loss, clip_fraction.detach()


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped value loss ``0.5 * mean(max((V - R)^2, (V_clip - R)^2))`` with
    ``V_clip = old_V + clamp(V - old_V, -clip, clip)``; returns ``(loss, clip fraction)``."""
    clipped_values = old_values + (values - old_values).clamp(-clip, clip)
    unclipped = (values - returns) ** 2
    clipped = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped, clipped), mask)
    clip_fraction = masked_mean((clipped > unclipped).to(values.dtype), mask)
    return loss, clip_fraction.detach()


class ValueHead(nn.Module):
    """A scalar value per position from a hidden state ``[..., dim] -> [...]`` (zero-initialised, so the
    first rollouts' values are 0 and early advantages are the plain rewards)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Values ``[...]`` of hidden states ``[..., dim]``, in float32."""
        return self.proj(hidden).squeeze(-1).float()


class PolicyWithValue(nn.Module):
    """A ``CausalLM`` policy and a ``ValueHead`` on its final (normed) hidden state: one trunk pass gives
    both the logits and the values, as in OpenAI's and TRL's PPO (no second model to run or store).

    ``policy`` stays a plain ``CausalLM`` (``generate`` takes it as is); checkpoint weights are
    ``policy.*`` and ``value_head.*``. The values share the policy's trunk, so the value loss also
    shapes it (weighted by ``vf_coef``); a separate value model would cost a second trunk per step.
    """

    def __init__(self, policy: CausalLM) -> None:
        super().__init__()
        self.policy = policy
        self.value_head = ValueHead(policy.config.dim)

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``[B, T, vocab]`` and values ``[B, T]`` of token ids ``[B, T]``."""
        captured: list[torch.Tensor] = []
        # The final norm's output is the hidden state the LM head reads. A hook on it runs CausalLM's own
        # forward (masks, positions, RoPE) instead of a copy of it that could drift from the original.
        handle = self.policy.norm.register_forward_hook(lambda _m, _i, out: captured.append(out))
        try:
            logits = self.policy(ids, attention_mask=attention_mask)
        finally:
            handle.remove()
        return logits, self.value_head(captured[-1])
