"""Time and memory per module of one call, through ``torch.profiler``.

>>> rows = profile_modules(model, lambda: model.encode_image(images))  # doctest: +SKIP
>>> print(format_profile(rows, top=15))  # doctest: +SKIP

Every module whose forward runs (blocks, attention, MLPs, linears, norms; not the model itself or its module
lists) is wrapped in a ``record_function`` range named after it by forward hooks; the profiler then reports each
range's total CPU time (children included), its self time and the memory allocated inside it. A module whose
parent computes with its weights directly (a pooled tower's last projection) is not seen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function

PREFIX = "module::"


def _instrument(model: nn.Module) -> list[Any]:
    handles = []
    for name, module in model.named_modules():
        if not name or isinstance(module, (nn.ModuleList, nn.ModuleDict)):
            continue
        label = f"{PREFIX}{name} ({type(module).__name__})"

        def enter(_module: nn.Module, _inputs: Any, label: str = label) -> None:
            _module._mie_range = record_function(label)  # type: ignore[attr-defined]
            _module._mie_range.__enter__()  # type: ignore[attr-defined]

        def leave(_module: nn.Module, _inputs: Any, _output: Any) -> None:
            span = getattr(_module, "_mie_range", None)
            if span is not None:
                span.__exit__(None, None, None)
                _module._mie_range = None  # type: ignore[attr-defined]

        handles += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    return handles


def profile_modules(model: nn.Module, fn: Callable[[], Any], warmup: int = 1) -> list[dict[str, Any]]:
    """Per module: calls, total and self CPU milliseconds, memory allocated (MiB), sorted by total time."""
    handles = _instrument(model)
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                fn()
            with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
                fn()
    finally:
        for handle in handles:
            handle.remove()
    rows = []
    for event in prof.key_averages():
        if event.key.startswith(PREFIX):
            rows.append({"module": event.key[len(PREFIX):], "calls": event.count,
                         "total_ms": round(event.cpu_time_total / 1e3, 3),
                         "self_ms": round(event.self_cpu_time_total / 1e3, 3),
                         "memory_mb": round(event.cpu_memory_usage / 2**20, 3)})
    total = sum(event.self_cpu_time_total for event in prof.key_averages()) / 1e3
    rows.sort(key=lambda row: row["total_ms"], reverse=True)
    for row in rows:
        row["share"] = round(row["total_ms"] / max(total, 1e-9), 4)
    return rows


def format_profile(rows: list[dict[str, Any]], top: int = 20) -> str:
    """The ``top`` modules by total time as a Markdown table."""
    lines = ["| module | calls | total ms | self ms | share | memory MiB |", "| --- | --- | --- | --- | --- | --- |"]
    for row in rows[:top]:
        lines.append(f"| {row['module']} | {row['calls']} | {row['total_ms']:.3f} | {row['self_ms']:.3f} | "
                     f"{row['share']:.1%} | {row['memory_mb']:.3f} |")
    return "\n".join(lines)
