"""``mie data inspect PATH``: what a dataset folder holds, what is broken in it, and a look at it;
``mie data shards PATH OUT``: the same dataset as WebDataset tar shards.

The format is detected from the files (or given with ``--format``); for each split it prints the
number of images and captions, caption-length statistics (words) and the broken files, then writes
a contact sheet of a few samples with their captions::

    mie data inspect data/flickr30k --out flickr.png
"""

from __future__ import annotations

import argparse
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mie.data.config import DataConfig

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
    """The ``data.format`` of ``path`` (``jsonl``, ``flickr``, ``coco``, ``csv``, ``webdataset``), from its files."""
    text = str(path)
    target = Path(path)
    if "{" in text and ".tar" in text or target.suffix == ".tar":
        return "webdataset"
    if target.is_file():
        suffix = target.suffix.lower()
        formats = {".jsonl": "jsonl", ".csv": "csv", ".tsv": "csv"}
        if suffix in formats:
            return formats[suffix]
        raise ValueError(f"cannot tell the dataset format of {target} from its extension {suffix!r}; "
                         "pass --format (jsonl, csv, flickr, coco, webdataset)")
    if not target.is_dir():
        raise FileNotFoundError(f"{target} does not exist; pass a dataset folder or file")
    from mie.data.flickr import CSV_FILES, KARPATHY_FILES, TOKEN_FILES

    names = {p.name for p in target.iterdir()}
    if "captions.jsonl" in names:
        return "jsonl"
    if "dataset_coco.json" in names or any((target / "annotations").glob("captions_*.json")):
        return "coco"
    if names & set(KARPATHY_FILES + TOKEN_FILES + CSV_FILES):
        return "flickr"
    if any(n.endswith((".csv", ".tsv")) for n in names):
        return "csv"
    if any(target.rglob("*.tar")):
        return "webdataset"
    raise ValueError(f"no known dataset layout in {target} (captions.jsonl, dataset_flickr30k.json, "
                     "results_20130124.token, annotations/captions_*.json, *.csv / *.tsv or *.tar shards); "
                     "pass --format")


def _splits_to_try(fmt: str, path: Path) -> Sequence[str]:
    """The split names worth asking the format for."""
    if fmt == "jsonl":
        from mie.data.image_text import manifest_splits

        return manifest_splits(path / "captions.jsonl" if path.is_dir() else path)
    if fmt == "csv" and path.is_dir():
        return sorted({p.stem for p in path.iterdir() if p.suffix.lower() in (".csv", ".tsv")})
    if fmt == "csv":
        return _csv_split_values(path)
    if fmt == "webdataset" and not path.is_dir() and "{split}" not in str(path):
        return ["all"]  # one shard pattern: a single stream
    return SPLIT_CANDIDATES


def _csv_split_values(path: Path) -> list[str]:
    """Distinct values of a table's ``split`` column, or ``["all"]`` when it has none."""
    import csv

    from mie.data.tabular import default_separator

    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter=default_separator(path))
        if "split" not in (reader.fieldnames or []):
            return ["all"]
        return sorted({row["split"] for row in reader if row.get("split")})


# ----------------------------------------------------------------------------- inspection
def _preview_transform() -> Callable:
    from mie.data.transforms import CenterCrop, Compose, Resize, ToTensor

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
            path = records[index].path
            report.broken.append((str(path), "missing" if not Path(path).exists() else "corrupt"))
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
    from mie.data.registry import build_dataset

    fmt = fmt or detect_format(path)
    if fmt == "webdataset" and Path(path).is_dir() and any(Path(path).glob("*.tar")):
        path = Path(path) / "*.tar"  # shards directly in the folder: read them all as one stream
    config = DataConfig(format=fmt, path=str(path), format_options=dict(options or {}))
    reports: list[SplitReport] = []
    preview: list[tuple[Any, str]] = []
    errors: list[str] = []
    for split in _splits_to_try(fmt, Path(path)):
        try:
            dataset = build_dataset(config, split if split != "all" else None, transform=_preview_transform())
            inspect = inspect_stream if fmt == "webdataset" else inspect_split
            reports.append(inspect(dataset, split, check, preview, preview_size))
        except (FileNotFoundError, ValueError) as err:
            errors.append(str(err))  # this split is absent; the others may exist
    if not reports:
        raise ValueError(f"no readable split in {path} as format {fmt!r}: {errors[0] if errors else 'nothing found'}")
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


