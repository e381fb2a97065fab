"""Token log-probabilities of a causal LM, written once for every task that scores sequences (DPO and the
reward model's pairs, PPO's policy and reference, the KL of a policy to its reference).

>>> logp = token_logprobs(model, ids, mask)                     # (B, T-1): log p(ids[:, t+1] | ids[:, :t+1])
>>> total = sequence_logprobs(model, ids, mask, response_mask)  # (B,): summed over the response tokens
"""

from __future__ import annotations

import torch
from torch import nn


def logprobs_from_logits(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``log softmax(logits / temperature)`` at ``targets``: ``[B, T, V]``, ``[B, T]`` -> ``[B, T]``, in float32."""
    logits = logits.float() / temperature if temperature != 1.0 else logits.float()
    # gather - logsumexp: no [B, T, V] log-softmax tensor is kept
    return logits.gather(-1, targets[..., None]).squeeze(-1) - logits.logsumexp(-1)


def token_logprobs(model: nn.Module, ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                   temperature: float = 1.0) -> torch.Tensor:
    """``[B, T-1]``: log p(``ids[:, t+1]`` | ``ids[:, :t+1]``) under a causal LM (logits ``[B, T, V]``)."""
    logits = model(ids, attention_mask=attention_mask)
    return logprobs_from_logits(logits[:, :-1], ids[:, 1:], temperature)  # position t predicts t+1


def sequence_logprobs(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                      response_mask: torch.Tensor) -> torch.Tensor:
    """``[B]``: the sum of ``log p(input_ids[:, t] | input_ids[:, :t])`` over positions where ``response_mask``
    ``[B, T]`` is 1 (the response tokens), under a causal LM ``model(ids, attention_mask=...) -> [B, T, V]``.

    Position 0 has no context and is never scored.
    """
    logp = token_logprobs(model, input_ids, attention_mask)  # (B, T-1)
    return (logp * response_mask[:, 1:].to(logp.dtype)).sum(-1)
