"""Contrastive losses against references written with Python loops from each paper's formula."""

import math

import pytest
import torch
import torch.nn.functional as F

from mie.losses import (
    ContrastiveLoss,
    DecoupledContrastiveLoss,
    DynamicTemperatureLoss,
    HardNegativeLoss,
    MultimodalMixedContrastiveLoss,
    NTXentLoss,
    SigLIPLoss,
    SimpleContrastiveLoss,
    SupervisedContrastiveLoss,
)

SHAPES = [(3, 4), (6, 5)]
TEMPS = [0.05, 0.5]


def lse(values):
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


def unit(x):
    return F.normalize(x.double(), dim=-1)


def infonce_rows(q, k, t, ids=None):
    """-sum_j target_ij log softmax_ij per row, targets spread over same-id keys."""
    out = []
    for i in range(q.shape[0]):
        logits = [float(q[i] @ k[j]) / t for j in range(k.shape[0])]
        pos = [j for j in range(k.shape[0]) if (ids[j] == ids[i] if ids is not None else i == j)]
        out.append(lse(logits) - sum(logits[j] for j in pos) / len(pos))
    return out


@pytest.mark.parametrize("n,d", SHAPES)
@pytest.mark.parametrize("t", TEMPS)
@pytest.mark.parametrize("symmetric", [False, True])
def test_contrastive(n, d, t, symmetric):
    a, b = torch.randn(n, d), torch.randn(n, d)
    ids = torch.randint(0, 2, (n,))
    got = ContrastiveLoss(temperature=t, symmetric=symmetric)(a, b, match_ids=ids)
    ab = sum(infonce_rows(unit(a), unit(b), t, ids.tolist())) / n
    ba = sum(infonce_rows(unit(b), unit(a), t, ids.tolist())) / n
    assert got.item() == pytest.approx((ab + ba) / 2 if symmetric else ab, abs=1e-5)


@pytest.mark.parametrize("n,d", SHAPES)
@pytest.mark.parametrize("t", TEMPS)
def test_simple_contrastive_reductions(n, d, t):
    a, b = torch.randn(n, d), torch.randn(n, d)
    rows = [(x + y) / 2 for x, y in zip(infonce_rows(unit(a), unit(b), t), infonce_rows(unit(b), unit(a), t))]
    per_pair = SimpleContrastiveLoss(temperature=t, reduction="none")(a, b)
    assert per_pair.shape == (n,)
    assert torch.allclose(per_pair.double(), torch.tensor(rows, dtype=torch.float64), atol=1e-5)
    assert SimpleContrastiveLoss(temperature=t, reduction="sum")(a, b).item() == pytest.approx(
        sum(rows), abs=1e-4
    )
    with pytest.raises(ValueError, match="reduction"):
        SimpleContrastiveLoss(reduction="max")


def naive_siglip(x, y, scale, bias, ids=None):
    n = x.shape[0]
    total = 0.0
    for i in range(n):
        for j in range(n):
            z = 1.0 if (ids[i] == ids[j] if ids is not None else i == j) else -1.0
            logit = scale * float(x[i] @ y[j]) + bias
            total += math.log1p(math.exp(-z * logit))  # -log sigmoid(z * logit)
    return total / n


@pytest.mark.parametrize("n,d", SHAPES)
@pytest.mark.parametrize("chunk", [None, 2])
@pytest.mark.parametrize("use_ids", [False, True])
def test_siglip_matches_pairwise_sigmoid_formula(n, d, chunk, use_ids):
    x, y = torch.randn(n, d), torch.randn(n, d)
    ids = torch.randint(0, 3, (n,)) if use_ids else None
    loss_fn = SigLIPLoss(chunk_size=chunk)
    assert loss_fn.log_scale.item() == pytest.approx(math.log(10)) and loss_fn.bias.item() == -10
    got = loss_fn(x, y, match_ids=ids)
    want = naive_siglip(unit(x), unit(y), 10.0, -10.0, None if ids is None else ids.tolist())
    assert got.item() == pytest.approx(want, abs=1e-5)
    got = loss_fn(x, y, match_ids=ids, logit_scale=100.0, logit_bias=-3.0)
    want = naive_siglip(unit(x), unit(y), 100.0, -3.0, None if ids is None else ids.tolist())
    assert got.item() == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("n,chunk", [(5, 2), (9, 4), (16, 3)])
def test_siglip_chunked_equals_dense_with_gradients(n, chunk):
    x0, y0 = torch.randn(n, 7), torch.randn(n, 7)
    ids = torch.randint(0, 4, (n,))
    results = []
    for chunk_size in (None, chunk):
        x, y = x0.clone().requires_grad_(), y0.clone().requires_grad_()
        loss_fn = SigLIPLoss(chunk_size=chunk_size)
        loss = loss_fn(x, y, match_ids=ids)
        loss.backward()
        results.append([loss.detach(), x.grad, y.grad, loss_fn.log_scale.grad, loss_fn.bias.grad])
    for dense, chunked in zip(*results):
        assert torch.allclose(dense, chunked, atol=1e-5)


