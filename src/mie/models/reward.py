"""``RewardModel``: a ``CausalLM`` trunk and a scalar head read at each row's last real token.

>>> rm = RewardModel(CausalLM(CausalLMConfig(vocab_size=256, dim=64)))  # doctest: +SKIP
>>> rewards = rm(ids, attention_mask=mask)  # [B], float32; left or right padding

The reward of a sequence is the head applied to the final (normed) hidden state of its last non-pad
token, the one that has read the whole text (InstructGPT, Llama 2). Padding on either side gives the
unpadded row's reward: ``CausalLM`` keeps a padded row's positions and attention those of the row alone.
"""

from __future__ import annotations

import torch
from torch import nn

from mie.models.causal_lm import CausalLM


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """``[B]``: the position of each row's last real token (mask 1) in a ``[B, T]`` mask, left or right padded."""
    T = attention_mask.shape[1]
    positions = torch.arange(T, device=attention_mask.device).expand_as(attention_mask)
    return torch.where(attention_mask.bool(), positions, -1).amax(dim=1).clamp_min(0)


class RewardModel(nn.Module):
    """``backbone``'s embeddings, layers and final norm, plus ``head``: ``nn.Linear(dim, 1)``.

    The backbone keeps its LM head (the checkpoint loads back into a ``CausalLM``), but an untied
    ``lm_head`` is frozen: the reward never reads it, and a trainable parameter without gradients
    would stall DDP.
    """

    def __init__(self, backbone: CausalLM) -> None:
        super().__init__()
        self.backbone = backbone
        if backbone.lm_head is not None:
            backbone.lm_head.requires_grad_(False)
        self.head = nn.Linear(backbone.config.dim, 1)
        nn.init.normal_(self.head.weight, std=1.0 / (backbone.config.dim + 1) ** 0.5)
        nn.init.zeros_(self.head.bias)

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Final normed hidden states ``[B, T, dim]`` (what the LM head would read)."""
        captured: list[torch.Tensor] = []
        # A hook on the last layer runs CausalLM's own forward (masks, positions, RoPE) rather than a copy
        # of it that could drift; ``last_only`` keeps the discarded LM head to one position per row.
        handle = self.backbone.layers[-1].register_forward_hook(lambda _m, _i, out: captured.append(out))
        try:
            self.backbone(input_ids, attention_mask=attention_mask, last_only=True)
        finally:
            handle.remove()
        return self.backbone.norm(captured[-1])  # the norm is per position, so this is the model's own

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Rewards ``[B]`` (float32) of token ids ``[B, T]``; ``attention_mask`` is 1 for real tokens."""
        hidden = self.hidden_states(input_ids, attention_mask)  # (B, T, dim)
        if attention_mask is None:
            last = torch.full((hidden.shape[0],), hidden.shape[1] - 1, device=hidden.device)
        else:
            last = last_token_index(attention_mask)  # (B,)
        picked = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]  # (B, dim)
        return self.head(picked).squeeze(-1).float()
