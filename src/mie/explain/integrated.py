"""Integrated gradients (Sundararajan et al., 2017) of a scalar function of a tensor, and gradient x input.

``attr = (x - baseline) * mean over the path of grad f``, the path integral taken by Gauss-Legendre quadrature
with ``steps`` nodes: on the clip text tower it met completeness within 0.1% at 32 nodes where the trapezoidal
rule with as many points missed by 3% (the error falls far faster along a smooth path). Completeness says
``attr.sum() == f(x) - f(baseline)``; the gap is returned so callers (and the tests) can check it at the step
count they use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

DEFAULT_STEPS = 32


@dataclass
class IGResult:
    """Integrated gradients' attributions (shaped like the input) and the two end values of ``f``."""

    attributions: torch.Tensor
    output: float  # f(x)
    baseline_output: float  # f(baseline)
    steps: int = 0  # gradient points used

    @property
    def gap(self) -> float:
        """Completeness gap: ``attributions.sum() - (f(x) - f(baseline))``."""
        return float(self.attributions.sum()) - (self.output - self.baseline_output)

    @property
    def relative_gap(self) -> float:
        """``|gap| / |f(x) - f(baseline)|`` (inf when the two ends are equal and the gap is not 0)."""
        diff = abs(self.output - self.baseline_output)
        return abs(self.gap) / diff if diff > 0 else (0.0 if self.gap == 0 else float("inf"))


def integrated_gradients(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, baseline: torch.Tensor,
                         steps: int = DEFAULT_STEPS, chunk: int = 16, tolerance: float | None = None,
                         max_steps: int = 1024) -> IGResult:
    """Attributions shaped like ``x`` ``[1, ...]`` for ``f`` (``[N, ...] -> [N]``) from ``baseline`` (same
    shape), with ``f``'s values at both ends; ``steps`` gradient points, ``chunk`` of them per batch. With a
    ``tolerance``, ``steps`` doubles (up to ``max_steps``) until the attributions add up to ``f(x) -
    f(baseline)`` within it (a path with kinks, such as a conv stem's from a black image, needs more points)."""
    result = _integrate(f, x, baseline, steps, chunk)
    while tolerance is not None and result.relative_gap > tolerance and result.steps * 2 <= max_steps:
        result = _integrate(f, x, baseline, result.steps * 2, chunk)
    return result


def _integrate(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, baseline: torch.Tensor, steps: int,
               chunk: int) -> IGResult:
    """One Gauss-Legendre integration with ``steps`` points."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    nodes, weights = np.polynomial.legendre.leggauss(steps)  # on [-1, 1]; mapped to [0, 1] below
    alphas = torch.tensor((nodes + 1) / 2, dtype=x.dtype, device=x.device)
    scale = torch.tensor(weights / 2, dtype=x.dtype, device=x.device)
    shape = (-1,) + (1,) * (x.dim() - 1)
    base, delta = baseline.detach(), (x - baseline).detach()
    total = torch.zeros_like(x)
    for start in range(0, steps, chunk):
        points = (base + alphas[start:start + chunk].view(shape) * delta).requires_grad_(True)
        (grad,) = torch.autograd.grad(f(points).sum(), points)
        total += (grad * scale[start:start + chunk].view(shape)).sum(dim=0, keepdim=True)
    with torch.no_grad():
        ends = f(torch.cat([base, x.detach()])).tolist()
    return IGResult(delta * total, ends[1], ends[0], steps)


def gradient_x_input(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``x * grad f(x)`` shaped like ``x`` ``[1, ...]`` (one backward pass)."""
    point = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(f(point).sum(), point)
    return point.detach() * grad
