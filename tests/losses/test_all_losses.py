"""Properties every registered loss must have: builds from YAML by name, finite values and gradients at
temperature 0.01 and in fp16/bf16, float64 gradcheck, symmetry, logged metrics, clear errors, training."""

import json

import pytest
import torch
import yaml

from mie.losses import LOSSES, build_loss

B, D = 6, 5
LABELS = torch.tensor([0, 1, 0, 2, 1, 2])


def _pair(dtype):
    return torch.randn(B, D).to(dtype), torch.randn(B, D).to(dtype)


def _lm_inputs(dtype):
    logits = torch.randn(B, 3, 7).to(dtype)
    targets = torch.randint(1, 7, (B, 3))
    targets[0, 0] = 0  # an ignored (padding) position
    return logits, targets


def _encoder():
    torch.manual_seed(1)
    return torch.nn.Linear(D, D)


# name -> (constructor kwargs at temperature 0.01 where the loss has one, inputs(dtype) -> (args, kwargs))
SPECS = {
    "clip": ({"temperature": 0.01}, lambda dt: (_pair(dt), {})),
    "contrastive": ({"temperature": 0.01}, lambda dt: (_pair(dt), {"match_ids": LABELS})),
    "simple_contrastive": ({"temperature": 0.01}, lambda dt: (_pair(dt), {})),
    "siglip": ({"init_logit_scale": 4.605}, lambda dt: (_pair(dt), {})),
    "ntxent": ({"temperature": 0.01}, lambda dt: (_pair(dt), {})),
    "decoupled": ({"temperature": 0.01, "weighting": "vmf"}, lambda dt: (_pair(dt), {})),
    "hard_negative": ({"temperature": 0.01, "beta": 2.0, "mode": "semi_hard"}, lambda dt: (_pair(dt), {})),
    "dynamic_temperature": ({"min_temperature": 0.01, "max_temperature": 0.5}, lambda dt: (_pair(dt), {})),
    "supcon": ({"temperature": 0.01}, lambda dt: (_pair(dt), {"labels": LABELS})),
    "moco": ({"embed_dim": D, "queue_size": 8, "temperature": 0.01}, lambda dt: (_pair(dt), {})),
    "ema_moco": (
        {"embed_dim": D, "queue_size": 8, "temperature": 0.01},
        lambda dt: (
            (
                torch.randn(B, D).to(dt),
                torch.randn(B, D, dtype=torch.float64 if dt == torch.float64 else None),
            ),
            {},
        ),
    ),
    "memory_queue": ({"embed_dim": D, "queue_size": 8, "temperature": 0.01}, lambda dt: (_pair(dt), {})),
    "multimodal_mixed": ({"temperature": 0.01}, lambda dt: (_pair(dt), {"labels": LABELS})),
    "vicreg": ({}, lambda dt: (_pair(dt), {})),
    "barlow_twins": ({}, lambda dt: (_pair(dt), {})),
    "decorrelation": ({"mode": "correlation"}, lambda dt: (_pair(dt), {})),
    "feature_consistency": ({"distance": "smooth_l1"}, lambda dt: (_pair(dt), {})),
    "hybrid_vicreg": (
        {"warmup_steps": 0, "transition_steps": 4, "temperature": 0.01},
        lambda dt: (_pair(dt), {"step": 2}),
    ),
    "caption_tags": ({"embed_dim": D, "num_tags": 3},
                     lambda dt: ((torch.randn(B, D).to(dt), (torch.rand(B, 3) > 0.5).to(dt)), {})),
    "tag_match": ({"init_scale": 5.0, "init_bias": -1.0},
                  lambda dt: ((torch.randn(B, D).to(dt), torch.randn(3, D).to(dt)),
                              {"tag_targets": (torch.rand(B, 3) > 0.5).to(dt)})),
    "tag_ground": ({"init_scale": 5.0, "init_bias": -1.0},
                   lambda dt: ((torch.randn(B, 4, D).to(dt), torch.randn(3, D).to(dt)),
                               {"tag_targets": (torch.rand(B, 3) > 0.5).to(dt)})),
    "cross_entropy": ({"label_smoothing": 0.1, "ignore_index": 0}, lambda dt: (_lm_inputs(dt), {})),
    "combined": (
        {"losses": [{"name": "clip", "weight": 1.0}, {"name": "vicreg", "weight": 0.1, "sim_coeff": 10}]},
        lambda dt: (_pair(dt), {"match_ids": LABELS}),
    ),
    "multitask": (
        {"tasks": {"retrieval": {"name": "clip"}, "lm": {"name": "cross_entropy", "weight": 0.5}}},
        lambda dt: ((), {"retrieval": _pair(dt), "lm": dict(zip(("logits", "targets"), _lm_inputs(dt)))}),
    ),
}
SYMMETRIC = [
    "clip", "contrastive", "simple_contrastive", "siglip", "ntxent", "decoupled", "hard_negative",
    "dynamic_temperature", "supcon", "memory_queue", "multimodal_mixed", "vicreg", "barlow_twins",
    "decorrelation", "hybrid_vicreg", "combined",
]  # fmt: skip


# Importance weights (DCLW, hard-negative) are detached by design, as in the papers; finite differences
# would see them move, so gradcheck runs those losses with constant weights.
GRADCHECK_OVERRIDES = {"decoupled": {"weighting": None}, "hard_negative": {"beta": 0.0}}


