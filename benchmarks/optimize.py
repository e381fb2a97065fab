"""Speed of ``mie.optimization``'s integer layers against their peers in the same process, as ratios.

1. Linear layers of SmolLM2's shapes (576 -> 1536, 1536 -> 576, 576 -> 49152): fp32 ``nn.Linear`` vs our
   weight-only int8 / int4 (torch's packed CPU kernels at 1 row, dequantize + GEMM at 256 rows) and our
   dynamic int8 vs torch's ``quantize_dynamic`` (the peer).
2. Whole models: greedy batch-1 decoding of a SmolLM2-shaped CausalLM (random weights, ``--layers`` of 30)
   in fp32, int8-weight and int4-weight; encoding 256 image-text pairs with the demo dual encoder in fp32,
   dynamic int8 and static int8 (activation ranges calibrated on one round of the same workload).

Each figure is the best of ``--repeats`` rounds, the variants alternating within a round so that a neighbour's
load on a shared machine hits them alike. Usage: ``.venv/bin/python benchmarks/optimize.py [--threads 1]
[--repeats 3] [--layers 6] [--part linear|decoding|dual]``.
"""

from __future__ import annotations

import argparse
import copy
import functools
import time
import warnings
from collections.abc import Callable

import torch
from torch import nn

from mie.models.causal_lm import CausalLM, CausalLMConfig
from mie.models.generation import generate
from mie.models.registry import build_model
from mie.optimization.benchmark import dual_encoder_workload
from mie.optimization.int_linear import DynamicInt8Linear, WeightOnlyLinear
from mie.optimization.quantize import quantize_model
from mie.optimization.static_int8 import activation_ranges


def best_of(fns: dict[str, Callable[[], object]], repeats: int, calls: int = 1) -> dict[str, float]:
    """Best seconds per call of each function, interleaved round by round."""
    best = {name: float("inf") for name in fns}
    for fn in fns.values():
        fn()  # warm-up: packs kernels, fills caches
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            best[name] = min(best[name], (time.perf_counter() - start) / calls)
    return best


def linear_layers(repeats: int) -> None:
    """Per-layer timings at 1 and 256 rows."""
    print("| layer | rows | fp32 ms | int8-w x | int4-w x | dyn-int8 ours x | dyn-int8 torch x |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for k, n in ((576, 1536), (1536, 576), (576, 49152)):
        linear = nn.Linear(k, n, bias=False)
        int8, int4 = WeightOnlyLinear.from_linear(linear, 8, 0), WeightOnlyLinear.from_linear(linear, 4, 32)
        ours = DynamicInt8Linear.from_linear(linear)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = torch.ao.quantization.quantize_dynamic(nn.Sequential(linear), {nn.Linear}, dtype=torch.qint8)
        for rows in (1, 256):
            x = torch.randn(rows, k)
            layers = {"fp32": linear, "int8": int8, "int4": int4, "ours": ours, "torch": theirs}
            with torch.inference_mode():
                t = best_of({name: functools.partial(layer, x) for name, layer in layers.items()}, repeats, calls=5)
            print(f"| {k}->{n} | {rows} | {t['fp32'] * 1e3:.3f} | " + " | ".join(
                f"{t['fp32'] / t[name]:.2f}" for name in ("int8", "int4", "ours", "torch")) + " |")


def decoding(layers: int, repeats: int, new_tokens: int = 16) -> None:
    """Greedy batch-1 tokens/s of a SmolLM2-shaped model, fp32 vs weight-only int8 / int4."""
    torch.manual_seed(0)
    config = CausalLMConfig(vocab_size=49152, dim=576, n_layers=layers, n_heads=9, n_kv_heads=3, mlp_hidden=1536,
                            max_seq_len=256)
    models = {"fp32": CausalLM(config).eval()}
    for method in ("int8-weight", "int4-weight"):
        models[method] = copy.deepcopy(models["fp32"])
        quantize_model(models[method], method)
    prompt = [list(range(5, 25))]
    with torch.inference_mode():
        t = best_of({name: (lambda m=m: generate(m, prompt, new_tokens, temperature=0.0))
                     for name, m in models.items()}, repeats)
    rates = {name: new_tokens / seconds for name, seconds in t.items()}
    print(f"decoding, {layers} SmolLM2 layers, batch 1: " + ", ".join(
        f"{name} {rate:.1f} tok/s (x{rate / rates['fp32']:.2f})" for name, rate in rates.items()))


def dual_encoder(repeats: int) -> None:
    """Encoding 256 pairs with the demo dual encoder: fp32 vs dynamic int8 vs static int8."""
    from mie.models.multimodal import DualEncoderConfig

    config = DualEncoderConfig(embed_dim=128, image_size=48, patch_size=8, vision_width=128, vision_layers=4,
                               vision_heads=4, vision_pool="mean", text_width=128, text_layers=4, text_heads=4,
                               context_length=32, vocab_size=1000)
    fp32 = build_model(config, eos_id=2, pad_id=0).eval()
    int8 = copy.deepcopy(fp32)
    quantize_model(int8, "dynamic-int8")
    static = copy.deepcopy(fp32)
    ranges = activation_ranges(static, [None], lambda model, _: dual_encoder_workload(model)[0]())
    quantize_model(static, "static-int8", activation_ranges=ranges)
    models = {"fp32": fp32, "dynamic-int8": int8, "static-int8": static}
    workloads = {name: dual_encoder_workload(model) for name, model in models.items()}
    items = workloads["fp32"][1]
    with torch.inference_mode():
        t = best_of({name: fn for name, (fn, _) in workloads.items()}, repeats)
    print(f"demo dual encoder, {items} pairs: " + ", ".join(
        f"{name} {items / t[name]:.0f} pairs/s (x{t['fp32'] / t[name]:.2f})" for name in models))


def main() -> None:
    """Parse the arguments and print the three comparisons."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layers", type=int, default=6, help="decoder layers of the SmolLM2-shaped model (30 = full)")
    parser.add_argument("--part", choices=("linear", "decoding", "dual"), help="only this comparison")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s)")
    if args.part in (None, "linear"):
        linear_layers(args.repeats)
    if args.part in (None, "decoding"):
        decoding(args.layers, args.repeats)
    if args.part in (None, "dual"):
        dual_encoder(args.repeats)


if __name__ == "__main__":
    main()
