"""Time and peak memory of the ``clip`` loss, dense vs chunked, forward + backward.

Each configuration runs in a fresh child process (``--one``) so peak memory is not polluted by earlier
runs. On CPU the peak is ``ru_maxrss`` minus the RSS measured after set-up (inputs allocated, warm-up
done on a tiny batch); on CUDA it is ``torch.cuda.max_memory_allocated`` minus the memory in use after
set-up.

    python benchmarks/loss_memory.py                       # B = 1k, 4k, 16k; D = 256; chunk 1024
    python benchmarks/loss_memory.py --sizes 1024 4096 --chunk-size 512 --device cuda

Acceptance: at B = 16k the chunked peak is below a quarter of the dense peak.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _rss_mib() -> float:
    """Current resident set size in MiB (Linux /proc; falls back to the peak)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * resource.getpagesize() / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(batch: int, dim: int, chunk_size: int | None, device: str, threads: int) -> dict:
    """Measure one configuration in this process and return its figures."""
    import torch

    from mie.losses import CLIPStyleLoss

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    loss_fn = CLIPStyleLoss(temperature=0.07, chunk_size=chunk_size).to(device)
    # Warm-up on a tiny batch so kernels / allocator pools exist before the baseline is taken.
    warm = torch.randn(8, dim, device=device, requires_grad=True)
    loss_fn(warm, warm.detach().clone()).backward()
    img = torch.randn(batch, dim, device=device, requires_grad=True)
    txt = torch.randn(batch, dim, device=device, requires_grad=True)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss_mib()
    start = time.perf_counter()
    loss = loss_fn(img, txt)
    loss.backward()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
    seconds = time.perf_counter() - start
    return {
        "batch": batch,
        "chunk": chunk_size,
        "seconds": seconds,
        "peak_mib": max(peak, 0.0),
        "loss": float(loss),
    }


def main(argv: list[str] | None = None) -> int:
    """Run every configuration in a child process and print a table of time, peak memory and ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--one", nargs=2, metavar=("BATCH", "CHUNK"), help="internal: measure one config, print JSON"
    )
    args = parser.parse_args(argv)
    if args.one:
        chunk = int(args.one[1]) or None
        print(json.dumps(run_one(int(args.one[0]), args.dim, chunk, args.device, args.threads)))
        return 0
    print(f"clip loss forward+backward, D={args.dim}, device={args.device}, chunk={args.chunk_size}")
    print(
        f"{'B':>7} {'dense s':>9} {'dense MiB':>10} {'chunk s':>9} {'chunk MiB':>10} {'mem ratio':>10} {'|dloss|':>9}"
    )
    ok = True
    for batch in args.sizes:
        rows = {}
        for chunk in (0, args.chunk_size):
            cmd = [
                sys.executable,
                __file__,
                "--one",
                str(batch),
                str(chunk),
                "--dim",
                str(args.dim),
                "--device",
                args.device,
                "--threads",
                str(args.threads),
            ]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            rows[chunk] = json.loads(done.stdout.strip().splitlines()[-1])
        dense, chunked = rows[0], rows[args.chunk_size]
        ratio = chunked["peak_mib"] / max(dense["peak_mib"], 1e-9)
        print(
            f"{batch:>7} {dense['seconds']:>9.2f} {dense['peak_mib']:>10.1f} {chunked['seconds']:>9.2f} "
            f"{chunked['peak_mib']:>10.1f} {ratio:>10.3f} {abs(dense['loss'] - chunked['loss']):>9.2e}"
        )
        if batch == max(args.sizes):
            ok = ratio < 0.25
    print(f"acceptance (chunked peak < 1/4 of dense at B={max(args.sizes)}): {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
