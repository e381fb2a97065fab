"""The clip recipe: a CLIP-style dual encoder trained with any image–text loss, in one or more stages."""

from mie.recipes.clip.config import ClipConfig, check_config
from mie.recipes.clip.train import RunResult, build_train_loader, evaluate, print_results, train

Config = ClipConfig

__all__ = ["ClipConfig", "Config", "RunResult", "build_train_loader", "check_config", "evaluate",
           "print_results", "train"]
