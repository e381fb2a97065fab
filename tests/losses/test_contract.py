"""What a training task relies on: each loss declares the inputs it consumes, is fed from one context
mapping, updates its state only in ``after_optimizer_step``, and reads nothing back from the device
while diagnostics are off."""

from __future__ import annotations

import contextlib
import inspect

import pytest
import torch

from mie.losses import LOSSES, build_loss
from mie.losses.base import INPUT_KINDS, LossBase, diagnostics, diagnostics_enabled

B, D = 6, 5
COMPOSITES = {
    "combined": {"losses": [{"name": "clip"}, {"name": "vicreg", "weight": 0.1}, {"name": "moco", "embed_dim": D}]},
    "multitask": {"tasks": {"retrieval": {"name": "siglip"}, "stats": {"name": "barlow_twins", "weight": 0.5}},
                  "uncertainty_weighting": True},
}


def make(name: str) -> LossBase:
    """The loss with the arguments it needs (queue sizes, an attached key encoder)."""
    if name in COMPOSITES:
        return build_loss(name, **COMPOSITES[name])
    accepted = inspect.signature(LOSSES[name].__init__).parameters
    loss = build_loss(name, **({"embed_dim": D, "queue_size": 16} if "embed_dim" in accepted else {}))
    if hasattr(loss, "attach"):
        torch.manual_seed(1)
        loss.attach(torch.nn.Linear(D, D))
    return loss


def context(requires_grad: bool = True) -> dict[str, torch.Tensor]:
    """Every image–text input a contrastive task offers."""
    g = torch.Generator().manual_seed(0)
    img = torch.randn(B, D, generator=g).requires_grad_(requires_grad)
    txt = torch.randn(B, D, generator=g).requires_grad_(requires_grad)
    feats = torch.cat([img, txt])
    return {"image_embeds": img, "text_embeds": txt, "logit_scale": torch.tensor(10.0),
            "match_ids": torch.tensor([0, 1, 1, 2, 3, 4]), "features": feats,
            "reference_features": feats.detach() + 0.1, "key_inputs": torch.randn(B, D, generator=g)}


IMAGE_TEXT = sorted(n for n in LOSSES if n != "cross_entropy")


@pytest.mark.parametrize("name", sorted(set(LOSSES) - set(COMPOSITES)))
def test_consumes_names_forward_parameters_and_known_inputs(name):
    cls = LOSSES[name]
    params = inspect.signature(cls.forward).parameters
    assert cls.consumes, f"{name} declares no inputs"
    assert set(cls.consumes) <= set(params), f"{name}: {set(cls.consumes) - set(params)} are not forward params"
    assert set(cls.consumes.values()) <= set(INPUT_KINDS)
    no_default = {p for p, v in params.items() if p != "self" and v.default is v.empty}
    assert no_default <= set(cls.consumes), f"{name}: required {no_default - set(cls.consumes)} not declared"
    assert make(name).required_inputs() == {cls.consumes[p] for p in no_default}


def test_composites_need_what_their_terms_need():
    combined = make("combined")
    assert combined.required_inputs() == {"image_embeds", "text_embeds"}
    assert combined.accepted_inputs() == {"image_embeds", "text_embeds", "logit_scale", "match_ids"}
    assert build_loss("combined", losses=[{"name": "clip"}, {"name": "cross_entropy"}]).required_inputs() == {
        "image_embeds", "text_embeds", "logits", "targets"}
    assert make("multitask").required_inputs() == {"image_embeds", "text_embeds"}


@pytest.mark.parametrize("name", IMAGE_TEXT)
def test_forward_context_equals_a_direct_call(name):
    ctx = context(requires_grad=False)
    a, b = make(name).eval(), make(name).eval()  # eval: queues and counters stay put
    b.load_state_dict(a.state_dict())
    got = a.forward_context(ctx)
    if name in COMPOSITES:
        direct = {"combined": lambda: b(ctx["image_embeds"], ctx["text_embeds"], logit_scale=ctx["logit_scale"],
                                        match_ids=ctx["match_ids"]),
                  "multitask": lambda: b(retrieval={"image_embeds": ctx["image_embeds"], "text_embeds": ctx["text_embeds"],
                                                    "match_ids": ctx["match_ids"]},
                                         stats=(ctx["image_embeds"], ctx["text_embeds"]))}[name]()
    else:
        direct = b(**{p: ctx[k] for p, k in type(b).consumes.items() if k in ctx})
    torch.testing.assert_close(got, direct)


def test_missing_required_input_names_it():
    with pytest.raises(ValueError, match=r"loss 'feature_consistency' needs reference_features"):
        make("feature_consistency").forward_context({"features": torch.randn(3, 4)})


@contextlib.contextmanager
def host_reads_forbidden():
    """Make every way of copying a tensor value to Python raise."""
    names = ("item", "tolist", "__bool__", "__float__", "__int__")
    saved = {n: getattr(torch.Tensor, n) for n in names}

    def refuse(self, *args, **kwargs):
        raise AssertionError("a tensor value was read back to the host")

    for n in names:
        setattr(torch.Tensor, n, refuse)
    try:
        yield
    finally:
        for n, fn in saved.items():
            setattr(torch.Tensor, n, fn)


@pytest.mark.parametrize("name", IMAGE_TEXT)
def test_no_host_sync_with_diagnostics_off(name):
    loss = make(name).train()
    ctx = context()
    with diagnostics(False), host_reads_forbidden():
        value = loss.forward_context(ctx)
        value.backward()
        loss.after_optimizer_step()
    assert loss.last_metrics == {}
    assert torch.isfinite(value) and ctx["image_embeds"].grad is not None
    with diagnostics(True):
        loss.forward_context(context())
    assert "loss" in loss.last_metrics  # on again: the usual metrics


def test_host_reads_are_caught_by_the_guard():
    """The guard above would catch a loss that logs with float(tensor) while diagnostics are off."""
    with host_reads_forbidden(), pytest.raises(AssertionError, match="host"):
        float(torch.tensor(1.0))


def test_diagnostics_switch_nests_and_restores():
    assert diagnostics_enabled()
    with diagnostics(False):
        assert not diagnostics_enabled()
        with diagnostics(True):
            assert diagnostics_enabled()
        assert not diagnostics_enabled()
    assert diagnostics_enabled()


def test_checks_that_need_values_run_only_with_diagnostics_on():
    bad = torch.tensor([[float("nan"), 1.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match="NaN"):
        build_loss("clip")(bad, torch.randn(2, 2))
    with diagnostics(False):
        assert not torch.isfinite(build_loss("clip")(bad, torch.randn(2, 2)))  # the trainer's check sees it
