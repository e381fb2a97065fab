"""Quality of the demo's CLIP for a fixed training budget, and per CPU-minute: does it see shape?

Trains ``configs/demo.yaml`` (or ``--config``) once per variant, each on its own schedule (``--max-steps``
caps every variant's optimizer steps, stages included), in this process, one after the other, then scores
each on the ``val`` split (``test`` stays untouched by tuning):
mean R@1, zero-shot shape and colour accuracy, and the shapes probe (precision@8 of the 63 colour-shape
queries, of shape-only and colour-only queries, each with its chance level; "a red circle" in the top 8).
CPU time is the process's (all threads), so quality per CPU-minute compares variants fairly on a shared
machine; wall time is shown beside it. Zero-shot accuracy is over every image (top-1 right when any
object has the class), beside its chance level. Each variant is a list of ``--set`` overrides::

    .venv/bin/python benchmarks/clip_quality.py --threads 2    # the demo against CLIP alone, ~8 min each
    .venv/bin/python benchmarks/clip_quality.py --variant "patch6=model.patch_size=6"
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts: idle OpenMP threads must not spin

import torch  # noqa: E402

from mie.data.synthetic import ensure_shapes_dataset  # noqa: E402
from mie.recipes import load_recipe_config  # noqa: E402
from mie.recipes.clip.run import evaluate  # noqa: E402
from mie.recipes.clip.train import train  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BASE = "the demo (see stage, then CLIP)"
VARIANTS = {
    BASE: [],
    # The demo before issue 28: no stage that learns what the captions name, the patchify stem, 22 epochs.
    "CLIP alone (patchify stem)": ["stages=[]", "data.caption_tags=[]", "model.vision_stem=patch", "epochs=22"],
}


def run_variant(config_path: Path, overrides: list[str], max_steps: int, out: Path) -> dict[str, Any]:
    """Train one variant into ``out`` and score it on val; figures plus CPU and wall seconds."""
    cap = [f"max_steps={max_steps}"] if max_steps else []
    _, config = load_recipe_config(config_path, ["max_minutes=0", "rerank.enabled=false", f"output_dir={out}",
                                                 *cap, *overrides])
    if config.data.format == "synthetic":  # generated before the clock starts, once for all variants
        ensure_shapes_dataset(config.data.synthetic, config.data.path)
    cpu, wall = time.process_time(), time.perf_counter()
    train(config, quiet=True, overwrite=True)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    result, _ = evaluate(out, splits=["val"])
    probe = (result.probe or {}).get("val", {})
    zero = result.zero_shot
    return {
        "cpu_min": cpu / 60, "wall_min": wall / 60, "mean_R@1": result.results["val"]["mean_R@1"],
        # over every image (top-1 right if any object has it): val has too few single-object images
        "shape_zs": zero.get("val/shape (any object)", {}).get("accuracy"),
        "shape_zs_chance": zero.get("val/shape (any object)", {}).get("chance"),
        "color_zs": zero.get("val/color (any object)", {}).get("accuracy"),
        "cs_p8": probe.get("color_shape", {}).get("precision"), "cs_chance": probe.get("color_shape", {}).get("chance"),
        "shape_p8": probe.get("shape", {}).get("precision"), "color_p8": probe.get("color", {}).get("precision"),
        "red_circle": (probe.get("example") or {}).get("hits"),
    }


def main(argv: list[str] | None = None) -> int:
    """Run every variant, print one row each and the ratios against the first."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "demo.yaml")
    parser.add_argument("--max-steps", type=int, default=0,
                        help="cap on every variant's optimizer steps, stages included (default 0: their own schedules)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: a shared machine)")
    parser.add_argument("--variant", action="append", default=[],
                        help="NAME=KEY=VALUE[,KEY=VALUE...]; replaces the default pair of variants")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    variants = dict(VARIANTS)
    if args.variant:
        variants = {BASE: []}
        for text in args.variant:
            name, _, sets = text.partition("=")
            variants[name] = [s for s in sets.split(",") if s]
    steps = f"at most {args.max_steps} steps" if args.max_steps else "its own schedule"
    print(f"{args.config.name}: {steps} per variant, {args.threads} thread(s), scored on val; "
          f"load average {os.getloadavg()[0]:.1f} at the start")
    rows = {}
    with tempfile.TemporaryDirectory(prefix="mie-clip-quality-") as tmp:
        for index, (name, overrides) in enumerate(variants.items()):
            rows[name] = run_variant(args.config, overrides, args.max_steps, Path(tmp) / f"run{index}")
    header = ("variant", "CPU min", "wall min", "mean R@1", "R@1 / CPU min", "zs shape (chance)", "zs colour",
              "col-shape P@8 (chance)", "shape P@8", "colour P@8", "red circles / 8")
    print(" | ".join(header))

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}"

    for name, r in rows.items():
        print(" | ".join([name, f"{r['cpu_min']:.2f}", f"{r['wall_min']:.2f}", pct(r["mean_R@1"]),
                          f"{r['mean_R@1'] / max(r['cpu_min'], 1e-9):.3f}",
                          f"{pct(r['shape_zs'])} ({pct(r['shape_zs_chance'])})", pct(r["color_zs"]),
                          f"{pct(r['cs_p8'])} ({pct(r['cs_chance'])})", pct(r["shape_p8"]), pct(r["color_p8"]),
                          str(r["red_circle"])]))
    first = next(iter(rows.values()))
    for name, r in list(rows.items())[1:]:
        print(f"{name} / {next(iter(rows))}: colour-shape P@8 {r['cs_p8'] / max(first['cs_p8'], 1e-9):.2f}x, "
              f"mean R@1 {r['mean_R@1'] / max(first['mean_R@1'], 1e-9):.2f}x, CPU time "
              f"{r['cpu_min'] / max(first['cpu_min'], 1e-9):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
