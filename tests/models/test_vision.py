"""Vision Transformer: patch embedding, shapes for both poolings, and clear errors."""

import pytest
import torch

from mie.models.vision import ConvStem, PatchEmbedding, VisionTransformer


def tiny_vit(**kwargs):
    options = dict(image_size=16, patch_size=4, in_channels=3, width=32, layers=2, heads=4)
    options.update(kwargs)
    return VisionTransformer(**options).eval()


def test_patch_embedding_equals_a_linear_map_of_each_flattened_patch():
    embed = PatchEmbedding(image_size=8, patch_size=4, in_channels=2, width=5)
    images = torch.randn(1, 2, 8, 8)
    out = embed(images)
    assert out.shape == (1, 4, 5)
    weight = embed.proj.weight.reshape(5, -1)
    for index, (row, col) in enumerate([(0, 0), (0, 4), (4, 0), (4, 4)]):  # row-major patch order
        patch = images[0, :, row : row + 4, col : col + 4].reshape(-1)
        torch.testing.assert_close(out[0, index], weight @ patch + embed.proj.bias, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pool, tokens", [("cls", 17), ("mean", 16)])
def test_vit_output_shapes(pool, tokens):
    vit = tiny_vit(pool=pool)
    images = torch.randn(3, 3, 16, 16)
    assert vit.forward_tokens(images).shape == (3, tokens, 32)
    assert vit(images).shape == (3, 32)
    assert (vit.cls_token is not None) == (pool == "cls")


def test_vit_pooling_picks_cls_token_or_patch_mean():
    images = torch.randn(2, 3, 16, 16)
    cls_vit, mean_vit = tiny_vit(pool="cls"), tiny_vit(pool="mean")
    torch.testing.assert_close(cls_vit(images), cls_vit.forward_tokens(images)[:, 0])
    torch.testing.assert_close(mean_vit(images), mean_vit.forward_tokens(images).mean(dim=1))


def test_vit_is_per_image_and_trains():
    vit = tiny_vit(norm="rmsnorm")
    images = torch.randn(2, 3, 16, 16)
    out = vit(images)
    torch.testing.assert_close(vit(images[1:]), out[1:], atol=1e-5, rtol=1e-5)
    out.sum().backward()
    assert vit.patch_embed.proj.weight.grad.abs().sum() > 0 and vit.cls_token.grad.abs().sum() > 0


def test_vit_errors():
    with pytest.raises(ValueError, match="multiple of patch_size"):
        tiny_vit(image_size=15)
    with pytest.raises(ValueError, match="cls, mean"):
        tiny_vit(pool="max")
    with pytest.raises(ValueError, match=r"\[B, C, 16, 16\]"):
        tiny_vit()(torch.randn(1, 3, 32, 32))


def test_conv_stem_keeps_the_patch_grid_and_sees_only_its_receptive_field():
    stem = ConvStem(image_size=32, patch_size=8, in_channels=3, width=24)
    assert stem.num_patches == 16
    images = torch.randn(2, 3, 32, 32)
    tokens = stem(images)
    assert tokens.shape == (2, 16, 24)
    # Three 3x3 stride-2 convs see at most 15 px from a token's patch: changing the bottom-right corner
    # must leave the top-left token unchanged and change the bottom-right one.
    changed = images.clone()
    changed[:, :, 28:, 28:] += 5.0
    after = stem(changed)
    torch.testing.assert_close(after[:, 0], tokens[:, 0])
    assert not torch.allclose(after[:, -1], tokens[:, -1])


@pytest.mark.parametrize("patch", [1, 6, 12])
def test_conv_stem_needs_a_power_of_two_patch(patch):
    with pytest.raises(ValueError, match="power of two"):
        ConvStem(image_size=48, patch_size=patch, in_channels=3, width=16)


def test_vit_with_conv_stem_and_bad_stem_name():
    vit = VisionTransformer(image_size=32, patch_size=8, width=32, layers=1, heads=2, stem="conv")
    assert isinstance(vit.patch_embed, ConvStem)
    assert vit(torch.randn(3, 3, 32, 32)).shape == (3, 32)
    with pytest.raises(ValueError, match="model.vision_stem"):
        VisionTransformer(image_size=32, patch_size=8, width=32, layers=1, heads=2, stem="resnet")


def test_channel_layer_norm_matches_layer_norm_per_pixel():
    from mie.models.vision import ChannelLayerNorm

    norm = ChannelLayerNorm(6)
    x = torch.randn(2, 6, 4, 5)
    expected = torch.nn.functional.layer_norm(x.permute(0, 2, 3, 1), (6,)).permute(0, 3, 1, 2)
    torch.testing.assert_close(norm(x), expected)
