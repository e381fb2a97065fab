"""Vision Transformer: patch embedding, shapes for both poolings, and clear errors."""

import pytest
import torch

from mie.models.vision import PatchEmbedding, VisionTransformer


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
