"""Shared measuring helpers of the training benchmarks (imported as ``from perf import ...``).

* :func:`matmul_peak` — GFLOP/s of a large fp32 ``torch.mm`` measured in the same run: the ceiling a
  training step's achieved GFLOP/s is compared with (the "fraction of peak").
* :func:`count_flops` — floating-point operations of one call (``torch.utils.flop_counter``: matmuls,
  convolutions and attention; elementwise work is not counted, so the fraction is a lower bound).
* :class:`StepSplit` — a step's wall time split into phases (forward, backward, optimizer, data wait,
  host syncs), per step, plus the process CPU time; medians over steps.
* :func:`load` — the load average, printed beside every figure (the machine may be shared).

Run alone it prints this machine's fp32 matmul peak: ``.venv/bin/python benchmarks/perf.py``.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator

import torch
from torch.utils.flop_counter import FlopCounterMode

PHASES = ("data", "forward", "backward", "optimizer", "sync")


def load() -> str:
    """``load 1.2/0.9/0.7`` (1, 5 and 15 minute load averages)."""
    one, five, fifteen = os.getloadavg()
    return f"load {one:.1f}/{five:.1f}/{fifteen:.1f}"


def matmul_peak(size: int = 1024, repeats: int = 8, dtype: torch.dtype = torch.float32) -> float:
    """Best GFLOP/s of ``size x size @ size x size`` over ``repeats`` calls (after one warm-up)."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def count_flops(fn: Callable[[], object]) -> int:
    """Floating-point operations ``fn()`` performs (one call, counted by ``FlopCounterMode``)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


class StepSplit:
    """Wall seconds of each phase of each step, and the CPU seconds of the process per step.

    >>> split = StepSplit()
    >>> with split.phase("forward"): ...        # doctest: +SKIP
    >>> split.end_step()                         # doctest: +SKIP
    """

    def __init__(self) -> None:
        self.steps: list[dict[str, float]] = []
        self._current: dict[str, float] = {}
        self._cpu_start = time.process_time()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the body as ``name`` (one of :data:`PHASES`; repeated phases add up)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self._current[name] = self._current.get(name, 0.0) + time.perf_counter() - start

    def begin_step(self) -> None:
        """Start the CPU clock of a step (call before its first phase)."""
        self._current, self._cpu_start = {}, time.process_time()

    def end_step(self) -> None:
        """Close the step: its phases, their sum (``total``) and its CPU time (``cpu``)."""
        step = {name: self._current.get(name, 0.0) for name in PHASES}
        step["total"] = sum(step.values())
        step["cpu"] = time.process_time() - self._cpu_start
        self.steps.append(step)
        self._current = {}

    def median(self, key: str = "total") -> float:
        """Median over the recorded steps of ``key`` (a phase, ``total`` or ``cpu``)."""
        return statistics.median(step[key] for step in self.steps)

    def split_line(self) -> str:
        """``fwd 310 ms 33% | bwd 620 ms 65% | opt 20 ms 2% | data 0.2 ms 0% | sync 0.0 ms 0%`` (phase medians;
        the fractions are of their sum)."""
        total = sum(self.median(name) for name in PHASES) or 1.0
        short = {"data": "data", "forward": "fwd", "backward": "bwd", "optimizer": "opt", "sync": "sync"}
        parts = []
        for name in ("forward", "backward", "optimizer", "data", "sync"):
            ms = 1000 * self.median(name)
            parts.append(f"{short[name]} {ms:.{0 if ms >= 10 else 1}f} ms {100 * self.median(name) / total:.0f}%")
        return " | ".join(parts)


def gflops_line(flops: int, seconds: float, peak: float) -> str:
    """``312 GFLOP/s = 41% of the matmul peak`` for ``flops`` done in ``seconds``."""
    achieved = flops / seconds / 1e9
    return f"{achieved:.0f} GFLOP/s = {100 * achieved / peak:.0f}% of the matmul peak"


def main() -> int:
    """Print the fp32 matmul peak at the configured thread counts."""
    for threads in (1, 2):
        torch.set_num_threads(threads)
        print(f"fp32 matmul peak, {threads} thread(s): {matmul_peak():.0f} GFLOP/s ({load()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
