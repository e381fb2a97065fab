"""Refuse before allocating: sizes of a model config checked against sane bounds and this machine.

Every estimate here is made from a config alone, before a model is built or data is read:

* :func:`parameter_count` gives the exact number of parameters the config would build (tests compare
  it with ``sum(p.numel())`` of built models);
* :func:`activation_floats` gives an upper estimate of the floats a training step keeps for backward;
* :func:`kv_cache_bytes` gives what a generation cache of a causal LM holds.

:func:`check_model_size` applies the hard bounds (:data:`BOUNDS`) and compares the weights with the
memory available now (``MemAvailable`` of ``/proc/meminfo``); :func:`check_memory` and
:func:`check_workers` serve the recipes' training checks. Each refusal is one line naming the key, the
limit and the fix (a :class:`~mie.errors.ConfigError`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from mie.errors import ConfigError

FLOAT_BYTES = 4  # float32 weights, gradients and activations
ADAM_BYTES = 2 * FLOAT_BYTES  # AdamW keeps two moments per trained parameter
MAX_BEAM = 64  # beams per source: past this the search costs more than it can find
MAX_CANDIDATES = 64  # sampled revisions per prompt (cai)
MAX_BATCH = 1 << 16  # rows per batch
MIN_WORKER_LIMIT = 4  # a few worker processes are allowed even on a 1- or 2-core machine

# Hard upper bounds per config field, whatever the machine: far above any model this engine trains on a
# CPU, far below what would overflow an index or take minutes merely to build.
BOUNDS: dict[str, int] = {
    "layers": 1024, "width": 65_536, "heads": 1024, "vocab": 1 << 21, "context": 1 << 20,
    "image_size": 4096, "channels": 64, "classes": 1 << 20,
}

# field name -> kind of bound, per model config class (looked up by class name: no import cycle).
_FIELDS: dict[str, dict[str, str]] = {
    "CausalLMConfig": {"n_layers": "layers", "dim": "width", "mlp_hidden": "width", "n_heads": "heads",
                       "n_kv_heads": "heads", "vocab_size": "vocab", "max_seq_len": "context"},
    "Seq2SeqConfig": {"encoder_layers": "layers", "decoder_layers": "layers", "dim": "width", "heads": "heads",
                      "src_vocab_size": "vocab", "tgt_vocab_size": "vocab", "max_len": "context"},
    "DualEncoderConfig": {"vision_layers": "layers", "text_layers": "layers", "vision_width": "width",
                          "text_width": "width", "embed_dim": "width", "vision_heads": "heads",
                          "text_heads": "heads", "vocab_size": "vocab", "context_length": "context",
                          "image_size": "image_size", "patch_size": "image_size", "in_channels": "channels"},
    "ViTClassifierConfig": {"layers": "layers", "width": "width", "heads": "heads", "image_size": "image_size",
                            "patch_size": "image_size", "in_channels": "channels", "num_classes": "classes"},
}
_RATIOS = ("mlp_ratio",)  # widths given as a multiple of the model width
MAX_MLP_RATIO = 64.0


# ---- the machine ---------------------------------------------------------------------------------------


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def available_memory() -> int:
    """Bytes of memory available to a new allocation now: ``MemAvailable`` (Linux), else free pages."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return 1 << 62  # unknown: only the hard bounds apply


