"""Exact t-SNE (van der Maaten & Hinton, 2008) in torch, for 2-D maps of a split's embeddings.

Written by hand so that ``mie explain --embeddings --projection tsne`` needs neither scikit-learn nor umap.
Exact means every pair is kept (no Barnes-Hut tree): O(N^2) time and memory, hence :data:`MAX_POINTS`.
"""

from __future__ import annotations

import math

import torch

MAX_POINTS = 5_000  # N x N float64 matrices: about 200 MB each at this size, and several live at once
EXAGGERATION = 12.0  # early exaggeration of P, and how many steps it lasts (as scikit-learn and openTSNE)
EXAGGERATION_STEPS = 250
MOMENTUM = (0.5, 0.8)  # during and after the exaggeration
MIN_GAIN = 0.01
INIT_STD = 1e-4  # the start map's spread: small, so early steps are shaped by P and not by the start


def check_inputs(embeds: torch.Tensor, perplexity: float) -> None:
    """Raise a one-line ``ValueError`` unless ``embeds`` is a finite ``[N, D]`` with 3 <= N <= MAX_POINTS and
    ``perplexity`` lies in ``(0, (N - 1) / 3]``."""
    if embeds.dim() != 2:
        raise ValueError(f"t-SNE needs embeddings [N, D], got shape {tuple(embeds.shape)}")
    n = embeds.shape[0]
    if n < 3:
        raise ValueError(f"t-SNE needs at least 3 points, got {n}")
    if n > MAX_POINTS:
        raise ValueError(f"exact t-SNE is O(N^2) in memory: at most {MAX_POINTS:,} points, got {n:,} "
                         "(project a sample, or use PCA)")
    if not bool(torch.isfinite(embeds).all()):
        raise ValueError("t-SNE input has non-finite values (NaN or inf)")
    top = (n - 1) / 3  # each row needs about 3 x perplexity neighbours for the Gaussian to reach it
    if not 0 < perplexity <= top:  # also refuses NaN
        raise ValueError(f"perplexity {perplexity} is out of range: for {n} points it must be in (0, {top:g}]")


def squared_distances(x: torch.Tensor) -> torch.Tensor:
    """``[N, D]`` -> ``[N, N]`` squared Euclidean distances (float64, zero diagonal, never negative)."""
    x = x.double()
    sq = (x * x).sum(dim=1)
    d = (sq[:, None] + sq[None, :] - 2 * x @ x.T).clamp_min(0)  # the expansion can dip below 0 by rounding
    return d.fill_diagonal_(0)


def conditional_p(sq_dists: torch.Tensor, perplexity: float, tol: float = 1e-6,
                  max_iter: int = 200) -> torch.Tensor:
    """``[N, N]`` squared distances -> ``[N, N]`` conditionals ``P[i, j] = p_{j|i}`` (rows sum to 1, zero
    diagonal): each row a Gaussian whose precision is bisected until its entropy (nats) is
    ``log(perplexity)`` within ``tol``; all rows are searched at once."""
    d = sq_dists.double()
    n = d.shape[0]
    off = ~torch.eye(n, dtype=torch.bool, device=d.device)
    # Shift each row by its nearest distance: exp(-beta * d) then never underflows to an all-zero row, and the
    # normalised row is unchanged.
    nearest = d.masked_fill(~off, math.inf).min(dim=1, keepdim=True).values
    d = (d - nearest).masked_fill(~off, 0)
    target = math.log(perplexity)
    beta = torch.ones(n, 1, dtype=torch.float64, device=d.device)
    lo = torch.zeros_like(beta)
    hi = torch.full_like(beta, math.inf)
    for _ in range(max_iter):
        gap = _row(d, beta, off)[1] - target
        active = gap.abs() >= tol  # rows already on target stay put, so a later step cannot move them off it
        if not bool(active.any()):
            break
        # too flat (entropy too high): sharpen by raising beta; doubling until an upper bound is known
        wider = active & (gap > 0)
        narrower = active & (gap < 0)
        lo = torch.where(wider, beta, lo)
        hi = torch.where(narrower, beta, hi)
        beta = torch.where(active, torch.where(torch.isinf(hi), beta * 2, (lo + hi) / 2), beta)
    return _row(d, beta, off)[0]


