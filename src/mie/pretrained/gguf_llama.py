"""A LLaMA-family GGUF file as our own pieces: ``CausalLMConfig`` values, a state dict, a tokenizer.

Two architectures: ``llama`` (SmolLM2) and ``qwen2`` (Qwen2.5: biases on q/k/v, an untied LM head where the
file has ``output.weight``, RoPE base 1e6, NFC + its own pre-tokenizer split). Their metadata keys differ
only in the prefix (``qwen2.block_count``). llama.cpp's converter permutes the rows of ``attn_q`` / ``attn_k`` for its interleaved-pair RoPE
(``permute``: rows viewed as ``(heads, 2, head_dim/2)`` become ``(heads, head_dim/2, 2)``);
:func:`unpermute_rows` undoes it so the HF ``rotate_half`` convention of ``mie.models.causal_lm`` holds. Qwen2's converter does not
permute (llama.cpp runs it with the NEOX rotation, which is ``rotate_half``), so its rows load as stored.
"""

from __future__ import annotations

from typing import Any

import torch

from mie.errors import CheckpointError, MieError
from mie.pretrained.chat import ChatTokenizer
from mie.pretrained.gguf_reader import GGUFFile
from mie.tokenization.bpe import BPEModel
from mie.tokenization.normalizers import NFC
from mie.tokenization.pre_tokenizers import RegexPreTokenizer

# llama.cpp's ``tokenizer.ggml.pre`` names -> our pre-tokenizer styles (same regex splits).
PRE_TOKENIZERS = {"gpt2": "gpt2", "smollm": "smollm", "starcoder": "smollm", "qwen2": "qwen2"}
NFC_PRE_TOKENIZERS = ("qwen2",)  # HF's Qwen2 tokenizer NFC-normalizes before splitting
# general.architecture -> whether llama.cpp permuted the q/k rows for its interleaved rotation
ARCHITECTURES = {"llama": True, "qwen2": False}
CONTROL_TOKEN, USER_DEFINED_TOKEN = 3, 4  # tokenizer.ggml.token_type values of special tokens
_LAYER_NAMES = {  # GGUF blk.{i}.<name>.weight -> layers.{i}.<name>.weight
    "attn_norm": "attn_norm", "attn_q": "attn.q_proj", "attn_k": "attn.k_proj", "attn_v": "attn.v_proj",
    "attn_output": "attn.out_proj", "ffn_norm": "mlp_norm", "ffn_gate": "mlp.w1", "ffn_up": "mlp.w3", "ffn_down": "mlp.w2",
}


