"""A BERT encoder (post-norm, GELU, learned positions) and the mean-pooled sentence embedding.

>>> model = BertEncoder(BertConfig(vocab_size=100, hidden=32, layers=2, heads=4, intermediate=64))
>>> ids = torch.tensor([[2, 5, 6, 3]]); mask = torch.ones_like(ids)
>>> model.embed(ids, mask).shape
torch.Size([1, 32])

``hf_state_dict`` renames a HF ``BertModel`` checkpoint (``embeddings.word_embeddings.weight``,
``encoder.layer.N.attention.self.query.weight``, ...) to our names; the pooler (``pooler.dense``) and
the buffer ``position_ids`` are dropped, as sentence embeddings do not use them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mie.errors import CheckpointError
from mie.models.attention import MultiHeadAttention, key_mask
from mie.models.blocks import build_norm


@dataclass(frozen=True)
class BertConfig:
    """The shape of a BERT encoder; the defaults are all-MiniLM-L6-v2's."""

    vocab_size: int = 30522
    hidden: int = 384  # width of every token vector
    layers: int = 6
    heads: int = 12  # hidden must divide by heads
    intermediate: int = 1536  # width of the MLP's hidden layer
    max_positions: int = 512  # learned absolute positions: the longest input
    type_vocab_size: int = 2  # segment ids (A/B sentence); single texts use 0
    norm_eps: float = 1e-12

    @classmethod
    def from_hf(cls, config: Mapping[str, Any]) -> BertConfig:
        """From a HF ``config.json`` of a ``BertModel`` (absolute positions, GELU)."""
        if config.get("hidden_act", "gelu") != "gelu" or config.get("position_embedding_type",
                                                                     "absolute") != "absolute":
            raise CheckpointError("only BERT with hidden_act 'gelu' and absolute positions is supported",
                                  where="config.json")
        return cls(vocab_size=int(config["vocab_size"]), hidden=int(config["hidden_size"]),
                   layers=int(config["num_hidden_layers"]), heads=int(config["num_attention_heads"]),
                   intermediate=int(config["intermediate_size"]),
                   max_positions=int(config["max_position_embeddings"]),
                   type_vocab_size=int(config.get("type_vocab_size", 2)),
                   norm_eps=float(config.get("layer_norm_eps", 1e-12)))


class BertLayer(nn.Module):
    """One post-norm layer: ``x = norm(x + attn(x)); x = norm(x + mlp(x))`` with an erf GELU.

    The attention is the one :class:`~mie.models.attention.MultiHeadAttention`, bidirectional, with
    separate ``q_proj``/``k_proj``/``v_proj`` (as BERT's checkpoints store them, so LoRA adapts each).
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        if config.hidden % config.heads:
            raise ValueError(f"hidden {config.hidden} must divide by heads {config.heads}")
        self.attn = MultiHeadAttention(config.hidden, config.heads, fused=False)
        self.attn_norm = build_norm("layernorm", config.hidden, eps=config.norm_eps)
        self.fc1 = nn.Linear(config.hidden, config.intermediate)
        self.fc2 = nn.Linear(config.intermediate, config.hidden)
        self.mlp_norm = build_norm("layernorm", config.hidden, eps=config.norm_eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``x`` (B, T, C) -> (B, T, C); ``mask`` (B, 1, 1, T) True on real keys (``key_mask``), or None."""
        x = self.attn_norm(x + self.attn(x, mask=mask))
        return self.mlp_norm(x + self.fc2(F.gelu(self.fc1(x))))  # exact (erf) GELU, as BERT's "gelu"


class BertEncoder(nn.Module):
    """Token + position + segment embeddings, LayerNorm, then ``layers`` post-norm transformer layers."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.token_embed = nn.Embedding(config.vocab_size, config.hidden)
        self.position_embed = nn.Embedding(config.max_positions, config.hidden)
        self.type_embed = nn.Embedding(config.type_vocab_size, config.hidden)
        self.embed_norm = build_norm("layernorm", config.hidden, eps=config.norm_eps)
        self.layers = nn.ModuleList(BertLayer(config) for _ in range(config.layers))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Token vectors (B, T, C) of ``input_ids`` (B, T); ``attention_mask`` (B, T) is 1 on real tokens."""
        t = input_ids.shape[1]
        if t > self.config.max_positions:
            raise ValueError(f"input of {t} tokens exceeds max_positions {self.config.max_positions}")
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        positions = torch.arange(t, device=input_ids.device)
        x = self.token_embed(input_ids) + self.position_embed(positions) + self.type_embed(token_type_ids)
        x = self.embed_norm(x)  # (B, T, C)
        # Padding keys are never attended; a row that is all padding gets zero attention output (finite).
        mask = None if attention_mask is None else key_mask(attention_mask != 0)
        for layer in self.layers:
            x = layer(x, mask)
        return x

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
              normalize: bool = True) -> torch.Tensor:
        """Sentence embeddings (B, C): the mean of the real tokens' vectors, L2-normalized if ``normalize``."""
        return mean_pool(self(input_ids, attention_mask), attention_mask, normalize)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Mean of ``hidden`` (B, T, C) over positions where ``attention_mask`` (B, T) is 1; then L2 norm.

    The count is clamped at 1e-9 as sentence-transformers does, so an all-padding row gives zeros.
    """
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return F.normalize(pooled, p=2, dim=-1) if normalize else pooled


_HF_EMBEDDINGS = {
    "embeddings.word_embeddings.weight": "token_embed.weight",
    "embeddings.position_embeddings.weight": "position_embed.weight",
    "embeddings.token_type_embeddings.weight": "type_embed.weight",
    "embeddings.LayerNorm.weight": "embed_norm.weight",
    "embeddings.LayerNorm.bias": "embed_norm.bias",
}
_HF_LAYER = {  # encoder.layer.N.<key> -> layers.N.<value>
    "attention.self.query": "attn.q_proj",
    "attention.self.key": "attn.k_proj",
    "attention.self.value": "attn.v_proj",
    "attention.output.dense": "attn.out_proj",
    "attention.output.LayerNorm": "attn_norm",
    "intermediate.dense": "fc1",
    "output.dense": "fc2",
    "output.LayerNorm": "mlp_norm",
}
_HF_UNUSED = ("pooler.", "embeddings.position_ids")


def hf_name(name: str) -> str | None:
    """Our parameter name for a HF ``BertModel`` name; ``None`` for the pooler and buffers we do not use.

    ``hf_name("encoder.layer.3.attention.self.query.weight") == "layers.3.attn.q_proj.weight"``.
    """
    name = name.removeprefix("bert.")  # BertForX checkpoints nest the encoder under "bert."
    if name.startswith(_HF_UNUSED):
        return None
    if name in _HF_EMBEDDINGS:
        return _HF_EMBEDDINGS[name]
    parts = name.split(".")
    if len(parts) >= 5 and parts[:2] == ["encoder", "layer"] and parts[2].isdigit():
        module, leaf = ".".join(parts[3:-1]), parts[-1]
        if module in _HF_LAYER:
            return f"layers.{parts[2]}.{_HF_LAYER[module]}.{leaf}"
    raise CheckpointError(f"unexpected tensor {name!r} in a BERT checkpoint",
                          fix="pass the weights of a HF BertModel")


def hf_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A HF ``BertModel`` state dict under our names (see :func:`hf_name`)."""
    out = {}
    for name, tensor in state.items():
        ours = hf_name(name)
        if ours is not None:
            out[ours] = tensor
    return out
