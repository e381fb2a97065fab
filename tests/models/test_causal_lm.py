"""The decoder-only CausalLM: parameter names, RoPE convention, GQA, caching, masks and training."""

import copy
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from mie.config import ConfigError, config_from_dict
from mie.models import attention
from mie.models.causal_lm import CausalLM, CausalLMConfig
from mie.models.kv_cache import KVCache
from mie.models.lora import apply_lora, merged_state_dict


def tiny(**overrides) -> CausalLM:
    torch.manual_seed(0)
    return CausalLM(CausalLMConfig(vocab_size=64, dim=32, n_layers=2, n_heads=4, max_seq_len=64, **overrides))


def test_parameter_names_and_shapes_follow_the_contract():
    model = tiny(n_kv_heads=2)
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    hidden = 64 * math.ceil(int(8 * 32 / 3) / 64)
    assert shapes["tok_embeddings.weight"] == (64, 32)
    assert shapes["layers.0.attn_norm.weight"] == (32,)
    assert shapes["layers.1.attn.q_proj.weight"] == (32, 32)
    assert shapes["layers.1.attn.k_proj.weight"] == (16, 32) == shapes["layers.1.attn.v_proj.weight"]
    assert shapes["layers.1.attn.out_proj.weight"] == (32, 32)
    assert shapes["layers.0.mlp.w1.weight"] == (hidden, 32) == shapes["layers.0.mlp.w3.weight"]
    assert shapes["layers.0.mlp.w2.weight"] == (32, hidden)
    assert shapes["norm.weight"] == (32,)
    assert "lm_head.weight" not in model.state_dict() and "pos_embeddings.weight" not in shapes
    assert model.num_parameters() == sum(p.numel() for p in model.parameters())


def test_variant_names_gelu_layernorm_learned_untied():
    model = tiny(mlp="gelu", norm="layernorm", positions="learned", tie_embeddings=False, bias=True)
    names = dict(model.named_parameters())
    assert names["pos_embeddings.weight"].shape == (64, 32)
    assert names["layers.0.mlp.w1.weight"].shape == (128, 32) and "layers.0.mlp.w3.weight" not in names
    assert "layers.0.attn_norm.bias" in names and "layers.0.attn.q_proj.bias" in names
    assert names["lm_head.weight"].shape == (64, 32)


def test_tied_weights_share_the_embedding():
    model = tiny()
    ids = torch.randint(0, 64, (1, 5))
    model(ids).sum().backward()
    assert model.lm_head is None and model.tok_embeddings.weight.grad is not None
    untied = tiny(tie_embeddings=False)
    assert untied.num_parameters() == model.num_parameters() + 64 * 32


def test_config_rules_reject_bad_values():
    with pytest.raises(ConfigError, match="mlp"):
        config_from_dict(CausalLMConfig, {"mlp": "relu"})
    with pytest.raises(ConfigError, match="positions"):
        config_from_dict(CausalLMConfig, {"positions": "sinusoidal"})
    with pytest.raises(ValueError, match="multiple of n_kv_heads"):
        CausalLM(CausalLMConfig(dim=32, n_heads=4, n_kv_heads=3))


def test_init_scales_residual_projections():
    model = CausalLM(CausalLMConfig(dim=256, n_layers=8, n_heads=4))
    assert abs(model.layers[0].attn.q_proj.weight.std().item() - 0.02) < 2e-3
    assert abs(model.layers[0].attn.out_proj.weight.std().item() - 0.02 / 4) < 1e-3
    assert abs(model.layers[0].mlp.w2.weight.std().item() - 0.02 / 4) < 1e-3


