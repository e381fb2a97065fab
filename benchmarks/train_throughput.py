"""CLIP training throughput: our DualEncoder side by side with OpenCLIP on the same architecture.

Issue 27's goal: ours >= 1.3x OpenCLIP's pairs/s on the 19.17 M config (ViT 64 px / patch 8 / width 256 /
4 layers / 4 heads; text width 256 / 4 layers / context 32 / vocab 49,408; embed 256), batch 128, AdamW,
CLIP loss. Both models live in this one process and their steps are interleaved (ours, peer, peer, ours,
...), so a load from other jobs hits both alike; figures are medians of per-step times, with the CPU time
and the load average beside them.

Each side trains the way its project trains: ours with ``mie.training.optim.create_optimizer`` (the
trainer's AdamW and parameter groups) and the ``clip`` loss; OpenCLIP with its training script's AdamW
groups and ``open_clip.loss.ClipLoss``. Neither clips gradients. The peer is OpenCLIP when it is installed
(``make bench-peers`` builds ``.venv-peers`` with it); otherwise the same architecture built from torch.nn
layers (``mie.models.torch_reference``), and the script says so.

    .venv/bin/python benchmarks/train_throughput.py                   # fp32 and bf16, batch 128
    .venv-peers/bin/python benchmarks/train_throughput.py --steps 12  # against OpenCLIP
    .venv/bin/python benchmarks/train_throughput.py --preset tiny --vocab-size 4096 --steps 3

Besides pairs/s it prints achieved GFLOP/s (``torch.utils.flop_counter`` over one step), the fraction of a
fp32 matmul peak timed in the same run, and each step split into data wait, forward, backward, optimizer
and host syncs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field

# Before torch starts OpenMP: with its threads spin-waiting, a bf16 step at 2 threads took 7.7 s instead of
# 1.2-1.5 s here (a second thread pool of the bf16 kernels starved; the fused AdamW step 80x slower); fp32 is
# unchanged. One process-wide setting, so both models run under it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from perf import StepSplit, count_flops, gflops_line, load, matmul_peak  # noqa: E402
from torch import nn  # noqa: E402

from mie.losses import build_loss
from mie.models.registry import build_model, build_torch_reference_model, get_model_config, num_parameters
from mie.training.compile import compile_blocks
from mie.training.config import OptimizerConfig
from mie.training.optim import create_optimizer

EOS_ID, PAD_ID = 3, 0


def random_batches(count: int, batch_size: int, image_size: int, context_length: int, vocab_size: int):
    """``count`` random batches: images and captions ``<bos>`` words ``<eos>`` padding, of random lengths."""
    batches = []
    for _ in range(count):
        images = torch.randn(batch_size, 3, image_size, image_size)
        ids = torch.randint(4, vocab_size, (batch_size, context_length))
        ids[:, 0] = 2
        eos = torch.randint(3, context_length, (batch_size, 1))
        positions = torch.arange(context_length)[None]
        ids = torch.where(positions == eos, EOS_ID, ids)
        batches.append((images, torch.where(positions > eos, PAD_ID, ids)))
    return batches


@dataclass
class Trainee:
    """One model with its loss and optimizer, and the phase split of its timed steps."""

    name: str
    model: nn.Module
    loss: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
    optimizer: torch.optim.Optimizer
    split: StepSplit = field(default_factory=StepSplit)

    def step(self, batches: list, index: int, precision: str, record: bool = True) -> None:
        """One training step on ``batches[index]``: forward + loss, backward, AdamW, a loss read-back."""
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
        split = self.split if record else StepSplit()
        split.begin_step()
        with split.phase("data"):
            images, ids = batches[index % len(batches)]
        with split.phase("forward"), autocast:
            loss = self.loss(self.model, images, ids)
        with split.phase("backward"):
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        with split.phase("optimizer"):
            self.optimizer.step()
        with split.phase("sync"):
            loss.item()  # the trainer's one host sync of a logged step
        split.end_step()


def ours(config, vocab_size: int) -> Trainee:
    """Our DualEncoder, the trainer's AdamW (mie.training.optim) and the ``clip`` loss."""
    model = build_model(config, vocab_size=vocab_size, eos_id=EOS_ID, pad_id=PAD_ID)
    loss_fn = build_loss("clip")

    def loss(model, images, ids):
        out = model(images, ids)
        return loss_fn(out["image_embeds"], out["text_embeds"], logit_scale=out["logit_scale"])

    optimizer = create_optimizer(model, OptimizerConfig(lr=1e-4, weight_decay=0.1))
    return Trainee("ours", model, loss, optimizer)


