"""Model presets, the factory, parameter counting and the torch.nn reference model."""

import pytest
import torch

from mie.models.multimodal import DualEncoder, DualEncoderConfig
from mie.models.registry import (
    MODEL_PRESETS,
    build_model,
    build_torch_reference_model,
    get_model_config,
    num_parameters,
)


def test_presets_have_the_documented_sizes():
    expected = {
        "tiny": dict(
            embed_dim=128, width=128, layers=2, heads=4, image_size=64, patch_size=8, context_length=32
        ),
        "small": dict(
            embed_dim=256, width=256, layers=4, heads=4, image_size=64, patch_size=8, context_length=32
        ),
        "base": dict(
            embed_dim=512, width=512, layers=8, heads=8, image_size=224, patch_size=16, context_length=77
        ),
    }
    for name, sizes in expected.items():
        config = MODEL_PRESETS[name]
        assert (config.name, config.vocab_size, config.embed_dim) == (name, 0, sizes["embed_dim"])
        assert config.vision_width == config.text_width == sizes["width"]
        assert config.vision_layers == config.text_layers == sizes["layers"]
        assert config.vision_heads == config.text_heads == sizes["heads"]
        assert (config.image_size, config.patch_size) == (sizes["image_size"], sizes["patch_size"])
        assert config.context_length == sizes["context_length"]


def test_get_model_config_returns_a_copy_with_overrides():
    config = get_model_config("tiny", dropout=0.1)
    config.embed_dim = 7
    assert MODEL_PRESETS["tiny"].embed_dim == 128 and MODEL_PRESETS["tiny"].dropout == 0.0
    assert config.dropout == 0.1
    with pytest.raises(ValueError, match="known presets: base, demo, small, tiny"):
        get_model_config("huge")
    with pytest.raises(ValueError, match="embed_size"):
        get_model_config("tiny", embed_size=3)


def test_build_model_from_name_and_config():
    model = build_model("tiny", vocab_size=40, eos_id=5, pad_id=1)
    assert isinstance(model, DualEncoder)
    assert model.config.vocab_size == 40 and model.text.eos_id == 5 and model.text.pad_id == 1
    assert MODEL_PRESETS["tiny"].vocab_size == 0
    config = get_model_config("tiny", vocab_size=40, vision_layers=1)
    model = build_model(config)
    assert len(model.visual.trunk.blocks) == 1 and model.text.eos_id == 3 and model.text.pad_id == 0
    assert build_model(config, vocab_size=40).config.vocab_size == 40


def test_build_model_errors():
    with pytest.raises(ValueError, match="pass vocab_size"):
        build_model("tiny")
    with pytest.raises(ValueError, match="disagrees"):
        build_model(get_model_config("tiny", vocab_size=40), vocab_size=41)
    with pytest.raises(ValueError, match="vocab_size must be positive"):
        build_model("tiny", vocab_size=-1)
    with pytest.raises(ValueError, match="known presets"):
        build_model("nope", vocab_size=10)
    with pytest.raises(TypeError, match="DualEncoderConfig"):
        build_model(42, vocab_size=10)


def test_num_parameters_counts_and_respects_trainable_only():
    layer = torch.nn.Linear(3, 2)
    assert num_parameters(layer) == 8
    layer.bias.requires_grad_(False)
    assert num_parameters(layer, trainable_only=True) == 6 and num_parameters(layer) == 8


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_torch_reference_model_matches_our_architecture(pool):
    config = get_model_config(
        "tiny", vocab_size=30, vision_layers=1, text_layers=1, image_size=16, vision_pool=pool
    )
    ours, reference = build_model(config), build_torch_reference_model(config)
    # Same layers (LayerNorm, biased projections, GELU MLP): the parameter counts agree exactly.
    assert num_parameters(reference) == num_parameters(ours)
    images, ids = torch.randn(2, 3, 16, 16), torch.randint(4, 30, (2, 32))
    ids[:, 6] = 3
    out = reference.eval()(images, ids)
    assert out["image_embeds"].shape == (2, 128) and out["text_embeds"].shape == (2, 128)
    torch.testing.assert_close(out["text_embeds"].norm(dim=-1), torch.ones(2))
    changed = ids.clone()
    changed[:, 10] = 7  # after eos: causal masking hides it from the pooled token
    torch.testing.assert_close(reference(images, changed)["text_embeds"], out["text_embeds"])
    assert out["logit_scale"].item() == pytest.approx(1 / 0.07, rel=1e-5)


def test_torch_reference_model_errors():
    with pytest.raises(ValueError, match="vocab_size"):
        build_torch_reference_model(DualEncoderConfig())
    from mie.models.torch_reference import TorchReferenceDualEncoder

    with pytest.raises(ValueError, match="vocab_size is 0"):
        TorchReferenceDualEncoder(DualEncoderConfig(), eos_id=3, pad_id=0)
    with pytest.raises(ValueError, match="vision pool"):
        TorchReferenceDualEncoder(
            get_model_config("tiny", vocab_size=9, vision_pool="max"), eos_id=3, pad_id=0
        )
