"""CSV / TSV image–caption tables, as OpenCLIP reads them (``--csv-img-key``, ``--csv-caption-key``).

One row per (image, caption); rows of the same image are grouped into one record with all its
captions. Columns are configurable; the defaults are OpenCLIP's (``filepath``, ``title``)::

    filepath<TAB>title<TAB>split
    images/0001.jpg<TAB>a red circle<TAB>train

The separator follows the extension (``.tsv`` tab, otherwise comma) unless given; a tab may be
written ``\t`` or ``tab`` (``--set data.format_options.separator='\t'``). Splits come from a split
column when the table has one, else from one file per split (``train.csv``, ``val.tsv``, ... in a
folder), else a single table is split by a hash of each image's path into train / val / test
80 / 10 / 10 (``mie.data.splits``; a warning says so), so test scores never come from training images.
Image paths are relative to the table's folder unless absolute.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from mie.data.config import DataConfig
from mie.data.image_text import ImageTextDataset, ImageTextRecord, SplitNotFoundError, usable_records
from mie.data.registry import check_format_options, max_samples_for, register_dataset_format
from mie.data.splits import HASH_SPLITS, describe, hash_split, in_split, warn_hash_split
from mie.data.transforms import DEFAULT_MAX_IMAGE_PIXELS
from mie.errors import DataError
from mie.io.cache import read_text_lines

TABLE_SUFFIXES = (".csv", ".tsv")
CSV_LAYOUT = (
    "a CSV/TSV table with a header row naming an image column (default 'filepath') and a caption "
    "column (default 'title'), optionally a 'split' column; or a folder of <split>.csv / <split>.tsv"
)
SEPARATOR_NAMES = {"\\t": "\t", "tab": "\t"}  # spellings of a tab that survive the shell and YAML
HASH_FIX = "add a split column to choose"
CSV_FIX = (f"check the quoting and separator (an unclosed quote swallows the rest of the file); each field "
           f"must stay under {csv.field_size_limit():,} characters")


@contextmanager
def read_csv_rows(path: Path, delimiter: str, as_dicts: bool = False) -> Iterator[Any]:
    """A ``csv.reader`` (or ``DictReader``) over a UTF-8 table; a ``csv.Error`` (a field over the size
    limit, a stray NUL) becomes a DataError naming the file and the line."""
    with read_text_lines(path, newline="") as handle:
        try:
            reader = csv.DictReader(handle, delimiter=delimiter) if as_dicts else csv.reader(handle, delimiter=delimiter)
        except TypeError as err:  # csv's message for a separator of the wrong length or type
            raise DataError(f"separator {delimiter!r} is not one character ({err})", where=path,
                            fix="set data.format_options.separator to one character (a tab: \\t or tab)") from err
        try:
            yield reader
        except csv.Error as err:
            # DictReader copies line_num only after a whole row; its inner reader knows the failing line.
            line = getattr(reader, "reader", reader).line_num
            raise DataError(f"line {line}: {err}", where=path, fix=CSV_FIX) from err


def default_separator(path: Path) -> str:
    """Tab for ``.tsv`` files, comma otherwise."""
    return "\t" if path.suffix.lower() == ".tsv" else ","


def parse_separator(value: str | None, path: Path) -> str:
    """The one-character separator meant by ``value``: ``\\t`` and ``tab`` mean a tab; ``None`` the
    extension's default (``default_separator``)."""
    if value is None or value == "":
        return default_separator(path)
    return SEPARATOR_NAMES.get(value.lower() if isinstance(value, str) else value, value)


