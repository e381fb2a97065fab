"""The demo config trains on WebDataset shards by changing data.format and data.path (and max_steps)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from mie.data.image_text import all_captions, images_and_all_captions
from mie.data.webdataset import WebDatasetImageText
from mie.recipes import load_recipe_config
from mie.recipes.clip import train as train_from_config

REPO = Path(__file__).resolve().parents[2]


def _shard(path: Path, images, start: int, count: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for i in range(start, start + count):
            meta = json.dumps({"captions": [f"picture {i} caption {k}" for k in range(5)], "index": i}).encode()
            for name, data in ((f"{i:05d}.png", images.png(i)), (f"{i:05d}.json", meta)):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def _layout(root: Path, images) -> Path:
    """``root/{train,val,test}/*.tar``: 2 train shards of 12, one val and one test shard of 6."""
    _shard(root / "train" / "train-000.tar", images, 0, 12)
    _shard(root / "train" / "train-001.tar", images, 12, 12)
    _shard(root / "val" / "val-000.tar", images, 100, 6)
    _shard(root / "test" / "test-000.tar", images, 200, 6)
    return root


def test_stream_gives_every_caption_and_every_sample_to_evaluation(tmp_path: Path, images) -> None:
    root = _layout(tmp_path / "shards", images)
    stream = WebDatasetImageText(sorted(str(p) for p in (root / "train").glob("*.tar")), rank=1, world_size=2)
    # Training iteration is split by rank (rank 1 of 2 gets one shard) ...
    assert len(list(stream)) == 12
    # ... but the tokenizer and the evaluation read the whole split, in order.
    assert len(all_captions(stream)) == 24 * 5
    batches = list(images_and_all_captions(stream, batch_size=10))
    assert [len(b.image_ids) for b in batches] == [10, 10, 4]
    assert batches[0].image_ids[0] == "00000" and batches[-1].captions[-1][0] == "picture 23 caption 0"


@pytest.mark.slow  # ~5 s: a real (tiny) training run with evaluation and report
def test_demo_config_trains_on_webdataset_shards(tmp_path: Path, images) -> None:
    root = _layout(tmp_path / "shards", images)
    overrides = [
        # the change a WebDataset user makes (a stream has no length, so the schedule needs max_steps):
        "data.format=webdataset", f"data.path={root}", "data.test_splits=[test]", "max_steps=4",
        "stages=[]", "data.caption_tags=[]",  # the demo's shape-tag stage fits only the shapes captions
        # and only to keep this test tiny and fast:
        f"output_dir={tmp_path / 'run'}", "epochs=3", "eval_every_epochs=1", "precision=fp32",
        "data.batch_size=8", "model.image_size=16", "model.patch_size=8",
        "model.embed_dim=16", "model.vision_width=16", "model.vision_layers=1", "model.vision_heads=2",
        "model.text_width=16", "model.text_layers=1", "model.text_heads=2", "model.context_length=16",
        "schedule.warmup_steps=1", "tokenizer.name=simple",
    ]
    result = train_from_config(load_recipe_config(REPO / "configs" / "demo.yaml", overrides)[1], quiet=True)
    test = result.results["test"]
    assert (test["num_images"], test["num_texts"]) == (6, 30)
    saved = json.loads((result.run_dir / "results.json").read_text())
    # 24 streamed images at batch 8 with drop_last: 3 steps per epoch, so max_steps=4 ends in epoch 2.
    assert saved["training"]["steps"] == 4 and saved["training"]["train_images"] == "streamed"
    events = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [0, 1]
