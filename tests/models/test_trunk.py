"""The shared transformer trunk: the same numbers as the towers' former block loop, names, old checkpoints."""

from fnmatch import fnmatch

import pytest
import torch
from torch import nn

from mie.models.blocks import TransformerBlock, build_norm
from mie.models.multimodal import DualEncoder
from mie.models.registry import get_model_config
from mie.models.text import TextEncoder
from mie.models.trunk import Transformer
from mie.models.vision import VisionTransformer


def old_style_stack(width: int, layers: int, heads: int, norm: str) -> nn.Module:
    """What each tower built inline before the trunk: ``blocks`` (a ModuleList) and a final ``norm``."""
    stack = nn.Module()
    stack.blocks = nn.ModuleList(TransformerBlock(width, heads, norm=norm) for _ in range(layers))
    stack.norm = build_norm(norm, width)
    return stack


def old_style_forward(stack: nn.Module, x: torch.Tensor, is_causal: bool) -> torch.Tensor:
    """The towers' former loop, written out."""
    for block in stack.blocks:
        x = block(x, is_causal=is_causal)
    return stack.norm(x)


@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
@pytest.mark.parametrize("is_causal", [False, True])
def test_trunk_with_copied_weights_equals_the_old_block_loop(norm, is_causal):
    old = old_style_stack(width=16, layers=3, heads=2, norm=norm).eval()
    for param in old.parameters():  # non-trivial norms too, so a skipped final norm would show
        nn.init.normal_(param, std=0.3)
    trunk = Transformer(width=16, layers=3, heads=2, norm=norm).eval()
    trunk.load_state_dict(old.state_dict())  # same names: blocks.<i>.* and norm.*
    x = torch.randn(2, 7, 16)
    torch.testing.assert_close(trunk(x, is_causal=is_causal), old_style_forward(old, x, is_causal),
                               rtol=0, atol=0)


def test_causal_trunk_lets_no_position_see_a_later_one():
    trunk = Transformer(width=16, layers=2, heads=2).eval()
    x = torch.randn(1, 6, 16)
    later = x.clone()
    later[0, 4:] = torch.randn(2, 16)  # not a constant shift, which the pre-norms would remove
    causal, moved = trunk(x, is_causal=True), trunk(later, is_causal=True)
    torch.testing.assert_close(moved[0, :4], causal[0, :4])
    assert not torch.allclose(trunk(later)[0, :4], trunk(x)[0, :4])  # bidirectional: earlier ones move


def test_towers_run_embeddings_then_their_trunk():
    text = TextEncoder(50, eos_id=5, pad_id=0, context_length=8, width=16, layers=2, heads=2).eval()
    ids = torch.tensor([[2, 40, 41, 5, 0, 0, 0, 0]])
    embedded = text.pos_embed(text.token_embed(ids))
    torch.testing.assert_close(text.forward_tokens(ids), text.trunk(embedded, is_causal=True))
    vit = VisionTransformer(image_size=16, patch_size=4, width=32, layers=2, heads=4, pool="mean").eval()
    images = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(vit.forward_tokens(images), vit.trunk(vit.pos_embed(vit.patch_embed(images))))


def test_parameter_names_are_short_and_match_the_tower_globs():
    config = get_model_config("tiny", vocab_size=30, vision_layers=2, text_layers=1)
    names = [name for name, _ in DualEncoder(config, eos_id=3, pad_id=0).named_parameters()]
    assert "visual.trunk.blocks.1.attn.out_proj.weight" in names and "visual.trunk.norm.weight" in names
    assert "text.trunk.blocks.0.ff.fc_in.weight" in names and "text.trunk.norm.bias" in names
    assert not any(".blocks." in n and ".trunk.blocks." not in n for n in names)
    visual = {n for n in names if fnmatch(n, "visual.*")}
    text = {n for n in names if fnmatch(n, "text.*")}
    rest = set(names) - visual - text
    assert rest == {"image_projection.weight", "text_projection.weight", "logit_scale"}
    assert {n.split(".")[1] for n in visual} == {"cls_token", "patch_embed", "pos_embed", "trunk"}
    assert {n.split(".")[1] for n in text} == {"token_embed", "pos_embed", "trunk"}


