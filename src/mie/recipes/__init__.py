"""The application: one recipe per family of models, wiring config -> data -> task -> trainer ->
evaluation -> report. A config names its recipe (``recipe: clip``); ``mie train FILE`` dispatches
on it. Recipes are imported only when used, so ``mie --help`` stays fast.

A recipe module exposes ``Config`` (its dataclass, which extends ``TrainerConfig``),
``check_config(config)`` (what the dataclass cannot check: a loss that does not fit the task),
``train(config, resume, quiet, overwrite)``, ``evaluate(run_dir, splits, ...)`` (returns the scores
and their comparison with the run's report) and ``print_results(result)``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from mie.config import ConfigError, load_config, read_yaml
from mie.registry import Registry


@dataclass(frozen=True)
class Recipe:
    """A registered recipe: its module and a one-line description."""

    name: str
    module: str
    help: str

    def load(self) -> ModuleType:
        """The recipe's module (imported on first use)."""
        return importlib.import_module(self.module)


RECIPES: Registry[Recipe] = Registry("recipe")
for _recipe in (
    Recipe("clip", "mie.recipes.clip", "image–text dual encoder, CLIP or any image–text loss, stages"),
    Recipe("cai", "mie.recipes.cai", "Constitutional AI on a causal LM: critique-revision SFT, AI feedback, "
           "reward model, DPO, PPO"),
    Recipe("classification", "mie.recipes.classification", "ViT image classifier (top-1/top-5, confusion matrix)"),
    Recipe("lm", "mie.recipes.lm", "decoder-only language model on text files (byte-level BPE, packed blocks)"),
    Recipe("seq2seq", "mie.recipes.seq2seq", "encoder-decoder translation model (BLEU, chrF, beam search)"),
):
    RECIPES.add(_recipe.name, _recipe)
del _recipe
DEFAULT_RECIPE = "clip"


def get_recipe(name: str) -> Recipe:
    """The recipe registered as ``name``, or a one-line error listing the known ones."""
    return RECIPES.lookup(name, where="recipe")


def recipe_name(data: Any) -> str:
    """The ``recipe`` a loaded YAML mapping names (configs without one are ``clip`` configs)."""
    name = data.get("recipe", DEFAULT_RECIPE) if isinstance(data, Mapping) else DEFAULT_RECIPE
    if not isinstance(name, str):
        raise ConfigError(f"recipe: expected a recipe name such as clip, got {name!r}")
    return name


def load_recipe_config(path: str | Path, overrides: Iterable[str] = ()) -> tuple[Recipe, Any]:
    """Read a config file, pick its recipe, build and check the recipe's config (with overrides)."""
    recipe = get_recipe(recipe_name(read_yaml(path)))
    module = recipe.load()
    config = load_config(path, module.Config, overrides)
    module.check_config(config)
    return recipe, config
