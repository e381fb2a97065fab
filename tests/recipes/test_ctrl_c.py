"""A real SIGINT to `mie train` (as `kill -INT` or Ctrl-C sends it): a resumable checkpoint, exit 130,
then `--resume` says where it resumed and ends like an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import yaml
from tests.tiny import TINY_CLIP_MODEL

from mie.cli import main
from mie.io import load_weights

TINY = {
    "recipe": "clip", "project_name": "ctrlc", "epochs": 40, "log_every": 1, "device": "cpu",
    "model": TINY_CLIP_MODEL,
    "data": {"format": "synthetic", "batch_size": 8, "test_splits": ["test"],
             "synthetic": {"num_train": 24, "num_val": 8, "num_test": 8, "num_heldout": 4, "image_size": 24}},
    "tokenizer": {"name": "simple"},
}


def _last_step(run) -> int:
    try:
        lines = (run / "metrics.jsonl").read_text().splitlines()
        return json.loads(lines[-1])["step"] if lines else 0
    except (OSError, ValueError, KeyError):
        return 0


def test_sigint_saves_then_resume_continues_from_that_step(tmp_path):
    raw = json.loads(json.dumps(TINY))
    raw["data"]["path"] = str(tmp_path / "data")
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(raw))
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "mie", "train", str(config), "--output-dir", str(run)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while _last_step(run) < 5 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("mie train: interrupted at step ") and last.endswith(" — continue with --resume")
    step = int(last.split("interrupted at step ")[1].split(";")[0])
    assert step >= 5 and json.loads((run / "checkpoints" / "manifest.json").read_text())["step"] == step
    assert not (run / "results.json").exists()  # no evaluation of a half-trained model

    proc = subprocess.run([sys.executable, "-m", "mie", "train", str(config), "--output-dir", str(run), "--resume",
                           "--set", "epochs=1"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"resumed from step {step} (stage 0, epoch " in proc.stderr
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["event"] == "step"]
    assert steps == sorted(set(steps)) and steps[0] == 1  # continued, no step logged twice
    assert main(["eval", str(run), "-q"]) == 0
    assert load_weights(run / "checkpoints" / "last.safetensors")[1]["step"] >= step