def permute_rows(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """llama.cpp's q/k permutation (HF half-split pairs -> interleaved pairs); for tests and round trips."""
    rows = weight.shape[0]
    return weight.reshape(n_heads, 2, rows // n_heads // 2, *weight.shape[1:]).transpose(1, 2).reshape(weight.shape)


def unpermute_rows(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Inverse of :func:`permute_rows`: GGUF's q/k rows back in HF order."""
    rows = weight.shape[0]
    return weight.reshape(n_heads, rows // n_heads // 2, 2, *weight.shape[1:]).transpose(1, 2).reshape(weight.shape)


def architecture(gguf_file: GGUFFile) -> str:
    """``general.architecture`` of the file (``llama`` or ``qwen2``); any other is a CheckpointError."""
    arch = gguf_file.value("general.architecture")
    if arch not in ARCHITECTURES:
        raise CheckpointError(f"architecture is {arch!r}, not one of {sorted(ARCHITECTURES)}", where=gguf_file.path,
                              fix="use a LLaMA or Qwen2 GGUF file")
    return str(arch)


def llama_config(gguf_file: GGUFFile) -> dict[str, Any]:
    """``CausalLMConfig`` keyword arguments from the ``llama.*`` (or ``qwen2.*``) metadata."""
    arch = architecture(gguf_file)

    def value(key: str, *default: Any) -> Any:
        return gguf_file.value(f"{arch}.{key}", *default)

    vocab = value("vocab_size", None)
    if vocab is None:
        vocab = len(gguf_file.value("tokenizer.ggml.tokens"))
    n_heads = int(value("attention.head_count"))
    config = {
        "vocab_size": int(vocab),
        "dim": int(value("embedding_length")),
        "n_layers": int(value("block_count")),
        "n_heads": n_heads,
        "n_kv_heads": int(value("attention.head_count_kv", n_heads)),
        "mlp_hidden": int(value("feed_forward_length")),
        "mlp": "swiglu",
        "norm": "rmsnorm",
        "norm_eps": float(value("attention.layer_norm_rms_epsilon")),
        "positions": "rope",
        "rope_theta": float(value("rope.freq_base", 10000.0)),
        "max_seq_len": int(value("context_length")),
        "tie_embeddings": "output.weight" not in gguf_file.tensor_names,
        "bias": False,
        "dropout": 0.0,
    }
    if "blk.0.attn_q.bias" in gguf_file.tensor_names:
        config["qkv_bias"] = True  # only when set: SmolLM2's converted config stays as before
    return config


def llama_state_dict(gguf_file: GGUFFile, config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Every weight of the file under our parameter names, float32 (q/k rows un-permuted for ``llama``)."""
    heads = {"attn_q": config["n_heads"], "attn_k": config["n_kv_heads"]} if ARCHITECTURES[architecture(gguf_file)] \
        else {}
    state = {"tok_embeddings.weight": gguf_file.tensor("token_embd.weight"),
             "norm.weight": gguf_file.tensor("output_norm.weight")}
    if not config["tie_embeddings"]:
        state["lm_head.weight"] = gguf_file.tensor("output.weight")
    for i in range(config["n_layers"]):
        for ours_name, theirs in ((v, k) for k, v in _LAYER_NAMES.items()):
            weight = gguf_file.tensor(f"blk.{i}.{theirs}.weight")
            if theirs in heads:
                weight = unpermute_rows(weight, heads[theirs])
            state[f"layers.{i}.{ours_name}.weight"] = weight
        for theirs in ("attn_q", "attn_k", "attn_v") if config.get("qkv_bias") else ():
            state[f"layers.{i}.{_LAYER_NAMES[theirs]}.bias"] = gguf_file.tensor(f"blk.{i}.{theirs}.bias")
    return state


def llama_tokenizer(gguf_file: GGUFFile) -> ChatTokenizer:
    """Our byte-level BPE tokenizer (and chat template) from the ``tokenizer.ggml.*`` metadata."""
    value = gguf_file.value
    if value("tokenizer.ggml.model") != "gpt2":
        raise CheckpointError(f"tokenizer.ggml.model is {value('tokenizer.ggml.model')!r}, not 'gpt2' (byte-level "
                              "BPE)", where=gguf_file.path, fix="use a model with a byte-level BPE tokenizer")
    pre = value("tokenizer.ggml.pre", "missing")
    if pre not in PRE_TOKENIZERS:
        raise CheckpointError(f"tokenizer.ggml.pre {pre!r} has no matching pre-tokenizer here", where=gguf_file.path,
                              fix=f"use a model whose pre-tokenizer is one of {sorted(PRE_TOKENIZERS)}")
    tokens = value("tokenizer.ggml.tokens")
    types = value("tokenizer.ggml.token_type", [1] * len(tokens))
    merges = [tuple(m.split(" ", 1)) for m in value("tokenizer.ggml.merges")]
    specials = [t for t, kind in zip(tokens, types) if kind in (CONTROL_TOKEN, USER_DEFINED_TOKEN)]
    try:
        model = BPEModel({t: i for i, t in enumerate(tokens)}, merges, special_tokens=specials,
                         drop_missing_bytes=True)
    except MieError as err:
        raise CheckpointError(f"its tokenizer is invalid: {err}", where=gguf_file.path,
                              fix="download or install the file again") from None
    eos = tokens[value("tokenizer.ggml.eos_token_id")]
    bos = tokens[value("tokenizer.ggml.bos_token_id", value("tokenizer.ggml.eos_token_id"))]
    pad_id = value("tokenizer.ggml.padding_token_id", None)
    arch = value("general.architecture", "llama")
    return ChatTokenizer(
        model, NFC() if pre in NFC_PRE_TOKENIZERS else None, RegexPreTokenizer.named(PRE_TOKENIZERS[pre]), bos, eos,
        None if pad_id is None else tokens[pad_id], int(value(f"{arch}.context_length", 2048)),
        split_special_tokens=True,
        chat_template=value("tokenizer.chat_template"),
    )
