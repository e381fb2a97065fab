"""mie.explain against references: integrated gradients' completeness and exactness, shift invariance,
the attention hook's weights, the peak's pixel coordinates, PCA and the pointing game's hit rule."""

from __future__ import annotations

import math

import pytest
import torch

from mie.explain import (
    DEFAULT_STEPS,
    attention_maps,
    clip_text_attributions,
    gradcam,
    gradient_x_input,
    image_ig,
    integrated_gradients,
    layer_map,
    pca_2d,
    rollout,
    similarity_matrix,
    token_attributions,
)
from mie.explain.image_maps import IMAGE_IG_STEPS, ImageMap
from mie.explain.pointing import is_hit
from mie.models.attention import MultiHeadAttention, attend, recording_attention, reference_attention
from mie.models.multimodal import DualEncoder, DualEncoderConfig

EOS, PAD = 1, 0


def tiny_clip(seed: int, layers: int = 2) -> DualEncoder:
    torch.manual_seed(seed)
    config = DualEncoderConfig(embed_dim=16, image_size=16, patch_size=4, vision_width=32, vision_layers=layers,
                               vision_heads=2, text_width=32, text_layers=layers, text_heads=2, context_length=8,
                               vocab_size=20)
    return DualEncoder(config, eos_id=EOS, pad_id=PAD).eval()


@pytest.fixture(scope="module")
def inputs():
    torch.manual_seed(123)
    return torch.randn(3, 16, 16), torch.tensor([[2, 5, 7, 9, EOS, PAD, PAD, PAD]])


def test_ig_is_exact_on_a_linear_function_and_matches_gradient_x_input_from_zero():
    w = torch.randn(1, 5)
    x, zero = torch.randn(1, 5), torch.zeros(1, 5)
    result = integrated_gradients(lambda t: (t * w).sum(dim=-1), x, zero, steps=3)
    torch.testing.assert_close(result.attributions, w * x)
    torch.testing.assert_close(gradient_x_input(lambda t: (t * w).sum(dim=-1), x), w * x)
    assert abs(result.gap) < 1e-5 and result.relative_gap < 1e-5


