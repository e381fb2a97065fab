"""One tiny finished clip run, trained once per test module through `mie train`, for the tests of
everything that uses a finished run (``mie.load_run``, ``mie eval``, ``mie embed``, ``mie search``).

``tests/cli`` loads this file by path (tests are collected with ``--import-mode=importlib``, so there
is no ``tests`` package to import from).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml
from tests.tiny import TINY_CLIP_MODEL

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


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A finished tiny run at ``<tmp>/runs/demo`` with its data at ``<tmp>/data/shapes``."""
    return train_tiny_run(tmp_path_factory.mktemp("finished"))


@pytest.fixture
def snapshot_of():
    """:func:`snapshot`, as a fixture for the test modules."""
    return snapshot
