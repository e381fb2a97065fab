"""report.md shows the numbers; results.json round-trips; compare_results finds differences."""

import json

import numpy as np
import pytest
import torch

from mie.evaluation.report import (
    compare_results,
    format_metrics_table,
    format_zero_shot_table,
    jsonable,
    load_results,
    write_report,
)
from mie.evaluation.retrieval import retrieval_metrics
from mie.evaluation.zero_shot import zero_shot_classify

VAL = {"i2t_R@1": 0.41667, "i2t_R@5": 0.8, "i2t_R@10": 0.9, "t2i_R@1": 0.3, "t2i_R@5": 0.7, "t2i_R@10": 0.85,
       "i2t_median_rank": 2.0, "t2i_median_rank": 2.5, "mean_R@1": 0.358335, "mean_R@5": 0.75, "mean_R@10": 0.875}
TEST = {**VAL, "i2t_R@1": 0.5, "mean_R@1": 0.4}


def test_format_metrics_table_shows_percentages_and_ranks():
    table = format_metrics_table({"val": VAL, "test": TEST})
    lines = table.splitlines()
    assert len(lines) == 4 and all(line.startswith("|") for line in lines)
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["split", "i2t R@1", "i2t R@5", "i2t R@10", "t2i R@1", "t2i R@5", "t2i R@10",
                      "mean R@1", "i2t MedR", "t2i MedR"]
    val_row = [c.strip() for c in lines[2].strip("|").split("|")]
    assert val_row == ["val", "41.67", "80.00", "90.00", "30.00", "70.00", "85.00", "35.83", "2", "2.5"]
    assert "50.00" in lines[3]
    assert format_metrics_table({}) == "(no retrieval results)"
    partial = format_metrics_table({"val": {"i2t_R@1": 0.5}})
    assert "-" in partial.splitlines()[2]


def test_write_report_contains_numbers_and_figures(tmp_path):
    (tmp_path / "figs").mkdir()
    (tmp_path / "figs" / "curves.png").write_bytes(b"\x89PNG fake")
    zs = zero_shot_classify(torch.eye(3), torch.eye(3), [0, 1, 1], classnames=["circle", "square", "tri|angle"])
    path = write_report(
        tmp_path, {"val": VAL}, {"model": "clip-tiny", "batch_size": 32},
        figures={"Training curves": "figs/curves.png"},
        extra={"seed": 0},
        zero_shot={"val": zs},
        training={"steps": 1200, "wall_time_s": 93.5, "samples_per_s": 410.2},
    )
    text = path.read_text()
    assert path.name == "report.md"
    for needle in ("41.67", "35.83", "## Zero-shot classification", "66.67", "tri\\|angle",
                   "optimizer steps", "1200", "93.5", "samples / s", "clip-tiny",
                   "![Training curves](figs/curves.png)", "results.json"):
        assert needle in text, needle


def test_results_json_round_trip(tmp_path):
    results = {"val": retrieval_metrics(torch.randn(4, 3), torch.randn(8, 3), torch.arange(8) % 4)}
    write_report(tmp_path, results, {"lr": 1e-3}, training={"steps": np.int64(5), "loss": float("nan")})
    stored = load_results(tmp_path)
    assert stored["retrieval"] == results
    assert stored["training"] == {"steps": 5, "loss": None}  # strict JSON: NaN becomes null
    assert stored["config"] == {"lr": 1e-3} and stored["zero_shot"] is None
    assert compare_results(stored["retrieval"], results) == []
    json.loads((tmp_path / "results.json").read_text())  # valid strict JSON


def test_write_report_rejects_missing_or_absolute_figures(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        write_report(tmp_path, {"val": VAL}, {}, figures={"x": "nope.png"})
    with pytest.raises(ValueError, match="relative"):
        write_report(tmp_path, {"val": VAL}, {}, figures={"x": str(tmp_path / "a.png")})


def test_load_results_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="results.json"):
        load_results(tmp_path)
    (tmp_path / "results.json").write_text("[1]")
    with pytest.raises(ValueError, match="JSON object"):
        load_results(tmp_path)


def test_compare_results_finds_differences():
    a = {"val": dict(VAL), "name": "run1", "ks": [1, 5]}
    b = {"val": {**VAL, "t2i_R@5": VAL["t2i_R@5"] + 1e-3}, "name": "run2", "ks": [1, 10], "extra": 1}
    del b["val"]["i2t_R@10"]
    diffs = compare_results(a, b)
    assert any(d.startswith("val.t2i_R@5:") and "atol" in d for d in diffs)
    assert any(d.startswith("val.i2t_R@10: only in the first") for d in diffs)
    assert any(d.startswith("extra: only in the second") for d in diffs)
    assert any(d.startswith("name:") for d in diffs)
    assert any(d.startswith("ks[1]:") for d in diffs)
    assert len(diffs) == 5
    assert compare_results({"ks": []}, {"ks": [1]}) == ["ks: only in the first ([])", "ks[0]: only in the second (1)"]


def test_compare_results_tolerance():
    a = {"val": {"R@1": 0.5, "n": 3}}
    assert compare_results(a, {"val": {"R@1": 0.5 + 5e-7, "n": 3}}) == []
    assert compare_results(a, {"val": {"R@1": 0.5 + 5e-7, "n": 3}}, atol=1e-8) != []
    assert compare_results(a, {"val": {"R@1": True, "n": 3}}) != []  # a bool is not the number 1


def test_jsonable_converts_tensors_and_rejects_objects(tmp_path):
    assert jsonable({"t": torch.tensor([1.5, 2.0]), "s": np.float32(0.25), "p": tmp_path / "x", "i": float("inf")}) == {
        "t": [1.5, 2.0], "s": 0.25, "p": str(tmp_path / "x"), "i": None}
    with pytest.raises(ValueError, match="set"):
        jsonable({"bad": {1, 2}})


def test_format_zero_shot_table():
    zs = {"val": {"accuracy": 0.5, "top5_accuracy": 0.9, "balanced_accuracy": 0.45, "num_samples": 10,
                  "num_classes": 6}}
    table = format_zero_shot_table(zs)
    assert "top-5 acc" in table and "90.00" in table and "45.00" in table
