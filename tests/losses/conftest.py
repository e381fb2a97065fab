"""Shared by the loss contract tests: every registered loss built with what it needs, and one context
mapping holding every named input a task may offer (``mie.losses.base.INPUT_KINDS``)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import torch

from mie.losses import LOSSES, build_loss
from mie.losses.base import LossBase

B, D = 6, 5
QUEUE = 16
TAGS = 3
# The composites hold stateful terms, so propagation of after_optimizer_step is exercised too.
COMPOSITES: dict[str, dict[str, Any]] = {
    "combined": {"losses": [{"name": "clip"}, {"name": "vicreg", "weight": 0.1},
                            {"name": "moco", "embed_dim": D, "queue_size": QUEUE},
                            {"name": "dynamic_temperature", "weight": 0.5}]},
    "multitask": {"tasks": {"retrieval": {"name": "siglip"}, "stats": {"name": "barlow_twins", "weight": 0.5},
                            "queue": {"name": "memory_queue", "embed_dim": D, "queue_size": QUEUE},
                            "momentum": {"name": "ema_moco", "embed_dim": D, "queue_size": QUEUE}},
                  "uncertainty_weighting": True},
}


def make(name: str, **kwargs: Any) -> LossBase:
    """The registered loss ``name`` with ``kwargs``: composites get their terms, queues the embedding
    size, and every momentum loss (also inside a composite) a small key encoder, as a task attaches."""
    if name in COMPOSITES:
        loss = build_loss(name, **{**COMPOSITES[name], **kwargs})
    else:
        accepted = inspect.signature(LOSSES[name].__init__).parameters
        sizes = {k: v for k, v in {"embed_dim": D, "queue_size": QUEUE, "num_tags": TAGS}.items() if k in accepted}
        loss = build_loss(name, **{**sizes, **kwargs})
    for module in loss.modules():
        if callable(getattr(module, "attach", None)):
            torch.manual_seed(1)
            module.attach(torch.nn.Linear(D, D))
    return loss


def context(requires_grad: bool = True, seed: int = 0) -> dict[str, torch.Tensor]:
    """Every named input: an image–text batch (with its features and a frozen reference's, and the
    key encoder's inputs) and, for token losses, logits with targets."""
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(B, D, generator=g).requires_grad_(requires_grad)
    txt = torch.randn(B, D, generator=g).requires_grad_(requires_grad)
    feats = torch.cat([img, txt])
    targets = torch.randint(1, 7, (B, 3), generator=g)
    targets[0, 0] = 0  # a padding position for ignore_index=0
    return {"image_embeds": img, "text_embeds": txt, "logit_scale": torch.tensor(12.0),
            "match_ids": torch.tensor([0, 1, 1, 2, 3, 4]), "labels": torch.tensor([0, 1, 0, 2, 1, 2]),
            "features": feats, "reference_features": feats.detach() + 0.1,
            "key_inputs": torch.randn(B, D, generator=g),
            "negative_text_embeds": torch.randn(3, D, generator=g).requires_grad_(requires_grad),
            "tag_targets": (torch.rand(B, TAGS, generator=g) > 0.5).float(),
            "image_token_embeds": torch.randn(B, 4, D, generator=g).requires_grad_(requires_grad),
            "tag_text_embeds": torch.randn(TAGS, D, generator=g).requires_grad_(requires_grad),
            "logits": torch.randn(B, 3, 7, generator=g).requires_grad_(requires_grad), "targets": targets}


@pytest.fixture
def make_loss():
    """:func:`make`."""
    return make


@pytest.fixture
def loss_context():
    """:func:`context`."""
    return context