def test_ig_is_invariant_to_a_constant_shift_of_input_and_baseline_and_gradient_x_input_is_not():
    """Integrated gradients promise implementation invariance under a shift both ends share; gradient x input
    multiplies by the input itself, so the same shift changes it (Kindermans et al.)."""
    torch.manual_seed(0)
    w, c = torch.randn(4, 6), torch.randn(1, 6)

    def f(t):
        return torch.tanh(t @ w.T).sum(dim=-1)

    def shifted(t):
        return f(t - c)

    x, base = torch.randn(1, 6), torch.randn(1, 6)
    plain = integrated_gradients(f, x, base, steps=16).attributions
    moved = integrated_gradients(shifted, x + c, base + c, steps=16).attributions
    torch.testing.assert_close(plain, moved, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(gradient_x_input(f, x), gradient_x_input(shifted, x + c), atol=1e-3)


def test_image_ig_is_complete_within_one_percent_at_the_library_steps(inputs):
    image, ids = inputs
    heat, result = image_ig(tiny_clip(0), image, ids, steps=IMAGE_IG_STEPS)
    assert result.relative_gap < 0.01
    assert heat.values.shape == (16, 16) and float(heat.values.max()) == 1.0
    assert math.isclose(heat.score, result.output)


def test_image_ig_doubles_its_steps_until_complete_and_stops_at_the_cap(inputs):
    image, ids = inputs
    model = tiny_clip(0)
    fixed = image_ig(model, image, ids, steps=2, tolerance=None)[1]
    assert fixed.steps == 2
    strict = image_ig(model, image, ids, steps=2, tolerance=0.0, max_steps=16)[1]  # never met: runs to the cap
    assert strict.steps == 16
    loose = image_ig(model, image, ids, steps=2, tolerance=fixed.relative_gap + 1.0)[1]  # met at once
    assert loose.steps == 2
    if fixed.relative_gap > 0.01:  # where 2 points fall short, the default doubling gets within 1%
        assert image_ig(model, image, ids, steps=2)[1].relative_gap <= 0.01


def test_token_ig_is_complete_within_one_percent_and_covers_the_caption_up_to_its_end(inputs):
    image, ids = inputs
    attr = clip_text_attributions(tiny_clip(0), ids, image, "ig", DEFAULT_STEPS, [str(i) for i in ids[0].tolist()])
    assert attr.relative_gap < 0.01
    assert attr.tokens == ["2", "5", "7", "9", "1"]  # the padding after end-of-text cannot matter
    assert math.isclose(sum(attr.scores), attr.output - attr.baseline_output, rel_tol=0.01)
    assert attr.baseline == "zero embedding" and attr.steps == DEFAULT_STEPS


def test_token_ig_baseline_can_be_a_token_embedding():
    embedding = torch.nn.Embedding(10, 4)
    ids = torch.tensor([[3, 4]])
    attr = token_attributions(embedding, lambda batch: embedding(batch).sum(dim=(1, 2)), ids, "ig", steps=4,
                              baseline_id=0, baseline_name="<pad>")
    with torch.no_grad():
        expected = (embedding.weight[[3, 4]] - embedding.weight[0]).sum(dim=-1)
    torch.testing.assert_close(torch.tensor(attr.scores), expected)
    assert attr.baseline == "the embedding of <pad> at every position"


def test_maps_change_when_the_weights_are_randomised(inputs):
    """Adebayo et al.'s model-randomisation check: a map that survives re-initialised weights explains nothing."""
    image, ids = inputs
    first, again, other = tiny_clip(0), tiny_clip(0), tiny_clip(1)
    for method in (lambda m: gradcam(m, image, ids), lambda m: rollout(m, image),
                   lambda m: image_ig(m, image, ids, steps=8)[0]):
        torch.testing.assert_close(method(first).values, method(again).values)  # deterministic
        a, b = method(first).values.flatten(), method(other).values.flatten()
        assert float(torch.corrcoef(torch.stack([a, b]))[0, 1]) < 0.9
    tokens = [clip_text_attributions(m, ids, image, "gradxinput").scores for m in (first, other)]
    assert not torch.allclose(torch.tensor(tokens[0]), torch.tensor(tokens[1]), atol=1e-3)


def test_the_hook_records_the_weights_that_attend_used_and_only_while_asked():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 4, 5, 8), torch.randn(2, 2, 7, 8), torch.randn(2, 2, 7, 8)  # grouped KV heads
    mask = torch.rand(2, 1, 5, 7) > 0.3
    mask[1, 0, 2] = False  # a query that may attend to nothing: zero weights, zero output
    with recording_attention() as weights:
        out = attend(q, k, v, mask)
    assert len(weights) == 1 and weights[0].shape == (2, 4, 5, 7)
    expected = reference_attention(q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1), mask)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights[0] @ v.repeat_interleave(2, 1), expected, atol=1e-5, rtol=1e-5)
    assert bool((weights[0][~mask.expand(2, 4, 5, 7)] == 0).all()) and float(weights[0][1, :, 2].abs().max()) == 0
    with recording_attention() as later:
        pass
    attend(q, k, v, mask)
    assert later == [] and len(weights) == 1


def test_attention_maps_come_from_every_layer_and_are_causal_in_the_text_tower(inputs):
    model = tiny_clip(0, layers=3)
    maps = attention_maps(lambda: model.text.forward_tokens(inputs[1]))
    assert len(maps) == 3 and maps[0].shape == (2, 8, 8)
    torch.testing.assert_close(maps[1].sum(-1), torch.ones(2, 8))
    assert float(maps[-1].triu(diagonal=1).abs().max()) == 0.0
    torch.testing.assert_close(layer_map(maps, -1), maps[2].mean(0))
    with pytest.raises(IndexError, match="layer 3 is out of range"):
        layer_map(maps, 3)


def test_a_standalone_attention_module_is_recorded_too():
    attn = MultiHeadAttention(16, 4, num_kv_heads=2).eval()
    maps = attention_maps(lambda: attn(torch.randn(1, 6, 16), is_causal=True))
    assert len(maps) == 1 and maps[0].shape == (4, 6, 6)
    assert float(maps[0].triu(diagonal=1).abs().max()) == 0.0


def test_peak_maps_back_through_resize_and_centre_crop():
    values = torch.zeros(2, 2)
    values[0, 1] = 1.0
    heat = ImageMap(values, "gradcam", input_size=16, score=0.0)
    assert heat.peak_xy(16, 16) == (12, 4)
    assert heat.peak_xy(32, 16) == (20, 4)  # a wide image: the crop starts 8 pixels in
    assert heat.peak_xy(64, 128) == (48, 48)  # a tall one, resized by 4: rows start 32 pixels down


