"""The clip recipe on shapes data: colour-grouped batches, the shapes probe in the report, and a re-ranker
trained on nearest-neighbour batches whose fusion weight is chosen on val (and reproduced by `mie eval`)."""

from __future__ import annotations

import json

import pytest
import yaml
from tests.tiny import TINY_CLIP_MODEL

from mie.cli import main
from mie.data.jsonl import JsonlImageText
from mie.recipes.clip.train import color_keys


def _write(tmp_path, raw):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.slow
def test_grouped_training_probe_and_val_tuned_reranker(tmp_path, capsys):
    raw = {"project_name": "tiny", "output_dir": str(tmp_path / "run"), "epochs": 1, "log_every": 1,
           "device": "cpu", "model": TINY_CLIP_MODEL, "schedule": {"warmup_steps": 2},
           "group_batches": "colors", "group_size": 4,
           "data": {"format": "synthetic", "path": str(tmp_path / "data"), "batch_size": 16,
                    "test_splits": ["test", "test_heldout"],
                    "synthetic": {"num_train": 48, "num_val": 40, "num_test": 16, "num_heldout": 12,
                                  "image_size": 32}},
           "rerank": {"enabled": True, "k": 4, "epochs": 1, "batch_size": 16, "batches": "neighbours",
                      "group_size": 4, "sim_weights": [0.0, 1.0, 1000.0], "temperature_start": 1.0,
                      "groundings": [0.0, 0.5], "phrases": ["red circle", "blue square", "circle", "red", "cross"],
                      "novel_pairs": 4,
                      "fusion": {"type": "cross", "dim": 16, "heads": 2, "layers": 1}}}
    assert main(["train", str(_write(tmp_path, raw))]) == 0
    out = capsys.readouterr().out
    assert "colour-shape P@8" in out and '"a red circle"' in out
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    probe = results["shapes_probe"]["test"]
    assert len(probe["color_shape"]["queries"]) == 63 and probe["color_shape"]["k"] == 8
    assert 0 <= probe["color_shape"]["chance"] < 0.2 and probe["example"]["query"] == "a red circle"
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Shape or colour?" in report and report.rstrip().endswith("`results.json`.")
    training = results["rerank"]["training"]
    assert training["sim_weight chosen on val"] in (0.0, 1.0, 1000.0) and training["grounding chosen on val"] in (0, 0.5)
    assert training["negative temperature"] == {"start": 1.0, "end": pytest.approx(0.05)}  # annealed
    assert len(training["pairs new to the head"]) == 4  # kept from its images; val split by them:
    tables = {k.split(" mean R@1")[0]: v for k, v in training.items() if "mean R@1 per setting" in k}
    assert set(tables) == {"val (seen pairs)", "val (new pairs)"}
    settings = {f"sim_weight {w}, grounding {g}" for w in (0, 1, 1000) for g in (0, 0.5)}
    assert all(set(t) == {"none"} | settings for t in tables.values())
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())  # the phrases grounded, as written
    assert saved["rerank"]["phrases"] == ["red circle", "blue square", "circle", "red", "cross"]
    section = (tmp_path / "run" / "report.md").read_text().split("## Re-ranking")[1]
    assert "(sampling temperature 1 -> 0.05)" in section and "4 colour-shape pairs kept" in section
    assert main(["eval", str(tmp_path / "run")]) == 0  # the saved weight re-scores to the same numbers
    assert "reproduces the numbers" in capsys.readouterr().out


def test_color_keys_are_sorted_colours(tmp_path):
    from mie.data.synthetic import generate_shapes_dataset

    root = generate_shapes_dataset(tmp_path / "d", num_train=12, num_val=0, num_test=0, num_heldout=0, image_size=32)
    dataset = JsonlImageText(root / "captions.jsonl", split="train")
    keys = color_keys(dataset)
    assert len(keys) == 12
    for key, record in zip(keys, dataset.records):
        assert key == tuple(sorted(o["color"] for o in record.attributes["objects"]))
