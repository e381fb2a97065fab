"""Are the explanations right? The pointing game on the shapes test images, and integrated gradients'
completeness error (``mie.explain``).

For each test image and each of its objects, the query "a <colour> <shape>" gets a heat map (Grad-CAM,
attention rollout and integrated gradients); a hit is a peak on that object (``mie.explain.pointing``). Objects
whose colour another object of the image shares are counted apart: there only shape can point right, so a
colour-only model scores clearly lower there. Completeness: ``|sum(attributions) - (f(x) - f(baseline))|`` as a
share of ``|f(x) - f(baseline)|``, for the image at the library's step count and for the query's tokens::

    .venv/bin/python benchmarks/explain.py runs/demo --images 100
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts: idle OpenMP threads must not spin

import torch  # noqa: E402

from mie.api import load_run  # noqa: E402
from mie.explain import IMAGE_METHODS, clip_text_attributions, image_ig  # noqa: E402
from mie.explain.pointing import pointing_game  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Print the pointing-game table and the completeness errors for one clip run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", nargs="?", default="runs/demo")
    parser.add_argument("--split", default="test")
    parser.add_argument("--images", type=int, default=100, help="test images to play on (default 100)")
    parser.add_argument("--methods", default=",".join(IMAGE_METHODS))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not (Path(args.run_dir) / "config.yaml").is_file():  # as the other benchmarks: say what is missing, exit 0
        print(f"{args.run_dir}: no finished clip run there; `make run` writes runs/demo (or pass a run folder)")
        return 0
    run = load_run(args.run_dir)
    root = Path(run.config.data.path)
    rows = [json.loads(line) for line in (root / "captions.jsonl").read_text(encoding="utf-8").splitlines()]
    rows = [r for r in rows if r.get("split") == args.split][: args.images]
    if not rows or "objects" not in rows[0].get("attributes", {}):
        print(f"{args.run_dir}: its data ({root}) has no shapes manifest with object positions", file=sys.stderr)
        return 1
    load = lambda path: run._load(root / path)  # noqa: E731 - the run's own image loader
    print(f"{args.run_dir} ({run.checkpoint.name}), {len(rows)} {args.split} images, threads {args.threads}")
    print(f"{'method':<9} {'all':>7} {'unique colour':>14} {'shared colour':>14} {'trials':>7} {'seconds':>8}")
    for method in args.methods.split(","):
        start = time.perf_counter()
        score = pointing_game(run.model, rows, load, run.transform, run.tokenize, method)
        rates = [score.rate(), score.rate("unique"), score.rate("shared colour")]
        shown = ["-" if r is None else f"{100 * r:.1f}%" for r in rates]
        print(f"{method:<9} {shown[0]:>7} {shown[1]:>14} {shown[2]:>14} {sum(score.trials.values()):>7} "
              f"{time.perf_counter() - start:>8.1f}")
    image_gaps, text_gaps, image_steps, text_steps = [], [], [], []
    for row in rows[:20]:
        obj = row["attributes"]["objects"][0]
        x, ids = run.transform(load(row["image"])), run.tokenize(f"a {obj['color']} {obj['shape']}")
        result = image_ig(run.model, x, ids)[1]  # steps doubled from 64 until within 1% (or 1,024)
        image_gaps.append(result.relative_gap)
        image_steps.append(result.steps)
        attribution = clip_text_attributions(run.model, ids, x, "ig")  # 32 points, doubled until within 1%
        text_gaps.append(attribution.relative_gap)
        text_steps.append(attribution.steps)
    def used(steps: list[int]) -> str:
        return f"{min(steps)}-{max(steps)} steps, median {statistics.median(steps):.0f}"

    for name, gaps, steps in (("image", image_gaps, used(image_steps)), ("tokens", text_gaps, used(text_steps))):
        print(f"IG completeness error ({name}, {steps}, {len(gaps)} queries): median "
              f"{100 * statistics.median(gaps):.3f}%, max {100 * max(gaps):.3f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
