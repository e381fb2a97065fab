"""LM training tokens/s of our CausalLM against a nanoGPT-architecture model, steps interleaved in one process.

The peer (:class:`NanoGPT`, written here from nanoGPT's description, not copied): pre-LN blocks, LayerNorm
with bias, a fused ``c_attn`` QKV linear, ``F.scaled_dot_product_attention(is_causal=True)``, GELU 4x MLP,
learned positions, tied embeddings, AdamW configured as nanoGPT does (decay on >= 2-D weights only,
``fused=True`` when this torch offers it on the device). Ours: ``CausalLM`` with the same architecture
(``positions: learned, norm: layernorm, mlp: gelu, bias: true, tie_embeddings: true``), its loss from
``LanguageModelTask``, its batches from ``lm_train_loader``, its optimizer from ``mie.training.optim`` and
its compiled blocks from ``mie.training.compile`` — the trainer's own code paths, so the figure is what a
run gets. Both clip gradients at 1.0 and read the loss on the host every 10th step only (as the trainer).
Size: nanoGPT's baby GPT (6 layers, 6 heads, width 384, block 256), vocabulary 2,048, batch 8.

    .venv/bin/python benchmarks/lm_train_throughput.py                    # fp32, 2 threads, trainer defaults
    .venv/bin/python benchmarks/lm_train_throughput.py --compile on --qkv fused --adamw foreach  # other levers

Prints tokens/s (wall medians) and CPU-time ratio, achieved GFLOP/s and the fraction of an fp32 matmul peak
measured in the same run, the step split (forward, backward, optimizer, data wait, host syncs) and the load.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from perf import StepSplit, count_flops, gflops_line, load, matmul_peak
from torch import nn

from mie.data.lm_text import lm_train_loader
from mie.data.text import LMBlockDataset
from mie.models.causal_lm import CausalLM, CausalLMConfig
from mie.training.compile import compile_blocks
from mie.training.config import OptimizerConfig
from mie.training.optim import create_optimizer
from mie.training.tasks.language_model import LanguageModelTask

VOCAB, LAYERS, HEADS, DIM, BLOCK, BATCH = 2048, 6, 6, 384, 256, 8
LR, BETAS, WEIGHT_DECAY, LOG_EVERY = 1e-3, (0.9, 0.99), 0.1, 10  # nanoGPT's shakespeare_char settings


class PeerBlock(nn.Module):
    """nanoGPT's block: ``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))``."""

    def __init__(self) -> None:
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(DIM), nn.LayerNorm(DIM)
        self.c_attn, self.attn_proj = nn.Linear(DIM, 3 * DIM), nn.Linear(DIM, DIM)
        self.c_fc, self.mlp_proj = nn.Linear(DIM, 4 * DIM), nn.Linear(4 * DIM, DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = (t.view(B, T, HEADS, C // HEADS).transpose(1, 2) for t in self.c_attn(self.ln_1(x)).split(C, 2))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).contiguous().view(B, T, C)
        x = x + self.attn_proj(y)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))


class NanoGPT(nn.Module):
    """The peer: token + learned position embeddings, pre-LN blocks, final LayerNorm, tied LM head."""

    def __init__(self) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(VOCAB, DIM), nn.Embedding(BLOCK, DIM)
        self.h = nn.ModuleList(PeerBlock() for _ in range(LAYERS))
        self.ln_f = nn.LayerNorm(DIM)
        self.lm_head = nn.Linear(DIM, VOCAB, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying
        for name, p in self.named_parameters():
            if p.ndim == 2:  # residual projections get the 1/sqrt(2 L) init
                std = 0.02 / math.sqrt(2 * LAYERS) if name.endswith("_proj.weight") else 0.02
                nn.init.normal_(p, mean=0.0, std=std)
            elif not name.startswith("ln") and ".ln_" not in name:
                nn.init.zeros_(p)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy of ``idx`` against ``targets``."""
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)

    def configure_optimizers(self) -> torch.optim.AdamW:
        """AdamW, weight decay on the >= 2-D parameters only; the fused kernel where available."""
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": WEIGHT_DECAY},
                  {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
        try:
            return torch.optim.AdamW(groups, lr=LR, betas=BETAS, fused=True)
        except RuntimeError:  # no fused kernel for this device
            return torch.optim.AdamW(groups, lr=LR, betas=BETAS)


class Runner:
    """One model's training step, timed phase by phase."""

    def __init__(self, name: str, loss_fn, model: nn.Module, optimizer: torch.optim.Optimizer, loader) -> None:
        self.name, self.loss_fn, self.model, self.optimizer = name, loss_fn, model, optimizer
        self.loader, self.batches, self.split, self.step_index = loader, iter(loader), StepSplit(), 0
        self.params = [p for group in optimizer.param_groups for p in group["params"]]

    def _next(self):
        try:
            return next(self.batches)
        except StopIteration:
            self.batches = iter(self.loader)
            return next(self.batches)

    def step(self, dtype: torch.dtype, record: bool = True) -> float:
        """One step (data, forward, backward, clip + AdamW, a host read every LOG_EVERY); returns its seconds."""
        split = self.split
        split.begin_step()
        start = time.perf_counter()
        with split.phase("data"):
            batch = self._next()
        with split.phase("forward"), torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            loss = self.loss_fn(batch)
        with split.phase("backward"):
            loss.backward()
        with split.phase("optimizer"):
            torch.nn.utils.clip_grad_norm_(self.params, 1.0)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        self.step_index += 1
        if self.step_index % LOG_EVERY == 0:
            with split.phase("sync"):
                if not math.isfinite(loss.item()):
                    raise RuntimeError(f"{self.name}: the loss is not finite")
        seconds = time.perf_counter() - start
        if record:
            split.end_step()
        return seconds


def build(args: argparse.Namespace) -> tuple[Runner, Runner, float, dict[str, int]]:
    """Both runners on the same token stream, the compile time of ours and each model's flops per step."""
    stream = np.random.default_rng(0).integers(0, VOCAB, 2_000_000, dtype=np.int64)
    data = LMBlockDataset([stream], BLOCK)
    torch.manual_seed(0)
    config = CausalLMConfig(vocab_size=VOCAB, dim=DIM, n_layers=LAYERS, n_heads=HEADS, mlp="gelu", norm="layernorm",
                            positions="learned", max_seq_len=BLOCK, bias=True, tie_embeddings=True,
                            fused_qkv=args.qkv == "fused")
    model, peer = CausalLM(config), NanoGPT()
    task = LanguageModelTask(model)
    task.train(), peer.train()
    opt_cfg = OptimizerConfig(lr=LR, betas=list(BETAS), weight_decay=WEIGHT_DECAY, implementation=args.adamw)
    ours = Runner("ours", lambda b: task.training_forward(b)["loss"], model, create_optimizer(model, opt_cfg),
                  lm_train_loader(data, BATCH, seed=0))
    theirs = Runner("nanoGPT", lambda b: peer(*b), peer, peer.configure_optimizers(),
                    lm_train_loader(data, BATCH, seed=1))
    x, y = next(iter(ours.loader))
    flops = {"ours": count_flops(lambda: task.training_forward((x, y))["loss"].backward()),
             "peer": count_flops(lambda: peer(x, y).backward())}
    model.zero_grad(set_to_none=True), peer.zero_grad(set_to_none=True)
    compile_s = 0.0
    if args.compile == "on":
        compile_blocks(model)
        compile_s = ours.step(torch.float32, record=False)  # the first call compiles
    return ours, theirs, compile_s, flops


def main() -> int:
    """Print tokens/s of both models, the ratio, GFLOP/s, fraction of peak and the step split."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per model and precision")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", default="fp32", help="comma-separated: fp32,bf16")
    parser.add_argument("--compile", choices=("on", "off"), default="off", help="compile: of our trainer")
    parser.add_argument("--qkv", choices=("fused", "separate"), default="separate", help="our fused_qkv")
    parser.add_argument("--adamw", choices=("auto", "fused", "foreach"), default="auto",
                        help="our optimizer.implementation")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ours, peer, compile_s, flops = build(args)
    print(f"LM training, baby GPT ({LAYERS} layers, {HEADS} heads, width {DIM}, block {BLOCK}), vocab {VOCAB}, "
          f"batch {BATCH}, {args.threads} threads; ours: compile {args.compile}, qkv {args.qkv}, adamw {args.adamw}"
          + (f" (compiled in {compile_s:.1f} s)" if compile_s else ""))
    for precision in args.precision.split(","):
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
        for runner in (ours, peer):
            runner.split = StepSplit()
            for _ in range(args.warmup):
                runner.step(dtype, record=False)
        peak = matmul_peak()
        for step in range(args.steps):  # interleaved: ours, peer, ours, peer ...
            ours.step(dtype)
            peer.step(dtype)
            if step % 5 == 4:  # the best of samples spread over the run: a shared machine's load varies
                peak = max(peak, matmul_peak(repeats=3))
        tokens = BATCH * BLOCK
        rate = {r.name: tokens / r.split.median() for r in (ours, peer)}
        cpu = {r.name: tokens / r.split.median("cpu") for r in (ours, peer)}
        print(f"{precision}: ours {rate['ours']:,.0f} tok/s, nanoGPT {rate['nanoGPT']:,.0f} tok/s -> "
              f"{rate['ours'] / rate['nanoGPT']:.3f}x (CPU time {cpu['ours'] / cpu['nanoGPT']:.3f}x); "
              f"matmul peak {peak:.0f} GFLOP/s; {load()}")
        for runner, key in ((ours, "ours"), (peer, "peer")):
            line = gflops_line(flops[key], runner.split.median(), peak)
            print(f"  {runner.name:>8}: {1000 * runner.split.median():.0f} ms/step, {line}; {runner.split.split_line()}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