def test_siglip_fixed_parameters_are_buffers():
    assert list(SigLIPLoss(learnable=False).parameters()) == []
    with pytest.raises(ValueError, match="chunk_size"):
        SigLIPLoss(chunk_size=0)
    with pytest.raises(ValueError, match="logit_bias"):
        SigLIPLoss()(torch.randn(2, 3), torch.randn(2, 3), logit_bias=float("nan"))


@pytest.mark.parametrize("n,d", SHAPES)
@pytest.mark.parametrize("t", TEMPS)
def test_ntxent_simclr_formula(n, d, t):
    a, b = torch.randn(n, d), torch.randn(n, d)
    z = torch.cat([unit(a), unit(b)])
    total = 0.0
    for i in range(2 * n):
        pair = (i + n) % (2 * n)
        others = [float(z[i] @ z[k]) / t for k in range(2 * n) if k != i]
        total += lse(others) - float(z[i] @ z[pair]) / t
    assert NTXentLoss(temperature=t)(a, b).item() == pytest.approx(total / (2 * n), abs=1e-5)


@pytest.mark.parametrize("n,d", SHAPES)
@pytest.mark.parametrize("t", TEMPS)
@pytest.mark.parametrize("weighting", [None, "vmf"])
def test_decoupled_formula(n, d, t, weighting):
    a, b = torch.randn(n, d), torch.randn(n, d)
    ua, ub = unit(a), unit(b)
    sims = [float(ua[i] @ ub[i]) for i in range(n)]
    if weighting:
        exps = [math.exp(s / 0.5) for s in sims]
        weights = [2 - n * e / sum(exps) for e in exps]
    else:
        weights = [1.0] * n
    total = 0.0
    for x, y in ((ua, ub), (ub, ua)):
        for i in range(n):
            negs = [float(x[i] @ x[j]) / t for j in range(n) if j != i]
            negs += [float(x[i] @ y[j]) / t for j in range(n) if j != i]
            total += -weights[i] * float(x[i] @ y[i]) / t + lse(negs)
    got = DecoupledContrastiveLoss(temperature=t, weighting=weighting, sigma=0.5)(a, b)
    assert got.item() == pytest.approx(total / (2 * n), abs=1e-5)
    with pytest.raises(ValueError, match="weighting"):
        DecoupledContrastiveLoss(weighting="cosine")


def test_hard_negative_beta_zero_is_infonce():
    a, b = torch.randn(6, 4), torch.randn(6, 4)
    plain = ContrastiveLoss(temperature=0.2)(a, b)
    for mode in ("hard", "semi_hard"):
        assert torch.allclose(HardNegativeLoss(temperature=0.2, beta=0.0, mode=mode)(a, b), plain, atol=1e-6)


@pytest.mark.parametrize("mode", ["hard", "semi_hard"])
@pytest.mark.parametrize("beta", [0.5, 3.0])
def test_hard_negative_weighted_denominator(mode, beta):
    n, t = 5, 0.3
    a, b = torch.randn(n, 4), torch.randn(n, 4)
    ua, ub = unit(a), unit(b)
    total = 0.0
    for q, k in ((ua, ub), (ub, ua)):
        for i in range(n):
            s = [float(q[i] @ k[j]) for j in range(n)]
            negs = [j for j in range(n) if j != i]
            eligible = [j for j in negs if mode == "hard" or s[j] < s[i]]
            norm = sum(math.exp(beta * s[j]) for j in eligible)
            w = {j: (len(eligible) * math.exp(beta * s[j]) / norm if j in eligible else 1.0) for j in negs}
            denom = math.exp(s[i] / t) + sum(w[j] * math.exp(s[j] / t) for j in negs)
            total += math.log(denom) - s[i] / t
    got = HardNegativeLoss(temperature=t, beta=beta, mode=mode)(a, b)
    assert got.item() == pytest.approx(total / (2 * n), abs=1e-5)


def test_hard_negative_upweighting_raises_loss_and_bad_args():
    a, b = torch.randn(8, 4), torch.randn(8, 4)
    assert HardNegativeLoss(beta=5.0)(a, b) > HardNegativeLoss(beta=0.0)(a, b)
    with pytest.raises(ValueError, match="mode"):
        HardNegativeLoss(mode="easy")
    with pytest.raises(ValueError, match="beta"):
        HardNegativeLoss(beta=-1)


