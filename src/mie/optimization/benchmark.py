"""Measure a model before and after an optimization: latency p50/p95, throughput, peak memory, size, parameters.

>>> fn, items = generation_workload(model, prompt_ids=[1, 2, 3], new_tokens=32)  # doctest: +SKIP
>>> row = {**measure(fn, items, repeats=5), **model_stats(model, "run/checkpoints/best.safetensors")}  # doctest: +SKIP
>>> print(format_table({"fp32": row_a, "int8": row}))  # doctest: +SKIP

Timings are wall-clock over ``repeats`` calls after ``warmup`` calls (the first builds packed kernels and
caches); throughput is ``items / mean seconds``. Peak memory is the process's peak resident set during the
calls (Linux: the ``VmHWM`` counter reset through ``/proc/self/clear_refs`` first; elsewhere the lifetime
peak), so it includes the Python process and torch itself: compare rows measured in one process.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mie.optimization.int_linear import DynamicInt8Linear, QuantizedEmbedding, WeightOnlyLinear

MB = 1024 * 1024


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """The process's peak resident memory in MiB (``VmHWM``; ``ru_maxrss`` where /proc is absent)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(fn: Callable[[], Any], items: int, repeats: int = 10, warmup: int = 1) -> dict[str, float]:
    """Latency p50 / p95 (ms), throughput (items per second) and peak memory (MiB) of ``fn()``, which
    handles ``items`` inputs (images, tokens) per call."""
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        _reset_peak_rss()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    return {"p50_ms": round(statistics.median(times) * 1e3, 2), "p95_ms": round(p95 * 1e3, 2),
            "throughput": round(items / statistics.fmean(times), 2), "peak_rss_mb": round(peak_rss_mb(), 1)}


def logical_parameters(model: nn.Module) -> tuple[int, int]:
    """``(weights, nonzero)``: the scalars the model computes with (an integer layer's ``in * out`` counted as
    weights, tied tensors once) and how many of them are not zero (after pruning)."""
    total = nonzero = 0
    seen: set[int] = set()
    for module in model.modules():
        if isinstance(module, (WeightOnlyLinear, DynamicInt8Linear)):
            weight = module.dequantize()
            total, nonzero = total + weight.numel(), nonzero + int((weight != 0).sum())
            if module.bias is not None:
                total, nonzero = total + module.bias.numel(), nonzero + int((module.bias != 0).sum())
            continue
        if isinstance(module, QuantizedEmbedding):
            continue  # counted through its table (a WeightOnlyLinear)
        for param in module.parameters(recurse=False):
            if param.data_ptr() not in seen:
                seen.add(param.data_ptr())
                total, nonzero = total + param.numel(), nonzero + int((param != 0).sum())
    return total, nonzero


def tensor_bytes(model: nn.Module) -> int:
    """Bytes of the model's parameters and buffers in memory (shared tensors once)."""
    seen, total = set(), 0
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.data_ptr() not in seen:
            seen.add(tensor.data_ptr())
            total += tensor.numel() * tensor.element_size()
    return total


def model_stats(model: nn.Module, weights_file: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Parameters (and nonzero ones), in-memory size and, given the checkpoint, size on disk (MiB)."""
    total, nonzero = logical_parameters(model)
    stats: dict[str, Any] = {"parameters": total, "nonzero_parameters": nonzero,
                             "memory_mb": round(tensor_bytes(model) / MB, 2)}
    if weights_file is not None and Path(weights_file).is_file():
        stats["disk_mb"] = round(Path(weights_file).stat().st_size / MB, 2)
    return stats


def dual_encoder_workload(model: nn.Module, batch: int = 256, seed: int = 0) -> tuple[Callable[[], Any], int]:
    """Encode ``batch`` random images and ``batch`` random captions (one image-text pair = one item)."""
    config = model.config
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters(), torch.empty(0)).device
    images = torch.randn(batch, 3, config.image_size, config.image_size, generator=generator).to(device)
    ids = torch.randint(0, config.vocab_size, (batch, config.context_length), generator=generator)
    specials = torch.tensor([model.eos_id, model.pad_id])
    ids = torch.where(torch.isin(ids, specials), (model.eos_id + model.pad_id + 1) % config.vocab_size, ids)
    ends = torch.randint(6, min(13, config.context_length), (batch,), generator=generator)  # caption lengths
    columns = torch.arange(config.context_length)
    ids[columns[None, :] == ends[:, None]] = model.eos_id  # captions end with <eos>, then padding
    ids = torch.where(columns[None, :] > ends[:, None], model.pad_id, ids).to(device)

    def run() -> Any:
        return model.encode_image(images), model.encode_text(ids)
    return run, batch


def generation_workload(model: nn.Module, prompt_ids: list[int], new_tokens: int = 32
                        ) -> tuple[Callable[[], Any], int]:
    """Greedy decoding of ``new_tokens`` after ``prompt_ids`` at batch 1 (items = generated tokens)."""
    from mie.models.generation import generate

    def run() -> Any:
        return generate(model, [prompt_ids], new_tokens, temperature=0.0)
    return run, new_tokens


def format_table(rows: dict[str, dict[str, Any]], columns: list[str] | None = None) -> str:
    """A Markdown table: one row per model (``rows`` name -> measurements), one column per measurement."""
    columns = columns or list(dict.fromkeys(key for row in rows.values() for key in row))
    lines = ["| model | " + " | ".join(columns) + " |", "| --- " * (len(columns) + 1) + "|"]
    for name, row in rows.items():
        cells = [_cell(row.get(column)) for column in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def plot_benchmarks(rows: dict[str, dict[str, Any]], path: str | os.PathLike[str],
                    metrics: tuple[str, ...] = ("throughput", "p50_ms", "peak_rss_mb", "disk_mb")) -> Path:
    """One bar chart per measurement, models side by side, saved as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [m for m in metrics if any(m in row for row in rows.values())]
    fig, axes = plt.subplots(1, max(1, len(shown)), figsize=(3.2 * max(1, len(shown)), 3.0), squeeze=False)
    names = list(rows)
    for ax, metric in zip(axes[0], shown):
        values = [float(rows[name].get(metric) or 0.0) for name in names]
        ax.bar(range(len(names)), values, color=["#777777", "#1f77b4", "#ff7f0e", "#2ca02c"][:len(names)])
        ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
        ax.set_title(metric, fontsize=9)
    fig.tight_layout()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=100)
    plt.close(fig)
    return target
