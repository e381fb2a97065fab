"""The cai recipe: Constitutional AI (SL-CAI, then RL-CAI with a reward model, DPO and PPO) on a causal LM."""

from pathlib import Path
from typing import Any

from mie.errors import ConfigError
from mie.recipes.cai.config import CAIConfig, check_config
from mie.recipes.cai.pipeline import PHASES, CAIRunResult, train
from mie.recipes.cai.report import print_results

Config = CAIConfig


def evaluate(run_dir: str | Path, splits: Any = None, **_: Any) -> Any:
    """A cai run is measured by ``mie safety train`` itself (held-out answers in ``eval/``)."""
    raise ConfigError("a cai run is measured as it trains; its figures are in report.md and results.json",
                      where=str(run_dir), fix="read them, or run `mie safety train --config FILE --resume`")


__all__ = ["PHASES", "CAIConfig", "CAIRunResult", "Config", "check_config", "evaluate", "print_results", "train"]
