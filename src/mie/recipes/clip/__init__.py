"""The clip recipe: a CLIP-style dual encoder trained with any image–text loss, in one or more stages."""

from mie.recipes.clip.config import ClipConfig, check_config
from mie.recipes.clip.run import RunResult, evaluate, print_results
from mie.recipes.clip.train import build_train_loader, train

Config = ClipConfig

__all__ = ["ClipConfig", "Config", "RunResult", "build_train_loader", "check_config", "evaluate",
           "print_results", "train"]
