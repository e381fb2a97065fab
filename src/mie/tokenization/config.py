"""The tokenizer section of a config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mie.config import POSITIVE, Rule, one_of


@dataclass
class TokenizerConfig:
    """Which tokenizer turns captions into ids: ``simple`` (word level) or ``bpe``."""

    RULES: ClassVar[dict[str, Rule]] = {"name": one_of("simple", "bpe"), "vocab_size": POSITIVE}

    name: str = "simple"
    path: str = ""  # a saved tokenizer JSON; empty = train/build one from the training captions
    vocab_size: int = 4096
    lowercase: bool = True