def openclip(config, vocab_size: int) -> Trainee | None:
    """OpenCLIP's CLIP of the same architecture, its ClipLoss and its training script's AdamW groups; None
    when open_clip is not installed."""
    try:
        import open_clip
        from open_clip.loss import ClipLoss
    except ImportError:
        return None
    vision = open_clip.model.CLIPVisionCfg(
        layers=config.vision_layers, width=config.vision_width, head_width=config.vision_width // config.vision_heads,
        patch_size=config.patch_size, image_size=config.image_size, no_ln_pre=True)  # ours has no ln_pre
    text = open_clip.model.CLIPTextCfg(
        context_length=config.context_length, vocab_size=vocab_size, width=config.text_width,
        heads=config.text_heads, layers=config.text_layers, pool_type="eos", eos_id=EOS_ID, pad_id=PAD_ID)
    model = open_clip.CLIP(config.embed_dim, vision, text)
    loss_fn = ClipLoss()

    def loss(model, images, ids):
        return loss_fn(model.encode_image(images, normalize=True), model.encode_text(ids, normalize=True),
                       model.logit_scale.exp())

    # open_clip_train/main.py: no decay for gains, biases and the scale.
    exclude = [p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n
               for n, p in model.named_parameters()]
    params = [p for _, p in model.named_parameters()]
    optimizer = torch.optim.AdamW(
        [{"params": [p for p, ex in zip(params, exclude) if ex], "weight_decay": 0.0},
         {"params": [p for p, ex in zip(params, exclude) if not ex], "weight_decay": 0.1}],
        lr=1e-4, betas=(0.9, 0.98), eps=1e-6)
    return Trainee("OpenCLIP", model, loss, optimizer)


def torch_reference(config, vocab_size: int) -> Trainee:
    """The same architecture from torch.nn layers (``mie.models.torch_reference``), trained as ours."""
    trainee = ours(config, vocab_size)
    model = build_torch_reference_model(config, vocab_size=vocab_size, eos_id=EOS_ID, pad_id=PAD_ID)
    return Trainee("torch.nn", model, trainee.loss,
                   create_optimizer(model, OptimizerConfig(lr=1e-4, weight_decay=0.1)))


def step_flops(trainee: Trainee, batches: list, precision: str) -> int:
    """Floating-point operations of one training step (matmuls, convolutions and attention)."""
    return count_flops(lambda: trainee.step(batches, 0, precision, record=False))


def main(argv: list[str] | None = None) -> int:
    """Run the side-by-side benchmark and print pairs/s, ratios, GFLOP/s, fraction of peak and the split."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small", help="model preset (tiny | small | base)")
    parser.add_argument("--vocab-size", type=int, default=49408, help="CLIP's BPE vocabulary by default")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per model and precision")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per model before timing")
    parser.add_argument("--precisions", default="fp32,bf16", help="comma-separated: fp32, bf16 (autocast)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (set explicitly)")
    parser.add_argument("--compile", action="store_true", help="compile our blocks (the trainer's compile: true)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    config = get_model_config(args.preset, vocab_size=args.vocab_size)
    trainees = [ours(config, args.vocab_size)]
    peer = openclip(config, args.vocab_size)
    if peer is None:
        print("OpenCLIP is not installed (`make bench-peers` runs this script against it); the peer is the same "
              "architecture built from torch.nn layers")
        peer = torch_reference(config, args.vocab_size)
    trainees.append(peer)
    batches = random_batches(4, args.batch_size, config.image_size, config.context_length, args.vocab_size)
    print(f"preset={args.preset} vocab={args.vocab_size} batch={args.batch_size} threads={args.threads} "
          f"torch={torch.__version__} params: "
          + ", ".join(f"{t.name}={num_parameters(t.model):,} ({num_parameters(t.model) / 1e6:.2f}M)" for t in trainees))
    if args.compile:  # the trainer's compile: true (mie.training.compile), for ours only
        compile_blocks(trainees[0].model)
    for precision in args.precisions.split(","):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        peak = matmul_peak(2048, dtype=dtype)  # again after the steps: the higher one (the load varies)
        for trainee in trainees:
            trainee.split = StepSplit()
            trainee.model.train()
            for i in range(args.warmup):
                trainee.step(batches, i, precision, record=False)
        before = load()
        for i in range(args.steps):  # ours, peer, peer, ours, ...: neither always runs first
            for trainee in trainees if i % 2 == 0 else trainees[::-1]:
                trainee.step(batches, i, precision)
        peak = max(peak, matmul_peak(2048, dtype=dtype))
        print(f"{precision} matmul peak (2048^3 torch.mm, before and after the steps): {peak:.0f} GFLOP/s")
        for trainee in trainees:
            step = trainee.split.median()
            print(f"{trainee.name:>9} {precision}: {args.batch_size / step:6.1f} pairs/s (median of "
                  f"{len(trainee.split.steps)} steps: {step:.3f} s wall, {trainee.split.median('cpu'):.2f} s cpu), "
                  f"{gflops_line(step_flops(trainee, batches, precision), step, peak)}")
            print(f"{'':>9} {precision}: {trainee.split.split_line()}")
        ratio = trainees[1].split.median() / trainees[0].split.median()
        cpu_ratio = trainees[1].split.median("cpu") / trainees[0].split.median("cpu")
        print(f"{'ratio':>9} {precision}: ours / {trainees[1].name} = {ratio:.3f} in pairs/s "
              f"(CPU time per step: {cpu_ratio:.3f}); {before} before, {load()} after")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