def test_dynamic_temperature_schedule_and_step_counter():
    loss_fn = DynamicTemperatureLoss(min_temperature=0.1, max_temperature=0.9, period=8)
    assert [loss_fn.temperature_at(s) for s in (0, 2, 4, 8)] == pytest.approx([0.9, 0.5, 0.1, 0.9])
    a, b = torch.randn(5, 4), torch.randn(5, 4)
    for step in range(3):
        got = loss_fn(a, b)
        assert loss_fn.last_metrics["step"] == step
        want = ContrastiveLoss(temperature=loss_fn.temperature_at(step))(a, b)
        assert torch.allclose(got, want, atol=1e-6)
        loss_fn(a, b)  # a second micro-batch of the same optimizer step: same temperature
        assert loss_fn.last_metrics["step"] == step
        loss_fn.after_optimizer_step()
    assert int(loss_fn.step) == 3
    restored = DynamicTemperatureLoss(min_temperature=0.1, max_temperature=0.9, period=8)
    restored.load_state_dict(loss_fn.state_dict())  # the counter survives a checkpoint
    restored(a, b)
    assert restored.last_metrics["step"] == 3
    loss_fn.eval()
    loss_fn(a, b, step=100)
    assert int(loss_fn.step) == 3 and loss_fn.last_metrics["temperature"] == pytest.approx(
        loss_fn.temperature_at(100)
    )
    for kwargs in ({"min_temperature": 0.5, "max_temperature": 0.1}, {"period": 0}):
        with pytest.raises(ValueError):
            DynamicTemperatureLoss(**kwargs)


def naive_supcon(views, labels, t, base_t):
    """Khosla et al. eq. 2 (L_out) over all views; anchors without positives are skipped."""
    n, v = views.shape[:2]
    flat = [(views[i, k], labels[i], (i, k)) for k in range(v) for i in range(n)]
    losses = []
    for anchor, label, key in flat:
        others = [(f, lab) for f, lab, k2 in flat if k2 != key]
        denom = lse([float(anchor @ f) / t for f, _ in others])
        pos = [float(anchor @ f) / t - denom for f, lab in others if lab == label]
        if pos:
            losses.append(-(t / base_t) * sum(pos) / len(pos))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("t", TEMPS)
@pytest.mark.parametrize("views", [1, 2, 3])
def test_supcon_formula(t, views):
    feats = torch.randn(6, views, 4)
    labels = torch.tensor([0, 1, 0, 2, 1, 3])  # label 3 alone: with one view that anchor has no positive
    loss_fn = SupervisedContrastiveLoss(temperature=t, base_temperature=0.07)
    got = loss_fn(feats if views > 1 else feats[:, 0], labels=labels)
    assert got.item() == pytest.approx(naive_supcon(unit(feats), labels.tolist(), t, 0.07), abs=1e-5)


def test_supcon_pair_form_and_errors():
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    loss_fn = SupervisedContrastiveLoss()
    stacked = loss_fn(torch.stack([a, b], dim=1), labels=torch.arange(4))
    assert torch.allclose(loss_fn(a, b), stacked)  # no labels: each sample its own class (SimCLR)
    assert torch.allclose(loss_fn(a, b, match_ids=torch.arange(4)), stacked)
    with pytest.raises(ValueError, match="no anchor has a positive"):
        loss_fn(a, labels=torch.arange(4))
    with pytest.raises(ValueError, match="features must be"):
        loss_fn(torch.randn(2, 2, 2, 2))
    with pytest.raises(ValueError, match="labels"):
        loss_fn(a, b, labels=torch.arange(3))


def test_multimodal_mixed_is_the_weighted_sum_of_its_terms():
    a, b = torch.randn(6, 4), torch.randn(6, 4)
    labels = torch.tensor([0, 1, 0, 1, 2, 2])
    loss_fn = MultimodalMixedContrastiveLoss(
        temperature=0.2, infonce_weight=1.0, ntxent_weight=0.5, supervised_weight=0.25
    )
    want = (
        ContrastiveLoss(temperature=0.2)(a, b)
        + 0.5 * NTXentLoss(temperature=0.2)(a, b)
        + 0.25 * SupervisedContrastiveLoss(0.2, base_temperature=0.2)(a, b, labels=labels)
    )
    assert torch.allclose(loss_fn(a, b, labels=labels), want, atol=1e-6)
    assert set(loss_fn.last_metrics) == {"loss", "loss_infonce", "loss_ntxent", "loss_supervised"}
    loss_fn(a, b)  # no labels: the supervised term is skipped
    assert "loss_supervised" not in loss_fn.last_metrics
    with pytest.raises(ValueError, match="neither labels nor match_ids"):
        MultimodalMixedContrastiveLoss(infonce_weight=0, ntxent_weight=0, supervised_weight=1)(a, b)
    with pytest.raises(ValueError, match=">= 0"):
        MultimodalMixedContrastiveLoss(ntxent_weight=-1)
    with pytest.raises(ValueError, match="at least one"):
        MultimodalMixedContrastiveLoss(infonce_weight=0, ntxent_weight=0, supervised_weight=0)


@pytest.mark.parametrize(
    "cls,kwargs", [(ContrastiveLoss, {"temperature": 0}), (NTXentLoss, {"temperature": -1.0})]
)
def test_non_positive_temperature_rejected(cls, kwargs):
    with pytest.raises(ValueError, match="temperature must be > 0"):
        cls(**kwargs)


def test_batch_too_small_rejected():
    with pytest.raises(ValueError, match="at least 2 rows"):
        NTXentLoss()(torch.randn(1, 4), torch.randn(1, 4))
