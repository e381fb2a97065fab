"""The run directory every recipe writes: ``config.yaml`` (resolved, recipe first), ``tokenizer.json``,
``metrics.jsonl``, ``checkpoints/`` (``best``, ``last``, ``stage<i>``), ``report.md``, ``results.json``
and ``plots/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mie.config import config_to_dict
from mie.io.atomic import atomic_write_text

CONFIG_FILE = "config.yaml"
TOKENIZER_FILE = "tokenizer.json"


def save_run_config(config: Any, run_dir: Path) -> Path:
    """Write the resolved config as ``run_dir/config.yaml`` with its ``recipe`` key first."""
    data = config_to_dict(config)
    data = {"recipe": data.pop("recipe"), **data} if "recipe" in data else data
    path = run_dir / CONFIG_FILE
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
    return path


def checkpoint_to_evaluate(run_dir: Path) -> Path:
    """``checkpoints/best.safetensors`` if the run kept one, else ``last``."""
    checkpoints = run_dir / "checkpoints"
    for name in ("best", "last"):
        path = checkpoints / f"{name}.safetensors"
        if path.is_file():
            return path
    raise FileNotFoundError(f"no checkpoints/best.safetensors or last.safetensors in {run_dir}; "
                            "is this a finished run directory of `mie train`?")


def run_config_path(run_dir: Path) -> Path:
    """``run_dir/config.yaml``, or a one-line error when ``run_dir`` is not a run directory."""
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; pass the run directory written by `mie train`")
    return path
