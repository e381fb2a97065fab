"""Named model sizes and the factory that builds a model from a name or a ``DualEncoderConfig``.

>>> model = build_model("tiny", vocab_size=tokenizer.vocab_size,
...                     eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses

from torch import nn

from mie.models.multimodal import DualEncoder, DualEncoderConfig
from mie.models.torch_reference import TorchReferenceDualEncoder
from mie.registry import Registry
from mie.tokenization.base import SPECIAL_TOKENS

DEFAULT_PAD_ID = SPECIAL_TOKENS.index("<pad>")
DEFAULT_EOS_ID = SPECIAL_TOKENS.index("<eos>")


def _preset(name: str, width: int, layers: int, heads: int, **sizes: int) -> DualEncoderConfig:
    return DualEncoderConfig(
        name=name,
        embed_dim=width,
        vision_width=width,
        vision_layers=layers,
        vision_heads=heads,
        text_width=width,
        text_layers=layers,
        text_heads=heads,
        **sizes,
    )


MODEL_PRESETS: Registry[DualEncoderConfig] = Registry("model preset", plural="presets",
                                                     fix="pick one of them, or give every model field in the config")
# For tests and CPU smoke runs: trains in seconds.
MODEL_PRESETS.add("tiny", _preset("tiny", 128, 2, 4, image_size=64, patch_size=8, context_length=32))
# The prototype size of the project: synthetic shapes at 64 px in minutes on one GPU.
MODEL_PRESETS.add("small", _preset("small", 256, 4, 4, image_size=64, patch_size=8, context_length=32))
# configs/demo.yaml (`mie demo`): 48 px images, mean-pooled ViT; 1.7 M parameters with its BPE vocabulary.
MODEL_PRESETS.add("demo", dataclasses.replace(_preset("demo", 128, 4, 4, image_size=48, patch_size=8,
                                                      context_length=32), vision_pool="mean",
                                         vision_stem="conv"))
# ViT-B/16-like input (224 px, 16 px patches, CLIP's 77-token context) at half the width and depth.
MODEL_PRESETS.add("base", _preset("base", 512, 8, 8, image_size=224, patch_size=16, context_length=77))


def get_model_config(name: str, **overrides: object) -> DualEncoderConfig:
    """A fresh copy of the preset ``name``, with any ``DualEncoderConfig`` fields in ``overrides`` replaced."""
    preset = MODEL_PRESETS.lookup(name)
    fields = {f.name for f in dataclasses.fields(DualEncoderConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown DualEncoderConfig field(s) {unknown}; valid fields: {', '.join(sorted(fields))}")
    return dataclasses.replace(preset, **overrides)


def _resolve(name_or_config: str | DualEncoderConfig, vocab_size: int | None) -> DualEncoderConfig:
    if isinstance(name_or_config, str):
        config = get_model_config(name_or_config)
    elif isinstance(name_or_config, DualEncoderConfig):
        config = dataclasses.replace(name_or_config)
    else:
        raise TypeError(f"expected a preset name or a DualEncoderConfig, got {type(name_or_config).__name__}")
    if vocab_size is not None:
        if vocab_size <= 0:
            raise ValueError(f"vocab_size must be positive, got {vocab_size}")
        if config.vocab_size not in (0, vocab_size):
            raise ValueError(
                f"model.vocab_size={config.vocab_size} disagrees with the tokenizer's vocab_size={vocab_size}; "
                "set model.vocab_size to 0 (take it from the tokenizer) or to the same value"
            )
        config.vocab_size = vocab_size
    if config.vocab_size <= 0:
        raise ValueError(
            f"model {config.name!r} has vocab_size=0 (take it from the tokenizer): pass "
            "vocab_size=tokenizer.vocab_size to build_model"
        )
    return config


def build_model(
    name_or_config: str | DualEncoderConfig,
    *,
    vocab_size: int | None = None,
    eos_id: int = DEFAULT_EOS_ID,
    pad_id: int = DEFAULT_PAD_ID,
) -> DualEncoder:
    """Build a ``DualEncoder`` from a preset name or a complete ``DualEncoderConfig``.

    ``vocab_size`` (the tokenizer's) is required when the config's ``vocab_size`` is 0.
    """
    return DualEncoder(_resolve(name_or_config, vocab_size), eos_id=eos_id, pad_id=pad_id)


def build_torch_reference_model(
    name_or_config: str | DualEncoderConfig,
    *,
    vocab_size: int | None = None,
    eos_id: int = DEFAULT_EOS_ID,
    pad_id: int = DEFAULT_PAD_ID,
) -> TorchReferenceDualEncoder:
    """The same architecture from ``torch.nn.TransformerEncoder`` layers: the peer in benchmarks."""
    return TorchReferenceDualEncoder(_resolve(name_or_config, vocab_size), eos_id=eos_id, pad_id=pad_id)


def num_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters in ``model`` (only those with ``requires_grad`` if ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