def read_table(
    path: Path,
    split: str | None = None,
    image_column: str = "filepath",
    caption_column: str = "title",
    split_column: str = "split",
    separator: str | None = None,
    root: Path | None = None,
    split_by_hash: bool = True,
) -> list[ImageTextRecord]:
    """Records of a CSV/TSV table, grouping rows by image; filter by ``split`` if the table has that column.

    A table without one is split by a hash of the image column (``mie.data.splits``) when
    ``split_by_hash``, else (a ``<split>.csv`` of a folder) every row belongs to ``split``.
    """
    separator = parse_separator(separator, path)
    base = root or path.parent
    grouped: dict[str, ImageTextRecord] = {}
    with read_csv_rows(path, separator, as_dicts=True) as reader:
        columns = reader.fieldnames or []
        missing = [c for c in (image_column, caption_column) if c not in columns]
        if missing:
            raise DataError(f"no column(s) {missing} (columns: {columns[:10]}, separator {separator!r}); "
                            f"set format_options image_column / caption_column / separator; expected {CSV_LAYOUT}",
                            where=path)
        has_split = split_column in columns
        hashed = split_by_hash and not has_split
        for row in reader:
            row_split = row.get(split_column) if has_split else None
            if has_split and split is not None and row_split != split:
                continue
            image = (row.get(image_column) or "").strip()
            if not image or (hashed and not in_split(image, split)):
                continue
            row_split = hash_split(image) if hashed else row_split
            record = grouped.get(image)
            if record is None:
                image_path = Path(image)
                record = ImageTextRecord(image_path if image_path.is_absolute() else base / image_path, [],
                                         image_id=image, split=row_split)
                grouped[image] = record
            record.captions.append(row.get(caption_column) or "")
    if hashed and split is not None:  # said once the table has been read (a broken table gets its error alone)
        warn_hash_split(path, f"has no {split_column!r} column", HASH_FIX)
    return list(grouped.values())


def table_splits(path: Path, split_column: str = "split", separator: str | None = None) -> list[str]:
    """The splits one table serves: its split column's values (sorted), else the hashed train / val / test."""
    with read_csv_rows(path, parse_separator(separator, path), as_dicts=True) as reader:
        if split_column not in (reader.fieldnames or []):
            return list(HASH_SPLITS)
        return sorted({row[split_column] for row in reader if isinstance(row.get(split_column), str)
                       and row[split_column]})


def find_table(path: Path, split: str) -> Path:
    """The table for ``split``: ``path`` itself, or ``<split>.csv`` / ``<split>.tsv`` in folder ``path``."""
    if path.is_file():
        return path
    if path.is_dir():
        for suffix in TABLE_SUFFIXES:
            if (path / f"{split}{suffix}").is_file():
                return path / f"{split}{suffix}"
        raise FileNotFoundError(f"no {split}.csv or {split}.tsv in {path}; expected {CSV_LAYOUT}")
    raise FileNotFoundError(f"CSV table {path} not found; expected {CSV_LAYOUT}")


class CsvImageText(ImageTextDataset):
    """Image–caption pairs from a CSV/TSV table (OpenCLIP's format), one record per distinct image.

    ``path`` is a table or a folder of per-split tables. Blank captions, and images without any, are
    skipped and counted in ``skipped``; unreadable images are skipped when first read.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        split: str | None = None,
        transform: Callable[[Image.Image], torch.Tensor] | None = None,
        image_column: str = "filepath",
        caption_column: str = "title",
        split_column: str = "split",
        separator: str | None = None,
        root: str | os.PathLike[str] | None = None,
        cache_images: bool = False,
        max_samples: int = 0,
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    ) -> None:
        table = find_table(Path(path), split or "train")
        one_table = Path(path).is_file()
        records = read_table(table, split, image_column, caption_column, split_column, separator,
                             Path(root) if root else None, split_by_hash=one_table)
        parse_skips: Counter[str] = Counter()
        if not records and one_table and split is not None:
            splits = table_splits(table, split_column, separator)
            hashed = splits == list(HASH_SPLITS)
            note = f" (no {split_column!r} column: split {describe()} by a hash of the image path)" if hashed else ""
            raise SplitNotFoundError(f"no rows with an image and a caption for split {split!r}; the table has "
                                     f"{', '.join(splits) or 'none'}{note}", where=table,
                                     fix="choose one of them" + (f", or add a {split_column!r} column" if hashed else ""))
        records = usable_records(records, table, f"no rows with an image and a caption for split {split!r}",
                                 max_samples, parse_skips)
        super().__init__(records, transform=transform, cache_images=cache_images, max_image_pixels=max_image_pixels)
        self.skipped.update(parse_skips)
        self.table_path = table
        self.split = split


@register_dataset_format("csv")
def build_csv(config: DataConfig, split: str, transform: Callable | None = None,
              cache_images: bool = False) -> CsvImageText:
    """A CSV/TSV table (or a folder of them) at ``config.path``.

    Options: ``image_column``, ``caption_column``, ``split_column``, ``separator`` and ``root``.
    """
    options = check_format_options(config, ("image_column", "caption_column", "split_column", "separator", "root"))
    return CsvImageText(config.path, split, transform=transform, cache_images=cache_images,
                        max_samples=max_samples_for(config, split), max_image_pixels=config.max_image_pixels,
                        **options)
