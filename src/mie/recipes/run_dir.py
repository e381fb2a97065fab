"""The run directory every recipe writes: ``config.yaml`` (resolved, recipe first), ``tokenizer.json``,
``metrics.jsonl``, ``checkpoints/`` (``best``, ``last``, ``stage<i>``), ``report.md``, ``results.json``
and ``plots/``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

from mie.config import ConfigError, config_to_dict
from mie.errors import CheckpointError
from mie.io import load_weights
from mie.io.atomic import atomic_write_text
from mie.io.store import CheckpointStore, remove_temporaries
from mie.training.distributed import barrier, cleanup, init_distributed, is_distributed, is_main_process

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


CHECKPOINT_CHOICES = ("best", "last")


def checkpoint_to_evaluate(run_dir: Path, which: str = "best") -> Path:
    """The weights a finished run is scored with: ``checkpoints/best.safetensors`` (``last`` when the
    run kept no best), or ``last.safetensors`` itself when ``which="last"``.

    A run with a checkpoint manifest resolves the files through it (checksums verified), so a kill
    while the friendly names were being refreshed cannot pair weights and sidecar of two saves.
    """
    if which not in CHECKPOINT_CHOICES:
        raise ConfigError(f"unknown checkpoint {which!r}", where="--checkpoint",
                          fix=f"choose one of {', '.join(CHECKPOINT_CHOICES)}")
    names = ("best", "last") if which == "best" else ("last",)
    checkpoints = run_dir / "checkpoints"
    store = CheckpointStore(checkpoints)
    if store.manifest() is not None:
        for name in names:
            path = store.resolve(f"{name}.safetensors")
            if path is not None:
                store.resolve(f"{name}.json")
                return path
    for name in names:
        path = checkpoints / f"{name}.safetensors"
        if path.is_file():
            return path
    wanted = " or ".join(f"checkpoints/{n}.safetensors" for n in names)
    raise CheckpointError(f"no {wanted}", where=run_dir,
                          fix="pass the directory of a finished `mie train` run")


def load_run_weights(model: Any, run_dir: Path, which: str = "best") -> Path:
    """Load the run's ``best`` (or ``last``) weights into ``model`` (built from the run's config.yaml);
    returns the weights file. Another architecture is a one-line :class:`CheckpointError`."""
    weights = checkpoint_to_evaluate(run_dir, which)
    state, _ = load_weights(weights)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"does not fit the model of {run_dir / CONFIG_FILE} ({' '.join(str(exc).split())[:300]})",
                              where=weights, fix="keep the checkpoints and config.yaml of one run together") from None
    return weights


def run_config_path(run_dir: Path) -> Path:
    """``run_dir/config.yaml``, or a one-line error when ``run_dir`` is not a run directory."""
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; pass the run directory written by `mie train`")
    return path


def prepare_run_dir(run_dir: Path, resume: str | Path | None, overwrite: bool = False,
                    main: bool = True) -> str | Path | None:
    """Check and clean ``run_dir`` before training; return where training starts (None = fresh).

    A fresh run (no ``resume``) refuses a folder that already holds a trained run unless
    ``overwrite``: a second ``mie train`` must not silently replace the first. ``--resume`` of a run
    directory with no checkpoint yet (killed before its first save) starts fresh rather than
    refusing; an explicit state file that does not exist stays an error (a typo must not restart a
    run). Rank 0 (``main``) also removes temporaries of interrupted writes.
    """
    from mie.training.checkpointing import TrainerStateMixin

    if resume is None and not overwrite:
        manifest = CheckpointStore(run_dir / "checkpoints").manifest()
        if manifest is not None or (run_dir / "checkpoints" / "last_state.pt").is_file():
            step = f" (checkpoint at step {manifest['step']})" if manifest else ""
            raise ConfigError(f"already holds a trained run{step}", where=f"output_dir {run_dir}",
                              fix="pass --resume to continue it, --overwrite to train it again from scratch, "
                                  "or choose another output_dir")
    if main:
        remove_temporaries(run_dir)
    if resume is not None and Path(resume).is_dir() and TrainerStateMixin.find_resume_state(resume) is None:
        if main:
            logger.warning("%s holds no checkpoint yet; starting the run from the beginning", resume)
        return None
    return resume


def open_run(config: Any, resume: str | Path | None, overwrite: bool = False) -> tuple[Path, Path | None, bool]:
    """Start a recipe's run: join the process group under torchrun (a no-op for one process), create
    ``config.output_dir`` and decide what to resume (:func:`prepare_run_dir`).

    Returns ``(run_dir, resume, main)``, ``main`` being True on rank 0 (the one that writes).
    """
    init_distributed(timeout_s=config.ddp_timeout_s)
    main = is_main_process()
    run_dir = Path(config.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir, prepare_run_dir(run_dir, resume, overwrite=overwrite, main=main), main


def close_run() -> None:
    """End a recipe's run: under torchrun, wait for rank 0's evaluation and leave the process group."""
    if is_distributed():
        barrier()
        cleanup()