def test_pca_finds_the_leading_axes_and_their_variance():
    torch.manual_seed(0)
    t = torch.randn(50, 1)
    points = torch.cat([3 * t, 3 * t, 0.1 * torch.randn(50, 1), torch.zeros(50, 1)], dim=1) + 5.0
    coords, share = pca_2d(points)
    assert share[0] > 0.99 and share[0] + share[1] <= 1.0 + 1e-6
    centred = points - points.mean(0)
    torch.testing.assert_close(coords[:, 0].abs(), (centred[:, :2].sum(1) / math.sqrt(2)).abs(),
                               atol=5e-3, rtol=1e-3)  # the small third axis tilts the first a little
    with pytest.raises(ValueError, match="at least 2"):
        pca_2d(points[:1])


def test_similarity_matrix_is_cosine():
    a, b = torch.tensor([[3.0, 0.0], [1.0, 1.0]]), torch.tensor([[0.0, 2.0]])
    torch.testing.assert_close(similarity_matrix(a, b), torch.tensor([[0.0], [math.sqrt(0.5)]]))


def test_a_hit_is_within_the_object_radius_plus_half_a_cell():
    from mie.data.shapes_drawing import RADIUS_FRACTION

    obj = {"shape": "circle", "color": "red", "size": "small", "x": 32, "y": 32}
    r = RADIUS_FRACTION["small"] * 64
    assert is_hit((32, 32 + math.floor(r)), obj, 64, cell=0.0)
    assert not is_hit((32, 32 + math.floor(r) + 3), obj, 64, cell=0.0)
    assert is_hit((32, 32 + math.floor(r) + 3), obj, 64, cell=10.0)


def test_gradcam_explains_a_classifier_logit_and_follows_its_weights():
    from mie.explain.image_maps import classifier_target
    from mie.models.vit_classifier import ViTClassifier, ViTClassifierConfig

    torch.manual_seed(0)
    model = ViTClassifier(ViTClassifierConfig(image_size=16, patch_size=4, in_channels=3, width=32, layers=2, heads=2,
                                              num_classes=3)).eval()
    torch.nn.init.normal_(model.head.weight)  # the head starts at zero: every gradient would vanish
    image = torch.randn(3, 16, 16)
    heat = gradcam(model, image, target=classifier_target(model, 1))
    with torch.no_grad():
        assert heat.score == pytest.approx(float(model(image[None])[0, 1]), rel=1e-4)
    other = gradcam(model, image, target=classifier_target(model, 2))
    assert heat.values.shape == (4, 4) and not torch.allclose(heat.values, other.values)


@pytest.mark.parametrize("per_token", [False, True])
def test_gradcam_and_hirescam_against_hooks_on_the_last_blocks_input(inputs, per_token):
    """Against a second implementation: hooks capture the last block's input and its gradient; Grad-CAM
    weights channels by the gradient averaged over tokens, HiResCAM by each token's own."""
    model, (image, ids) = tiny_clip(3), inputs
    captured = {}
    last = model.visual.trunk.blocks[-1]

    def keep(module, args):
        args[0].retain_grad()
        captured["acts"] = args[0]

    handle = last.register_forward_pre_hook(keep)
    try:
        tokens = model.visual.forward_tokens(image[None])  # the plain trunk: every block through its forward
        pooled = tokens[:, 0] if model.visual.cls_token is not None else tokens.mean(dim=1)
        embedding = torch.nn.functional.normalize(model.image_projection(pooled), dim=-1)
        score = (embedding * model.encode_text(ids)).sum()
        score.backward()
    finally:
        handle.remove()
    patches = slice(1, None) if model.visual.cls_token is not None else slice(None)  # the class token aside
    acts, grad = captured["acts"][0, patches], captured["acts"].grad[0, patches]
    expected = torch.relu((acts * grad).sum(dim=-1) if per_token else acts @ grad.mean(dim=0)).detach()
    expected = (expected / expected.max()).view(4, 4)
    heat = gradcam(model, image, ids, per_token=per_token)
    torch.testing.assert_close(heat.values, expected, rtol=1e-4, atol=1e-5)
    assert heat.method == ("hirescam" if per_token else "gradcam")
    assert heat.score == pytest.approx(float(score.detach()), rel=1e-5)
