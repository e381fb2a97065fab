"""Size estimates before allocating (mie.models.budget): exact parameter counts, activation and KV-cache
estimates checked against what built models really hold, and one-line refusals naming the key and limit."""

from __future__ import annotations

import itertools
import time

import pytest
import torch

from mie.config import config_from_dict
from mie.errors import ConfigError
from mie.models import budget
from mie.models.budget import (
    activation_floats,
    check_generation_length,
    check_model_size,
    check_workers,
    kv_cache_bytes,
    parameter_count,
)
from mie.models.causal_lm import CausalLM, CausalLMConfig
from mie.models.generation import generate
from mie.models.kv_cache import KVCache
from mie.models.multimodal import DualEncoder, DualEncoderConfig
from mie.models.seq2seq import EncoderDecoderTransformer, Seq2SeqConfig
from mie.models.seq2seq_decoding import beam_search
from mie.models.vit_classifier import ViTClassifier, ViTClassifierConfig

GiB = 1 << 30


def numel(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("mlp, norm, positions, tie, bias, kv", list(itertools.product(
    ["swiglu", "gelu"], ["rmsnorm", "layernorm"], ["rope", "learned"], [True, False], [True, False], [None, 2])))
def test_causal_lm_parameter_count_is_exact(mlp, norm, positions, tie, bias, kv):
    config = CausalLMConfig(vocab_size=50, dim=32, n_layers=2, n_heads=4, n_kv_heads=kv, mlp=mlp, norm=norm,
                            positions=positions, tie_embeddings=tie, bias=bias, max_seq_len=20)
    assert parameter_count(config) == numel(CausalLM(config))


def test_smollm2_architecture_count_matches_a_built_model_without_allocating_it():
    from mie.recipes.lm.config import PRETRAINED_ARCHITECTURES

    config = PRETRAINED_ARCHITECTURES["smollm2-135m-instruct"]
    with torch.device("meta"):  # the real module tree, no weights in memory
        model = CausalLM(config)
    assert parameter_count(config) == numel(model) == 134_515_008  # SmolLM2-135M's published count


@pytest.mark.parametrize("activation, norm, share, tie", list(itertools.product(
    ["gelu", "swiglu"], ["layernorm", "rmsnorm"], [True, False], [True, False])))
def test_seq2seq_parameter_count_is_exact(activation, norm, share, tie):
    config = Seq2SeqConfig(src_vocab_size=60, tgt_vocab_size=60, dim=32, encoder_layers=2, decoder_layers=1, heads=4,
                           mlp_ratio=2.5, activation=activation, norm=norm, share_embeddings=share, tie_output=tie,
                           max_len=30)
    assert parameter_count(config) == numel(EncoderDecoderTransformer(config))


@pytest.mark.parametrize("pool, stem, norm", list(itertools.product(["cls", "mean"], ["patch", "conv"],
                                                                    ["layernorm", "rmsnorm"])))
def test_vision_parameter_counts_are_exact(pool, stem, norm):
    dual = DualEncoderConfig(embed_dim=16, image_size=32, patch_size=8, vision_width=48, vision_layers=2,
                             vision_heads=2, vision_pool=pool, vision_stem=stem, text_width=24, text_layers=1,
                             text_heads=2, context_length=12, vocab_size=70, norm=norm, mlp_ratio=3.0)
    assert parameter_count(dual) == numel(DualEncoder(dual, eos_id=1, pad_id=0))
    vit = ViTClassifierConfig(image_size=28, patch_size=4, in_channels=1, width=32, layers=2, heads=2, pool=pool,
                              stem=stem, norm=norm, num_classes=10)
    assert parameter_count(vit) == numel(ViTClassifier(vit))


def saved_floats(step) -> int:
    """Elements of every tensor autograd saves for backward during ``step()`` (the activations)."""
    total = 0

    def pack(tensor):
        nonlocal total
        if not isinstance(tensor, torch.nn.Parameter) and tensor.is_floating_point():
            total += tensor.numel()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return total


@pytest.mark.parametrize("name", ["lm", "seq2seq", "vit", "clip"])
def test_activation_estimate_bounds_what_autograd_saves_within_3x(name):
    torch.manual_seed(0)
    rows, tokens = 4, 24
    if name == "lm":
        config = CausalLMConfig(vocab_size=80, dim=32, n_layers=2, n_heads=4, max_seq_len=32)
        model, ids = CausalLM(config), torch.randint(0, 80, (rows, tokens))
        measured = saved_floats(lambda: model(ids).sum())
        estimate = activation_floats(config, rows, tokens)
    elif name == "seq2seq":
        config = Seq2SeqConfig(src_vocab_size=80, tgt_vocab_size=80, dim=32, encoder_layers=2, decoder_layers=2,
                               heads=4, max_len=32, dropout=0.0)
        model = EncoderDecoderTransformer(config)
        src, tgt = torch.randint(1, 80, (rows, tokens)), torch.randint(1, 80, (rows, tokens))
        measured = saved_floats(lambda: model(src, tgt).sum())
        estimate = activation_floats(config, rows, tokens, tokens)
    elif name == "vit":
        config = ViTClassifierConfig(image_size=32, patch_size=8, in_channels=3, width=32, layers=2, heads=2,
                                     num_classes=5)
        model, images = ViTClassifier(config), torch.randn(rows, 3, 32, 32)
        measured = saved_floats(lambda: model(images).sum())
        estimate = activation_floats(config, rows)
    else:
        config = DualEncoderConfig(embed_dim=16, image_size=32, patch_size=8, vision_width=32, vision_layers=2,
                                   vision_heads=2, text_width=32, text_layers=2, text_heads=2, context_length=16,
                                   vocab_size=60)
        model = DualEncoder(config, eos_id=1, pad_id=0)
        images, ids = torch.randn(rows, 3, 32, 32), torch.randint(2, 60, (rows, 16))
        ids[:, -1] = 1  # end of text

        def step():
            out = model(images, ids)
            return (out["logit_scale"] * out["image_embeds"] @ out["text_embeds"].T).sum()
        measured = saved_floats(step)
        estimate = activation_floats(config, rows)
    assert measured <= estimate <= 3 * measured, (measured, estimate)


def test_kv_cache_estimate_is_what_the_cache_holds():
    config = CausalLMConfig(vocab_size=50, dim=32, n_layers=3, n_heads=4, n_kv_heads=2, max_seq_len=64)
    model = CausalLM(config).eval()
    cache = KVCache(config.n_layers, max_len=20)
    model(torch.randint(0, 50, (2, 5)), cache=cache)
    held = sum(t.nbytes for t in cache.keys + cache.values) + cache.mask.nbytes
    assert kv_cache_bytes(config, rows=2, length=20) == held


def test_hard_bounds_name_the_key_and_the_limit():
    with pytest.raises(ConfigError) as err:
        check_model_size(CausalLMConfig(n_layers=1_000_000), "pretrain.model")
    assert str(err.value) == "pretrain.model.n_layers: 1,000,000 is more than 1,024 — use at most 1,024"
    with pytest.raises(ConfigError, match=r"^model.src_vocab_size: 1,000,000,000 is more than 2,097,152"):
        check_model_size(Seq2SeqConfig(src_vocab_size=10**9, tgt_vocab_size=10**9))


def test_weights_past_the_available_memory_are_refused_with_the_estimate():
    config = CausalLMConfig(vocab_size=32000, dim=8192, n_layers=80, n_heads=64)
    params = parameter_count(config)
    with pytest.raises(ConfigError) as err:
        check_model_size(config, "model", available=24 * GiB)
    assert str(err.value) == (f"model: {params:,} parameters would take about {budget.format_bytes(4 * params)}, more than "
                              "the 25.8 GB of memory available on this machine — lower model.n_layers, model.dim "
                              "or model.vocab_size")
    assert check_model_size(CausalLMConfig(), "model", available=24 * GiB) == parameter_count(CausalLMConfig())


def test_config_loading_refuses_before_building():
    """The check runs at every load (config machinery hook), and the constructors repeat it."""
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"^model.n_layers: 1,000,000 is more than 1,024"):
        config_from_dict(CausalLMConfig, {"n_layers": 10**6})
    with pytest.raises(ConfigError, match=r"^model.text_layers: 1,000,000 is more than 1,024"):
        config_from_dict(DualEncoderConfig, {"text_layers": 10**6})
    with pytest.raises(ConfigError, match=r"^model.n_layers"):
        CausalLM(CausalLMConfig(n_layers=10**6))
    with pytest.raises(ConfigError, match=r"^model.layers"):
        ViTClassifier(ViTClassifierConfig(layers=10**6, num_classes=3))
    assert time.perf_counter() - start < 1.0


