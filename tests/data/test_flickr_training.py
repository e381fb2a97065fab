"""Acceptance: the demo config trains on a Flickr30k Karpathy folder by changing data.format and data.path."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mie.recipes import load_recipe_config
from mie.recipes.clip import train as train_from_config

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # ~5 s: a real (tiny) training run with evaluation and report
def test_demo_config_trains_on_a_flickr_layout(tmp_path: Path, karpathy_flickr, images, caplog) -> None:
    root = karpathy_flickr(tmp_path / "flickr30k", {"train": 24, "val": 6, "test": 8})
    # A broken training image must not stop the run: it is skipped and reported at the end.
    images.corrupt(root / "flickr30k-images" / "3.png")
    overrides = [
        # the change a Flickr user makes:
        "data.format=flickr", f"data.path={root}", "data.test_splits=[test]",
        "stages=[]", "data.caption_tags=[]",  # the demo's shape-tag stage fits only the shapes captions
        # and only to keep this test tiny and fast:
        f"output_dir={tmp_path / 'run'}", "epochs=1", "eval_every_epochs=1", "precision=fp32",
        "data.batch_size=8", "model.image_size=16", "model.patch_size=8",
        "model.embed_dim=16", "model.vision_width=16", "model.vision_layers=1", "model.vision_heads=2",
        "model.text_width=16", "model.text_layers=1", "model.text_heads=2", "model.context_length=16",
        "schedule.warmup_steps=1",
    ]
    config = load_recipe_config(REPO / "configs" / "demo.yaml", overrides)[1]
    with caplog.at_level(logging.WARNING):
        result = train_from_config(config, quiet=True)
    assert set(result.results) == {"test"}
    test = result.results["test"]
    assert test["num_images"] == 8 and test["num_texts"] == 40
    assert 0.0 <= test["mean_R@1"] <= 1.0
    assert (result.run_dir / "report.md").is_file()
    assert "training skipped unreadable images: {'corrupt': 1}" in caplog.text
