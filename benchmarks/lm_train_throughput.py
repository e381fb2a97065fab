"""Training tokens/s of our CausalLM vs the same architecture built from ``torch.nn`` layers.

The peer is ``nn.TransformerEncoderLayer`` (pre-norm, GELU, no biases, causal mask, fused SDPA inside)
with learned positions and a tied output head; ours is ``CausalLM`` configured identically
(``positions=learned, norm=layernorm, mlp=gelu``). Both run forward + backward + AdamW on the same
random token batches, fp32 and bf16 autocast. Usage:
``.venv/bin/python benchmarks/lm_train_throughput.py [--steps 20] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from mie.models.causal_lm import CausalLM, CausalLMConfig

VOCAB, DIM, LAYERS, HEADS, SEQ, BATCH = 4096, 256, 4, 8, 128, 16


class TorchNNLM(nn.Module):
    """The peer: embeddings + learned positions + nn.TransformerEncoder (causal) + tied head."""

    def __init__(self) -> None:
        super().__init__()
        self.tok = nn.Embedding(VOCAB, DIM)
        self.pos = nn.Embedding(SEQ, DIM)
        layer = nn.TransformerEncoderLayer(DIM, HEADS, 4 * DIM, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True, bias=False)
        self.blocks = nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(DIM, bias=False)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(SEQ), persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.tok(ids) + self.pos(torch.arange(ids.shape[1], device=ids.device))
        x = self.blocks(x, mask=self.mask, is_causal=True)
        return self.norm(x) @ self.tok.weight.T


def _rate(model: nn.Module, steps: int, dtype: torch.dtype) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, VOCAB, (BATCH, SEQ + 1), generator=gen) for _ in range(steps + 2)]
    model.train()

    def step(batch: torch.Tensor) -> None:
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            logits = model(batch[:, :-1])
        loss = nn.functional.cross_entropy(logits.float().reshape(-1, VOCAB), batch[:, 1:].reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for batch in batches[:2]:  # warm-up
        step(batch)
    start = time.perf_counter()
    for batch in batches[2:]:
        step(batch)
    return steps * BATCH * SEQ / (time.perf_counter() - start)


def main() -> int:
    """Print tokens/s for both models and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = CausalLMConfig(vocab_size=VOCAB, dim=DIM, n_layers=LAYERS, n_heads=HEADS, mlp="gelu",
                            mlp_hidden=4 * DIM, norm="layernorm", positions="learned", max_seq_len=SEQ,
                            tie_embeddings=True)
    torch.manual_seed(0)
    ours, peer = CausalLM(config), TorchNNLM()
    print(f"causal LM, {sum(p.numel() for p in ours.parameters()) / 1e6:.2f} M parameters (ours) vs "
          f"{sum(p.numel() for p in peer.parameters()) / 1e6:.2f} M (torch.nn); batch {BATCH} x {SEQ} tokens")
    print(f"{'dtype':>9} {'ours tok/s':>11} {'torch.nn tok/s':>15} {'ratio':>6}")
    for dtype in (torch.float32, torch.bfloat16):
        a, b = _rate(ours, args.steps, dtype), _rate(peer, args.steps, dtype)
        print(f"{str(dtype)[6:]:>9} {a:>11.0f} {b:>15.0f} {a / b:>5.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
