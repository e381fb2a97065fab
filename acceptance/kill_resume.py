"""Acceptance: SIGKILL a tiny `mie train` at random moments (start-up, any of its 36 steps, the
final checkpoint, evaluation and report), then `mie train --resume`; every resumed
run must end with the results.json (wall-clock figures aside), metrics.jsonl and final weights of an
uninterrupted run. Run with `make kill-test` (about 10 minutes on 2 cores); not part of `make test`.

    python acceptance/kill_resume.py --kills 50 --seed 0
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

CONFIG = {
    "recipe": "clip", "project_name": "kill", "epochs": 6, "log_every": 1, "checkpoint_every_steps": 2,
    "best_metric": "val/mean_R@1", "device": "cpu",
    "model": {"embed_dim": 16, "image_size": 16, "patch_size": 8, "vision_width": 16, "vision_layers": 1,
              "vision_heads": 2, "text_width": 16, "text_layers": 1, "text_heads": 2, "context_length": 24},
    "data": {"format": "synthetic", "batch_size": 8, "test_splits": ["test"],
             "synthetic": {"num_train": 48, "num_val": 8, "num_test": 8, "num_heldout": 4, "image_size": 24}},
    "tokenizer": {"name": "simple"},
    "schedule": {"warmup_steps": 1},
}
FINAL_STEP = 36  # 6 epochs of 48 images at batch 8
VOLATILE = {"time", "wall_time_s", "samples_per_s", "train/samples_per_sec", "created"}


def strip(value):
    """Drop wall-clock figures, which differ between any two runs."""
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [strip(v) for v in value]
    return value


def mie(*args: str) -> subprocess.Popen:
    """Start ``mie ARGS`` as its own process (so a SIGKILL hits only it)."""
    return subprocess.Popen([sys.executable, "-m", "mie", *args, "-q"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def outcome(run: Path) -> dict:
    """What must match: results, metrics lines, the final and the best weights."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {"results": strip(json.loads((run / "results.json").read_text())), "rows": strip(rows),
            "last": load_file(run / "checkpoints" / "last.safetensors"),
            "best": load_file(run / "checkpoints" / "best.safetensors")}


def wait_for(run: Path, step: int, proc: subprocess.Popen) -> None:
    """Until ``metrics.jsonl`` shows optimizer step ``step`` (or the process ends)."""
    metrics = run / "metrics.jsonl"
    while proc.poll() is None:
        try:
            lines = metrics.read_text().splitlines()
            last = json.loads(lines[-1]).get("step", 0) if lines else 0
        except (OSError, ValueError):
            last = 0
        if last >= step:
            return
        time.sleep(0.005)


def where_killed(run: Path) -> str:
    """What the killed run had reached: start-up, training (last published step) or evaluation."""
    manifest = run / "checkpoints" / "manifest.json"
    if not manifest.is_file():
        return "before the first checkpoint"
    step = json.loads(manifest.read_text())["step"]
    if (run / "plots").is_dir() or step == FINAL_STEP:
        return f"after the final checkpoint at step {step}"
    return f"while training at step {step}"


def differences(a: dict, b: dict) -> list[str]:
    """What differs between two outcomes (empty when identical)."""
    found = [key for key in ("results", "rows") if a[key] != b[key]]
    for key in ("last", "best"):
        if a[key].keys() != b[key].keys() or not all(torch.equal(a[key][k], b[key][k]) for k in a[key]):
            found.append(f"{key} weights")
    return found


def main() -> int:
    """Run the kills; print one line per kill and a summary; exit 1 if any resumed run differs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the run folders")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="mie-kill-"))
    config = dict(CONFIG, data={**CONFIG["data"], "path": str(root / "data")})
    config_path = root / "cfg.yaml"
    config_path.write_text(yaml.safe_dump(config))

    start = time.monotonic()
    ref = mie("train", str(config_path), "--output-dir", str(root / "ref"))
    if ref.wait() != 0:
        print(ref.stderr.read(), file=sys.stderr)
        return 1
    duration = time.monotonic() - start
    # The data is generated now; later runs start at once, so time the uninterrupted run again.
    start = time.monotonic()
    again = mie("train", str(config_path), "--output-dir", str(root / "ref2"))
    assert again.wait() == 0
    duration = time.monotonic() - start
    reference = outcome(root / "ref")
    assert not differences(outcome(root / "ref2"), reference), "two uninterrupted runs differ"
    print(f"uninterrupted run: {duration:.1f} s; killing {args.kills} runs at random moments in it "
          "(start-up, after a random step 1..36, or in the final checkpoint/evaluation phase)")

    same = landed = 0
    moments: dict[str, int] = {}
    for i in range(args.kills):
        run = root / f"run{i}"
        # A random moment: during start-up, just after a random training step, or in the final
        # checkpoint / evaluation / report phase; waiting on the run's own files, not on the clock,
        # spreads the kills evenly whatever the machine's load.
        target = rng.randint(0, FINAL_STEP + 6)
        proc = mie("train", str(config_path), "--output-dir", str(run))
        start = time.monotonic()
        if target == 0:
            time.sleep(rng.uniform(0.0, 2.0))
        else:
            wait_for(run, min(target, FINAL_STEP), proc)
            time.sleep(rng.uniform(0.0, 0.05) if target <= FINAL_STEP else rng.uniform(0.0, 1.5))
        delay = time.monotonic() - start
        killed = proc.poll() is None
        if killed:
            proc.send_signal(signal.SIGKILL)
            landed += 1
        proc.wait()
        moment = where_killed(run) if killed else "had finished"
        moments[moment.split(" at step")[0]] = moments.get(moment.split(" at step")[0], 0) + 1
        resumed = mie("train", str(config_path), "--output-dir", str(run), "--resume")
        status = resumed.wait()
        err = resumed.stderr.read().strip().splitlines()
        diff = differences(outcome(run), reference) if status == 0 else [f"exit {status}: {err[-1:]}"]
        same += not diff
        print(f"kill {i + 1:2d} at {delay:5.2f} s ({moment}): "
              f"{'same results and weights' if not diff else 'DIFFERS: ' + ', '.join(diff)}", flush=True)
        if not args.keep:
            shutil.rmtree(run, ignore_errors=True)
    print(f"{same} of {args.kills} resumed runs match the uninterrupted run ({landed} kills landed mid-run: "
          + ", ".join(f"{n} {name}" for name, n in sorted(moments.items())) + ")")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if same == args.kills else 1


if __name__ == "__main__":
    raise SystemExit(main())
