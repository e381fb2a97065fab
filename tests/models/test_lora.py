"""LoRA adapters: a fresh adapter changes nothing, only adapters train, merging keeps the function."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from mie.errors import ConfigError
from mie.models.causal_lm import CausalLM, CausalLMConfig
from mie.models.lora import (
    LoRAConfig,
    LoRALinear,
    adapter_snapshot,
    apply_lora,
    average_adapters,
    lora_freeze_patterns,
    lora_parameters,
    merge_lora,
)


def _model() -> CausalLM:
    torch.manual_seed(0)
    return CausalLM(CausalLMConfig(vocab_size=64, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=16))


def test_a_fresh_adapter_leaves_the_outputs_unchanged():
    model, ids = _model(), torch.randint(0, 64, (2, 10))
    before = model(ids)
    names = apply_lora(model, targets=("q_proj", "v_proj"), r=4, alpha=8)
    assert names == ["layers.0.attn.q_proj", "layers.0.attn.v_proj", "layers.1.attn.q_proj", "layers.1.attn.v_proj"]
    assert torch.equal(model(ids), before)


def test_earlier_target_names_map_to_the_attention_projections():
    # Configs written before the one attention module name the causal LM's projections wq/wk/wv/wo.
    assert apply_lora(_model(), targets=("wq", "wk", "wv", "wo", "w2"), r=2) == [
        f"layers.{i}.{name}" for i in range(2)
        for name in ("attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.out_proj", "mlp.w2")]
    assert apply_lora(_model(), targets=("wq", "q_proj"), r=2) == ["layers.0.attn.q_proj", "layers.1.attn.q_proj"]


def test_the_update_is_b_a_scaled():
    torch.manual_seed(1)
    base = nn.Linear(6, 5)
    layer = LoRALinear(base, r=2, alpha=6)
    with torch.no_grad():
        layer.lora_b.normal_()
    x = torch.randn(3, 6)
    expected = base(x) + x @ (layer.lora_b @ layer.lora_a).t() * 3.0
    torch.testing.assert_close(layer(x), expected)


def test_averaged_adapters_merge_to_the_mean_of_the_snapshots_weights():
    model = _model()
    apply_lora(model, targets=("q_proj", "v_proj"), r=2, alpha=4)
    snapshots, merged = [], []
    for seed in range(3):
        torch.manual_seed(seed)
        with torch.no_grad():
            for p in lora_parameters(model).values():
                p.normal_()
        snapshots.append(adapter_snapshot(model))
        merged.append(merge_lora(copy.deepcopy(model)).layers[1].attn.v_proj.weight.detach())
    average_adapters(model, snapshots)
    layer = model.layers[1].attn.v_proj
    assert layer.r == 6 and layer.lora_a.shape == (6, 32) and layer.scaling == 2.0
    torch.testing.assert_close(merge_lora(model).layers[1].attn.v_proj.weight, torch.stack(merged).mean(0))
    with pytest.raises(ValueError, match="at least one snapshot"):
        average_adapters(model, [])


def test_only_adapters_train_and_merging_keeps_the_function():
    model, ids = _model(), torch.randint(0, 64, (2, 10))
    frozen = {k: v.clone() for k, v in model.state_dict().items()}
    apply_lora(model, r=4, alpha=8)
    assert set(lora_parameters(model)) == {n for n, p in model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(5):
        logits = model(ids[:, :-1])
        loss = nn.functional.cross_entropy(logits.reshape(-1, 64), ids[:, 1:].reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    adapted = model(ids).detach()
    for name, value in model.state_dict().items():
        if "lora_" not in name:
            assert torch.equal(value, frozen[name.replace(".base.", ".")])  # the base weights never moved
    merge_lora(model)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert set(model.state_dict()) == set(frozen)  # the original architecture and names, ready to save
    torch.testing.assert_close(model(ids), adapted, atol=1e-5, rtol=1e-5)
    assert not torch.equal(model.state_dict()["layers.0.attn.q_proj.weight"], frozen["layers.0.attn.q_proj.weight"])


def test_bad_targets_and_rank_are_config_errors():
    with pytest.raises(ConfigError, match=r"^lora.targets: no linear layer is named qkv — choose among k_proj, "
                                          r"out_proj, q_proj, v_proj, w1, w2, w3$"):
        apply_lora(_model(), targets=("qkv",))
    with pytest.raises(ConfigError, match="lora.r: rank 0 must be >= 1"):
        LoRALinear(nn.Linear(2, 2), r=0)


def test_the_freeze_patterns_leave_exactly_the_adapters_and_what_lies_outside_to_train():
    from mie.models.reward import RewardModel
    from mie.training.stages import apply_freeze

    model = _model()
    assert LoRAConfig(r=0).apply(model) == [] and not any(isinstance(m, LoRALinear) for m in model.modules())
    names = LoRAConfig(r=4, alpha=8.0, targets=["q_proj"]).apply(model)
    assert names == ["layers.0.attn.q_proj", "layers.1.attn.q_proj"]
    assert model.layers[0].attn.q_proj.scaling == 2.0
    assert lora_freeze_patterns(model) == ["*.weight"]  # this model has no bias: no pattern for one
    apply_freeze(model, lora_freeze_patterns(model))
    assert {n for n, p in model.named_parameters() if p.requires_grad} == set(lora_parameters(model))
    reward = RewardModel(_model())
    LoRAConfig(r=2).apply(reward.backbone)
    patterns = lora_freeze_patterns(reward, "backbone")
    assert patterns == ["backbone.*.weight"]
    apply_freeze(reward, patterns)
    trained = {n for n, p in reward.named_parameters() if p.requires_grad}
    head = {n for n in trained if not n.startswith("backbone.")}
    assert head and trained - head == {f"backbone.{n}" for n in lora_parameters(reward.backbone)}
