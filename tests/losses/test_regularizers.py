"""VICReg, Barlow Twins, decorrelation, feature consistency, the hybrid schedule and cross-entropy
against references computed another way (torch.cov / corrcoef, loops, per-token log-softmax)."""

import math

import pytest
import torch
import torch.nn.functional as F

from mie.losses import (
    BarlowTwinsLoss,
    ContrastiveLoss,
    CrossEntropyLoss,
    DecorrelationLoss,
    FeatureConsistencyLoss,
    HybridPretrainVICRegLoss,
    VICRegLoss,
)

SHAPES = [(4, 3), (10, 6)]


def offdiag_sq(m):
    return sum(float(m[i, j]) ** 2 for i in range(m.shape[0]) for j in range(m.shape[1]) if i != j)


@pytest.mark.parametrize("n,d", SHAPES)
@pytest.mark.parametrize("coeffs", [(25.0, 25.0, 1.0), (1.0, 0.5, 3.0)])
def test_vicreg_paper_formula(n, d, coeffs):
    a, b = torch.randn(n, d, dtype=torch.float64) * 0.5, torch.randn(n, d, dtype=torch.float64) * 2
    sim, std, cov = coeffs
    inv = float(((a - b) ** 2).mean())
    var = (
        sum(max(0.0, 1 - math.sqrt(float(torch.var(x[:, k])) + 1e-4)) for x in (a, b) for k in range(d))
        / d
        / 2
    )
    covariance = sum(offdiag_sq(torch.cov(x.T)) / d for x in (a, b))
    got = VICRegLoss(sim_coeff=sim, std_coeff=std, cov_coeff=cov)(a, b)
    assert got.item() == pytest.approx(sim * inv + std * var + cov * covariance, abs=1e-8)


def test_vicreg_defaults_and_bad_coeff():
    loss_fn = VICRegLoss()
    assert (loss_fn.sim_coeff, loss_fn.std_coeff, loss_fn.cov_coeff) == (25.0, 25.0, 1.0)
    with pytest.raises(ValueError, match="cov_coeff"):
        VICRegLoss(cov_coeff=-1)


@pytest.mark.parametrize("n,d", SHAPES)
@pytest.mark.parametrize("lam", [5e-3, 0.5])
def test_barlow_twins_cross_correlation(n, d, lam):
    a, b = torch.randn(n, d, dtype=torch.float64), torch.randn(n, d, dtype=torch.float64)
    bn = torch.nn.BatchNorm1d(d, affine=False, dtype=torch.float64)  # the paper's normalisation
    za, zb = bn(a), bn(b)
    c = [[float(sum(za[k, i] * zb[k, j] for k in range(n))) / n for j in range(d)] for i in range(d)]
    want = sum((1 - c[i][i]) ** 2 for i in range(d)) + lam * sum(
        c[i][j] ** 2 for i in range(d) for j in range(d) if i != j
    )
    assert BarlowTwinsLoss(lambda_offdiag=lam)(a, b).item() == pytest.approx(want, abs=1e-8)


def test_barlow_twins_is_zero_for_identical_decorrelated_views():
    z = torch.linalg.qr(torch.randn(16, 4, dtype=torch.float64))[0] * 4  # orthogonal columns
    z = z - z.mean(0)
    assert BarlowTwinsLoss(eps=0.0)(z, z).item() < 0.2
    with pytest.raises(ValueError, match="lambda_offdiag"):
        BarlowTwinsLoss(lambda_offdiag=-0.1)


@pytest.mark.parametrize("n,d", SHAPES)
def test_decorrelation_modes(n, d):
    a, b = torch.randn(n, d, dtype=torch.float64), torch.randn(n, d, dtype=torch.float64)
    cov = torch.cov(a.T, correction=0)
    assert DecorrelationLoss()(a).item() == pytest.approx(0.5 * offdiag_sq(cov), abs=1e-8)
    corr = lambda x: offdiag_sq(torch.corrcoef(x.T)) / (d * (d - 1))  # noqa: E731
    got = DecorrelationLoss(mode="correlation", eps=0.0)(a, b)
    assert got.item() == pytest.approx((corr(a) + corr(b)) / 2, abs=1e-8)
    with pytest.raises(ValueError, match="mode"):
        DecorrelationLoss(mode="whiten")
    with pytest.raises(ValueError, match="same shape"):
        DecorrelationLoss()(a, b[:, :-1])


