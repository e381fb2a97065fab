"""``mie train``, ``mie eval`` and ``mie demo``: argument parsing around the recipes (``mie.recipes``).

``mie train FILE`` reads the config's ``recipe`` and runs that recipe; ``mie eval RUN_DIR`` reads
the recipe from the run's saved ``config.yaml``.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from mie.cli.waiting import waiting
from mie.config import read_yaml
from mie.recipes import get_recipe, load_recipe_config, recipe_name
from mie.recipes.run_dir import CHECKPOINT_CHOICES, run_config_path

logger = logging.getLogger(__name__)

DEFAULT_DEMO_CONFIG = "configs/demo.yaml"


def _add_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set optimizer.lr=3e-4 (repeatable)")
    parser.add_argument("--output-dir", help="run directory (overrides output_dir)")


def _overrides(args: argparse.Namespace) -> list[str]:
    overrides = list(args.overrides)
    if args.output_dir:
        overrides.append(f"output_dir={args.output_dir}")
    return overrides


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mie train``."""
    parser.add_argument("config", help="YAML config naming its recipe (see configs/), or a run directory (its "
                                       "saved config.yaml)")
    parser.add_argument("--resume", nargs="?", const="auto", metavar="RUN_DIR",
                        help="continue a run exactly, with the run's saved config.yaml (--set still applies): a run "
                             "directory or a *_state.pt file (no value: the config's output_dir)")
    parser.add_argument("--overwrite", action="store_true",
                        help="train from scratch into an output_dir that already holds a trained run")
    _add_overrides(parser)


def resume_run_dir(resume: str | Path) -> Path:
    """The run directory a ``--resume`` value names: the directory itself, or the run a state file lies in
    (``RUN/checkpoints/last_state.pt`` -> ``RUN``)."""
    path = Path(resume)
    if path.is_dir():
        return path
    folder = path.parent
    return folder.parent if folder.name == "checkpoints" else folder


def load_train_config(config: str, resume: str | None, overrides: list[str]) -> tuple[Any, Any, str | None]:
    """``(recipe, config, resume)`` for ``mie train CONFIG [--resume [RUN]]``.

    A resumed run trains on with its own saved ``config.yaml`` (the ``--set`` overrides on top), whatever
    CONFIG says, and the log says so: the checkpoint holds tensors of that config's shapes, so another
    config would fail on the first tensor that differs. CONFIG may also be a run directory (its saved
    config).
    """
    path = Path(config)
    if path.is_dir():
        path = run_config_path(path)
    recipe, loaded = load_recipe_config(path, overrides)
    if resume is None:
        return recipe, loaded, None
    target = loaded.output_dir if resume == "auto" else resume
    run_dir = resume_run_dir(target)
    saved = run_dir / "config.yaml"
    if not saved.is_file():  # killed before its config was written: the run starts again from CONFIG
        return recipe, loaded, target
    recipe, loaded = load_recipe_config(saved, [*overrides, f"output_dir={run_dir}"])
    if saved.resolve() == path.resolve():
        logger.info("resuming %s with its saved config", run_dir)
    else:
        logger.info("resuming %s with its saved config %s (%s is not used; --set overrides apply on top)",
                    run_dir, saved, config)
    return recipe, loaded, target


def run_train(args: argparse.Namespace) -> int:
    """Train, evaluate the best checkpoint on the test splits and write the report."""
    recipe, config, resume = load_train_config(args.config, args.resume, _overrides(args))
    module = recipe.load()
    result = module.train(config, resume=resume, quiet=bool(getattr(args, "quiet", False)),
                          overwrite=args.overwrite)
    if result.results:  # under torchrun only rank 0 evaluates
        module.print_results(result)
        print(f"report: {result.run_dir / 'report.md'}")
    return 0


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mie eval``."""
    parser.add_argument("run_dir", help="a run directory written by `mie train` or `mie demo`")
    parser.add_argument("--checkpoint", choices=CHECKPOINT_CHOICES, default="best",
                        help="which weights to score (default best; last = the final step)")
    parser.add_argument("--split", action="append", dest="splits", metavar="NAME",
                        help="evaluate this split (repeatable; default: the config's test_splits, "
                             "or test with --data)")
    parser.add_argument("--data", metavar="PATH",
                        help="score another dataset with the run's model (a folder or file of any format)")
    parser.add_argument("--format", dest="data_format", default="auto", metavar="F",
                        help="format of --data: auto (default), jsonl, csv, flickr, coco, webdataset")


def run_eval(args: argparse.Namespace) -> int:
    """Re-score a run's checkpoint (writing nothing); exit 1 only when numbers differ from its results.json."""
    from mie.errors import ConfigError

    if args.data is None and args.data_format != "auto":
        raise ConfigError("needs --data", where="--format", fix="pass --data PATH with the dataset to score")
    run_dir = Path(args.run_dir)
    module = get_recipe(recipe_name(read_yaml(run_config_path(run_dir)))).load()
    splits = ", ".join(args.splits) if args.splits else f"the data at {args.data}" if args.data else "its test splits"
    with waiting(f"scoring the {args.checkpoint} checkpoint of {run_dir} on {splits}"):
        result, comparison = module.evaluate(run_dir, args.splits, checkpoint=args.checkpoint, data=args.data,
                                             data_format=args.data_format)
    module.print_results(result)
    if result.checkpoint is not None:
        print(f"scored checkpoints/{result.checkpoint.name}")
    for line in comparison.nothing_to_compare:
        print(line)
    if comparison.differences:
        print(f"differs from {comparison.source}:")
        for line in comparison.differences:
            print(f"  {line}")
        return 1
    if comparison.compared:
        report = run_dir / "report.md"
        shown = report if report.is_file() else comparison.source
        print(f"reproduces the numbers in {shown} ({', '.join(comparison.compared)})")
    return 0


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mie demo``."""
    parser.add_argument("--config", default=DEFAULT_DEMO_CONFIG,
                        help=f"demo config (default {DEFAULT_DEMO_CONFIG}, or the built-in defaults if absent)")
    _add_overrides(parser)


def run_demo(args: argparse.Namespace) -> int:
    """Generate the shapes data if absent, train, evaluate and report: the engine's main job."""
    path = Path(args.config)
    if path.is_file():
        recipe, config = load_recipe_config(path, _overrides(args))
        module = recipe.load()
    else:
        if args.config != DEFAULT_DEMO_CONFIG:
            raise FileNotFoundError(f"demo config {path} not found")
        logger.warning("%s not found; using the built-in demo defaults", path)
        module = get_recipe("clip").load()
        config = module.Config(project_name="demo", output_dir="runs/demo")
        config.data.format = "synthetic"  # the default, auto, only reads; the demo generates its data
    start = time.monotonic()
    # The demo is meant to be run again and again: each run replaces the previous one.
    result = module.train(config, quiet=bool(getattr(args, "quiet", False)), overwrite=True)
    logger.info("demo finished in %.1f min", (time.monotonic() - start) / 60)
    module.print_results(result)
    print(f"report: {result.run_dir / 'report.md'}")
    return 0
