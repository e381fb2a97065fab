"""An encoder-decoder transformer for translation ("Attention Is All You Need", pre-norm).

>>> model = EncoderDecoderTransformer(Seq2SeqConfig(src_vocab_size=1000, tgt_vocab_size=1000))  # doctest: +SKIP
>>> logits = model(src, tgt_in)  # [B, T, tgt_vocab]; src [B, S] and tgt_in [B, T] token ids

The encoder is a stack of pre-norm ``TransformerBlock``s over the source (padding masked); each
decoder block adds causal self-attention, cross-attention to the encoder output and the MLP.
Token embeddings are scaled by ``sqrt(dim)`` and added to fixed sinusoidal positions; with
``share_embeddings`` source and target use one table (one joint vocabulary), and with
``tie_output`` the logits are ``h @ tgt_embed.weight.T`` (no output matrix).

Every attention is the one :class:`~mie.models.attention.MultiHeadAttention` (masks: bool, True = may
attend). For decoding, :meth:`EncoderDecoderTransformer.start_cache` projects the encoder output to every
layer's cross-attention keys/values once (``project_kv``); :meth:`~EncoderDecoderTransformer.decode_step`
then feeds only the new target tokens and appends their self-attention keys/values to the one
:class:`~mie.models.kv_cache.KVCache`, so decoding ``T`` tokens one by one gives the logits of one full
pass (``mie.models.seq2seq_decoding`` searches).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mie.config import POSITIVE, Rule, one_of
from mie.models.attention import key_mask
from mie.models.blocks import TransformerBlock, build_norm, init_transformer_
from mie.models.budget import check_model_size
from mie.models.kv_cache import KVCache
from mie.models.positional import SinusoidalPositionalEmbedding


@dataclass
class Seq2SeqConfig:
    """Architecture of an ``EncoderDecoderTransformer`` (the defaults: a small 3+3-layer model)."""

    RULES: ClassVar[dict[str, Rule]] = {
        **{name: POSITIVE for name in ("src_vocab_size", "tgt_vocab_size", "dim", "encoder_layers",
                                       "decoder_layers", "heads", "mlp_ratio", "max_len")},
        "activation": one_of("gelu", "swiglu"),
        "norm": one_of("layernorm", "rmsnorm"),
        "dropout": (lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
    }

    src_vocab_size: int = 8000  # set from the tokenizer by the recipe
    tgt_vocab_size: int = 8000
    dim: int = 256  # width of the residual stream
    encoder_layers: int = 3
    decoder_layers: int = 3
    heads: int = 4  # head_dim = dim // heads
    mlp_ratio: float = 4.0
    activation: str = "gelu"  # gelu | swiglu
    norm: str = "layernorm"  # layernorm | rmsnorm
    dropout: float = 0.1
    max_len: int = 256  # longest source or target in tokens (the sinusoid table's size)
    share_embeddings: bool = True  # one embedding table for source and target (needs one vocabulary)
    tie_output: bool = True  # logits use the target embedding table (no output matrix)
    pad_id: int = 0  # source padding, masked out of attention
    copy: bool = False  # pointer-generator output: a learned gate mixes the vocabulary softmax with a copy
    #                     attention over the source tokens (shared vocabulary only)

    def check_limits(self, key: str = "model") -> None:
        """Refuse sizes past the hard bounds or this machine's memory before anything is built (see
        :mod:`mie.models.budget`); the config machinery calls it at every load."""
        check_model_size(self, key or "model")


class Seq2SeqCache:
    """What decoding keeps between steps: the self-attention keys/values of every decoder layer in one
    :class:`~mie.models.kv_cache.KVCache`, and per layer the cross-attention keys/values ``[B, H, S, hd]``
    of the encoder output with the source's attention mask ``[B, 1, 1, S]`` (True = a real token).

    The cross keys/values of the sources given are kept as computed; ``cross`` holds them for the
    current rows, which :meth:`reorder` re-gathers only when a row's source changes: a beam search
    starts from one row per source, reorders once onto ``K`` beams each, and its later reorders move
    beams between beams of the same source, so they copy self-attention keys only.
    """

    def __init__(self, cross: list[tuple[torch.Tensor, torch.Tensor]], src_mask: torch.Tensor,
                 copy: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> None:
        self._source_cross, self._source_mask = cross, key_mask(src_mask)
        self.cross, self.memory_mask = cross, self._source_mask  # of the current rows
        self._source_copy = self.copy = copy  # (copy keys [B, S, dim], source ids [B, S], mask [B, S]) or None
        self.sources: torch.Tensor | None = None  # the source of every row; None: row i is source i
        self.self_attn = KVCache(len(cross))

    def __len__(self) -> int:
        """Number of target positions decoded so far."""
        return len(self.self_attn)

    def reorder(self, rows: torch.Tensor) -> None:
        """Keep (and duplicate) batch ``rows``, e.g. the parents of a beam search's new beams."""
        sources = rows if self.sources is None else self.sources.index_select(0, rows)
        if self.sources is None or not torch.equal(sources, self.sources):
            self.cross = [(k.index_select(0, sources), v.index_select(0, sources)) for k, v in self._source_cross]
            self.memory_mask = self._source_mask.index_select(0, sources)
            if self._source_copy is not None:
                self.copy = tuple(t.index_select(0, sources) for t in self._source_copy)  # type: ignore[assignment]
        self.sources = sources
        self.self_attn.reorder(rows)


