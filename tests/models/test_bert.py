"""The BERT encoder on a tiny random config: masking, batching, pooling and the HF name mapping."""

from __future__ import annotations

import pytest
import torch
from tests.models.pre_port import pre_port

from mie.errors import CheckpointError
from mie.models.attention import MultiHeadAttention
from mie.models.bert import BertConfig, BertEncoder, hf_name, hf_state_dict, mean_pool

CONFIG = BertConfig(vocab_size=50, hidden=32, layers=2, heads=4, intermediate=64, max_positions=16)


@pytest.fixture()
def model() -> BertEncoder:
    torch.manual_seed(0)
    return BertEncoder(CONFIG).eval()


def test_shapes_and_normalized_embedding(model):
    ids = torch.randint(5, 50, (3, 7))
    mask = torch.ones_like(ids)
    assert model(ids, mask).shape == (3, 7, 32)
    emb = model.embed(ids, mask)
    assert emb.shape == (3, 32)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3))


def test_padding_does_not_change_a_row(model):
    ids = torch.randint(5, 50, (1, 6))
    alone = model.embed(ids, torch.ones_like(ids))
    padded = torch.cat([ids, torch.zeros((1, 4), dtype=torch.long)], dim=1)
    mask = torch.tensor([[1] * 6 + [0] * 4])
    torch.testing.assert_close(model.embed(padded, mask), alone, atol=1e-6, rtol=1e-5)
    garbage = padded.clone()
    garbage[0, 6:] = torch.randint(5, 50, (4,))  # whatever sits under the mask is ignored
    torch.testing.assert_close(model.embed(garbage, mask), alone, atol=1e-6, rtol=1e-5)


def test_batch_equals_single(model):
    rows = [torch.randint(5, 50, (n,)) for n in (3, 9, 5)]
    ids = torch.zeros((3, 9), dtype=torch.long)
    mask = torch.zeros((3, 9), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row)], mask[i, :len(row)] = row, 1
    batched = model.embed(ids, mask)
    for i, row in enumerate(rows):
        single = model.embed(row[None], torch.ones((1, len(row)), dtype=torch.long))
        torch.testing.assert_close(batched[i:i + 1], single, atol=1e-6, rtol=1e-5)


def test_mean_pool_ignores_padding_and_survives_empty_rows():
    hidden = torch.tensor([[[1.0, 0.0], [3.0, 2.0], [100.0, 100.0]], [[5.0, 5.0], [1.0, 1.0], [1.0, 1.0]]])
    mask = torch.tensor([[1, 1, 0], [0, 0, 0]])
    pooled = mean_pool(hidden, mask, normalize=False)
    torch.testing.assert_close(pooled, torch.tensor([[2.0, 1.0], [0.0, 0.0]]))


def test_too_long_input_is_refused(model):
    with pytest.raises(ValueError, match="max_positions"):
        model(torch.zeros((1, 17), dtype=torch.long))


def test_hf_names_map_onto_every_parameter(model):
    hf = {
        "embeddings.word_embeddings.weight": (50, 32), "embeddings.position_embeddings.weight": (16, 32),
        "embeddings.token_type_embeddings.weight": (2, 32), "embeddings.LayerNorm.weight": (32,),
        "embeddings.LayerNorm.bias": (32,), "embeddings.position_ids": (1, 16), "pooler.dense.weight": (32, 32),
    }
    for n in range(2):
        for name, shape in [("attention.self.query", (32, 32)), ("attention.self.key", (32, 32)),
                            ("attention.self.value", (32, 32)), ("attention.output.dense", (32, 32)),
                            ("attention.output.LayerNorm", None), ("intermediate.dense", (64, 32)),
                            ("output.dense", (32, 64)), ("output.LayerNorm", None)]:
            out = shape[0] if shape else 32
            hf[f"encoder.layer.{n}.{name}.weight"] = shape or (32,)
            hf[f"encoder.layer.{n}.{name}.bias"] = (out,)
    state = hf_state_dict({k: torch.randn(s) for k, s in hf.items()})
    fresh = BertEncoder(CONFIG)
    fresh.load_state_dict(state, strict=True)  # every parameter named, none left over
    torch.testing.assert_close(fresh.layers[1].attn.q_proj.weight, state["layers.1.attn.q_proj.weight"])
    assert hf_name("bert.encoder.layer.3.attention.self.query.weight") == "layers.3.attn.q_proj.weight"
    assert hf_name("encoder.layer.0.attention.output.dense.bias") == "layers.0.attn.out_proj.bias"
    with pytest.raises(CheckpointError, match="unexpected tensor"):
        hf_name("encoder.layer.0.crossattention.self.query.weight")


def test_config_from_hf():
    config = BertConfig.from_hf({"vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6,
                                 "num_attention_heads": 12, "intermediate_size": 1536,
                                 "max_position_embeddings": 512, "hidden_act": "gelu"})
    assert config == BertConfig()
    with pytest.raises(CheckpointError, match="gelu"):
        BertConfig.from_hf({"hidden_act": "relu"})


def test_attention_is_the_one_module_with_separate_projections(model):
    attn = model.layers[0].attn
    assert isinstance(attn, MultiHeadAttention) and not attn.fused and not attn.cross
    assert {n for n, _ in attn.named_children()} >= {"q_proj", "k_proj", "v_proj", "out_proj"}


def test_a_checkpoint_of_the_pre_port_encoder_loads_strictly_with_identical_outputs():
    """State dict, inputs and outputs saved by the encoder before the one attention module (its
    ``BertSelfAttention`` with ``attn.q/k/v/out`` and an additive float mask)."""
    state, inputs, outputs = pre_port("bert")
    assert "layers.0.attn.q.weight" in state and "layers.1.attn.out.bias" in state  # the old names
    model = BertEncoder(BertConfig(vocab_size=50, hidden=16, layers=2, heads=4, intermediate=32,
                                   max_positions=16)).eval()
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        torch.testing.assert_close(model(inputs["ids"], inputs["mask"]), outputs["hidden"], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(model.embed(inputs["ids"], inputs["mask"]), outputs["embed"],
                                   atol=1e-6, rtol=1e-5)


def test_an_all_padding_row_stays_finite_and_pools_to_zero(model):
    ids = torch.randint(5, 50, (2, 5))
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0]])
    hidden = model(ids, mask)
    assert torch.isfinite(hidden).all()
    torch.testing.assert_close(model.embed(ids, mask)[1], torch.zeros(32))
    torch.testing.assert_close(model.embed(ids, mask)[:1], model.embed(ids[:1, :3], mask[:1, :3]),
                               atol=1e-6, rtol=1e-5)