def test_checkpoints_with_the_old_names_load_with_identical_outputs():
    config = get_model_config("tiny", vocab_size=30, vision_layers=2, text_layers=2, image_size=16,
                              patch_size=8, context_length=6)
    model = DualEncoder(config, eos_id=3, pad_id=0).eval()
    # The names a checkpoint written before the trunk holds: visual.blocks.0..., text.norm.weight, ...
    old_names = {k.replace(".trunk.", "."): v for k, v in model.state_dict().items()}
    assert "visual.blocks.0.attn.qkv_proj.weight" in old_names and "text.norm.weight" in old_names
    torch.manual_seed(1)
    fresh = DualEncoder(config, eos_id=3, pad_id=0).eval()
    result = fresh.load_state_dict(old_names)
    assert result.missing_keys == [] and result.unexpected_keys == []
    images, ids = torch.randn(2, 3, 16, 16), torch.tensor([[1, 7, 8, 3, 0, 0], [1, 9, 3, 0, 0, 0]])
    with torch.no_grad():
        expected, got = model(images, ids), fresh(images, ids)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0)


@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("pooled", [[6, 0, 3], [6, 6, 5]])  # causal: packed rows / too little padding to pack
def test_forward_at_equals_the_full_trunk_at_those_tokens_with_the_same_gradients(is_causal, layers, pooled):
    torch.manual_seed(0)
    trunk = Transformer(width=16, layers=layers, heads=2)
    for param in trunk.parameters():  # non-trivial biases and norms, so a skipped term would show
        nn.init.normal_(param, std=0.3)
    x = torch.randn(3, 7, 16, requires_grad=True)
    positions = torch.tensor(pooled)
    rows = torch.arange(3)
    full = trunk(x, is_causal=is_causal)[rows, positions]
    at = trunk.forward_at(x, positions, is_causal=is_causal)
    torch.testing.assert_close(at, full)
    full_grads = torch.autograd.grad(full.square().sum(), [x, *trunk.parameters()])
    at_grads = torch.autograd.grad(at.square().sum(), [x, *trunk.parameters()])
    for got, expected in zip(at_grads, full_grads):
        torch.testing.assert_close(got, expected)
    if is_causal:  # the pooled token of row 2 sees nothing after it
        later = x.detach().clone()
        later[2, pooled[2] + 1:] = torch.randn(6 - pooled[2], 16)
        torch.testing.assert_close(trunk.forward_at(later, positions, is_causal=True)[2], at[2].detach())


def test_pooled_towers_equal_their_tokens_at_the_pooled_position():
    torch.manual_seed(0)
    text = TextEncoder(50, eos_id=5, pad_id=0, context_length=8, width=16, layers=2, heads=2).train()
    ids = torch.tensor([[2, 40, 41, 5, 0, 0, 0, 0], [2, 40, 41, 42, 43, 44, 5, 0]])
    torch.testing.assert_close(text(ids), text.forward_tokens(ids)[torch.arange(2), torch.tensor([3, 6])])
    vit = VisionTransformer(image_size=16, patch_size=4, width=32, layers=2, heads=4, pool="cls").train()
    images = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(vit(images), vit.forward_tokens(images)[:, 0])


def test_forward_at_under_bf16_autocast_matches_the_full_trunk():
    torch.manual_seed(0)
    trunk = Transformer(width=32, layers=2, heads=4)
    x, positions = torch.randn(3, 9, 32), torch.tensor([8, 2, 5])
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the math SDPA kernel there (trunk._backend)
        full = trunk(x, is_causal=True)[torch.arange(3), positions]
        at = trunk.forward_at(x, positions, is_causal=True)
    assert at.dtype == full.dtype
    torch.testing.assert_close(at.float(), full.float(), atol=0.05, rtol=0.05)


def test_forward_at_runs_whole_blocks_when_a_block_forward_was_replaced():
    trunk = Transformer(width=16, layers=2, heads=2)
    calls = []
    for block in trunk.blocks:  # what compile: true does (mie.training.compile): an instance-level forward
        block.forward = lambda x, _f=block.forward, **kw: calls.append(1) or _f(x, **kw)
    x, positions = torch.randn(2, 5, 16), torch.tensor([4, 1])
    expected = Transformer.forward(trunk, x, is_causal=True)[torch.arange(2), positions]
    calls.clear()
    torch.testing.assert_close(trunk.forward_at(x, positions, is_causal=True), expected)
    assert len(calls) == 2
