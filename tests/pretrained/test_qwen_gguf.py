"""Qwen2 GGUF -> our CausalLM without the real file: q/k/v biases, untied head, rows as stored (no permutation),
its pre-tokenizer split with NFC, and its ChatML template's default system message."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from mie.pretrained import registry
from mie.pretrained.chat import parse_chatml_template
from mie.tokenization.bpe import bytes_to_unicode
from mie.tokenization.pre_tokenizers import RegexPreTokenizer

QWEN_TEMPLATE = (  # the non-tool part of Qwen2.5's tokenizer.chat_template, as stored (Jinja "\\n" escapes)
    "{%- if messages[0]['role'] == 'system' %}\n    {{- '<|im_start|>system\\n' + messages[0]['content'] + "
    "'<|im_end|>\\n' }}\n{%- else %}\n    {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are "
    "a helpful assistant.<|im_end|>\\n' }}\n{%- endif %}\n{%- for message in messages %}\n    {{- '<|im_start|>' + "
    "message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n{%- endfor %}\n{%- if add_generation_prompt "
    "%}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n"
)


def test_the_qwen_template_gives_its_default_system_message():
    assert parse_chatml_template(QWEN_TEMPLATE) == "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


def test_the_qwen2_split_takes_digits_one_by_one_and_contractions_in_any_case():
    split = RegexPreTokenizer.named("qwen2")
    assert split("I'M 2024 x\n\n  def") == ["I", "'M", " ", "2", "0", "2", "4", " x", "\n\n", " ", " def"]
    assert "".join(split("héllo wörld\t\r\n!?")) == "héllo wörld\t\r\n!?"


def write_tiny_qwen2_gguf(path, model) -> None:
    """Our ``model`` written as llama.cpp writes Qwen2: arch qwen2, q/k/v biases, output.weight, rows as is."""
    gguf = pytest.importorskip("gguf")
    cfg = model.config
    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_block_count(cfg.n_layers)
    writer.add_context_length(cfg.max_seq_len)
    writer.add_embedding_length(cfg.dim)
    writer.add_feed_forward_length(cfg.hidden_dim)
    writer.add_head_count(cfg.n_heads)
    writer.add_head_count_kv(cfg.kv_heads)
    writer.add_layer_norm_rms_eps(cfg.norm_eps)
    writer.add_rope_freq_base(cfg.rope_theta)
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *bytes_to_unicode().values(), "Ġt", "he"]
    tokens += [f"[PAD{i}]" for i in range(cfg.vocab_size - len(tokens))]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types([3, 3, 3] + [1] * (len(tokens) - 3))
    writer.add_token_merges(["Ġ t", "h e"])
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(2)
    writer.add_pad_token_id(0)
    writer.add_chat_template(QWEN_TEMPLATE)
    names = {"attn_norm": "attn_norm", "attn.q_proj": "attn_q", "attn.k_proj": "attn_k", "attn.v_proj": "attn_v",
             "attn.out_proj": "attn_output", "mlp_norm": "ffn_norm", "mlp.w1": "ffn_gate", "mlp.w3": "ffn_up",
             "mlp.w2": "ffn_down"}
    state = model.state_dict()
    writer.add_tensor("token_embd.weight", state["tok_embeddings.weight"].numpy())
    writer.add_tensor("output.weight", state["lm_head.weight"].numpy())
    writer.add_tensor("output_norm.weight", state["norm.weight"].numpy())
    for i in range(cfg.n_layers):
        for ours, theirs in names.items():
            writer.add_tensor(f"blk.{i}.{theirs}.weight", state[f"layers.{i}.{ours}.weight"].contiguous().numpy())
            if theirs in ("attn_q", "attn_k", "attn_v"):
                writer.add_tensor(f"blk.{i}.{theirs}.bias", state[f"layers.{i}.{ours}.bias"].numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.mark.skipif(importlib.util.find_spec("gguf") is None, reason="the gguf package is not installed")
def test_synthetic_qwen2_gguf_gives_the_same_logits(tmp_path, monkeypatch):
    from mie.models.causal_lm import CausalLM, CausalLMConfig

    torch.manual_seed(0)
    config = CausalLMConfig(vocab_size=300, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, mlp_hidden=48,
                            max_seq_len=64, rope_theta=1e6, norm_eps=1e-6, qkv_bias=True, tie_embeddings=False)
    original = CausalLM(config).eval()
    with torch.no_grad():
        for p in original.parameters():  # biases and norms away from 0 / 1 so a lost one would show
            p.add_(torch.randn_like(p) * 0.05)
    path = tmp_path / "tiny-qwen2.gguf"
    write_tiny_qwen2_gguf(path, original)
    monkeypatch.setattr(registry, "gguf_path", lambda name, cache=None: path)
    model, tok = registry.load_causal_lm("qwen2.5-coder-0.5b-instruct", cache=tmp_path / "cache")
    assert model.config.qkv_bias and not model.config.tie_embeddings and model.config.rope_theta == 1e6
    ids = torch.randint(0, 300, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), original(ids))
    assert tok.encode(" the") == [tok.token_to_id("Ġt"), tok.token_to_id("he")]
    assert tok.encode("e\u0301") == tok.encode("\u00e9")  # NFC before the split, as HF's Qwen2 tokenizer
    assert tok.default_system == "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