def format_bytes(n: float) -> str:
    """``1.6 TB``, ``13.2 GB``, ``540 MB``: decimal units, as ``free -h`` and the issue reports read."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= size:
            return f"{n / size:.1f} {unit}" if n < 100 * size else f"{n / size:,.0f} {unit}"
    return f"{n / 1e3:.0f} kB"


# ---- parameters ----------------------------------------------------------------------------------------


def _norm(norm: str, dim: int) -> int:
    return 2 * dim if norm == "layernorm" else dim


def _block(dim: int, mlp_ratio: float, norm: str, activation: str = "gelu", cross: bool = False) -> int:
    """Parameters of one ``TransformerBlock`` (biases on): self-attention, optional cross-attention, MLP."""
    hidden = int(dim * mlp_ratio)
    attention = 4 * dim * dim + 4 * dim  # qkv (or q + kv) and out projections with biases
    fan_out = 2 * hidden if activation == "swiglu" else hidden
    mlp = dim * fan_out + fan_out + hidden * dim + dim
    return (2 + cross) * _norm(norm, dim) + (1 + cross) * attention + mlp


def _vision(image_size: int, patch_size: int, channels: int, width: int, layers: int, mlp_ratio: float, norm: str,
            pool: str, stem: str) -> int:
    """Parameters of a ``VisionTransformer``: stem, class token, positions, blocks, final norm."""
    tokens = (image_size // max(patch_size, 1)) ** 2 + (pool == "cls")
    if stem == "conv":
        stages, total, c = max(patch_size.bit_length() - 1, 0), 0, channels
        for stage in range(stages):
            out = max(16, width >> (stages - 1 - stage))
            total, c = total + c * out * 9 + 2 * out, out  # 3x3 conv without bias, channel LayerNorm
        stem_params = total + c * width + width
    else:
        stem_params = channels * patch_size * patch_size * width + width
    return (stem_params + (pool == "cls") * width + tokens * width
            + layers * _block(width, mlp_ratio, norm) + _norm(norm, width))


def _lm_hidden(c: Any) -> int:
    """The MLP width of a ``CausalLMConfig`` (as ``CausalLMConfig.hidden_dim``)."""
    if c.mlp_hidden is not None:
        return c.mlp_hidden
    return 4 * c.dim if c.mlp == "gelu" else 64 * -(-int(8 * c.dim / 3) // 64)


def _causal_lm(c: Any) -> int:
    head_dim, kv = c.dim // c.n_heads, c.n_kv_heads or c.n_heads
    q, k = c.n_heads * head_dim, kv * head_dim
    hidden = _lm_hidden(c)
    mats = 2 if c.mlp == "gelu" else 3
    attention = c.dim * q + 2 * c.dim * k + q * c.dim + (q + 2 * k) * (c.bias or getattr(c, "qkv_bias", False)) \
        + c.dim * c.bias
    mlp = mats * c.dim * hidden + ((mats - 1) * hidden + c.dim) * c.bias
    layer = 2 * _norm(c.norm, c.dim) + attention + mlp
    embeddings = c.vocab_size * c.dim * (1 + (not c.tie_embeddings)) + c.max_seq_len * c.dim * (c.positions == "learned")
    return embeddings + c.n_layers * layer + _norm(c.norm, c.dim)


def _seq2seq(c: Any) -> int:
    tables = c.src_vocab_size * c.dim + (not c.share_embeddings) * c.tgt_vocab_size * c.dim
    output = (not c.tie_output) * c.dim * c.tgt_vocab_size
    return (tables + output + c.encoder_layers * _block(c.dim, c.mlp_ratio, c.norm, c.activation)
            + c.decoder_layers * _block(c.dim, c.mlp_ratio, c.norm, c.activation, cross=True)
            + 2 * _norm(c.norm, c.dim))


def _dual_encoder(c: Any) -> int:
    visual = _vision(c.image_size, c.patch_size, c.in_channels, c.vision_width, c.vision_layers, c.mlp_ratio, c.norm,
                     c.vision_pool, c.vision_stem)
    text = ((c.vocab_size + c.context_length) * c.text_width + c.text_layers * _block(c.text_width, c.mlp_ratio, c.norm)
            + _norm(c.norm, c.text_width))
    return visual + text + (c.vision_width + c.text_width) * c.embed_dim + 1


def _vit_classifier(c: Any) -> int:
    visual = _vision(c.image_size, c.patch_size, c.in_channels, c.width, c.layers, c.mlp_ratio, c.norm, c.pool,
                     c.stem)
    return visual + _norm(c.norm, c.width) + (c.width + 1) * c.num_classes


_COUNTS: dict[str, Callable[[Any], int]] = {"CausalLMConfig": _causal_lm, "Seq2SeqConfig": _seq2seq,
                                            "DualEncoderConfig": _dual_encoder,
                                            "ViTClassifierConfig": _vit_classifier}


def parameter_count(config: Any) -> int:
    """The exact number of parameters the model of ``config`` has once built (tied tables counted once)."""
    try:
        return _COUNTS[type(config).__name__](config)
    except KeyError:
        raise TypeError(f"no parameter count for {type(config).__name__}") from None


# ---- activations and caches ------------------------------------------------------------------------------


def _layers_floats(rows: int, tokens: int, dim: int, hidden: int, heads: int, layers: int, keys: int = 0,
                   vectors: int = 12) -> int:
    """Floats ``layers`` pre-norm blocks keep for backward on ``rows`` x ``tokens``: about ``vectors`` of the
    width per token (norm inputs and outputs, q/k/v, attention output, residuals: a measured block keeps
    8 to 10; RoPE's rotated copies add 4) and 4 of the MLP's (gate, value, activation, product), plus the
    attention weights (self, and cross-attention to ``keys`` positions) as SDPA's math kernel keeps them."""
    per_token = vectors * dim + 4 * hidden + (6 * dim if keys else 0)
    attention = 2 * heads * tokens * (tokens + keys)
    return layers * rows * (tokens * per_token + attention)


def _stem_floats(image_size: int, patch_size: int, channels: int, width: int, stem: str) -> int:
    """Floats per image of the input (and its augmented copies) and of a conv stem's feature maps."""
    floats = 4 * channels * image_size ** 2
    if stem == "conv":
        stages = max(patch_size.bit_length() - 1, 0)
        for stage in range(stages):
            out = max(16, width >> (stages - 1 - stage))
            floats += 3 * out * (image_size >> (stage + 1)) ** 2  # conv, norm and GELU outputs
    return floats


def activation_floats(config: Any, rows: int, tokens: int = 0, source_tokens: int = 0) -> int:
    """An upper estimate of the floats one training step on ``rows`` examples keeps for backward.

    ``tokens`` is the sequence length of a causal LM or of a seq2seq target, ``source_tokens`` a seq2seq
    source's; vision towers use their patch grid and the dual encoder's text its context length.
    """
    name = type(config).__name__
    if name == "CausalLMConfig":
        vectors = 16 if config.positions == "rope" else 12
        return (_layers_floats(rows, tokens, config.dim, _lm_hidden(config), config.n_heads, config.n_layers,
                               vectors=vectors)
                + 4 * rows * tokens * config.vocab_size)  # logits, their float copy, softmax and gradient
    if name == "Seq2SeqConfig":
        hidden = int(config.dim * config.mlp_ratio)
        return (_layers_floats(rows, source_tokens, config.dim, hidden, config.heads, config.encoder_layers)
                + _layers_floats(rows, tokens, config.dim, hidden, config.heads, config.decoder_layers, source_tokens)
                + 4 * rows * tokens * config.tgt_vocab_size)
    if name in ("DualEncoderConfig", "ViTClassifierConfig"):
        vit = name == "ViTClassifierConfig"
        width = config.width if vit else config.vision_width
        grid = (config.image_size // max(config.patch_size, 1)) ** 2 + 1
        vision = _layers_floats(rows, grid, width, int(width * config.mlp_ratio),
                                config.heads if vit else config.vision_heads,
                                config.layers if vit else config.vision_layers)
        pixels = rows * _stem_floats(config.image_size, config.patch_size, config.in_channels, width,
                                     config.stem if vit else config.vision_stem)
        if vit:
            return vision + pixels
        text = _layers_floats(rows, config.context_length, config.text_width, int(config.text_width * config.mlp_ratio),
                              config.text_heads, config.text_layers)
        return vision + pixels + text + 4 * rows * rows  # and the image-text similarity matrix
    raise TypeError(f"no activation estimate for {name}")


def kv_cache_bytes(config: Any, rows: int, length: int, bytes_per_value: int = FLOAT_BYTES) -> int:
    """Bytes of a causal LM's generation cache: keys and values of every layer for ``rows`` x ``length``."""
    head_dim, kv = config.dim // config.n_heads, config.n_kv_heads or config.n_heads
    return 2 * config.n_layers * rows * kv * head_dim * length * bytes_per_value + rows * length


def training_bytes(params: int, activations: int, trainable: int | None = None, frozen_copies: int = 0,
                   activation_bytes: int = FLOAT_BYTES) -> int:
    """Weights, gradients and AdamW moments of ``trainable`` parameters (default all), ``frozen_copies`` more
    copies of the weights (a reference model), and the activations of one step (``activation_bytes`` each:
    2 under bf16 or fp16 autocast)."""
    trainable = params if trainable is None else trainable
    return ((1 + frozen_copies) * params * FLOAT_BYTES + trainable * (FLOAT_BYTES + ADAM_BYTES)
            + activations * activation_bytes)


# ---- checks --------------------------------------------------------------------------------------------


def check_bound(value: int | float, limit: int | float, key: str, what: str = "", fix: str = "") -> None:
    """Refuse ``value`` above ``limit`` in one line naming ``key`` and the limit."""
    if value > limit:
        raise ConfigError(f"{key}: {value:,} is more than {limit:,}{' ' + what if what else ''}",
                          fix=fix or f"use at most {limit:,}")


def check_memory(need: int, what: str, key: str, fix: str, available: int | None = None) -> None:
    """Refuse when ``need`` bytes (an estimate for ``what``) exceed the memory available now."""
    available = available_memory() if available is None else available
    if need > available:
        raise ConfigError(f"{key}: {what} would take about {format_bytes(need)}, more than the "
                          f"{format_bytes(available)} of memory available on this machine", fix=fix)


def check_model_size(config: Any, key: str = "model", available: int | None = None) -> int:
    """Refuse a model config past the hard bounds or whose float32 weights exceed the available memory;
    returns its parameter count. Called at every config load (``check_limits``) and by the constructors."""
    fields = _FIELDS[type(config).__name__]
    for name, kind in fields.items():
        value = getattr(config, name)
        if value is not None:
            check_bound(value, BOUNDS[kind], f"{key}.{name}")
    for name in _RATIOS:
        if hasattr(config, name):
            check_bound(getattr(config, name), MAX_MLP_RATIO, f"{key}.{name}")
    params = parameter_count(config)
    names = ([n for n, kind in fields.items() if kind == "layers"] + [n for n, kind in fields.items() if kind == "width"][:1]
             + [n for n, kind in fields.items() if kind == "vocab"][:1])
    sizes = [f"{key}.{n}" for n in names]
    table = config.max_len * config.dim if type(config).__name__ == "Seq2SeqConfig" else 0  # the sinusoid buffer
    check_memory((params + table) * FLOAT_BYTES, f"{params:,} parameters", key,
                 f"lower {', '.join(sizes[:-1])} or {sizes[-1]}", available)
    return params


def check_training(config: Any, key: str, rows: int, tokens: int = 0, source_tokens: int = 0,
                   trainable: int | None = None, frozen_copies: int = 0, available: int | None = None,
                   fix: str = "", precision: str = "fp32") -> int:
    """Refuse a training step of ``rows`` examples (``tokens`` long) whose weights, gradients, AdamW moments
    and activations (:func:`training_bytes`) exceed the memory available; returns the estimate in bytes."""
    check_bound(rows, MAX_BATCH, key)
    params = parameter_count(config)
    half = precision in ("bf16", "fp16")  # autocast keeps most activations in 16 bits
    need = training_bytes(params, activation_floats(config, rows, tokens, source_tokens), trainable, frozen_copies,
                          2 if half else FLOAT_BYTES)
    shape = f"{rows:,} x {tokens:,} tokens" if tokens else f"{rows:,} examples"
    check_memory(need, f"training {params:,} parameters on batches of {shape}", key,
                 fix or f"lower {key} or the model's size", available)
    return need


def check_workers(workers: int, key: str, in_process: str = "0 = in-process", cores: int | None = None) -> None:
    """Refuse more worker processes than this machine can run (its cores, at least :data:`MIN_WORKER_LIMIT`)."""
    cores = usable_cores() if cores is None else cores
    limit = max(cores, MIN_WORKER_LIMIT)
    if workers > limit:
        raise ConfigError(f"{key}: {workers:,} worker processes is more than this machine's {cores} cores can run",
                          fix=f"use at most {limit} ({in_process})")


def check_generation_length(prompt_tokens: int, max_new_tokens: int, context: int, key: str = "max_new_tokens",
                            prompt_key: str = "the prompt") -> None:
    """Refuse ``max_new_tokens < 1``, a prompt that fills the model's context, or a prompt plus
    ``max_new_tokens`` past it (one line naming the key and the context)."""
    if max_new_tokens < 1:
        raise ConfigError(f"{key}: got {max_new_tokens}; must be at least 1", fix="ask for 1 or more new tokens")
    if prompt_tokens >= context:
        raise ConfigError(f"{prompt_key} is {prompt_tokens:,} tokens; the model's context is {context:,}",
                          fix=f"shorten it to at most {context - 1:,} tokens")
    if prompt_tokens + max_new_tokens > context:
        raise ConfigError(f"{key}: {max_new_tokens:,} new tokens after a {prompt_tokens:,}-token prompt exceed the "
                          f"model's context (max_seq_len) of {context:,}", fix=f"use at most {context - prompt_tokens:,}")


__all__ = ["BOUNDS", "MAX_BEAM", "MAX_CANDIDATES", "activation_floats", "available_memory", "check_bound",
           "check_generation_length", "check_memory", "check_model_size", "check_training", "check_workers", "format_bytes",
           "kv_cache_bytes", "parameter_count", "training_bytes", "usable_cores"]