def test_workers_are_refused_past_the_cores_with_the_limit():
    check_workers(4, "data.workers", cores=2)  # a few processes are fine on any machine
    check_workers(16, "data.workers", cores=16)
    with pytest.raises(ConfigError) as err:
        check_workers(1000, "data.workers", in_process="1 = in-process", cores=2)
    assert str(err.value) == ("data.workers: 1,000 worker processes is more than this machine's 2 cores can run "
                              "— use at most 4 (1 = in-process)")


def test_machine_figures_are_plausible():
    assert 1 <= budget.usable_cores() <= (torch.get_num_threads() + 1024)
    with open("/proc/meminfo", encoding="ascii") as fh:
        total = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("MemTotal:"))
    assert 0 < budget.available_memory() <= total


def test_generation_lengths():
    check_generation_length(5, 3, 8)
    with pytest.raises(ConfigError, match=r"^max_new_tokens: got -1; must be at least 1"):
        check_generation_length(5, -1, 8)
    with pytest.raises(ConfigError) as err:
        check_generation_length(100_000, 10, 8192, prompt_key="--prompt")
    assert str(err.value) == "--prompt is 100,000 tokens; the model's context is 8,192 — shorten it to at most 8,191 tokens"
    with pytest.raises(ConfigError) as err:
        check_generation_length(3, 10**9, 8192, key="--max-new-tokens")
    assert str(err.value) == ("--max-new-tokens: 1,000,000,000 new tokens after a 3-token prompt exceed the model's "
                              "context (max_seq_len) of 8,192 — use at most 8,189")