def _row(d: torch.Tensor, beta: torch.Tensor, off: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ``exp(-beta * d)`` normalised over ``off``, and each row's entropy ``log Z + beta E[d]``."""
    w = torch.exp(-beta * d) * off
    z = w.sum(dim=1, keepdim=True)
    p = w / z
    return p, torch.log(z) + beta * (p * d).sum(dim=1, keepdim=True)


def joint_p(embeds: torch.Tensor, perplexity: float) -> torch.Tensor:
    """The symmetrised joint ``P = (P_{j|i} + P_{i|j}) / 2N`` of ``embeds`` ``[N, D]`` (float64, sums to 1)."""
    p = conditional_p(squared_distances(embeds), perplexity)
    return (p + p.T) / (2 * p.shape[0])


def kl_gradient(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The gradient of ``KL(P || Q)`` with respect to the map ``y`` ``[N, 2]``, where ``Q`` is the Student-t (one
    degree of freedom) joint of ``y``: ``4 sum_j (p_ij - q_ij)(y_i - y_j) / (1 + |y_i - y_j|^2)``."""
    num = 1 / (1 + squared_distances(y).to(y.dtype))
    num.fill_diagonal_(0)
    q = num / num.sum()
    pq = (p.to(y.dtype) - q) * num
    # sum_j pq_ij (y_i - y_j) = (row sums of pq) * y_i - (pq @ y)_i: two matrix products, no [N, N, 2] tensor
    return 4 * (pq.sum(dim=1, keepdim=True) * y - pq @ y)


def initial_map(embeds: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The start map ``[N, 2]`` (float64): the PCA projection scaled so its first axis has std ``INIT_STD``,
    plus a seeded jitter 1% of that size.

    PCA rather than random noise makes the map reproducible and keeps the global layout PCA shows; the jitter
    only parts duplicate points (equal points get equal gradients and would never separate)."""
    from mie.explain.embeddings_view import pca_2d

    y = pca_2d(embeds)[0].double()
    std = float(y[:, 0].std())
    y = y * (INIT_STD / std) if std > 0 else torch.zeros_like(y)
    generator = torch.Generator().manual_seed(seed)
    return y + 0.01 * INIT_STD * torch.randn(y.shape, generator=generator, dtype=torch.float64)


def tsne_2d(embeds: torch.Tensor, perplexity: float = 30.0, steps: int = 750, seed: int = 0) -> torch.Tensor:
    """Exact t-SNE of ``embeds`` ``[N, D]`` -> ``[N, 2]`` (float32), the same map for the same inputs and seed.

    Gradient descent on ``KL(P || Q)`` with momentum and per-coordinate gains (the paper's reference
    implementation), ``P`` exaggerated x12 for the first 250 steps (a third of ``steps`` when fewer than 750).
    Raises a one-line ``ValueError`` for bad input (see :func:`check_inputs`)."""
    check_inputs(embeds, perplexity)
    if steps < 1:
        raise ValueError(f"t-SNE needs at least 1 step, got {steps}")
    n = embeds.shape[0]
    p = joint_p(embeds, perplexity).clamp_min(1e-12)  # a floor as in the reference: no exactly-zero targets
    y = initial_map(embeds, seed)
    # Learning rate N / (exaggeration x 4), at least 50 (Belkina et al. 2019, scikit-learn's "auto"): a fixed
    # rate is too slow for large N and overshoots for small N.
    rate = max(n / EXAGGERATION / 4, 50.0)
    update = torch.zeros_like(y)
    gains = torch.ones_like(y)
    early = min(EXAGGERATION_STEPS, steps // 3)
    for step in range(steps):
        grad = kl_gradient(p * EXAGGERATION if step < early else p, y)
        # a coordinate's gain grows while descent keeps the last update's direction and shrinks when it reverses
        # (the gradient then has the update's sign): faster along steady slopes, damped where it oscillates
        reverses = (grad > 0) == (update > 0)
        gains = torch.where(reverses, gains * 0.8, gains + 0.2).clamp_min(MIN_GAIN)
        momentum = MOMENTUM[1] if step >= early else MOMENTUM[0]
        update = momentum * update - rate * gains * grad
        y = y + update
        y = y - y.mean(dim=0, keepdim=True)  # KL is translation-invariant: keep the map centred
    return y.float()
