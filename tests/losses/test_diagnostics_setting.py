"""Issue 27, recipe skeleton: loss diagnostics are a setting of the loss (``loss.diagnostics``, which the
contrastive task sets to its ``logging_step``), not a process-wide flag: one loss's setting changes
neither another loss nor the state outside its forward, and reaches the losses it is built from."""

from __future__ import annotations

import threading

import torch

from mie.losses import build_loss
from mie.losses.base import diagnostics, diagnostics_enabled


def _pair() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return torch.randn(4, 8), torch.randn(4, 8)


def test_a_loss_setting_holds_for_its_forward_only():
    a, b = _pair()
    quiet, loud = build_loss("clip"), build_loss("clip")
    quiet.diagnostics = False
    want = loud(a, b)
    torch.testing.assert_close(quiet(a, b), want)
    assert quiet.last_metrics == {} and "loss" in loud.last_metrics
    assert diagnostics_enabled()  # nothing leaked out of the quiet loss's forward
    with diagnostics(False):  # a loss's own setting wins over its caller's block; None follows the block
        loud.diagnostics = True
        loud(a, b)
        assert "loss" in loud.last_metrics and not diagnostics_enabled()
        loud.diagnostics = None
        loud(a, b)
        assert loud.last_metrics == {}


def test_a_combined_loss_passes_its_setting_to_the_losses_it_is_built_from():
    a, b = _pair()
    combined = build_loss("combined", losses=[{"name": "clip"}, {"name": "siglip"}])
    combined.diagnostics = False
    combined.forward_context({"image_embeds": a, "text_embeds": b})
    assert combined.last_metrics == {} and all(sub.last_metrics == {} for sub in combined.sub_losses())
    combined.diagnostics = True
    combined.forward_context({"image_embeds": a, "text_embeds": b})
    assert all("loss" in sub.last_metrics for sub in combined.sub_losses())


def test_another_thread_does_not_see_a_callers_block():
    seen = []
    with diagnostics(False):
        worker = threading.Thread(target=lambda: seen.append(diagnostics_enabled()))
        worker.start()
        worker.join()
    assert seen == [True]
