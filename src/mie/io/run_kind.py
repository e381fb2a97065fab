"""What kind of run a folder holds, and one clear line when a command is given the wrong kind.

Every command that loads a finished run checks its ``config.yaml``'s ``recipe`` first, so ``mie generate
--model runs/demo`` says "runs/demo is a clip run (image-text), not a language-model run" instead of
failing later on a key that only the other kind of model has. A config without ``recipe`` is a clip run,
as :func:`mie.recipes.recipe_name` reads it.

>>> check_run_kind("runs/demo", "lm", where="--model")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from mie.config import read_yaml
from mie.errors import ConfigError
from mie.io.run_files import run_config_path

DEFAULT_RECIPE = "clip"  # a config that names no recipe (mie.recipes.DEFAULT_RECIPE)
#: recipe -> what its runs are, in the user's words
KINDS = {"clip": "a clip run (image-text)", "lm": "a language-model run", "seq2seq": "a translation run",
         "classification": "an image-classification run", "cai": "a Constitutional-AI run"}
#: what to pass instead, per wanted recipe
ALTERNATIVES = {"lm": "the folder of a run trained with recipe: lm, or a pretrained model's name (mie models)",
                "clip": "the folder of a run trained with recipe: clip (e.g. runs/demo from `mie demo`)",
                "seq2seq": "the folder of a run trained with recipe: seq2seq (e.g. configs/translate_en_de.yaml)"}


def run_recipe(run_dir: str | Path) -> str:
    """The recipe of the run in ``run_dir`` (a missing ``config.yaml`` is a one-line error)."""
    data = read_yaml(run_config_path(Path(run_dir)))
    name = data.get("recipe", DEFAULT_RECIPE) if isinstance(data, Mapping) else DEFAULT_RECIPE
    return name if isinstance(name, str) else repr(name)


def describe(recipe: str) -> str:
    """``"a clip run (image-text)"``: what a run of ``recipe`` is, for messages."""
    return KINDS.get(recipe, f"a {recipe} run")


def check_run_kind(run_dir: str | Path, wanted: str | tuple[str, ...], where: str = "RUN_DIR") -> str:
    """The run's recipe when it is one of ``wanted``; else a :class:`ConfigError` naming both kinds."""
    wanted = (wanted,) if isinstance(wanted, str) else tuple(wanted)
    recipe = run_recipe(run_dir)
    if recipe not in wanted:
        names = " or ".join(describe(w).removeprefix("a ").removeprefix("an ") for w in wanted)
        fixes = "; or ".join(ALTERNATIVES.get(w, f"the folder of a run trained with recipe: {w}") for w in wanted)
        raise ConfigError(f"{run_dir} is {describe(recipe)}, not a {names}".replace(" a a", " an a"),
                          where=where, fix=f"pass {fixes}")
    return recipe
