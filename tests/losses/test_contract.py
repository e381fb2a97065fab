"""What a training task relies on: each loss declares the inputs it consumes and is fed from one context
mapping (``forward_context``) exactly as a direct call would be; value checks and diagnostics follow the
``diagnostics`` switch."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
import torch.nn.functional as F

from mie.losses import LOSSES, build_loss
from mie.losses.base import INPUT_KINDS, LossBase, diagnostics, diagnostics_enabled

COMPOSITE_NAMES = ("combined", "multitask")
# What an image–text batch supplies (the contrastive training task's inputs).
IMAGE_TEXT = {"image_embeds", "text_embeds", "logit_scale", "match_ids", "features", "reference_features",
              "key_inputs", "negative_text_embeds", "tag_targets", "tag_text_embeds",
              "image_token_embeds"}


def declared(cls: type) -> dict[str, str]:
    """The ``consumes`` a class sets itself (not one inherited from a base class)."""
    assert "consumes" in vars(cls), f"{cls.__name__} does not declare consumes"
    return vars(cls)["consumes"]


def inputs_without_default(cls: type) -> set[str]:
    """The context keys of the forward parameters that have no default, read from the signature."""
    params = inspect.signature(cls.forward).parameters
    return {cls.consumes[p] for p, v in params.items() if p != "self" and v.default is v.empty
            and v.kind not in (v.VAR_POSITIONAL, v.VAR_KEYWORD)}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_declares_what_it_consumes(name, make_loss):
    cls = LOSSES[name]
    consumes = declared(cls)
    params = inspect.signature(cls.forward).parameters
    assert set(consumes) <= set(params), f"{name}: {set(consumes) - set(params)} are not forward parameters"
    assert set(consumes.values()) <= set(INPUT_KINDS)
    loss = make_loss(name)
    if name in COMPOSITE_NAMES:
        assert consumes == {}  # a composite's terms declare theirs
        return
    assert consumes, f"{name} declares no inputs"
    no_default = {p for p, v in params.items() if p != "self" and v.default is v.empty}
    assert no_default <= set(consumes), f"{name}: required {no_default - set(consumes)} not declared"
    assert loss.required_inputs() == inputs_without_default(cls)
    assert loss.accepted_inputs() == set(consumes.values())


@pytest.mark.parametrize("name", COMPOSITE_NAMES)
def test_composites_need_what_their_terms_need(name, make_loss):
    loss = make_loss(name)
    terms = list(loss.sub_losses())
    assert len(terms) == 4
    assert loss.required_inputs() == set().union(*(inputs_without_default(type(t)) for t in terms))
    assert loss.accepted_inputs() == set().union(*(declared(type(t)).values() for t in terms))
    mixed = build_loss("combined", losses=[{"name": "clip"}, {"name": "cross_entropy"}])
    assert mixed.required_inputs() == {"image_embeds", "text_embeds", "logits", "targets"}


def test_every_loss_but_cross_entropy_trains_from_an_image_text_batch(make_loss):
    outside = {name for name in LOSSES if not make_loss(name).required_inputs() <= IMAGE_TEXT}
    assert outside == {"cross_entropy"}


def direct_call(name: str, loss: LossBase, ctx: dict) -> torch.Tensor:
    """The same loss called as a user would, without ``forward_context``."""
    img, txt = ctx["image_embeds"], ctx["text_embeds"]
    if name == "combined":
        return loss(img, txt, logit_scale=ctx["logit_scale"], match_ids=ctx["match_ids"],
                    negative_text_embeds=ctx["negative_text_embeds"])
    if name == "multitask":
        return loss(retrieval={"image_embeds": img, "text_embeds": txt, "match_ids": ctx["match_ids"],
                               "logit_scale": ctx["logit_scale"]},
                    stats=(img, txt), queue=(img, txt), momentum=(img, ctx["key_inputs"]))
    return loss(**{param: ctx[key] for param, key in type(loss).consumes.items()})


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_forward_context_equals_a_direct_call(name, make_loss, loss_context):
    ctx = loss_context(requires_grad=False)
    a, b = make_loss(name).eval(), make_loss(name).eval()  # eval: queues and counters stay put
    b.load_state_dict(a.state_dict())
    got = a.forward_context(ctx)
    torch.testing.assert_close(got, direct_call(name, b, ctx))
    assert a.last_metrics.keys() == b.last_metrics.keys()
    # Inputs a loss does not consume change nothing; absent optional ones fall back to the defaults.
    extra = {**ctx, "unused": torch.zeros(1)}
    torch.testing.assert_close(a.forward_context(extra), got)


def test_forward_context_leaves_out_absent_and_none_inputs(loss_context):
    ctx = loss_context(requires_grad=False)
    clip = build_loss("clip", temperature=0.1)
    want = clip(ctx["image_embeds"], ctx["text_embeds"])  # the loss's own temperature, no ids
    got = clip.forward_context({"image_embeds": ctx["image_embeds"], "text_embeds": ctx["text_embeds"],
                                "logit_scale": None, "match_ids": None})
    torch.testing.assert_close(got, want)


def test_siglip_takes_the_models_logit_scale(loss_context):
    ctx = loss_context(requires_grad=False)
    siglip = build_loss("siglip")
    got = siglip.forward_context(ctx)
    # The sigmoid loss written out pair by pair, at the context's scale and the loss's own bias.
    img, txt = F.normalize(ctx["image_embeds"], dim=-1), F.normalize(txt_ := ctx["text_embeds"], dim=-1)
    ids, scale, bias = ctx["match_ids"], float(ctx["logit_scale"]), float(siglip.bias.detach())
    total = 0.0
    for i in range(img.shape[0]):
        for j in range(txt_.shape[0]):
            z = 1.0 if ids[i] == ids[j] else -1.0
            total += math.log1p(math.exp(-z * (scale * float(img[i] @ txt[j]) + bias)))
    assert float(got.detach()) == pytest.approx(total / img.shape[0], rel=1e-5)


def test_missing_required_input_names_it(make_loss):
    with pytest.raises(ValueError, match=r"loss 'feature_consistency' needs reference_features; "
                                         r"the task gave features$"):
        make_loss("feature_consistency").forward_context({"features": torch.randn(3, 4), "labels": None})
    with pytest.raises(ValueError, match=r"loss 'combined' needs logits, targets, text_embeds; the task gave image_embeds$"):
        build_loss("combined", losses=[{"name": "clip"}, {"name": "cross_entropy"}]).forward_context(
            {"image_embeds": torch.randn(3, 4)})


def test_diagnostics_switch_nests_and_restores():
    assert diagnostics_enabled()
    with diagnostics(False):
        assert not diagnostics_enabled()
        with diagnostics(True):
            assert diagnostics_enabled()
        assert not diagnostics_enabled()
    assert diagnostics_enabled()
    with pytest.raises(RuntimeError), diagnostics(False):
        raise RuntimeError
    assert diagnostics_enabled()  # restored after an exception too


def test_checks_that_need_values_run_only_with_diagnostics_on():
    bad = torch.tensor([[float("nan"), 1.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match="NaN"):
        build_loss("clip")(bad, torch.randn(2, 2))
    with pytest.raises(ValueError, match="positive finite"):
        build_loss("clip")(torch.randn(2, 2), torch.randn(2, 2), logit_scale=torch.tensor(-1.0))
    one_view, distinct = torch.randn(3, 2), torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match="no anchor has a positive"):
        build_loss("supcon")(one_view, labels=distinct)
    with diagnostics(False):
        # Unchecked, a bad input gives a non-finite loss, which the trainer's check sees.
        assert not torch.isfinite(build_loss("clip")(bad, torch.randn(2, 2)))
        assert not torch.isfinite(build_loss("supcon")(one_view, labels=distinct))
        # Shapes and dtypes are checked whatever the switch says.
        with pytest.raises(ValueError, match="same shape"):
            build_loss("clip")(torch.randn(2, 3), torch.randn(2, 4))
        with pytest.raises(ValueError, match="integers"):
            build_loss("clip")(torch.randn(2, 3), torch.randn(2, 3), match_ids=torch.zeros(2))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_diagnostics_off_keeps_the_value_and_drops_the_metrics(name, make_loss, loss_context):
    ctx = loss_context(requires_grad=False)
    a, b = make_loss(name).eval(), make_loss(name).eval()
    b.load_state_dict(a.state_dict())
    want = a.forward_context(ctx)
    assert "loss" in a.last_metrics and all(isinstance(v, float) for v in a.last_metrics.values())
    with diagnostics(False):
        got = b.forward_context(ctx)
    assert b.last_metrics == {}
    torch.testing.assert_close(got, want)
