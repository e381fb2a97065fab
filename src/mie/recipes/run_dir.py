"""The run directory every recipe writes: ``config.yaml`` (resolved, recipe first), ``tokenizer.json``,
``metrics.jsonl``, ``checkpoints/`` (``best``, ``last``, ``stage<i>``), ``report.md``, ``results.json``
and ``plots/``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

from mie.config import config_to_dict
from mie.io.atomic import atomic_write_text
from mie.io.store import CheckpointStore, remove_temporaries

logger = logging.getLogger(__name__)

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
    """``checkpoints/best.safetensors`` if the run kept one, else ``last``.

    A run with a checkpoint manifest resolves both through it (checksums verified), so a kill
    while the friendly names were being refreshed cannot pair weights and sidecar of two saves.
    """
    checkpoints = run_dir / "checkpoints"
    store = CheckpointStore(checkpoints)
    if store.manifest() is not None:
        for name in ("best", "last"):
            path = store.resolve(f"{name}.safetensors")
            if path is not None:
                store.resolve(f"{name}.json")
                return path
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


def prepare_run_dir(run_dir: Path, resume: str | Path | None) -> str | Path | None:
    """Clean what a killed run left in ``run_dir`` and decide where training starts.

    Temporaries of interrupted writes are removed. ``--resume`` of a run directory that holds no
    checkpoint yet (killed before its first save) starts fresh rather than refusing: returns None.
    An explicit state file that does not exist is still an error (a typo must not restart a run).
    """
    from mie.training.checkpointing import TrainerStateMixin

    remove_temporaries(run_dir)
    if resume is not None and Path(resume).is_dir() and TrainerStateMixin.find_resume_state(resume) is None:
        logger.warning("%s holds no checkpoint yet; starting the run from the beginning", resume)
        return None
    return resume
