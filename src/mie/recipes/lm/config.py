"""The lm recipe's config: the trainer's settings (top level) plus model, data, tokenizer and samples."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from mie.config import NON_NEGATIVE, POSITIVE, ConfigError, Rule, one_of
from mie.data.lm_text import LMTextConfig
from mie.models.budget import BOUNDS, check_bound, check_training, check_workers
from mie.models.causal_lm import CausalLMConfig
from mie.models.lora import LoRAConfig  # noqa: F401 - re-exported: it was defined here
from mie.tokenization.config import TokenizerConfig
from mie.training.config import TrainerConfig

# The architectures of the named pretrained models, so that a fine-tuning config is sized before the
# download is read (SmolLM2-135M-Instruct's GGUF metadata; the loader builds exactly this).
PRETRAINED_ARCHITECTURES: dict[str, CausalLMConfig] = {
    "smollm2-135m-instruct": CausalLMConfig(vocab_size=49152, dim=576, n_layers=30, n_heads=9, n_kv_heads=3,
                                            mlp_hidden=1536, rope_theta=100000.0, max_seq_len=8192),
}


@dataclass
class SampleConfig:
    """Text generated from ``prompt`` at every validation (``samples.txt``) and in the report."""

    RULES: ClassVar[dict[str, Rule]] = {"max_new_tokens": NON_NEGATIVE, "temperature": NON_NEGATIVE,
                                        "top_k": NON_NEGATIVE, "num_samples": POSITIVE,
                                        "top_p": (lambda v: 0.0 < v <= 1.0, "in (0, 1]")}

    prompt: str = "The "
    max_new_tokens: int = 64  # 0 = no samples
    temperature: float = 0.8  # 0 = greedy
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0  # sampling is seeded, so the same weights give the same text
    num_samples: int = 2  # samples in the report


@dataclass
class LMTokenizerConfig(TokenizerConfig):
    """The tokenizer of an lm run: a case-preserving byte-level BPE trained on the corpus (or ``path``)."""

    name: str = "bpe"
    vocab_size: int = 2048
    lowercase: bool = False


@dataclass
class LMConfig(TrainerConfig):
    """A causal LM run: ``LMConfig(data=LMTextConfig(files=["notes/*.txt"]))`` is complete with defaults."""

    RULES: ClassVar[dict[str, Rule]] = {**TrainerConfig.RULES, "recipe": one_of("lm")}

    recipe: str = "lm"
    best_metric: str = "val/loss"
    best_mode: str = "min"
    model: CausalLMConfig = field(default_factory=CausalLMConfig)
    data: LMTextConfig = field(default_factory=LMTextConfig)
    tokenizer: LMTokenizerConfig = field(default_factory=LMTokenizerConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    #: fine-tune instead of training from scratch: a pretrained model's name (``smollm2-135m-instruct``)
    #: or a finished lm run's folder. Its architecture and tokenizer replace ``model`` and ``tokenizer``.
    init: str = ""
    lora: LoRAConfig = field(default_factory=LoRAConfig)


def check_config(config: LMConfig) -> None:
    """Refuse, in one line, what the dataclass rules cannot see: a non-BPE tokenizer, a block longer
    than the model's context, stage losses (a language model has one loss), no files."""
    if config.lora.r and not config.init:
        raise ConfigError("lora.r: adapters fine-tune a trained model, but init is empty",
                          fix="set init to a pretrained model (smollm2-135m-instruct) or an lm run, or lora.r: 0")
    if config.tokenizer.name != "bpe" and not config.tokenizer.path and not config.init:
        raise ConfigError(f"tokenizer.name: {config.tokenizer.name!r} cannot feed the token cache — use bpe")
    if config.data.block_size > config.model.max_seq_len and not config.init:
        raise ConfigError(f"data.block_size: {config.data.block_size} is longer than model.max_seq_len "
                          f"{config.model.max_seq_len} — lower it or raise model.max_seq_len")
    for index, stage in enumerate(config.stages):
        if stage.loss is not None:
            raise ConfigError(f"stages[{index}].loss: a language model trains with next-token cross-entropy "
                              "only — remove the stage's loss")
    if not config.data.files and not config.data.fallback_files:
        raise ConfigError("data.files: no text file given — set data.files to globs of UTF-8 text files")
    check_budget(config)


def base_architecture(init: str) -> CausalLMConfig | None:
    """The architecture ``init`` names: a pretrained model's, or a finished lm run's ``config.yaml`` (read and
    size-checked, not built); None when it is neither (loading it later says why)."""
    if init in PRETRAINED_ARCHITECTURES:
        return PRETRAINED_ARCHITECTURES[init]
    from mie.io.run_files import CONFIG_FILE
    from mie.pretrained.loading import lm_run_architecture

    if not (Path(init) / CONFIG_FILE).is_file():
        return None
    return lm_run_architecture(init, where="init")


def check_budget(config: LMConfig, prefix: str = "") -> CausalLMConfig:
    """Refuse, before any data is read or model built, sizes this machine cannot hold: tokenizer workers past
    its cores, a vocabulary or batch past the bounds, samples longer than the context, and a training step
    (weights, gradients, AdamW, activations) past the memory available. Returns the architecture trained."""
    data = config.data
    check_workers(data.workers, f"{prefix}data.workers", in_process="1 = in-process")
    check_bound(config.tokenizer.vocab_size, BOUNDS["vocab"], f"{prefix}tokenizer.vocab_size")
    check_bound(data.block_size, BOUNDS["context"], f"{prefix}data.block_size")
    model = base_architecture(config.init) if config.init else None
    if model is None:
        vocab = config.model.vocab_size if config.tokenizer.path else config.tokenizer.vocab_size
        model = dataclasses.replace(config.model, vocab_size=vocab)  # the recipe takes it from the tokenizer
    if config.sample.max_new_tokens >= model.max_seq_len:
        raise ConfigError(f"{prefix}sample.max_new_tokens: {config.sample.max_new_tokens:,} leaves no room for the "
                          f"prompt in the model's context of {model.max_seq_len:,} tokens",
                          fix=f"use at most {model.max_seq_len - 2:,}")
    check_training(model, f"{prefix}data.batch_size", data.batch_size, data.block_size,
                   fix=f"lower {prefix}data.batch_size, {prefix}data.block_size or the model's size",
                   precision=config.precision)
    return model
