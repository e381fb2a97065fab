"""The lm recipe: a decoder-only language model trained from scratch on text files (byte-level BPE)."""

from mie.recipes.lm.config import LMConfig, SampleConfig, check_config
from mie.recipes.lm.run import LMRunResult, evaluate, print_results
from mie.recipes.lm.train import train

Config = LMConfig

__all__ = ["Config", "LMConfig", "LMRunResult", "SampleConfig", "check_config", "evaluate", "print_results", "train"]
