"""``PPOTask``: PPO for a language-model policy against a reward function (RLHF, RL-CAI), as a plain task.

Each training batch is a set of prompts. ``training_forward`` (1) samples a response per prompt from the
policy (``generate``, seeded per rollout), scores it with ``reward_fn``, and computes, without
gradients, the policy's and the frozen reference's log-probabilities and the values; the reward of a
response token is ``-kl_coef * KL_t`` plus, at its last token, the score; advantages are GAE, whitened;
(2) returns the PPO loss (clipped policy loss + ``vf_coef`` * clipped value loss) of that rollout. So one
optimizer step is one PPO epoch over one rollout, and ``BaseTrainer`` runs it like any other task::

    task = PPOTask(policy, reference, reward_fn=lambda prompts, responses: scores, max_new_tokens=64,
                   pad_id=tok.pad_id, stop_ids=(tok.eos_id,), seed=0)
    BaseTrainer(task, config, prompt_batches).fit()

With a fresh rollout per step the policy that sampled is the one being trained, so the ratio is 1 at
the step and the clip terms are inactive there (their fractions are reported); the step is then the
(KL-regularised, GAE) policy gradient PPO starts each epoch with.

The reference model is kept out of the module tree (not a submodule): checkpoints, the optimizer and
``task.to`` hold only the policy and its value head; the reference follows the policy's device itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from mie.losses.logprobs import logprobs_from_logits
from mie.models.causal_lm import CausalLM
from mie.models.generation import generate, left_pad
from mie.training.distributed import rank_seed
from mie.training.rl import (
    PolicyWithValue,
    gae,
    per_token_kl,
    ppo_policy_loss,
    value_loss,
    whiten,
)
from mie.training.task import Task
from mie.training.tasks.reference import FrozenReference

RewardFn = Callable[[list[list[int]], list[list[int]]], torch.Tensor]
_STOPPED = "\x00stop"  # the marker our decode returns once a row's last token is a stop id


@dataclass
class Rollout:
    """One batch of sampled responses and what PPO needs of it; ``[B, R]`` tensors are per response token."""

    ids: torch.Tensor  # (B, P + R) left-padded prompt, then right-padded response
    attention_mask: torch.Tensor  # (B, P + R)
    prompt_len: int  # P
    response_mask: torch.Tensor  # (B, R) float, 1 = a sampled token
    old_logprobs: torch.Tensor  # (B, R) of the sampling policy
    old_values: torch.Tensor  # (B, R)
    kl: torch.Tensor  # (B, R) per-token KL estimate to the reference, 0 on padding
    scores: torch.Tensor  # (B,) reward_fn's scores
    advantages: torch.Tensor  # (B, R) whitened
    returns: torch.Tensor  # (B, R)
    responses: list[list[int]]  # sampled tokens per prompt (a final stop id included)


def _prompt_rows(batch: Any) -> list[list[int]]:
    """Prompt token rows from a ``[B, P]`` tensor (unpadded) or a list of token lists / 1-d tensors."""
    if isinstance(batch, torch.Tensor):
        return batch.tolist()
    return [row.tolist() if isinstance(row, torch.Tensor) else [int(t) for t in row] for row in batch]


class PPOTask(Task):
    """PPO on a ``CausalLM`` policy with a value head on its trunk, a frozen reference and a reward function.

    ``reward_fn(prompt_ids, response_ids) -> Tensor[B]`` scores each sampled response (a reward model,
    a rule); a response ends with its stop id when it stopped on one. ``temperature`` (> 0) is both the
    sampling temperature and the one of every log-probability, so PPO sees the distribution it sampled.
    ``seed`` and the rollout counter (saved in the task's state) seed each rollout's sampling, so a
    resumed run samples what an uninterrupted one would. ``kl_estimator`` is ``k1`` or ``k3``.
    ``reference=None`` freezes a copy of the policy as it is now (the usual RLHF start: the SFT model).

    A batch is a ``[B, P]`` tensor of unpadded prompts or a list of token lists (of any lengths); with a
    ``DataLoader`` over token lists pass ``collate_fn=list``, as the default collate transposes them.
    """

    def __init__(self, policy: CausalLM, reference: CausalLM | None, reward_fn: RewardFn, max_new_tokens: int,
                 kl_coef: float = 0.05, clip: float = 0.2, value_clip: float | None = None, vf_coef: float = 0.5,
                 gamma: float = 1.0, lam: float = 0.95, temperature: float = 1.0, pad_id: int = 0,
                 stop_ids: Sequence[int] = (), seed: int = 0, kl_estimator: str = "k1") -> None:
        if temperature <= 0:
            raise ValueError(f"PPO samples its rollouts: temperature must be > 0, got {temperature}")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if reference is policy:
            raise ValueError("reference is the policy itself, so it would be frozen and trained at once; pass "
                             "copy.deepcopy(policy) or reference=None")
        super().__init__(PolicyWithValue(policy))
        # Outside the module tree: kept out of state_dict, parameters() and the optimizer.
        self._reference = FrozenReference(policy if reference is None else reference, copy=reference is None)
        self.reward_fn = reward_fn
        self.max_new_tokens, self.temperature = max_new_tokens, temperature
        self.kl_coef, self.kl_estimator = kl_coef, kl_estimator
        self.clip, self.value_clip, self.vf_coef = clip, clip if value_clip is None else value_clip, vf_coef
        self.gamma, self.lam = gamma, lam
        self.pad_id, self.stop_ids, self.seed = pad_id, tuple(stop_ids), seed
        self.rollouts = 0  # rollouts sampled for training so far; with seed, sets the next one's sampling

    # ------------------------------------------------------------------ state
    def get_extra_state(self) -> dict[str, int]:
        """The rollout counter, saved with the task so a resumed run seeds the same rollouts."""
        return {"rollouts": self.rollouts}

    def set_extra_state(self, state: dict[str, int]) -> None:
        """Restore :meth:`get_extra_state`."""
        self.rollouts = int(state["rollouts"])

    # ------------------------------------------------------------------ rollouts
    def _sample(self, prompts: list[list[int]], seed: int) -> list[list[int]]:
        stop = set(self.stop_ids)
        # generate drops a stop token; PPO must keep it (ending is an action the policy learns), so stop
        # through generate's stop_strings instead, whose completing token is kept.
        return generate(self.model.policy, prompts, self.max_new_tokens, temperature=self.temperature,
                        seed=seed, pad_id=self.pad_id, stop_strings=(_STOPPED,) if stop else (),
                        decode=(lambda toks: _STOPPED if toks[-1] in stop else "") if stop else None)

    def _score(self, ids: torch.Tensor, mask: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities and values ``[B, R]`` of the response tokens (from position ``start`` on)."""
        logits, values = self.model(ids, attention_mask=mask)
        # The logits and value at position t are about the token at t + 1.
        logp = logprobs_from_logits(logits[:, start - 1:-1], ids[:, start:], self.temperature)
        return logp, values[:, start - 1:-1]

    @property
    def reference(self) -> CausalLM:
        """The frozen reference policy (not a submodule)."""
        return self._reference.module

    def _reference_logprobs(self, ids: torch.Tensor, mask: torch.Tensor, start: int) -> torch.Tensor:
        logits = self._reference.on(ids.device)(ids, attention_mask=mask)
        return logprobs_from_logits(logits[:, start - 1:-1], ids[:, start:], self.temperature)

    @torch.no_grad()
    def rollout(self, prompts: list[list[int]], seed: int) -> Rollout:
        """Sample, score and compute the advantages of one response per prompt (no gradients)."""
        device = next(self.model.parameters()).device
        responses = self._sample(prompts, seed)
        B, R = len(prompts), max(len(r) for r in responses)
        prompt_ids, prompt_mask = left_pad(prompts, self.pad_id, device)
        lengths = torch.tensor([len(r) for r in responses])
        response_ids = torch.full((B, R), self.pad_id, dtype=torch.long)
        for row, tokens in enumerate(responses):
            response_ids[row, :len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        response_mask = (torch.arange(R)[None] < lengths[:, None]).to(device)
        ids = torch.cat((prompt_ids, response_ids.to(device)), dim=1)  # (B, P + R)
        mask = torch.cat((prompt_mask, response_mask.long()), dim=1)
        start = prompt_ids.shape[1]
        old_logp, old_values = self._score(ids, mask, start)
        ref_logp = self._reference_logprobs(ids, mask, start)
        response_mask = response_mask.float()
        kl = per_token_kl(old_logp, ref_logp, self.kl_estimator) * response_mask
        scores = torch.as_tensor(self.reward_fn(prompts, responses), dtype=torch.float32, device=device)
        rewards = (-self.kl_coef * kl).scatter_add(1, (lengths - 1).to(device)[:, None], scores[:, None])
        advantages, returns = gae(rewards, old_values * response_mask, response_mask, self.gamma, self.lam)
        return Rollout(ids, mask, start, response_mask, old_logp, old_values, kl, scores,
                       whiten(advantages, response_mask), returns, responses)

    # ------------------------------------------------------------------ the task
    def training_forward(self, batch: Any) -> dict[str, Any]:
        """Sample a rollout of ``batch``'s prompts and return its PPO loss and detached diagnostics."""
        seed = rank_seed(self.seed + 100_003 * (self.rollouts + 1))  # ranks and rollouts sample apart
        self.rollouts += 1
        ro = self.rollout(_prompt_rows(batch), seed)
        logp, values = self._score(ro.ids, ro.attention_mask, ro.prompt_len)
        policy_loss, clip_fraction = ppo_policy_loss(logp, ro.old_logprobs, ro.advantages, ro.response_mask,
                                                     self.clip)
        v_loss, value_clip_fraction = value_loss(values, ro.old_values, ro.returns, ro.response_mask,
                                                 self.value_clip)
        return {"loss": policy_loss + self.vf_coef * v_loss, **self._metrics(ro),
                "policy_loss": policy_loss.detach(), "value_loss": v_loss.detach(),
                "clip_fraction": clip_fraction, "value_clip_fraction": value_clip_fraction}

    @staticmethod
    def _metrics(ro: Rollout) -> dict[str, torch.Tensor]:
        """Mean score, mean summed KL to the reference and mean response length (on the device)."""
        return {"reward": ro.scores.mean(), "kl": ro.kl.sum(1).mean(),
                "response_length": ro.response_mask.sum(1).mean()}

    @torch.no_grad()
    def validation_forward(self, batch: Any) -> dict[str, Any]:
        """Reward, KL and length of responses sampled with a fixed seed (the same at every validation),
        without advancing the training rollouts' seeds."""
        return self._metrics(self.rollout(_prompt_rows(batch), rank_seed(self.seed)))