def test_rope_is_hf_rotate_half_convention():
    head_dim, theta = 8, 10000.0
    x = torch.randn(1, 1, 3, head_dim)
    rope = CausalLM(CausalLMConfig(vocab_size=8, dim=16, n_layers=1, n_heads=2, rope_theta=theta)).rope
    cos, sin = rope.cos_sin(torch.arange(3)[None])
    out = rope.rotate(x, cos, sin)
    for pos in range(3):
        for i in range(head_dim // 2):
            angle = pos * theta ** (-2 * i / head_dim)
            a, b = x[0, 0, pos, i], x[0, 0, pos, i + head_dim // 2]  # pair (i, i + head_dim/2)
            expected = (a * math.cos(angle) - b * math.sin(angle), b * math.cos(angle) + a * math.sin(angle))
            torch.testing.assert_close(out[0, 0, pos, i], expected[0])
            torch.testing.assert_close(out[0, 0, pos, i + head_dim // 2], expected[1])


@pytest.mark.parametrize("sdpa_gqa", [True, False])  # SDPA's enable_gqa (torch >= 2.5) and repeat_interleave
def test_gqa_equals_explicit_repeat_of_kv_heads(sdpa_gqa, monkeypatch):
    monkeypatch.setattr(attention, "_SDPA_GQA", sdpa_gqa and attention._SDPA_GQA)
    gqa = tiny(n_kv_heads=2)
    mha = tiny()
    state = gqa.state_dict()
    for i in range(2):
        for name in ("k_proj", "v_proj"):  # kv head j serves query heads 2j, 2j+1: repeat each head's rows twice
            w = state[f"layers.{i}.attn.{name}.weight"].view(2, 8, 32)
            state[f"layers.{i}.attn.{name}.weight"] = w.repeat_interleave(2, dim=0).reshape(32, 32)
    mha.load_state_dict(state)
    ids = torch.randint(0, 64, (2, 9))
    torch.testing.assert_close(gqa(ids), mha(ids), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("overrides", [{}, {"n_kv_heads": 1}, {"positions": "learned", "norm": "layernorm"},
                                       {"positions": "alibi", "n_kv_heads": 2}])
def test_cached_logits_equal_uncached(overrides):
    model = tiny(**overrides).eval()
    ids = torch.randint(0, 64, (2, 12))
    full = model(ids)
    for cache in (KVCache(2, max_len=12), KVCache(2)):
        parts = [model(ids[:, :5], cache=cache)] + [model(ids[:, t : t + 1], cache=cache) for t in range(5, 12)]
        torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)
        assert len(cache) == 12


@pytest.mark.parametrize("positions", ["rope", "alibi"])
def test_left_padding_gives_the_unpadded_logits(positions):
    model = tiny(positions=positions).eval()
    ids = torch.randint(1, 64, (1, 6))
    padded = torch.cat((torch.zeros(1, 3, dtype=torch.long), ids), 1)
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1, 1]])
    out = model(padded, attention_mask=mask)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[:, 3:], model(ids), atol=1e-5, rtol=1e-5)


def test_last_only_and_cached_padded_decoding_give_the_unpadded_logits():
    model = tiny(n_kv_heads=2).eval()
    ids = torch.randint(1, 64, (1, 8))
    full = model(ids)
    padded = torch.cat((torch.zeros(1, 3, dtype=torch.long), ids[:, :5]), 1)
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1]])
    cache = KVCache(2, max_len=11)
    last = model(padded, cache=cache, attention_mask=mask, last_only=True)
    assert last.shape == (1, 1, 64)
    torch.testing.assert_close(last, full[:, 4:5], atol=1e-5, rtol=1e-5)
    steps = [model(ids[:, t : t + 1], cache=cache) for t in range(5, 8)]  # one-query masks over padded keys
    torch.testing.assert_close(torch.cat(steps, 1), full[:, 5:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model(ids, last_only=True), full[:, -1:])


def test_logits_are_float_and_causal():
    model = tiny().eval()
    ids = torch.randint(0, 64, (1, 8))
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 1) % 64
    assert model(ids).dtype == torch.float32
    torch.testing.assert_close(model(ids)[:, :-1], model(changed)[:, :-1])


def test_learned_positions_refuse_positions_past_max_seq_len():
    model = tiny(positions="learned")
    with pytest.raises(ValueError, match="max_seq_len"):
        model(torch.zeros(1, 65, dtype=torch.long))


@pytest.mark.parametrize("overrides", [{}, {"positions": "learned", "norm": "layernorm", "mlp": "gelu"},
                                       {"tie_embeddings": False, "bias": True, "dropout": 0.1},
                                       {"positions": "alibi"}])
def test_variants_train_one_step(overrides):
    model = tiny(**overrides)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(0, 64, (2, 10))
    loss = F.cross_entropy(model(ids[:, :-1]).flatten(0, 1), ids[:, 1:].flatten())
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    optimizer.step()


