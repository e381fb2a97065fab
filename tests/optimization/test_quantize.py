"""Whole-model quantization in place: every family's linears are swapped, outputs stay close to float, and the
saved scheme rebuilds a model that loads the integer checkpoint and gives the very same outputs."""

from __future__ import annotations

import pytest
import torch

from mie.errors import ConfigError
from mie.io.checkpoint import load_weights, save_weights
from mie.models.causal_lm import CausalLM, CausalLMConfig
from mie.models.generation import generate
from mie.models.multimodal import DualEncoder, DualEncoderConfig
from mie.optimization.int_linear import (
    DynamicInt8Linear,
    QuantizedEmbedding,
    TiedQuantizedHead,
    WeightOnlyLinear,
)
from mie.optimization.quantize import quantize_model
from mie.optimization.scheme import apply_optimization


def tiny_lm(seed: int = 0, tie: bool = True) -> CausalLM:
    torch.manual_seed(seed)
    return CausalLM(CausalLMConfig(vocab_size=96, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=32,
                                   tie_embeddings=tie)).eval()


def tiny_dual_encoder() -> DualEncoder:
    torch.manual_seed(0)
    config = DualEncoderConfig(embed_dim=32, image_size=16, patch_size=8, vision_width=32, vision_layers=2,
                               vision_heads=2, text_width=32, text_layers=2, text_heads=2, context_length=12,
                               vocab_size=50)
    return DualEncoder(config, eos_id=2, pad_id=0).eval()


def _ids(batch: int = 2, length: int = 20) -> torch.Tensor:
    return torch.randint(3, 96, (batch, length), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize(("method", "tolerance"), [("int8-weight", 0.02), ("int4-weight", 0.2), ("dynamic-int8", 0.05)])
def test_causal_lm_logits_stay_close_and_reload_exactly(tmp_path, method: str, tolerance: float) -> None:
    model = tiny_lm()
    ids = _ids()
    with torch.no_grad():
        reference = model(ids)
    scheme = quantize_model(model, method)
    kinds = {type(m) for m in model.modules()}
    assert torch.nn.Linear not in kinds  # every linear swapped
    with torch.no_grad():
        logits = model(ids)
    assert (logits - reference).norm() / reference.norm() < tolerance
    path = save_weights(tmp_path / "q.safetensors", model.state_dict(), {"optimization": {"quantization": scheme}})
    state, meta = load_weights(path)
    fresh = apply_optimization(tiny_lm(seed=5), meta["optimization"])
    fresh.load_state_dict(state)
    with torch.no_grad():
        assert torch.equal(fresh(ids), logits)


def test_tied_embedding_is_stored_once_and_the_head_reads_it() -> None:
    model = tiny_lm()
    scheme = quantize_model(model, "int4-weight", group_size=32)
    assert isinstance(model.tok_embeddings, QuantizedEmbedding)
    assert isinstance(model.lm_head, TiedQuantizedHead)
    assert scheme["modules"]["tok_embeddings"]["tied_head"] == "lm_head"
    assert not [key for key in model.state_dict() if key.startswith("lm_head")]
    x = torch.randn(1, 3, 64)
    with torch.no_grad():
        expected = x @ model.tok_embeddings.weight.T
        assert torch.allclose(model.lm_head(x), expected, atol=0.05 * expected.abs().max())


def test_untied_head_is_a_quantized_linear() -> None:
    model = tiny_lm(tie=False)
    quantize_model(model, "int8-weight")
    assert isinstance(model.lm_head, WeightOnlyLinear)
    with torch.no_grad():
        assert model(_ids()).shape == (2, 20, 96)


def test_generation_runs_on_the_packed_kernels_and_matches_greedy_float_mostly() -> None:
    model = tiny_lm()
    prompt = [[5, 6, 7, 8]]
    with torch.no_grad():
        reference = generate(model, prompt, 8, temperature=0.0)
    quantize_model(model, "int8-weight")
    with torch.no_grad():
        tokens = generate(model, prompt, 8, temperature=0.0)
    assert len(tokens[0]) == 8
    assert model.layers[0].mlp.w1._kernel  # decoding (one row) used torch's packed int8 kernel
    assert sum(a == b for a, b in zip(tokens[0], reference[0])) >= 6


def test_dual_encoder_dynamic_int8_keeps_embeddings() -> None:
    model = tiny_dual_encoder()
    images = torch.randn(4, 3, 16, 16)
    ids = torch.tensor([[5, 6, 7, 2] + [0] * 8] * 4)
    with torch.no_grad():
        image_ref, text_ref = model.encode_image(images), model.encode_text(ids)
    quantize_model(model, "dynamic-int8")
    assert sum(isinstance(m, DynamicInt8Linear) for m in model.modules()) >= 8
    with torch.no_grad():
        image, text = model.encode_image(images), model.encode_text(ids)
    assert torch.nn.functional.cosine_similarity(image, image_ref).min() > 0.99
    assert torch.nn.functional.cosine_similarity(text, text_ref).min() > 0.99


def test_unknown_method_and_bad_group_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match=r"--method: unknown method 'int2' — choose one of dynamic-int8"):
        quantize_model(tiny_lm(), "int2")
    with pytest.raises(ConfigError, match="--group-size: dynamic-int8 keeps one scale per output row — leave --group-size out for dynamic-int8"):
        quantize_model(tiny_lm(), "dynamic-int8", group_size=32)


def test_embedding_bits_can_differ_from_the_linears() -> None:
    model = tiny_lm()
    scheme = quantize_model(model, "int4-weight", embedding_bits=8)
    assert model.tok_embeddings.table.bits == 8 and model.layers[0].mlp.w1.bits == 4
    assert scheme["modules"]["tok_embeddings"] == {"kind": "embedding", "bits": 8, "group_size": 0,
                                                   "tied_head": "lm_head"}  # per row: the int8 kernel's layout