class DecoderBlock(TransformerBlock):
    """A pre-norm decoder block: causal self-attention, cross-attention to the memory, MLP.

    Its cross-attention reads keys/values projected once per source (``cross_attn.project_kv(memory)``),
    so a decoding step costs only the new tokens' projections.
    """

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__(config.dim, config.heads, mlp_ratio=config.mlp_ratio, dropout=config.dropout,
                         norm=config.norm, cross_attention=True, activation=config.activation)

    def forward(self, x: torch.Tensor, memory_kv: tuple[torch.Tensor, torch.Tensor],  # type: ignore[override]
                memory_mask: torch.Tensor, kv_cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        """Transform the target states ``x`` ``[B, T, dim]`` given the memory's keys/values and its mask
        (``key_mask(src_mask)``); with ``kv_cache``, ``x`` holds only new tokens, stored as layer ``layer``."""
        causal = kv_cache is None or x.shape[1] > 1  # one new token may see every cached one: no mask
        return super().forward(x, is_causal=causal, context_mask=memory_mask, kv_cache=kv_cache, layer=layer,
                               context_kv=memory_kv)


class EncoderDecoderTransformer(nn.Module):
    """Source and target embeddings, an encoder stack, a decoder stack, final norms and the output layer."""

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        if config.dim % config.heads != 0:
            raise ValueError(f"dim={config.dim} must be divisible by heads={config.heads}")
        if config.share_embeddings and config.src_vocab_size != config.tgt_vocab_size:
            raise ValueError(f"share_embeddings needs one vocabulary, got {config.src_vocab_size} source and "
                             f"{config.tgt_vocab_size} target tokens")
        check_model_size(config)  # before any weight is allocated
        self.config = config
        self.src_embed = nn.Embedding(config.src_vocab_size, config.dim)
        self.tgt_embed = self.src_embed if config.share_embeddings else nn.Embedding(config.tgt_vocab_size, config.dim)
        self.positions = SinusoidalPositionalEmbedding(config.max_len, config.dim)
        self.dropout = nn.Dropout(config.dropout)
        self.encoder = nn.ModuleList(
            TransformerBlock(config.dim, config.heads, mlp_ratio=config.mlp_ratio, dropout=config.dropout,
                             norm=config.norm, activation=config.activation) for _ in range(config.encoder_layers))
        self.encoder_norm = build_norm(config.norm, config.dim)
        self.decoder = nn.ModuleList(DecoderBlock(config) for _ in range(config.decoder_layers))
        self.decoder_norm = build_norm(config.norm, config.dim)
        self.output = None if config.tie_output else nn.Linear(config.dim, config.tgt_vocab_size, bias=False)
        if config.copy and not config.share_embeddings:
            raise ValueError("copy needs share_embeddings: a copied source token must be a target token")
        self.copy_query = nn.Linear(config.dim, config.dim, bias=False) if config.copy else None
        self.copy_key = nn.Linear(config.dim, config.dim, bias=False) if config.copy else None
        self.copy_gate = nn.Linear(config.dim, 1) if config.copy else None
        # width^-0.5 init (as the dual encoder's towers): scaled embeddings start at unit variance.
        init_transformer_(self, max(config.encoder_layers, config.decoder_layers), std=config.dim ** -0.5)

    def num_parameters(self) -> int:
        """Number of scalar parameters (a shared embedding table counted once)."""
        return sum(p.numel() for p in self.parameters())

    def _embed(self, table: nn.Embedding, ids: torch.Tensor, offset: int = 0) -> torch.Tensor:
        x = table(ids) * math.sqrt(self.config.dim)  # (B, L, dim)
        return self.dropout(self.positions(x, offset))

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder output ``[B, S, dim]`` of source ids ``[B, S]`` and the source mask ``[B, S]``
        (True = a real token, False = padding)."""
        src_mask = src != self.config.pad_id
        x = self._embed(self.src_embed, src)
        mask = key_mask(src_mask)
        for block in self.encoder:
            x = block(x, mask=mask)
        return self.encoder_norm(x), src_mask

    def _logits(self, x: torch.Tensor, copy: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
                ) -> torch.Tensor:
        """Logits ``[B, T, vocab]``; with the copy gate, log-probabilities of the mixture (See et al., 2017)
        ``g * softmax(logits) + (1 - g) * copy attention scattered onto the source ids``, which a
        log-softmax leaves unchanged, so losses and searches read them as logits."""
        x = self.decoder_norm(x)
        weight = self.tgt_embed.weight if self.output is None else self.output.weight
        logits = F.linear(x, weight).float()  # (B, T, vocab)
        if self.copy_gate is None or copy is None:
            return logits
        keys, ids, mask = copy  # (B, S, dim), (B, S), (B, S)
        scores = (self.copy_query(x) @ keys.transpose(1, 2)).float() * self.config.dim ** -0.5  # (B, T, S)
        attn = scores.masked_fill(~mask[:, None, :], float("-inf")).softmax(-1)
        gate = torch.sigmoid(self.copy_gate(x).float())  # (B, T, 1)
        probs = (gate * logits.softmax(-1)).scatter_add(-1, ids[:, None, :].expand(-1, x.shape[1], -1),
                                                        (1.0 - gate) * attn)
        return probs.clamp_min(1e-9).log()

    def copy_context(self, memory: torch.Tensor, src: torch.Tensor | None, src_mask: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """What the copy gate reads of a source: its copy keys, ids and mask (None without copy)."""
        if self.copy_key is None or src is None:
            return None
        return self.copy_key(memory), src, src_mask

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor,
               src: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[B, T, vocab]`` of the target prefix ``tgt_in`` ``[B, T]`` given the encoder output
        (and, for the copy gate, the source ids ``src``)."""
        x = self._embed(self.tgt_embed, tgt_in)
        mask = key_mask(src_mask)
        for block in self.decoder:
            x = block(x, block.cross_attn.project_kv(memory), mask)
        return self._logits(x, self.copy_context(memory, src, src_mask))

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits ``[B, T, vocab]``: position ``t`` predicts the token after ``tgt_in[:, t]``."""
        memory, src_mask = self.encode(src)
        return self.decode(tgt_in, memory, src_mask, src)

    def start_cache(self, memory: torch.Tensor, src_mask: torch.Tensor, src: torch.Tensor | None = None
                    ) -> Seq2SeqCache:
        """A decoding cache for these sources: every layer's cross-attention keys/values (and the copy
        context of ``src``), computed once."""
        return Seq2SeqCache([block.cross_attn.project_kv(memory) for block in self.decoder], src_mask,
                            self.copy_context(memory, src, src_mask))

    def decode_step(self, tgt_new: torch.Tensor, cache: Seq2SeqCache) -> torch.Tensor:
        """Logits ``[B, T, vocab]`` of the new target tokens ``[B, T]`` after those already in ``cache``
        (which is extended in place)."""
        x = self._embed(self.tgt_embed, tgt_new, offset=len(cache))
        for layer, (block, memory_kv) in enumerate(zip(self.decoder, cache.cross)):
            x = block(x, memory_kv, cache.memory_mask, cache.self_attn, layer)
        cache.self_attn.advance(tgt_new.shape[1])
        return self._logits(x, cache.copy)