@pytest.fixture
def lm():
    torch.manual_seed(0)
    return CausalLM(CausalLMConfig(vocab_size=40, dim=16, n_layers=1, n_heads=2, max_seq_len=32)).eval()


def test_generate_refuses_bad_lengths_before_allocating(lm, monkeypatch):
    with pytest.raises(ConfigError, match=r"^max_new_tokens: got -1; must be at least 1"):
        generate(lm, [[1, 2]], max_new_tokens=-1)
    with pytest.raises(ConfigError, match=r"^the prompt is 40 tokens; the model's context is 32"):
        generate(lm, [[1] * 40], max_new_tokens=1)  # rope positions too: the cache is the context
    with pytest.raises(ConfigError, match=r"exceed the model's context \(max_seq_len\) of 32 — use at most 30"):
        generate(lm, [[1, 2]], max_new_tokens=10**9)
    allocated = []
    monkeypatch.setattr(KVCache, "__init__", lambda *a, **k: allocated.append(a))
    monkeypatch.setattr(budget, "available_memory", lambda: 1000)
    with pytest.raises(ConfigError, match=r"^max_new_tokens: the KV cache of 1 x 12 positions would take about"):
        generate(lm, [[1, 2]], max_new_tokens=10)
    assert allocated == []


def test_generate_still_fills_the_whole_context(lm):
    assert len(generate(lm, [[1, 2]], max_new_tokens=30)[0]) == 30


def test_beam_search_refuses_a_huge_beam_before_encoding():
    model = EncoderDecoderTransformer(Seq2SeqConfig(src_vocab_size=30, tgt_vocab_size=30, dim=16, encoder_layers=1,
                                                    decoder_layers=1, heads=2, max_len=16)).eval()
    src = torch.randint(3, 30, (2, 5))
    with pytest.raises(ConfigError, match=r"^beam: 1,000,000 is more than 64 — use at most 64"):
        beam_search(model, src, bos_id=1, eos_id=2, beam=1_000_000, max_len=8)
    assert len(beam_search(model, src, bos_id=1, eos_id=2, beam=2, max_len=8)) == 2


def test_the_sinusoid_table_of_a_long_seq2seq_context_counts_against_the_memory():
    config = Seq2SeqConfig(src_vocab_size=100, tgt_vocab_size=100, dim=4096, heads=8, encoder_layers=1,
                           decoder_layers=1, max_len=1_000_000)  # 16.4 GB of positions beside 1.9 GB of weights
    with pytest.raises(ConfigError, match=r"^model: [\d,]+ parameters would take about 18.3 GB, more than the 8.6 GB"):
        check_model_size(config, "model", available=8 * GiB)
