"""The run directory every recipe writes: ``.mie-run.json`` (the run marker, first), ``config.yaml``
(resolved, recipe first), ``tokenizer.json``, ``metrics.jsonl``, ``checkpoints/`` (``best``, ``last``,
``stage<i>``), ``report.md``, ``results.json`` and ``plots/``.

A run only ever writes into a folder that is missing, empty or a run of ours (:mod:`mie.io.ownership`).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import yaml

from mie.config import ConfigError, config_to_dict
from mie.errors import CheckpointError
from mie.io import load_weights
from mie.io.atomic import atomic_write_text
from mie.io.ownership import RUN_MARKER, claim_run_folder, create_folder, write_marker
from mie.io.store import CheckpointStore, remove_temporaries
from mie.training.distributed import barrier, cleanup, init_distributed, is_distributed, is_main_process

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
TOKENIZER_FILE = "tokenizer.json"
# Every name a recipe writes at the top of its run folder (what a run from before the marker may hold).
RUN_ENTRIES = frozenset({RUN_MARKER, CONFIG_FILE, TOKENIZER_FILE, "chat_template.jinja", "metrics.jsonl",
                         "checkpoints", "report.md", "results.json", "plots", "samples.txt", "tensorboard",
                         "token_cache", "reranker", "cache", "done.json"})
_OLD_TEMPORARY = re.compile(r"\.(.+)\.[a-z0-9_]{8}\.tmp")  # how mie named temporaries before the marker


def is_legacy_run(folder: Path) -> bool:
    """Whether ``folder`` is a run written by a mie from before the run marker (issue 26), so it may still
    be resumed or overwritten: its ``config.yaml``, a committed checkpoint (``checkpoints/manifest.json``
    or ``checkpoints/last_state.pt``) and nothing a run does not write. A user's ``config.yaml`` and
    ``report.md`` without checkpoints, or a run folder with a file of the user's added, is not one."""
    checkpoints = folder / "checkpoints"
    if not (folder / CONFIG_FILE).is_file() or not any(
            (checkpoints / name).is_file() for name in ("manifest.json", "last_state.pt")):
        return False
    for entry in folder.iterdir():
        old = _OLD_TEMPORARY.fullmatch(entry.name)
        if entry.name not in RUN_ENTRIES and not (old and old.group(1) in RUN_ENTRIES):
            return False
    return True


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
                    main: bool = True, recipe: str | None = None) -> str | Path | None:
    """Check, create, mark and clean ``run_dir`` before training; return where training starts (None = fresh).

    ``run_dir`` must be missing, empty or a run of ours (marked, or :func:`is_legacy_run`); anything
    else, or a system folder, is a one-line :class:`ConfigError`, ``overwrite`` or not. Rank 0
    (``main``) then writes the run marker before anything else. A fresh run (no ``resume``) refuses a folder that already holds a trained run unless
    ``overwrite``: a second ``mie train`` must not silently replace the first. ``--resume`` of a run
    directory with no checkpoint yet (killed before its first save) starts fresh rather than
    refusing; an explicit state file that does not exist stays an error (a typo must not restart a
    run). Rank 0 (``main``) also removes temporaries of interrupted writes.
    """
    from mie.training.checkpointing import TrainerStateMixin

    claim_run_folder(run_dir, "output_dir", legacy=is_legacy_run, overwrite=overwrite)
    create_folder(run_dir, "output_dir", anywhere=True)  # missing parents are made, with an INFO line
    if main:
        write_marker(run_dir, recipe)  # first: from here on the folder is recognisably ours
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
    ``config.output_dir`` (only where it is missing, empty or ours) and decide what to resume
    (:func:`prepare_run_dir`).

    Returns ``(run_dir, resume, main)``, ``main`` being True on rank 0 (the one that writes).
    """
    init_distributed(timeout_s=config.ddp_timeout_s)
    main = is_main_process()
    run_dir = Path(config.output_dir)
    start = prepare_run_dir(run_dir, resume, overwrite=overwrite, main=main, recipe=getattr(config, "recipe", None))
    return run_dir, start, main


def close_run() -> None:
    """End a recipe's run: under torchrun, wait for rank 0's evaluation and leave the process group."""
    if is_distributed():
        barrier()
        cleanup()
