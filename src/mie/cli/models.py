"""``mie models``: the pretrained models mie knows, whether they are installed, their size on disk, and
how to install them.

Installed means the model's package (or every part of a split GGUF) is in this environment; size is the
bytes of its installed files (or the joined GGUF, once assembled); converted means a first load has
already written the float32 cache (later loads then take about a second). Nothing is loaded or imported
from the packages: they are found with ``importlib.util.find_spec``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from dataclasses import asdict, dataclass
from pathlib import Path

#: the models `make run` / `make test` install with the environment; the others need `make pretrained`
WITH_SETUP = {"smollm2-135m-instruct", "all-minilm-l6-v2"}


@dataclass
class ModelRow:
    """One line of ``mie models``."""

    name: str
    kind: str
    installed: bool
    detail: str  # "yes", "no", "3 of 6 parts"
    size_bytes: int | None
    converted: bool | None  # None: nothing to convert (the sentence encoder reads its files as they are)
    install: str


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mie models``."""
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of the table")


def _package_files(module: str, relative: str) -> list[Path]:
    """The file ``relative`` in the installed package ``module`` (found, never imported), or none."""
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return []
    folders = list(found.submodule_search_locations or []) if found is not None else []
    return [Path(folder) / relative for folder in folders if (Path(folder) / relative).is_file()][:1]


def _install(name: str) -> str:
    return "make setup (make run, make test)" if name in WITH_SETUP else "make pretrained"


def model_rows() -> list[ModelRow]:
    """Every registered chat model and sentence encoder, probed on disk."""
    from mie.pretrained.registry import MODELS, cache_root
    from mie.pretrained.sentence import SENTENCE_MODELS

    rows = []
    for name in MODELS:
        spec = MODELS.lookup(name)
        if spec.split is not None:
            split = spec.split
            parts = [p for i in range(1, split.count + 1)
                     for p in _package_files(f"{split.module}{i}", f"data/part{i:02d}.bin")]
            joined = cache_root() / "gguf" / split.filename
            files = [joined] if joined.is_file() else parts
            installed = len(parts) == split.count or joined.is_file()
            detail = "yes" if installed else ("no" if not parts else f"{len(parts)} of {split.count} parts")
        else:
            files = _package_files(spec.package, spec.filename)
            installed, detail = bool(files), "yes" if files else "no"
        converted = (cache_root() / name).is_dir() and any((cache_root() / name).iterdir())
        size = sum(f.stat().st_size for f in files) if installed else None  # a partial install has no size yet
        rows.append(ModelRow(name, "chat LM (GGUF)", installed, detail, size, converted, _install(name)))
    for name in SENTENCE_MODELS:
        spec = SENTENCE_MODELS.lookup(name)
        files = _package_files(spec.package, spec.filename)
        folder_files = [p for p in files[0].parent.rglob("*") if p.is_file()] if files else []
        rows.append(ModelRow(name, "sentence encoder", bool(files), "yes" if files else "no",
                             sum(f.stat().st_size for f in folder_files) if files else None, None, _install(name)))
    return rows


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    if n >= 2**30:
        return f"{n / 2**30:.2f} GiB"
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def run(args: argparse.Namespace) -> int:
    """Print the table (or JSON) of pretrained models."""
    rows = model_rows()
    if args.json:
        print(json.dumps([asdict(row) for row in rows], indent=2))
        return 0
    table = [("model", "kind", "installed", "size", "converted", "install with")]
    for row in rows:
        converted = "-" if row.converted is None else ("yes" if row.converted else "no (the first load converts it)")
        table.append((row.name, row.kind, row.detail, _size(row.size_bytes), converted, row.install))
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
    return 0
