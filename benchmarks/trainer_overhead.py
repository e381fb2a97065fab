"""What the training loop costs on top of the bare step: ``BaseTrainer`` + ``ContrastiveTask`` against
a hand-written PyTorch loop (forward, CLIP loss, backward, clip, AdamW, logit-scale clamp) on the same
model and batches, and the host synchronisations (``.item()``, ``float(tensor)``, ``bool(tensor)``,
...) each makes per step.

    .venv/bin/python benchmarks/trainer_overhead.py                 # the demo's model, batch 128
    .venv/bin/python benchmarks/trainer_overhead.py --steps 10 --batch-size 64

The trainer runs twice: logging every 20 steps (the demo's setting: diagnostics and syncs only on
logged steps) and every step (what a loop that logs every step pays).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator

import torch

from mie.losses import build_loss
from mie.losses.config import LossConfig
from mie.models.multimodal import DualEncoderConfig
from mie.models.registry import build_model
from mie.training import BaseTrainer, OptimizerConfig, ScheduleConfig, TrainerConfig
from mie.training.tasks import ContrastiveTask

VOCAB, EOS, PAD = 1024, 3, 0
SYNC_METHODS = ("item", "tolist", "__bool__", "__float__", "__int__")


def demo_model() -> torch.nn.Module:
    """The demo's dual encoder (configs/demo.yaml): 48 px ViT and text tower, width 128, 4 layers."""
    torch.manual_seed(0)
    cfg = DualEncoderConfig(embed_dim=128, image_size=48, vision_width=128, vision_layers=4, vision_heads=4,
                            vision_pool="mean", text_width=128, text_layers=4, text_heads=4, vocab_size=VOCAB)
    return build_model(cfg, eos_id=EOS, pad_id=PAD)


def batches(n: int, batch_size: int) -> list[dict[str, torch.Tensor]]:
    """Random image–caption batches (captions end with <eos> at random lengths)."""
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(n):
        ids = torch.randint(4, VOCAB, (batch_size, 32), generator=g)
        eos = torch.randint(4, 20, (batch_size, 1), generator=g)
        pos = torch.arange(32)[None]
        ids = torch.where(pos == eos, EOS, torch.where(pos > eos, PAD, ids))
        out.append({"images": torch.randn(batch_size, 3, 48, 48, generator=g), "input_ids": ids,
                    "match_ids": torch.arange(batch_size)})
    return out


@contextlib.contextmanager
def count_syncs() -> Iterator[list[int]]:
    """Count calls, made from the ``mie`` package, of the tensor methods that copy a value to the host
    (PyTorch's own, e.g. AdamW reading its CPU step counters, are not ours to remove)."""
    counter = [0]
    originals = {name: getattr(torch.Tensor, name) for name in SYNC_METHODS}

    def wrap(fn):
        def counted(self, *args, **kwargs):
            if f"{os.sep}mie{os.sep}" in sys._getframe(1).f_code.co_filename:
                counter[0] += 1
            return fn(self, *args, **kwargs)
        return counted

    for name, fn in originals.items():
        setattr(torch.Tensor, name, wrap(fn))
    try:
        yield counter
    finally:
        for name, fn in originals.items():
            setattr(torch.Tensor, name, fn)


def bare_loop(data: list[dict[str, torch.Tensor]]) -> tuple[float, float]:
    """Seconds per step and syncs per step of the hand-written loop."""
    model = demo_model()
    loss_fn = build_loss("clip")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1, betas=(0.9, 0.98), eps=1e-6)
    with count_syncs() as syncs:
        start = time.perf_counter()
        for batch in data:
            out = model(batch["images"], batch["input_ids"])
            loss = loss_fn(out["image_embeds"], out["text_embeds"], logit_scale=out["logit_scale"],
                           match_ids=batch["match_ids"])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            model.clamp_logit_scale_()
        seconds = time.perf_counter() - start
    return seconds / len(data), syncs[0] / len(data)


def trainer_loop(data: list[dict[str, torch.Tensor]], log_every: int) -> tuple[float, float]:
    """Seconds per step and syncs per step of ``BaseTrainer`` + ``ContrastiveTask`` (clip)."""
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainerConfig(output_dir=out, epochs=1, device="cpu", log_every=log_every,
                            optimizer=OptimizerConfig(lr=1e-3), schedule=ScheduleConfig(warmup_steps=0))
        trainer = BaseTrainer(ContrastiveTask(demo_model(), LossConfig("clip")), cfg, data, callbacks=[])
        with count_syncs() as syncs:
            start = time.perf_counter()
            trainer.fit()
            seconds = time.perf_counter() - start
    return seconds / len(data), syncs[0] / len(data)


def main(argv: list[str] | None = None) -> int:
    """Run the three loops and print a table with ratios to the bare loop."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args(argv)
    data = batches(args.steps, args.batch_size)
    bare_loop(data[:2])  # warm up kernels and allocator
    rows = {"bare PyTorch loop": bare_loop(data), "BaseTrainer, log_every=20": trainer_loop(data, 20),
            "BaseTrainer, log_every=1": trainer_loop(data, 1)}
    base = rows["bare PyTorch loop"][0]
    print(f"demo model, batch {args.batch_size}, {args.steps} steps, {torch.get_num_threads()} threads")
    for name, (per_step, syncs) in rows.items():
        print(f"{name:>28}: {1000 * per_step:8.1f} ms/step  {syncs:6.1f} host syncs/step  "
              f"time ratio to bare {per_step / base:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
