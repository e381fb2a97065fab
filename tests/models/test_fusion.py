"""Fusion blocks: output shapes, padding masks, the Flamingo gate at 0, and the ITM head."""

from __future__ import annotations

import pytest
import torch
from tests.models.pre_port import pre_port

from mie.models.fusion import (
    FUSIONS,
    FusionConfig,
    GatedCrossAttentionBlock,
    ImageTextMatcher,
    build_fusion,
)


def test_gated_cross_attention_with_gates_at_zero_returns_its_input_exactly():
    block = GatedCrossAttentionBlock(16, 2)
    x, context = torch.randn(3, 5, 16), torch.randn(3, 7, 16)
    assert torch.equal(block(x, context), x)
    with torch.no_grad():
        block.attn_gate.fill_(0.5)
    assert not torch.allclose(block(x, context), x)


@pytest.mark.parametrize("kind", FUSIONS)
def test_fusion_shapes_and_text_padding_mask(kind):
    torch.manual_seed(0)
    fusion = build_fusion(FusionConfig(type=kind, dim=16, heads=2, layers=2), text_dim=24, image_dim=32).eval()
    text, image = torch.randn(3, 6, 24), torch.randn(3, 9, 32)
    mask = torch.zeros(3, 6, dtype=torch.bool)
    mask[:, 4:] = True  # the last two text tokens are padding
    out = fusion(text, image, mask)
    assert out.shape == (3, fusion.out_dim) and fusion.out_dim == (32 if kind in ("bidirectional", "coattention") else 16)
    changed = text.clone()
    changed[:, 4:] = torch.randn(3, 2, 24)  # whatever sits under the mask cannot change the output
    assert torch.allclose(fusion(changed, image, mask), out, atol=1e-5)
    image_mask = torch.zeros(3, 9, dtype=torch.bool)
    image_mask[:, 5:] = True
    other = image.clone()
    other[:, 5:] = torch.randn(3, 4, 32)
    assert torch.allclose(fusion(text, other, mask, image_mask), fusion(text, image, mask, image_mask), atol=1e-5)
    with pytest.raises(ValueError, match="batch sizes differ"):
        fusion(text, image[:2], mask)


def test_itm_head_gives_one_logit_per_pair_and_starts_at_zero():
    matcher = ImageTextMatcher(FusionConfig(type="gated", dim=16, heads=2, layers=1), text_dim=16, image_dim=16)
    logits = matcher(torch.randn(4, 5, 16), torch.randn(4, 3, 16))
    assert logits.shape == (4,) and torch.equal(logits, torch.zeros(4))
    with pytest.raises(ValueError, match="unknown fusion"):
        build_fusion(FusionConfig(type="nope"))


@pytest.mark.parametrize("kind", FUSIONS)
def test_a_pre_port_fusion_checkpoint_loads_strictly_with_identical_outputs(kind):
    """Fusions saved before the one attention module (tests/models/pre_port.py; text and image padding,
    gates opened): same names, same fused vectors with and without masks."""
    state, inputs, outputs = pre_port(f"fusion_{kind}")
    fusion = build_fusion(FusionConfig(type=kind, dim=16, heads=2, layers=2), text_dim=16, image_dim=24).eval()
    fusion.load_state_dict(state, strict=True)
    with torch.no_grad():
        masked = fusion(inputs["text"], inputs["image"], inputs["text_pad"], inputs["image_pad"])
        torch.testing.assert_close(masked, outputs["masked"], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(fusion(inputs["text"], inputs["image"]), outputs["unmasked"], atol=1e-6, rtol=1e-5)