@pytest.mark.parametrize(
    "distance,ref",
    [
        ("cosine", lambda x, y: (1 - (x * y).sum(-1) / (x.norm(dim=-1) * y.norm(dim=-1))).mean()),
        ("l2", lambda x, y: ((x - y) ** 2).mean()),
        ("l1", lambda x, y: (x - y).abs().mean()),
        (
            "smooth_l1",
            lambda x, y: torch.where(
                (x - y).abs() < 0.5, 0.5 * (x - y) ** 2 / 0.5, (x - y).abs() - 0.25
            ).mean(),
        ),
    ],
)
def test_feature_consistency_distances_and_frozen_reference(distance, ref):
    x = torch.randn(4, 3, 5, dtype=torch.float64, requires_grad=True)
    y = torch.randn(4, 3, 5, dtype=torch.float64, requires_grad=True)
    got = FeatureConsistencyLoss(distance=distance, beta=0.5)(x, y)
    assert got.item() == pytest.approx(ref(x, y).item(), abs=1e-10)
    got.backward()
    assert x.grad is not None and y.grad is None  # no gradient into the frozen reference


def test_feature_consistency_bad_args():
    with pytest.raises(ValueError, match="distance"):
        FeatureConsistencyLoss(distance="kl")
    with pytest.raises(ValueError, match="beta"):
        FeatureConsistencyLoss(beta=0)


def test_hybrid_schedule_blends_contrastive_into_vicreg():
    a, b = torch.randn(6, 4), torch.randn(6, 4)
    loss_fn = HybridPretrainVICRegLoss(warmup_steps=2, transition_steps=4, temperature=0.1, sim_coeff=5)
    contrastive, vicreg = ContrastiveLoss(temperature=0.1)(a, b), VICRegLoss(sim_coeff=5)(a, b)
    assert [loss_fn.vicreg_weight(s) for s in (0, 1, 2, 3, 6, 100)] == [0, 0, 0, 0.25, 1, 1]
    assert torch.allclose(loss_fn(a, b, step=0), contrastive)
    assert torch.allclose(loss_fn(a, b, step=4), 0.5 * contrastive + 0.5 * vicreg)
    assert torch.allclose(loss_fn(a, b, step=9), vicreg)
    assert "loss_contrastive" not in loss_fn.last_metrics
    assert int(loss_fn.step) == 0  # calls never advance the counter; optimizer steps do
    for _ in range(4):
        loss_fn.after_optimizer_step()
    assert int(loss_fn.step) == 4
    assert torch.allclose(loss_fn(a, b), 0.5 * contrastive + 0.5 * vicreg)
    assert HybridPretrainVICRegLoss(warmup_steps=0, transition_steps=0).vicreg_weight(0) == 1.0
    with pytest.raises(ValueError, match="warmup_steps"):
        HybridPretrainVICRegLoss(warmup_steps=-1)


def naive_ce(logits, targets, eps, ignore):
    total, count = 0.0, 0
    flat_logits, flat_targets = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    for row, t in zip(flat_logits, flat_targets.tolist()):
        if t == ignore:
            continue
        logp = [float(v) - float(torch.logsumexp(row, 0)) for v in row]
        total += -(1 - eps) * logp[t] - eps * sum(logp) / len(logp)
        count += 1
    return total / count


@pytest.mark.parametrize("shape", [(5, 4), (2, 3, 6)])
@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_cross_entropy_smoothing_and_ignore_index(shape, eps):
    logits = torch.randn(*shape, dtype=torch.float64)
    targets = torch.randint(0, shape[-1], shape[:-1])
    targets.view(-1)[0] = -100
    loss_fn = CrossEntropyLoss(label_smoothing=eps)
    assert loss_fn(logits, targets).item() == pytest.approx(naive_ce(logits, targets, eps, -100), abs=1e-10)
    counted = targets != -100
    assert loss_fn.last_metrics["tokens"] == int(counted.sum())
    assert loss_fn.last_metrics["accuracy"] == pytest.approx(
        float((logits.argmax(-1) == targets)[counted].float().mean())
    )
    assert loss_fn.last_metrics["perplexity"] == pytest.approx(math.exp(naive_ce(logits, targets, 0.0, -100)))


def test_cross_entropy_all_ignored_is_zero_with_gradient_and_errors():
    logits = torch.randn(2, 3, requires_grad=True)
    loss = CrossEntropyLoss(ignore_index=0)(logits, torch.zeros(2, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(logits.grad, torch.zeros(2, 3))
    loss_fn = CrossEntropyLoss()
    with pytest.raises(ValueError, match="outside"):
        loss_fn(torch.randn(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="targets shape"):
        loss_fn(torch.randn(2, 3), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="integer"):
        loss_fn(torch.randn(2, 3), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="num_classes"):
        loss_fn(torch.randn(3), torch.tensor(0))
    with pytest.raises(ValueError, match="label_smoothing"):
        CrossEntropyLoss(label_smoothing=1.5)


def test_cross_entropy_matches_torch_on_fp16():
    logits, targets = torch.randn(4, 7).half(), torch.randint(0, 7, (4,))
    want = F.cross_entropy(logits.float(), targets, label_smoothing=0.1)
    assert torch.allclose(CrossEntropyLoss(label_smoothing=0.1)(logits, targets), want)