# ----------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``inspect`` and ``shards`` sub-subcommands."""
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    inspect = sub.add_parser("inspect", help="detect a dataset's format; print counts, splits, caption "
                             "lengths and broken files; write a contact sheet")
    inspect.add_argument("path", help="dataset folder, manifest, table or shard pattern")
    inspect.add_argument("--format", dest="data_format", default=None,
                         choices=["jsonl", "csv", "flickr", "coco", "webdataset"], help="skip detection")
    inspect.add_argument("--check", type=int, default=1000,
                         help="decode at most this many images per split to find broken ones (0 = all)")
    inspect.add_argument("--out", default="data_inspect.png", help="contact sheet PNG to write")
    inspect.add_argument("--samples", type=int, default=12, help="samples on the contact sheet (0 = none)")
    shards = sub.add_parser("shards", help="convert a dataset's splits to WebDataset tar shards")
    shards.add_argument("path", help="dataset folder, manifest or table")
    shards.add_argument("out_dir", help="folder to write <split>/<split>-NNNNN.tar into")
    shards.add_argument("--format", dest="data_format", default=None,
                        choices=["jsonl", "csv", "flickr", "coco"], help="skip detection")
    shards.add_argument("--samples-per-shard", type=int, default=1000, help="samples per tar file")


def to_shards(path: str | Path, out_dir: str | Path, fmt: str | None = None, samples_per_shard: int = 1000,
              options: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Convert every split of a dataset to WebDataset shards ``out_dir/<split>/<split>-NNNNN.tar``.

    The result trains with ``data.format=webdataset`` and ``data.path=out_dir``. Returns, per split,
    what :func:`mie.data.webdataset.write_shards` reports.
    """
    from mie.data.image_text import dataset_records
    from mie.data.registry import build_dataset
    from mie.data.webdataset import write_shards

    fmt = fmt or detect_format(path)
    if fmt == "webdataset":
        raise ValueError(f"{path} already holds WebDataset shards; nothing to convert")
    config = DataConfig(format=fmt, path=str(path), format_options=dict(options or {}))
    written: dict[str, dict[str, Any]] = {}
    for split in _splits_to_try(fmt, Path(path)):
        try:
            records = dataset_records(build_dataset(config, split))
        except (FileNotFoundError, ValueError):
            continue  # this split is absent; the others may exist
        if records:
            written[split] = write_shards(records, Path(out_dir) / split, split, samples_per_shard)
    if not written:
        raise ValueError(f"no readable split in {path} as format {fmt!r}")
    return written


def run(args: argparse.Namespace) -> int:
    """Run the chosen action: ``inspect`` or ``shards``."""
    if args.data_command == "shards":
        for split, info in to_shards(args.path, args.out_dir, args.data_format, args.samples_per_shard).items():
            skipped = f", skipped {info['skipped']}" if info["skipped"] else ""
            print(f"{split}: {info['samples']} samples in {len(info['shards'])} shards{skipped}")
        print(f"train on them with: --set data.format=webdataset --set data.path={args.out_dir} --set max_steps=N")
        return 0
    fmt, reports, preview = inspect_dataset(args.path, args.data_format, check=args.check,
                                            preview_size=max(0, args.samples))
    print(format_report(args.path, fmt, reports))
    if preview:
        from mie.evaluation.plots import contact_sheet

        out = contact_sheet([image for image, _ in preview], [caption for _, caption in preview], args.out,
                            title=f"{Path(args.path).name} ({fmt})")
        print(f"contact sheet: {out}")
    return 0
