"""Benchmark and profile helpers: what they measure on a small model, and how they count parameters and bytes."""

from __future__ import annotations

import torch
from tests.optimization.test_quantize import _ids, tiny_lm

from mie.io.checkpoint import save_weights
from mie.optimization import benchmark, prune
from mie.optimization.quantize import quantize_model


def test_measure_and_model_stats_before_and_after_quantization(tmp_path) -> None:
    model = tiny_lm()
    calls = []
    row = benchmark.measure(lambda: calls.append(model(_ids())), items=40, repeats=4, warmup=1)
    assert len(calls) == 5 and row["p50_ms"] <= row["p95_ms"] and row["throughput"] > 0 and row["peak_rss_mb"] > 0
    dense = benchmark.model_stats(model)
    prune.magnitude_prune(model, 0.5)
    pruned = benchmark.model_stats(model)
    assert pruned["parameters"] == dense["parameters"]
    linear = sum(layer.weight.numel() for layer in prune.prunable(model).values())
    assert dense["nonzero_parameters"] - pruned["nonzero_parameters"] == linear // 2
    quantize_model(model, "int8-weight")
    path = save_weights(tmp_path / "q.safetensors", model.state_dict())
    quantized = benchmark.model_stats(model, path)
    assert quantized["parameters"] == dense["parameters"]  # integers stand for as many weights
    assert quantized["memory_mb"] < dense["memory_mb"] / 3 and abs(quantized["disk_mb"] - quantized["memory_mb"]) < 0.05
    table = benchmark.format_table({"before": dense, "after": quantized})
    assert table.splitlines()[0].startswith("| model | parameters |") and "| after |" in table


def test_generation_workload_counts_new_tokens() -> None:
    fn, items = benchmark.generation_workload(tiny_lm(), [4, 5, 6], new_tokens=3)
    with torch.no_grad():
        assert items == 3 and len(fn()[0]) == 3


def test_profile_names_the_modules_and_their_share() -> None:
    from mie.optimization.profile import format_profile, profile_modules

    model = tiny_lm()
    rows = profile_modules(model, lambda: model(_ids()))
    names = {row["module"] for row in rows}
    assert "layers.0 (DecoderLayer)" in names and "layers.1.mlp.w2 (Linear)" in names
    block = next(row for row in rows if row["module"] == "layers.0 (DecoderLayer)")
    inner = next(row for row in rows if row["module"] == "layers.0.mlp (MLP)")
    assert block["total_ms"] >= inner["total_ms"] > 0 and 0 < block["share"] <= 1
    assert format_profile(rows, top=3).count("\n") == 4  # header, rule and three modules
