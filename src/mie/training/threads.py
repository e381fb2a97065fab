"""torch's CPU threads: one place that sets them and warns when a busy machine makes them spin.

torch runs one intra-op thread per core by default. When other jobs already keep some of those cores
busy, its threads spin-wait for each other at every parallel region and a job runs several times slower
than it would on one thread (tuning the safety classifier took 20 min at load 6 on 2 cores, 3.2 min with
one thread). So every recipe's ``threads:`` key and the ``--threads`` option of every ``mie`` command go
through :func:`set_threads`, which says so in one warning line when the 1-minute load average of the
other jobs plus the threads asked for exceeds the cores.

``--threads`` on the command line wins over any config's ``threads:`` (:func:`request_threads`): torch's
threads belong to the process, not to one model, so the request is held here for the process.
"""

from __future__ import annotations

import logging
import math
import os
import time

import torch

from mie.errors import ConfigError
from mie.models.budget import usable_cores

log = logging.getLogger(__name__)

#: the most threads per core anyone could mean (more only adds switching); a larger value is a typo
MAX_PER_CORE = 4
#: load that other jobs may add before the warning: an idle machine's daemons stay well below half a core,
#: and a job that has just ended (`make test` before `make run`) leaves a decaying 0.5-0.8 in the 1-minute
#: average; a job that really holds a core shows about 1
LOAD_SLACK = 0.9
LOAD_WINDOW_S = 60.0  # the 1-minute load average is an exponential average over this time constant

_requested: int | None = None  # the command line's --threads, if given: it overrides every config
_warned = False  # the load warning is one line per process, however many trainers start
_started = time.monotonic()  # to tell this process's own share of the load from the other jobs'
_cpu_at_start = time.process_time()


def check_threads(threads: int, where: str = "threads") -> int:
    """``threads`` if it is 0 (torch's default: one per core) or 1 .. 4 x the cores; else a one-line error."""
    cores = usable_cores()
    most = MAX_PER_CORE * cores
    fix = f"use 0 (torch's default, one thread per core) or 1 to {most}; 1 on a machine shared with other jobs"
    if threads < 0:
        raise ConfigError(f"{threads} threads is negative", where=where, fix=fix)
    if threads > most:
        raise ConfigError(f"{threads} threads is more than {MAX_PER_CORE} per core ({cores} cores here)",
                          where=where, fix=fix)
    return threads


def request_threads(threads: int | None, where: str = "--threads") -> None:
    """Make ``threads`` (the command line's ``--threads``) win over every config's ``threads:`` key in this
    process, and apply it now; ``None`` withdraws the request. A positive count also goes to
    ``OMP_NUM_THREADS``, so that the worker processes this one starts use as many."""
    global _requested
    if threads is None:
        _requested = None
        return
    _requested = check_threads(threads, where)
    if threads > 0:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    set_threads(threads, where)


def requested_threads() -> int | None:
    """The command line's ``--threads`` in this process (None when it was not given)."""
    return _requested


def set_threads(threads: int, where: str = "threads") -> int:
    """Run torch on ``threads`` CPU threads (0 leaves torch's default), unless ``--threads`` asked for
    another count; warn once if the machine is too busy for them. Returns the threads torch now uses."""
    threads = check_threads(threads if _requested is None else _requested, where)
    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    used = torch.get_num_threads()
    check_load(used)
    return used


def own_load() -> float:
    """This process's share of the 1-minute load average: its CPU use since it started, damped the way
    the kernel damps the load (a job that has just started has added almost nothing yet)."""
    elapsed = time.monotonic() - _started
    if elapsed <= 0:
        return 0.0
    rate = (time.process_time() - _cpu_at_start) / elapsed
    return rate * (1.0 - math.exp(-elapsed / LOAD_WINDOW_S))


def check_load(threads: int) -> bool:
    """Log ONE warning line (once per process) when the other jobs' 1-minute load plus ``threads``
    exceeds the cores: torch's threads would then spin. Returns whether it warned just now."""
    global _warned
    if _warned or threads <= 1:  # one thread has no one to wait for
        return False
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows has no load average
        return False
    cores = usable_cores()
    others = max(0.0, load - own_load())
    if others + threads <= cores + LOAD_SLACK:
        return False
    _warned = True
    log.warning("the machine is busy (load %.1f from other jobs on %d cores) and torch runs %d threads, which "
                "then spin waiting for each other and can run several times slower — pass --threads 1 "
                "(or set threads: 1 in the config)", others, cores, threads)
    return True
