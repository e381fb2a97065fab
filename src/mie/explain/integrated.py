"""Integrated gradients (Sundararajan et al., 2017) of a scalar function of a tensor, and gradient x input.

``attr = (x - baseline) * mean over the path of grad f`` with the trapezoidal rule over ``steps`` equal
intervals; completeness says ``attr.sum() == f(x) - f(baseline)`` as ``steps`` grows, and the gap is
returned so callers (and the tests) can check it at the step count they use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

DEFAULT_STEPS = 32


@dataclass
class IGResult:
    """Integrated gradients' attributions (shaped like the input) and the two end values of ``f``."""

    attributions: torch.Tensor
    output: float  # f(x)
    baseline_output: float  # f(baseline)

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
                         steps: int = DEFAULT_STEPS, chunk: int = 16) -> IGResult:
    """Attributions shaped like ``x`` ``[1, ...]`` for ``f`` (``[N, ...] -> [N]``) from ``baseline`` (same
    shape), with ``f``'s values at both ends; ``chunk`` path points run per batch."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    alphas = torch.linspace(0.0, 1.0, steps + 1, dtype=x.dtype, device=x.device)
    weights = torch.full_like(alphas, 1.0 / steps)
    weights[0] = weights[-1] = 0.5 / steps  # the trapezoid's end points count half
    delta = (x - baseline).detach()
    total = torch.zeros_like(x)
    ends: dict[int, float] = {}
    for start in range(0, steps + 1, chunk):
        a = alphas[start:start + chunk]
        shape = (-1,) + (1,) * (x.dim() - 1)
        points = (baseline.detach() + a.view(shape) * delta).requires_grad_(True)
        values = f(points)
        (grad,) = torch.autograd.grad(values.sum(), points)
        total += (grad * weights[start:start + chunk].view(shape)).sum(dim=0, keepdim=True)
        for offset, value in enumerate(values.detach().tolist()):
            if start + offset in (0, steps):
                ends[start + offset] = value
    return IGResult(delta * total, ends[steps], ends[0])


def gradient_x_input(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``x * grad f(x)`` shaped like ``x`` ``[1, ...]`` (one backward pass)."""
    point = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(f(point).sum(), point)
    return point.detach() * grad
