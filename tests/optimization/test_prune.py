"""Pruning: magnitude and Wanda pick the weights their rules say, the zeros stay zero through fine-tuning and
saving, and structured pruning really shrinks the matrices while the model keeps working (and reloads)."""

from __future__ import annotations

import torch
from tests.optimization.test_quantize import _ids, tiny_dual_encoder, tiny_lm
from torch import nn

from mie.io.checkpoint import load_weights, save_weights
from mie.models.attention import MultiHeadAttention
from mie.models.generation import generate
from mie.optimization import prune, structured
from mie.optimization.scheme import apply_optimization
from mie.optimization.wanda import input_norms


def test_magnitude_per_layer_zeroes_the_smallest_half_of_each_layer() -> None:
    model = tiny_lm()
    before = {name: layer.weight.detach().clone() for name, layer in prune.prunable(model).items()}
    masks = prune.magnitude_prune(model, 0.5)
    for name, layer in prune.prunable(model).items():
        weight, original = layer.weight, before[name]
        assert (weight == 0).float().mean().item() == 0.5
        kept, dropped = original[masks[name]].abs(), original[~masks[name]].abs()
        assert kept.min() >= dropped.max()  # every removed weight was smaller than every kept one
    assert "lm_head" not in masks and len(masks) == 2 * 7  # q, k, v, out, w1, w2, w3 per layer


def test_global_magnitude_hits_the_amount_overall() -> None:
    model = tiny_lm()
    prune.magnitude_prune(model, 0.3, scope="global")
    report = prune.sparsity_report(model)
    assert abs(report["linear_sparsity"] - 0.3) < 1e-3
    assert len(set(report["per_layer"].values())) > 1  # layers differ: one threshold for all


def test_wanda_ranks_weight_times_input_norm_within_each_row() -> None:
    layer = nn.Linear(4, 2, bias=False)
    layer.weight.data = torch.tensor([[1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]])
    model = nn.Sequential(layer)
    x = torch.tensor([[10.0, 1.0, 1.0, 0.1]])
    norms = input_norms(model, [x], lambda m, batch: m(batch))
    assert torch.allclose(norms["0"], x.abs()[0])
    prune.wanda_prune(model, 0.5, norms, skip=())
    # row 0 scores 10, 2, 3, 0.4 -> keeps inputs 0 and 2; magnitude alone would keep 2 and 3
    assert layer.weight.tolist() == [[1.0, 0.0, 3.0, 0.0], [4.0, 3.0, 0.0, 0.0]]


def test_zeros_stay_zero_through_finetuning_and_saving(tmp_path) -> None:
    model = tiny_lm().train()
    masks = prune.magnitude_prune(model, 0.5)
    handles = prune.keep_pruned(masks, model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    ids = _ids(4, 16)
    for _ in range(5):
        loss = nn.functional.cross_entropy(model(ids[:, :-1]).flatten(0, 1), ids[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    prune.remove_hooks(handles)
    layers = prune.prunable(model)
    for name, mask in masks.items():
        assert bool((layers[name].weight[~mask] == 0).all())
        assert bool((layers[name].weight[mask] != 0).all())  # the kept weights did train
    path = save_weights(tmp_path / "p.safetensors", model.state_dict())
    state, _ = load_weights(path)
    for name, mask in masks.items():
        assert bool((state[f"{name}.weight"][~mask] == 0).all())


def test_structured_mlp_and_heads_shrink_the_shapes_and_reload(tmp_path) -> None:
    model = tiny_lm()
    mlp = structured.prune_mlp_neurons(model, 0.5)
    heads = structured.prune_heads(model, 0.5)
    layer = model.layers[0]
    hidden = model.config.hidden_dim
    assert layer.mlp.w1.weight.shape == (hidden // 2, 64) and layer.mlp.w2.weight.shape == (64, hidden // 2)
    assert layer.attn.num_heads == 2 and layer.attn.num_kv_heads == 1  # one of two key/value groups kept
    assert layer.attn.q_proj.weight.shape == (32, 64) and layer.attn.k_proj.weight.shape == (16, 64)
    assert layer.attn.out_proj.weight.shape == (64, 32)
    ids = _ids()
    with torch.no_grad():
        logits = model(ids)
        assert len(generate(model, [[4, 5, 6]], 5, temperature=0.0)[0]) == 5  # the KV cache takes the new shapes
    structure = {**mlp, **heads}
    path = save_weights(tmp_path / "s.safetensors", model.state_dict(), {"optimization": {"structure": structure}})
    state, meta = load_weights(path)
    fresh = apply_optimization(tiny_lm(seed=3), meta["optimization"])
    fresh.load_state_dict(state)
    with torch.no_grad():
        assert torch.equal(fresh(ids), logits)


def test_structured_pruning_keeps_the_most_important_units() -> None:
    model = tiny_lm()
    mlp = model.layers[0].mlp
    with torch.no_grad():
        mlp.w2.weight[:, :10] *= 100.0  # make neurons 0..9 clearly the most important
    w1_rows = mlp.w1.weight[:10].clone()
    structured.prune_mlp_neurons(model, 0.9)
    assert torch.equal(model.layers[0].mlp.w1.weight[:10], w1_rows)


def test_heads_of_fused_towers_shrink_and_still_encode() -> None:
    model = tiny_dual_encoder()
    structured.prune_heads(model, 0.5)
    attns = [m for m in model.modules() if isinstance(m, MultiHeadAttention) and not m.cross]
    assert attns and all(m.num_heads == 1 and m.qkv_proj.weight.shape[0] == 3 * 16 for m in attns)
    with torch.no_grad():
        out = model.encode_text(torch.tensor([[5, 6, 2] + [0] * 9]))
    assert out.shape == (1, 32) and torch.isfinite(out).all()