def test_tiny_model_overfits_a_short_sequence():
    model = tiny()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    ids = torch.randint(0, 64, (1, 16))
    losses = []
    for _ in range(60):
        loss = F.cross_entropy(model(ids[:, :-1]).flatten(0, 1), ids[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]


FIXTURE = Path(__file__).parent / "fixtures" / "causal_lm_pre_port.safetensors"
PRE_PORT = {"rope": {"n_kv_heads": 2, "bias": True},
            "learned": {"positions": "learned", "norm": "layernorm", "mlp": "gelu", "tie_embeddings": False}}


def _fixture(prefix: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    tensors = load_file(FIXTURE)
    return {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}, tensors


@pytest.mark.parametrize("name", sorted(PRE_PORT))
def test_a_checkpoint_of_the_pre_port_model_loads_strictly_with_identical_logits(name):
    # Written by the CausalLM before the one attention module (attn.wq/wk/wv/wo, its own attention and RoPE).
    state, tensors = _fixture(f"{name}/")
    assert "layers.1.attn.wq.weight" in state and "layers.1.attn.wo.weight" in state
    model = CausalLM(CausalLMConfig(vocab_size=32, dim=16, n_layers=2, n_heads=4, mlp_hidden=24, max_seq_len=16,
                                    **PRE_PORT[name])).eval()
    logits = state.pop("logits")
    model.load_state_dict(state, strict=True)
    torch.testing.assert_close(model(tensors["ids"], attention_mask=tensors["mask"]), logits, atol=1e-6, rtol=1e-6)


def test_a_pre_port_lora_state_loads_into_adapters_named_by_earlier_targets():
    # What a LoRA run's resume state held: attn.wq.base.weight, attn.wq.lora_a, attn.wq.lora_b, ...
    state, tensors = _fixture("lora/")
    assert "layers.0.attn.wq.lora_b" in state and "layers.0.attn.wv.base.weight" in state
    model = CausalLM(CausalLMConfig(vocab_size=32, dim=16, n_layers=2, n_heads=4, mlp_hidden=24, max_seq_len=16,
                                    n_kv_heads=2)).eval()
    apply_lora(model, ("wq", "wv"), r=2, alpha=4.0)
    logits = state.pop("logits")
    model.load_state_dict(state, strict=True)
    torch.testing.assert_close(model(tensors["ids"], attention_mask=tensors["mask"]), logits, atol=1e-6, rtol=1e-6)
    merged = merged_state_dict(model)
    assert "layers.0.attn.q_proj.weight" in merged and not any("lora" in k or "base" in k for k in merged)


def test_seeded_construction_draws_the_pre_port_weights():
    # Same module order as before the port, so a seed still gives the same initial model (and run).
    state, _ = _fixture("rope/")
    torch.manual_seed(1)
    model = CausalLM(CausalLMConfig(vocab_size=32, dim=16, n_layers=2, n_heads=4, mlp_hidden=24, max_seq_len=16,
                                    **PRE_PORT["rope"]))
    for key, value in model.state_dict().items():
        old = key.replace("q_proj", "wq").replace("k_proj", "wk").replace("v_proj", "wv").replace("out_proj", "wo")
        assert torch.equal(value, state[old]), key


def test_a_bf16_copy_keeps_float32_rope_angles():
    model = tiny()
    fp32 = model.rope.cos_sin(torch.arange(500)[None])
    low = copy.deepcopy(model).to(torch.bfloat16)
    assert low.rope.inv_freq.dtype == torch.bfloat16  # the cast reaches the buffer; the angles must not care
    for ours, theirs in zip(low.rope.cos_sin(torch.arange(500)[None]), fp32):
        assert torch.equal(ours, theirs)
    assert low.layers[1].attn.rope is low.rope  # one table for every layer


def test_alibi_has_no_position_parameters_and_biases_by_distance():
    model = tiny(positions="alibi").eval()
    assert model.rope is None and model.pos_embeddings is None
    assert model.num_parameters() == tiny().num_parameters()  # RoPE and ALiBi add no parameters
    alibi = model.layers[0].attn.alibi
    assert alibi is model.layers[1].attn.alibi and alibi.slopes.tolist() == [2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8]
    # Same weights, no bias: the scores differ, so the logits do (ALiBi is really applied).
    plain = tiny(positions="alibi").eval()
    for layer in plain.layers:
        layer.attn.alibi = None
    ids = torch.randint(0, 64, (1, 8))
    assert not torch.allclose(model(ids)[:, 1:], plain(ids)[:, 1:])
    torch.testing.assert_close(model(ids)[:, 0], plain(ids)[:, 0])  # one key: nothing to bias
