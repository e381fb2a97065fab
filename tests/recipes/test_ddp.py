"""`mie train` under torchrun-style environments: two gloo processes on CPU."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from mie.training.tasks import contrastive

REPO = Path(__file__).resolve().parents[2]
TINY = [
    "data.synthetic.num_train=64", "data.synthetic.num_val=16", "data.synthetic.num_test=16",
    "data.synthetic.num_heldout=16", "data.synthetic.image_size=32", "model.image_size=32",
    "data.batch_size=16", "epochs=2", "eval_every_epochs=1", "model.vision_layers=1", "model.text_layers=1",
    "model.vision_width=32", "model.text_width=32", "model.embed_dim=32", "schedule.warmup_steps=1",
    "tokenizer.name=simple", "log_every=1", "stages=[]", "data.caption_tags=[]",
]


@pytest.mark.slow  # ~15 s: two processes each train, rank 0 evaluates
def test_mie_train_under_two_process_ddp(tmp_path: Path, launch_ranks) -> None:
    args = ["train", str(REPO / "configs" / "demo.yaml"), "--output-dir", str(tmp_path / "run"),
            "--set", f"data.path={tmp_path / 'data'}"]
    for item in TINY:
        args += ["--set", item]
    code = f"import sys; from mie.cli import main; sys.exit(main({args!r}))"
    outputs = launch_ranks([sys.executable, "-c", code], cwd=tmp_path)
    # Only rank 0 evaluates and prints the report; both ranks generated nothing twice.
    assert "report:" in outputs[0] and "report:" not in outputs[1]
    events = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    epochs = [e for e in events if e["event"] == "epoch"]
    # 64 images shared by 2 ranks at 16 per rank: 2 steps per epoch, not 4 (each rank its own slice).
    assert [e["step"] for e in epochs] == [2, 4]
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["retrieval"]["test"]["num_images"] == 16


def test_match_ids_are_offset_by_rank_under_ddp(monkeypatch) -> None:
    from mie.losses.config import LossConfig
    from mie.models.registry import build_model

    task = contrastive.ContrastiveTask(build_model("tiny", vocab_size=50, eos_id=2, pad_id=0), LossConfig("clip"))
    size = task.model.config.image_size
    batch = {"images": torch.randn(3, 3, size, size), "input_ids": torch.tensor([[1, 5, 2]] * 3),
             "match_ids": torch.tensor([0, 1, 1])}
    assert task._context(batch)["match_ids"].tolist() == [0, 1, 1]  # one process: unchanged
    monkeypatch.setattr(contrastive, "get_world_size", lambda: 4)
    monkeypatch.setattr(contrastive, "get_rank", lambda: 2)
    assert task._context(batch)["match_ids"].tolist() == [6, 7, 7]  # rank 2 of 4, batch 3: ids move to [6, 9)


@pytest.mark.slow  # ~15 s: two processes each train a tiny lm, rank 0 evaluates
def test_lm_train_under_two_process_ddp(tmp_path: Path, launch_ranks) -> None:
    import yaml

    (tmp_path / "doc.txt").write_text("the editor opens a buffer and a window shows it. " * 60, encoding="utf-8")
    config = {"recipe": "lm", "epochs": 2, "log_every": 1, "device": "cpu", "schedule": {"warmup_steps": 1},
              "model": {"dim": 16, "n_layers": 1, "n_heads": 2, "max_seq_len": 16}, "tokenizer": {"vocab_size": 270},
              "data": {"files": [str(tmp_path / "doc.txt")], "block_size": 16, "batch_size": 4,
                       "blocks_per_epoch": 16, "max_val_blocks": 4, "workers": 1},
              "sample": {"max_new_tokens": 3}}
    (tmp_path / "lm.yaml").write_text(yaml.safe_dump(config))
    args = ["train", str(tmp_path / "lm.yaml"), "--output-dir", str(tmp_path / "run")]
    code = f"import sys; from mie.cli import main; sys.exit(main({args!r}))"
    outputs = launch_ranks([sys.executable, "-c", code], cwd=tmp_path)
    assert "report:" in outputs[0] and "report:" not in outputs[1]
    events = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    # 16 blocks per epoch shared by 2 ranks at 4 per rank: 2 steps per epoch, not 4.
    assert [e["step"] for e in events if e["event"] == "epoch"] == [2, 4]
    assert (tmp_path / "run" / "samples.txt").read_text().count("--- step") == 2  # rank 0 alone samples


def test_rank_shards_split_one_draw_without_overlap() -> None:
    from torch.utils.data import RandomSampler

    from mie.data.lm_text import RankShard

    def shard(rank: int) -> list[int]:
        return list(RankShard(RandomSampler(range(10), num_samples=7, generator=torch.Generator().manual_seed(3)),
                              rank, 3))

    full = list(RandomSampler(range(10), num_samples=7, generator=torch.Generator().manual_seed(3)))
    parts = [shard(r) for r in range(3)]
    assert all(len(p) == 2 for p in parts)  # 7 // 3 each: equal step counts on every rank
    assert sorted(sum(parts, [])) == sorted(full[:6])
