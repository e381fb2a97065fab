"""The classification recipe: a ViT image classifier on an ImageFolder, the shapes classes or Fashion-MNIST,
with label smoothing, mixup and cutmix; scored by top-1 / top-5 / per-class accuracy and confusion matrices."""

from mie.recipes.classification.config import (
           ClassificationDataConfig,
           ClassificationRecipeConfig,
           check_config,
)
from mie.recipes.classification.run import ClassificationRunResult, evaluate, print_results
from mie.recipes.classification.train import train

Config = ClassificationRecipeConfig

__all__ = ["ClassificationDataConfig", "ClassificationRecipeConfig", "ClassificationRunResult", "Config",
           "check_config", "evaluate", "print_results", "train"]
