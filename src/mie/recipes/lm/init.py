"""Where an lm run's model and tokenizer come from: trained from scratch, or a trained model fine-tuned.

``init: smollm2-135m-instruct`` (a name of ``mie.pretrained``) or ``init: runs/my_lm`` (a finished lm
run) starts from that model (``mie.pretrained.load_language_model`` loads it); its architecture and
tokenizer replace the config's ``model`` and ``tokenizer`` sections. ``lora.r > 0`` then puts adapters on ``lora.targets`` and trains only them;
checkpoints hold the merged weights (see ``mie.models.lora.merged_state_dict``), so a fine-tuned run
loads like any other. A chat model's template is kept beside ``tokenizer.json`` for ``mie generate --chat``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from mie.errors import ConfigError
from mie.io.run_files import CHAT_TEMPLATE_FILE
from mie.models.causal_lm import CausalLM
from mie.models.lora import lora_freeze_patterns
from mie.recipes.lm.config import LMConfig
from mie.training.config import StageConfig

log = logging.getLogger(__name__)


def save_chat_template(tokenizer: Any, run_dir: Path) -> None:
    """Keep the tokenizer's chat template (if it has one) beside the run's ``tokenizer.json``."""
    template = getattr(tokenizer, "chat_template", None)
    if template:
        (run_dir / CHAT_TEMPLATE_FILE).write_text(template, encoding="utf-8")


def prepare_finetune(config: LMConfig, model: CausalLM) -> CausalLM:
    """The starting model ready to train: float32, in train mode, with adapters when ``lora.r`` > 0."""
    model = model.float().train()
    if config.data.block_size > model.config.max_seq_len:
        raise ConfigError(f"{config.data.block_size} is longer than {config.init}'s context of "
                          f"{model.config.max_seq_len} tokens", where="data.block_size", fix="lower it")
    if config.lora.r:
        names = config.lora.apply(model)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        log.info("LoRA r=%d on %d layers (%s): %s of %s parameters train", config.lora.r, len(names),
                 ", ".join(config.lora.targets), f"{trainable:,}", f"{sum(p.numel() for p in model.parameters()):,}")
    return model


def trainer_config(config: LMConfig, model: CausalLM) -> LMConfig:
    """The config the trainer runs: with adapters, every stage also freezes all but them
    (:func:`~mie.models.lora.lora_freeze_patterns`)."""
    if not config.lora.r:
        return config
    patterns = lora_freeze_patterns(model)
    stages = [dataclasses.replace(stage, freeze=[*stage.freeze, *patterns])
              for stage in (config.stages or [StageConfig(name="train")])]
    return dataclasses.replace(config, stages=stages)
