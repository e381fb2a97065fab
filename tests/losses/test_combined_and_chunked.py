"""Composition (combined / multitask) and the chunked autograd functions."""

import pytest
import torch
import yaml

from mie.losses import CLIPStyleLoss, CombinedLoss, CrossEntropyLoss, MultitaskLoss, VICRegLoss, build_loss
from mie.losses.chunked import chunked_logsumexp, chunked_softplus_sum
from mie.losses.registry import register_loss


def test_combined_is_weighted_sum_and_routes_kwargs():
    a, b = torch.randn(6, 4), torch.randn(6, 4)
    ids = torch.tensor([0, 0, 1, 2, 3, 4])
    loss_fn = build_loss(
        "combined", losses=[{"name": "clip"}, {"name": "vicreg", "weight": 0.1, "sim_coeff": 10}]
    )
    want = CLIPStyleLoss()(a, b, match_ids=ids) + 0.1 * VICRegLoss(sim_coeff=10)(a, b)
    assert torch.allclose(loss_fn(a, b, match_ids=ids), want)  # vicreg does not receive match_ids
    assert {"clip/loss", "vicreg/invariance", "vicreg/weighted", "loss"} <= set(loss_fn.last_metrics)


def test_combined_repeated_names_and_errors():
    loss_fn = CombinedLoss(losses=[{"name": "clip"}, {"name": "clip", "temperature": 0.5}])
    loss_fn(torch.randn(3, 2), torch.randn(3, 2))
    assert {"clip_0/loss", "clip_1/loss"} <= set(loss_fn.last_metrics)
    with pytest.raises(ValueError, match="non-empty list"):
        CombinedLoss(losses=[])
    with pytest.raises(ValueError, match="'name' key"):
        CombinedLoss(losses=[{"weight": 1.0}])
    with pytest.raises(ValueError, match="weight must be >= 0"):
        CombinedLoss(losses=[{"name": "clip", "weight": -1}])
    with pytest.raises(ValueError, match="unknown argument.*'temprature'"):
        CombinedLoss(losses=[{"name": "clip", "temprature": 0.1}])


def test_multitask_from_yaml_with_uncertainty_weighting():
    cfg = yaml.safe_load(
        """
        name: multitask
        tasks:
          retrieval: {name: clip, weight: 1.0}
          lm: {name: cross_entropy, weight: 0.5, label_smoothing: 0.1}
        uncertainty_weighting: true
        """
    )
    loss_fn = build_loss(cfg.pop("name"), **cfg)
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    logits, targets = torch.randn(4, 5), torch.randint(0, 5, (4,))
    with torch.no_grad():
        loss_fn.log_vars["lm"].fill_(0.5)
    got = loss_fn(retrieval=(a, b), lm={"logits": logits, "targets": targets})
    clip, ce = CLIPStyleLoss()(a, b), CrossEntropyLoss(label_smoothing=0.1)(logits, targets)
    want = clip + 0.5 * (torch.exp(torch.tensor(-0.5)) * ce + 0.5)
    assert torch.allclose(got, want, atol=1e-6)
    got.backward()
    assert loss_fn.log_vars["lm"].grad is not None
    assert loss_fn.last_metrics["lm/log_var"] == 0.5 and "retrieval/accuracy" in loss_fn.last_metrics
    with pytest.raises(ValueError, match=r"missing \['lm'\], unknown \['foo'\]"):
        loss_fn(retrieval=(a, b), foo=())
    with pytest.raises(ValueError, match="non-empty mapping"):
        MultitaskLoss(tasks={})


def test_plain_multitask_weights():
    loss_fn = MultitaskLoss(tasks={"x": {"name": "vicreg", "weight": 2.0}})
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    assert torch.allclose(loss_fn(x=(a, b)), 2 * VICRegLoss()(a, b))


def test_registering_a_taken_name_is_refused():
    with pytest.raises(ValueError, match="already registered"):

        @register_loss("clip")
        class Other(torch.nn.Module):
            """A second class under a taken name."""


@pytest.mark.parametrize("chunk", [1, 2, 5])
def test_chunked_functions_gradcheck(chunk):
    q = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    k = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    scale = torch.tensor(1.7, dtype=torch.float64, requires_grad=True)
    bias = torch.tensor(-0.3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *x: chunked_logsumexp(*x, chunk), (q, k, scale))
    assert torch.autograd.gradcheck(lambda *x: chunked_softplus_sum(*x, chunk), (q, k, scale, bias))
    dense = torch.logsumexp(scale * q @ k.T, dim=1)
    assert torch.allclose(chunked_logsumexp(q, k, scale, chunk), dense)
    dense_sp = torch.nn.functional.softplus(scale * q @ k.T + bias).sum()
    assert torch.allclose(chunked_softplus_sum(q, k, scale, bias, chunk), dense_sp)
    with pytest.raises(ValueError, match="chunk_size"):
        chunked_logsumexp(q, k, scale, 0)


def test_chunked_only_some_inputs_need_grad():
    q = torch.randn(4, 3, requires_grad=True)
    k = torch.randn(6, 3)
    chunked_logsumexp(q, k, torch.tensor(2.0), 4).sum().backward()
    want = torch.autograd.grad(torch.logsumexp(2.0 * q @ k.T, 1).sum(), q)[0]
    assert torch.allclose(q.grad, want, atol=1e-6)
