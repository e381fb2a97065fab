"""DualEncoder (embeddings, logit scale) and CrossModalFusion."""

import dataclasses
import math

import pytest
import torch
from tests.models.pre_port import pre_port
from tests.tiny import TINY_CLIP_MODEL

from mie.models.attention import MultiHeadAttention
from mie.models.multimodal import CrossModalFusion, DualEncoder, DualEncoderConfig
from mie.models.registry import get_model_config


def micro_config(**overrides):
    options = dict(
        embed_dim=24,
        image_size=16,
        patch_size=8,
        vision_width=16,
        vision_layers=1,
        vision_heads=2,
        text_width=16,
        text_layers=1,
        text_heads=2,
        context_length=6,
        vocab_size=30,
    )
    options.update(overrides)
    return dataclasses.replace(get_model_config("tiny"), **options)


def batch(size=3):
    ids = torch.randint(4, 30, (size, 6))
    ids[:, 4] = 3
    ids[:, 5] = 0
    return torch.randn(size, 3, 16, 16), ids


@pytest.mark.parametrize("pool, norm", [("cls", "layernorm"), ("mean", "rmsnorm")])
def test_forward_shapes_and_unit_norm(pool, norm):
    model = DualEncoder(micro_config(vision_pool=pool, norm=norm), eos_id=3, pad_id=0)
    images, ids = batch()
    out = model(images, ids)
    assert out["image_embeds"].shape == (3, 24) and out["text_embeds"].shape == (3, 24)
    torch.testing.assert_close(out["image_embeds"].norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(out["text_embeds"].norm(dim=-1), torch.ones(3))
    assert out["logit_scale"].item() == pytest.approx(1 / 0.07, rel=1e-5)
    raw = model.encode_image(images, normalize=False)
    torch.testing.assert_close(raw / raw.norm(dim=-1, keepdim=True), out["image_embeds"])
    assert not torch.allclose(raw.norm(dim=-1), torch.ones(3))


def test_contrastive_loss_backward_reaches_every_parameter():
    model = DualEncoder(micro_config(), eos_id=3, pad_id=0)
    out = model(*batch())
    logits = out["logit_scale"] * out["image_embeds"] @ out["text_embeds"].T
    targets = torch.arange(3)
    loss = (
        torch.nn.functional.cross_entropy(logits, targets)
        + torch.nn.functional.cross_entropy(logits.T, targets)
    ) / 2
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []


def test_logit_scale_is_capped_in_forward_and_clamped_in_place():
    model = DualEncoder(micro_config(max_logit_scale=50.0), eos_id=3, pad_id=0)
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    assert model.get_logit_scale().item() == pytest.approx(50.0, rel=1e-5)
    assert model.logit_scale.item() == 10.0  # forward does not touch the parameter
    model.clamp_logit_scale_()
    assert model.logit_scale.item() == pytest.approx(math.log(50.0))
    with torch.no_grad():
        model.logit_scale.fill_(-3.0)
    model.clamp_logit_scale_()
    assert model.logit_scale.item() == 0.0
    model.get_logit_scale().backward()
    assert model.logit_scale.grad.item() == pytest.approx(1.0)  # d exp(t)/dt at t=0, below the cap


def test_projections_have_no_bias_and_init_is_small():
    model = DualEncoder(micro_config(), eos_id=3, pad_id=0)
    assert model.image_projection.bias is None and model.text_projection.bias is None
    assert model.text_projection.weight.abs().max().item() <= 0.04 + 1e-6


def test_dual_encoder_errors():
    with pytest.raises(ValueError, match="vocab_size is 0"):
        DualEncoder(DualEncoderConfig(), eos_id=3, pad_id=0)
    with pytest.raises(ValueError, match="max_logit_scale"):
        DualEncoder(micro_config(max_logit_scale=1.0), eos_id=3, pad_id=0)


def test_cross_modal_fusion_shapes_padding_and_image_dependence():
    fusion = CrossModalFusion(dim=16, num_heads=2, layers=2, text_dim=12, image_dim=20).eval()
    text, image = torch.randn(2, 5, 12), torch.randn(2, 7, 20)
    padding = torch.tensor([[False, False, False, True, True], [False] * 5])
    out = fusion(text, image, text_padding_mask=padding)
    assert out.shape == (2, 16)
    tokens = fusion.forward_tokens(text, image, text_padding_mask=padding)
    torch.testing.assert_close(out[0], tokens[0, :3].mean(dim=0))
    changed_text = text.clone()
    changed_text[0, 3:] = torch.randn(2, 12)  # padded text tokens
    torch.testing.assert_close(fusion(changed_text, image, text_padding_mask=padding), out)
    changed_image = image.clone()
    changed_image[0] = torch.randn(7, 20)
    moved = fusion(changed_text, changed_image, text_padding_mask=padding)
    assert not torch.allclose(moved[0], out[0]) and torch.allclose(moved[1], out[1])


def test_cross_modal_fusion_on_tower_outputs_and_errors():
    model = DualEncoder(micro_config(), eos_id=3, pad_id=0)
    fusion = CrossModalFusion(dim=16, num_heads=2)
    assert isinstance(fusion.text_in, torch.nn.Identity)
    images, ids = batch(2)
    out = fusion(
        model.text.forward_tokens(ids), model.visual.forward_tokens(images), model.text.padding_mask(ids)
    )
    assert out.shape == (2, 16) and torch.isfinite(out).all()
    assert fusion(torch.randn(2, 3, 16), torch.randn(2, 4, 16)).shape == (2, 16)
    with pytest.raises(ValueError, match="batch sizes differ"):
        fusion(torch.randn(2, 3, 16), torch.randn(3, 4, 16))


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_fresh_embeddings_tell_inputs_apart(pool):
    # A from-scratch dual encoder must start with embeddings that differ from input to input: with
    # GPT-2's 0.02 init at width 128 the image embeddings of random images had cosine ~0.98 with each
    # other and training sat at loss log(batch) for hundreds of steps. Width-scaled init gives < 0.8.
    torch.manual_seed(0)
    config = micro_config(embed_dim=128, image_size=48, vision_width=128, vision_layers=4, vision_heads=4,
                          text_width=128, text_layers=4, text_heads=4, context_length=20, vocab_size=65,
                          vision_pool=pool)
    model = DualEncoder(config, eos_id=2, pad_id=0).eval()
    ids = torch.randint(3, 65, (32, 20))
    ids[:, -1] = 2
    with torch.no_grad():
        images, texts = model.encode_image(torch.randn(32, 3, 48, 48)), model.encode_text(ids)
    off_diagonal = ~torch.eye(32, dtype=torch.bool)
    assert (images @ images.T)[off_diagonal].mean() < 0.8
    assert (texts @ texts.T)[off_diagonal].mean() < 0.8


@pytest.mark.parametrize(("tag", "extra"), [("ln", {}), ("rms", {"norm": "rmsnorm", "vision_pool": "mean"})])
def test_a_pre_port_checkpoint_loads_strictly_and_gives_the_same_embeddings(tag, extra):
    """The tiny demo model saved before the one attention module (tests/models/pre_port.py): the same
    parameter names (fused ``qkv_proj``/``out_proj``), the same embeddings and text tokens."""
    state, inputs, outputs = pre_port(f"clip_{tag}")
    model = DualEncoder(DualEncoderConfig(**TINY_CLIP_MODEL, vocab_size=64, **extra), eos_id=2, pad_id=0).eval()
    assert set(model.state_dict()) == set(state)
    assert "text.trunk.blocks.0.attn.qkv_proj.weight" in state
    model.load_state_dict(state, strict=True)
    assert all(isinstance(m.attn, MultiHeadAttention) for m in model.visual.trunk.blocks)
    with torch.no_grad():
        embeds = model(inputs["images"], inputs["ids"])
        tokens = model.text.forward_tokens(inputs["ids"])
    torch.testing.assert_close(embeds["image_embeds"], outputs["image_embeds"], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(embeds["text_embeds"], outputs["text_embeds"], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(tokens, outputs["text_tokens"], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_image_tokens_come_with_the_same_embeddings_and_a_mean_pooled_tower_averages_them(pool):
    torch.manual_seed(0)
    model = DualEncoder(micro_config(vision_pool=pool, patch_size=4), eos_id=3, pad_id=0).eval()
    images, ids = batch()
    out = model(images, ids, image_tokens=True)
    torch.testing.assert_close(out["image_embeds"], model.encode_image(images), rtol=1e-4, atol=1e-5)
    tokens = out["image_token_embeds"]
    assert tokens.shape == (3, 16, 24)  # patches only, never the class token
    if pool == "mean":  # the projection is linear: the tokens' mean is the embedding before its norm
        torch.testing.assert_close(tokens.mean(dim=1), model.encode_image(images, normalize=False),
                                   rtol=1e-4, atol=1e-5)