def make(name, **overrides):
    """Build the loss from a YAML snippet by name, as a config file would."""
    kwargs = {**SPECS[name][0], **overrides}
    cfg = yaml.safe_load(f"loss:\n  name: {name}\n  kwargs: {json.dumps(kwargs)}\n")["loss"]
    loss_fn = build_loss(cfg["name"], **cfg["kwargs"])
    if name == "ema_moco":
        loss_fn.attach(_encoder())
    return loss_fn


def leaves(args, kwargs):
    """The floating-point input tensors (made leaves that require grad)."""
    found = []

    def visit(x):
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            x.requires_grad_(True)
            found.append(x)
        elif isinstance(x, tuple | list):
            for y in x:
                visit(y)
        elif isinstance(x, dict):
            for y in x.values():
                visit(y)

    visit(args)
    visit(kwargs)
    return found


def test_every_registered_loss_is_specified_here():
    assert set(SPECS) == set(LOSSES)
    assert len(set(LOSSES.values())) == len(LOSSES)  # one class per name, none registered twice


def test_issue_yaml_snippet_builds_combined():
    cfg = yaml.safe_load(
        "name: combined\nlosses:\n  - {name: clip, weight: 1.0}\n  - {name: vicreg, weight: 0.1, sim_coeff: 10}\n"
    )
    loss_fn = build_loss(cfg.pop("name"), **cfg)
    assert loss_fn.weights == [1.0, 0.1] and loss_fn.terms[1].sim_coeff == 10


@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_finite_loss_and_gradients(name, dtype):
    loss_fn = make(name)
    args, kwargs = SPECS[name][1](dtype)
    inputs = leaves(args, kwargs)
    loss = loss_fn(*args, **kwargs)
    assert loss.dim() == 0 and loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    grads = [x.grad for x in inputs if x.grad is not None]
    assert grads, "no gradient reached the inputs"
    assert all(torch.isfinite(g).all() for g in grads)
    assert loss_fn.last_metrics["loss"] == pytest.approx(loss.item(), rel=1e-5, abs=1e-6)
    assert all(isinstance(v, float) for v in loss_fn.last_metrics.values())


@pytest.mark.parametrize("name", sorted(SPECS))
def test_gradcheck_float64(name):
    loss_fn = make(name, **GRADCHECK_OVERRIDES.get(name, {})).double()
    loss_fn.eval()  # queue losses: keep the queue fixed between gradcheck's evaluations
    args, kwargs = SPECS[name][1](torch.float64)
    inputs = leaves(args, kwargs)
    if name in ("moco", "ema_moco", "feature_consistency"):
        inputs = inputs[:1]  # the key / reference side is detached by design

    def fn(*xs):
        it = iter(xs)

        def rebuild(x):
            if isinstance(x, torch.Tensor) and x.is_floating_point():
                return next(it) if any(x is y for y in inputs) else x
            if isinstance(x, tuple | list):
                return type(x)(rebuild(y) for y in x)
            if isinstance(x, dict):
                return {k: rebuild(v) for k, v in x.items()}
            return x

        return loss_fn(*rebuild(args), **rebuild(kwargs))

    assert torch.autograd.gradcheck(fn, tuple(inputs), atol=1e-6)


@pytest.mark.parametrize("name", SYMMETRIC)
def test_symmetric_losses_are_symmetric(name):
    torch.manual_seed(3)
    (a, b), kwargs = SPECS[name][1](torch.float64)
    forward = make(name).double()(a, b, **kwargs)
    backward = make(name).double()(b, a, **kwargs)
    assert torch.allclose(forward, backward, atol=1e-8)


@pytest.mark.parametrize("name", sorted(n for n in SPECS if n not in ("multitask", "cross_entropy")))
def test_nan_and_mismatched_inputs_raise(name):
    loss_fn = make(name)
    (a, b), kwargs = SPECS[name][1](torch.float32)
    bad = a.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        loss_fn(bad, b, **kwargs)
    if name != "ema_moco":  # its second input is raw encoder input
        with pytest.raises(ValueError, match="shape"):
            loss_fn(a, b[:, :-1], **kwargs)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_loss_decreases_on_toy_problem(name):
    torch.manual_seed(0)
    loss_fn = make(name)
    args, kwargs = SPECS[name][1](torch.float32)
    params = [torch.nn.Parameter(x.detach().clone()) for x in leaves(args, kwargs)]
    it = iter(params)

    def swap(x):
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            return next(it)
        if isinstance(x, tuple | list):
            return type(x)(swap(y) for y in x)
        if isinstance(x, dict):
            return {k: swap(v) for k, v in x.items()}
        return x

    args, kwargs = swap(args), swap(kwargs)
    extra = list(loss_fn.parameters()) if name != "ema_moco" else []
    opt = torch.optim.Adam(params + [p for p in extra if p.requires_grad], lr=0.05)
    loss_fn.eval()  # fixed queues / steps: the objective does not move under the optimiser
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = loss_fn(*args, **kwargs)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError, match="unknown loss 'nope'.*clip.*vicreg"):
        build_loss("nope")


def test_unknown_kwarg_names_it_and_the_accepted_args():
    with pytest.raises(
        ValueError, match="'temprature'.*accepted arguments: temperature, learnable_temperature"
    ):
        build_loss("clip", temprature=0.1)
