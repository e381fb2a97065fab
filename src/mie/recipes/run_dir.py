"""The run directory every recipe writes: ``.mie-run.json`` (the run marker, first), ``config.yaml``
(resolved, recipe first), ``tokenizer.json``, ``metrics.jsonl``, ``checkpoints/`` (``best``, ``last``,
``stage<i>``), ``report.md``, ``results.json`` and ``plots/``.

A run only ever writes into a folder that is missing, empty or a run of ours (:mod:`mie.io.ownership`).
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mie.config import ConfigError, config_to_dict
from mie.io.atomic import atomic_write_text
from mie.io.ownership import RUN_MARKER, claim_run_folder, create_folder, write_marker
from mie.io.run_files import (  # noqa: F401 - the layout lives in the library; re-exported for the recipes
    CHAT_TEMPLATE_FILE,
    CHECKPOINT_CHOICES,
    CONFIG_FILE,
    TOKENIZER_FILE,
    checkpoint_to_evaluate,
    load_run_weights,
    run_config_path,
)
from mie.io.store import CheckpointStore, remove_temporaries
from mie.training.distributed import barrier, cleanup, init_distributed, is_distributed, is_main_process

logger = logging.getLogger(__name__)

# Every name a recipe writes at the top of its run folder (what a run from before the marker may hold).
RUN_ENTRIES = frozenset({RUN_MARKER, CONFIG_FILE, TOKENIZER_FILE, CHAT_TEMPLATE_FILE, "metrics.jsonl",
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


@dataclass
class Run:
    """An open run directory (what :func:`run_directory` yields): its folder, the state training starts
    from (None = fresh) and whether this process is rank 0, the one that writes."""

    dir: Path
    resume: str | Path | None
    main: bool

    def fit(self, trainer: Any, resolved: Any = None) -> float:
        """Train from :attr:`resume`; returns the run's training seconds. A resumed run records
        ``resolved`` (its config) only once the resume has worked."""
        start = time.monotonic()
        trainer.fit(resume_from=self.resume)
        if self.main and self.resume is not None and resolved is not None:
            save_run_config(resolved, self.dir)
        # A fresh run's trainer timed the whole run; a resumed one only its own part of it.
        return trainer.elapsed_seconds() if self.resume is None else time.monotonic() - start


@contextlib.contextmanager
def run_directory(config: Any, resume: str | Path | None, overwrite: bool = False) -> Iterator[Run]:
    """Open a recipe's run: join the process group under torchrun (a no-op for one process), create
    ``config.output_dir`` (only where it is missing, empty or ours) and decide what to resume
    (:func:`prepare_run_dir`); on leaving, close it, also when the body raised.

    >>> with run_directory(config, resume, overwrite) as run:  # doctest: +SKIP
    ...     seconds = run.fit(trainer, resolved)

    A body that returns waits, under torchrun, for rank 0's evaluation before leaving the group; one
    that raises leaves it at once (the other ranks may never reach a barrier).
    """
    init_distributed(timeout_s=config.ddp_timeout_s)
    try:
        main = is_main_process()
        run_dir = Path(config.output_dir)
        start = prepare_run_dir(run_dir, resume, overwrite=overwrite, main=main,
                                recipe=getattr(config, "recipe", None))
        yield Run(run_dir, start, main)
    except BaseException:
        cleanup()
        raise
    if is_distributed():
        barrier()
    cleanup()


def training_summary(trainer: Any, seconds: float, rates: dict[str, tuple[float, int | None]] | None = None,
                     notes: bool = True, **fields: Any) -> dict[str, Any]:
    """The ``training`` section of a report: steps, epochs, wall time, each rate of ``rates``
    (``name: (count, digits)`` -> ``round(count / seconds, digits)``), then ``fields`` (one named
    ``epochs`` replaces the trainer's in place) and, when the trainer left any, its notices.

    >>> training_summary(trainer, 12.0, {"images_per_s": (steps * batch, 1)}, best_val_top1=0.9)  # doctest: +SKIP
    """
    summary: dict[str, Any] = {"steps": trainer.global_step, "epochs": trainer.epoch, "wall_time_s": round(seconds, 1)}
    for name, (count, digits) in (rates or {}).items():
        summary[name] = round(count / max(seconds, 1e-9), digits)
    summary.update(fields)
    if notes and trainer.notices:  # a shortened or stopped run says so in the report, not only on the console
        summary["notes"] = " ".join(trainer.notices)
    return summary
