"""Training throughput of our DualEncoder against the same architecture built from torch.nn layers.

Times full training steps (forward, CLIP loss, backward, AdamW step) on random image–caption batches,
in fp32 and under bf16 autocast, and prints image–text pairs per second and the ratio ours / reference.

    .venv/bin/python benchmarks/train_throughput.py                 # small preset, batch 128
    .venv/bin/python benchmarks/train_throughput.py --preset tiny --batch-size 32 --steps 5

Each (model, precision) run stops early once it has used its share of ``--budget-s`` so the whole
script stays under about two minutes even on a CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch
from torch import nn

from mie.losses import build_loss
from mie.models.registry import build_model, build_torch_reference_model, get_model_config, num_parameters

VOCAB_SIZE = 4096  # the default TokenizerConfig.vocab_size
EOS_ID, PAD_ID = 3, 0


def random_batch(batch_size: int, image_size: int, context_length: int, device: torch.device):
    """Random images and captions: ``<bos>`` words ``<eos>`` then padding, of random lengths."""
    images = torch.randn(batch_size, 3, image_size, image_size, device=device)
    ids = torch.randint(4, VOCAB_SIZE, (batch_size, context_length), device=device)
    ids[:, 0] = 2
    eos = torch.randint(3, context_length, (batch_size, 1), device=device)
    positions = torch.arange(context_length, device=device)[None]
    ids = torch.where(positions == eos, EOS_ID, ids)
    ids = torch.where(positions > eos, PAD_ID, ids)
    return images, ids


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so that wall-clock timings are real."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_training(
    model: nn.Module,
    batch: tuple[torch.Tensor, torch.Tensor],
    precision: str,
    steps: int,
    warmup: int,
    budget_s: float,
) -> tuple[float, int]:
    """Pairs per second over the timed steps (after ``warmup`` untimed ones) and the steps timed."""
    device = batch[0].device
    loss_fn = build_loss("clip").to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    )
    model.train()

    def step() -> None:
        with autocast:
            out = model(*batch)
            loss = loss_fn(out["image_embeds"], out["text_embeds"], logit_scale=out["logit_scale"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    start = time.perf_counter()
    for _ in range(warmup):
        step()
        if time.perf_counter() - start > budget_s / 2:  # a slow device: keep time for the timed steps
            break
    synchronize(device)
    timed, timed_start = 0, time.perf_counter()
    while timed < steps:
        step()
        timed += 1
        synchronize(device)
        if time.perf_counter() - start > budget_s:
            break
    elapsed = time.perf_counter() - timed_start
    return timed * batch[0].shape[0] / elapsed, timed


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small", help="model preset (tiny | small | base)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per run (fewer if over budget)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before timing")
    parser.add_argument("--budget-s", type=float, default=100.0, help="wall-clock budget for all runs")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--threads", type=int, default=0, help="CPU threads for torch (0 = torch's default); 1 on a busy CPU"
    )
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    config = get_model_config(args.preset, vocab_size=VOCAB_SIZE)
    batch = random_batch(args.batch_size, config.image_size, config.context_length, device)
    builders = {"ours": build_model, "torch.nn": build_torch_reference_model}
    precisions = ["fp32", "bf16"]
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 for both models
    print(
        f"preset={args.preset} batch={args.batch_size} device={device} "
        f"params: "
        + ", ".join(
            f"{name}={num_parameters(build(config, eos_id=EOS_ID, pad_id=PAD_ID)) / 1e6:.2f}M"
            for name, build in builders.items()
        )
    )
    budget = args.budget_s / (len(builders) * len(precisions))
    results: dict[tuple[str, str], float] = {}
    for precision in precisions:
        for name, build in builders.items():
            torch.manual_seed(0)
            model = build(config, eos_id=EOS_ID, pad_id=PAD_ID).to(device)
            pairs_per_s, timed = time_training(model, batch, precision, args.steps, args.warmup, budget)
            results[name, precision] = pairs_per_s
            print(f"{name:>9} {precision}: {pairs_per_s:9.1f} pairs/s ({timed} timed steps)")
            del model
        ratio = results["ours", precision] / results["torch.nn", precision]
        print(f"{'ratio':>9} {precision}: ours / torch.nn = {ratio:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
