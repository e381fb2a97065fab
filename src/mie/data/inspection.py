"""What a dataset holds and what is broken in it: format detection, per-split counts and statistics.

``inspect_dataset`` detects the format from the files (or takes it), then for each split counts images
and captions, measures caption lengths (words), decodes images to find broken files and keeps a few
samples for a contact sheet (``mie.evaluation.plots.contact_sheet``); ``format_report`` prints it all::

    fmt, reports, preview = inspect_dataset("data/flickr30k")
    print(format_report("data/flickr30k", fmt, reports))

``mie data inspect`` (``mie.cli.data``) is this module on the command line.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mie.data.build import build_dataset, detect_data_format
from mie.data.config import DataConfig
from mie.data.image_text import SplitNotFoundError
from mie.data.jsonl import manifest_splits
from mie.data.tabular import table_splits
from mie.data.transforms import CenterCrop, Compose, Resize, ToTensor
from mie.errors import ConfigError, DataError

SPLIT_CANDIDATES = ("train", "val", "test", "test_heldout")


@dataclass
class SplitReport:
    """What one split holds: counts, caption lengths in words, and the files that failed to read."""

    name: str
    images: int
    captions: int
    caption_words: list[int] = field(repr=False)
    checked: int = 0
    broken: list[tuple[str, str]] = field(default_factory=list)  # (path or key, reason)
    skipped: dict[str, int] = field(default_factory=dict)

    def caption_stats(self) -> str:
        """``min / mean / median / max`` caption length in words."""
        if not self.caption_words:
            return "no captions"
        w = self.caption_words
        return f"{min(w)} / {statistics.fmean(w):.1f} / {statistics.median(w):g} / {max(w)}"


# ----------------------------------------------------------------------------- format detection
def detect_format(path: str | Path) -> str:
    """The ``data.format`` of ``path`` (``jsonl``, ``flickr``, ``coco``, ``csv``, ``webdataset``), from its files.

    The one detector is ``mie.data.build.detect_data_format`` (what ``data.format: auto`` uses); here
    its error says to pass ``--format``.
    """
    try:
        return detect_data_format(str(path))[0]
    except ConfigError as exc:
        raise DataError(exc.what, where=path, fix="pass --format (jsonl, csv, flickr, coco, webdataset)") from None


def splits_to_try(fmt: str, path: Path) -> Sequence[str]:
    """The split names worth asking the format for."""
    if fmt == "jsonl":
        return manifest_splits(path / "captions.jsonl" if path.is_dir() else path)
    if fmt == "csv" and path.is_dir():
        return sorted({p.stem for p in path.iterdir() if p.suffix.lower() in (".csv", ".tsv")})
    if fmt == "csv":
        return table_splits(path)  # its split column's values, else the hashed train / val / test
    if fmt == "webdataset" and not path.is_dir() and "{split}" not in str(path):
        return ["all"]  # one shard pattern: a single stream
    return SPLIT_CANDIDATES


# ----------------------------------------------------------------------------- inspection
def _preview_transform() -> Callable:
    """Square 128 px tensors: what the contact sheet shows."""
    return Compose([Resize(128), CenterCrop(128), ToTensor()])


def inspect_split(dataset: Any, name: str, check: int, preview: list[tuple[Any, str]], preview_size: int) -> SplitReport:
    """Count a map-style split, decode up to ``check`` images (0 = all) and collect preview samples."""
    records = dataset.records
    report = SplitReport(name, len(records), sum(len(r.captions) for r in records),
                         [len(c.split()) for r in records for c in r.captions])
    limit = len(records) if check <= 0 else min(check, len(records))
    for index in range(limit):
        sample = dataset[index]
        if sample is None:
            reason = getattr(dataset, "_bad", {}).get(index)  # why ImageTextDataset skipped it
            path = records[index].path
            report.broken.append((str(path), reason or ("missing" if not Path(path).exists() else "corrupt")))
        elif len(preview) < preview_size:
            preview.append((sample.image, sample.captions[0]))
    report.checked = limit
    report.skipped = {k: v for k, v in dataset.skipped.items() if v}
    return report


def inspect_stream(dataset: Any, name: str, check: int, preview: list[tuple[Any, str]],
                   preview_size: int) -> SplitReport:
    """Count a streamed (WebDataset) split by reading it; ``check`` > 0 stops after that many samples."""
    report = SplitReport(name, 0, 0, [])
    for raw in dataset.iter_raw():
        sample = dataset.decode(raw)
        if sample is None:
            report.broken.append((raw["__key__"], "unusable"))
        else:
            report.images += 1
            report.captions += len(sample.captions)
            report.caption_words += [len(c.split()) for c in sample.captions]
            if len(preview) < preview_size:
                preview.append((sample.image, sample.captions[0]))
        report.checked += 1
        if 0 < check <= report.checked:
            break
    report.skipped = {k: v for k, v in dataset.skipped.items() if v}
    return report


def inspect_dataset(path: str | Path, fmt: str | None = None, check: int = 1000, preview_size: int = 12,
                    options: dict[str, Any] | None = None) -> tuple[str, list[SplitReport], list[tuple[Any, str]]]:
    """Detect the format, inspect every split found; return (format, split reports, preview samples)."""
    fmt = fmt or detect_format(path)
    if fmt == "webdataset" and Path(path).is_dir() and any(Path(path).glob("*.tar")):
        path = Path(path) / "*.tar"  # shards directly in the folder: read them all as one stream
    config = DataConfig(format=fmt, path=str(path), format_options=dict(options or {}))
    reports: list[SplitReport] = []
    preview: list[tuple[Any, str]] = []
    errors: list[str] = []
    for split in splits_to_try(fmt, Path(path)):
        try:
            dataset = build_dataset(config, split if split != "all" else None, transform=_preview_transform())
        except (FileNotFoundError, SplitNotFoundError) as err:
            errors.append(str(err))  # this split is absent; the others may exist
            continue
        # Anything else wrong with the files (malformed, over a limit) stops here, as one error line.
        inspect = inspect_stream if fmt == "webdataset" else inspect_split
        reports.append(inspect(dataset, split, check, preview, preview_size))
    if not reports:
        raise DataError(f"no readable split in {path} as format {fmt!r}: {errors[0] if errors else 'nothing found'}",
                        fix="check the path and --format")
    return fmt, reports, preview


def format_report(path: str | Path, fmt: str, reports: Sequence[SplitReport], max_broken: int = 20) -> str:
    """The printed summary of ``inspect_dataset``."""
    lines = [f"{path}: format {fmt}, splits {', '.join(r.name for r in reports)}",
             f"{'split':<14}{'images':>9}{'captions':>10}  caption words min / mean / median / max"]
    for r in reports:
        lines.append(f"{r.name:<14}{r.images:>9}{r.captions:>10}  {r.caption_stats()}")
    skipped: Counter[str] = Counter()
    for r in reports:
        skipped.update(r.skipped)
    broken = [(r.name, where, why) for r in reports for where, why in r.broken]
    checked = sum(r.checked for r in reports)
    lines.append(f"checked {checked} samples: {len(broken)} broken"
                 + (f"; skipped while reading: {dict(sorted(skipped.items()))}" if skipped else ""))
    for split, where, why in broken[:max_broken]:
        lines.append(f"  [{split}] {why}: {where}")
    if len(broken) > max_broken:
        lines.append(f"  ... and {len(broken) - max_broken} more")
    return "\n".join(lines)
