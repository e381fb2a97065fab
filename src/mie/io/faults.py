"""Fault injection: named points inside multi-file writes where tests make the process "die".

Code that writes several files calls :func:`fault_point` between phases (``"commit:write:last_state.pt"``,
``"commit:manifest"``, ...). Normally nothing happens. Tests install a hook that raises at a chosen
point (:func:`inject`), or set ``MIE_FAULT_POINT=<name>[#<n>]`` in a child process so that the n-th
time the point is reached the process ends at once with ``os._exit(137)``, exactly like a SIGKILL:
no ``finally`` blocks, no clean-up. This replaces sleeps and timing races in crash tests.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

ENV_VAR = "MIE_FAULT_POINT"
KILLED_STATUS = 137  # what a shell reports for a process ended by SIGKILL

_hook: Callable[[str], None] | None = None
_hits: dict[str, int] = {}


class SimulatedKill(BaseException):
    """Raised by an in-process hook at a fault point; a BaseException so ``except Exception`` lets it pass."""


def fault_point(name: str) -> None:
    """Mark a phase boundary; a no-op unless a hook or ``MIE_FAULT_POINT`` selects ``name``."""
    if _hook is not None:
        _hook(name)
    target = os.environ.get(ENV_VAR)
    if not target:
        return
    wanted, _, count = target.partition("#")
    if wanted != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= int(count or 1):
        os._exit(KILLED_STATUS)


@contextlib.contextmanager
def inject(point: str, times: int = 1) -> Iterator[list[str]]:
    """Within the block, the ``times``-th arrival at ``point`` raises :class:`SimulatedKill`.

    Yields the list of fault points reached so far (in order), useful to assert the phases a write goes through.
    """
    global _hook
    seen: list[str] = []
    count = 0

    def hook(name: str) -> None:
        nonlocal count
        seen.append(name)
        if name == point:
            count += 1
            if count == times:
                raise SimulatedKill(f"simulated kill at {name}")

    previous, _hook = _hook, hook
    try:
        yield seen
    finally:
        _hook = previous
