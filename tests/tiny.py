"""The smallest clip model and lm run the recipe tests train (seconds on 2 cores), shared by their configs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml

TINY_CLIP_MODEL = {"embed_dim": 16, "image_size": 16, "patch_size": 8, "vision_width": 16, "vision_layers": 1,
                   "vision_heads": 2, "text_width": 16, "text_layers": 1, "text_heads": 2, "context_length": 24}

# The smallest lm run the recipe tests train (a few seconds): override epochs, vocab or data per test.
TINY_LM = {
    "recipe": "lm", "project_name": "lm", "epochs": 3, "log_every": 1, "device": "cpu",
    "checkpoint_every_steps": 2, "schedule": {"warmup_steps": 1},
    "model": {"dim": 16, "n_layers": 1, "n_heads": 2, "max_seq_len": 16},
    "tokenizer": {"vocab_size": 280},
    "data": {"block_size": 16, "batch_size": 4, "blocks_per_epoch": 12, "max_val_blocks": 4, "workers": 1},
    "sample": {"max_new_tokens": 4, "num_samples": 1},
}

# Wall-clock figures, which differ between any two runs of the same config.
VOLATILE = {"time", "wall_time_s", "samples_per_s", "tokens_per_s", "train/samples_per_sec", "created"}


def strip_wall_clock(value):
    """``value`` (nested dicts and lists) without the :data:`VOLATILE` keys, for comparing two runs."""
    if isinstance(value, dict):
        return {k: strip_wall_clock(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [strip_wall_clock(v) for v in value]
    return value


# One tiny finished clip run, trained through `mie train`, for every test that needs a finished run
# (tests/api, tests/cli, tests/serve, tests/explain, tests/optimization, the README test).
TINY = {
    "recipe": "clip", "project_name": "tiny", "epochs": 2, "log_every": 1, "best_metric": "val/mean_R@1",
    "device": "cpu",
    "model": TINY_CLIP_MODEL,
    "data": {"format": "synthetic", "batch_size": 8, "test_splits": ["test"],
             "synthetic": {"num_train": 24, "num_val": 8, "num_test": 8, "num_heldout": 4, "image_size": 24}},
    "tokenizer": {"name": "simple"},
    "schedule": {"warmup_steps": 1},
}


def train_tiny_run(root: Path, run: str = "runs/demo", data: str = "data/shapes") -> Path:
    """Train the tiny config into ``root/run`` on shapes generated into ``root/data``; return the run."""
    from mie.cli import main

    raw = json.loads(json.dumps(TINY))
    raw["output_dir"], raw["data"]["path"] = str(root / run), str(root / data)
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert main(["train", str(config), "-q"]) == 0
    return root / run


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``folder``: equal snapshots, untouched folder."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}
