"""WebDataset tar shards, streamed with the stdlib ``tarfile`` (never extracted to disk).

A shard is a plain tar whose members are grouped into samples by key: ``dir/0001.jpg`` and
``dir/0001.txt`` are the image and caption of sample ``dir/0001`` (the key is the path up to the
first dot of the file name). Images: ``.jpg`` ``.jpeg`` ``.png`` ``.webp`` ``.bmp``; captions: ``.txt``
(one caption per line) or ``.json`` (``{"caption": ...}`` or ``{"captions": [...]}``, other keys
become the sample's attributes). Shard lists use brace ranges: ``shards-{000..127}.tar``.

Shards are split first by rank, then by DataLoader worker, so every sample is read exactly once
per epoch; with fewer shards than readers every reader scans all shards and keeps every n-th
sample instead (see ``shard_assignment``). Example::

    data = WebDatasetImageText("data/cc3m/shards-{000..127}.tar", transform=build_image_transform(224, True))
    loader = DataLoader(data, batch_size=256, num_workers=4, collate_fn=...)
"""

from __future__ import annotations

import glob
import io
import json
import logging
import lzma
import os
import random
import re
import tarfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info

from mie.data.config import DataConfig
from mie.data.image_text import ImageTextSample, SplitNotFoundError
from mie.data.registry import check_format_options, register_dataset_format
from mie.data.transforms import DEFAULT_MAX_IMAGE_PIXELS, LoadImage, ToTensor
from mie.errors import DataError, LimitError
from mie.io.cache import decode_utf8, parse_json

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp")
CAPTION_EXTENSIONS = ("txt", "json")
WEBDATASET_LAYOUT = (
    "tar shards (e.g. shards-{000..127}.tar) whose members pair by key: 0001.jpg + 0001.txt "
    "(or .png / .json)"
)
SHARD_FIX = "rebuild the shard from regular files (mie data shards)"
DEFAULT_MAX_MEMBER_BYTES = 256 * 1024 * 1024  # DataConfig.max_member_bytes
_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")
_CHOICE = re.compile(r"\{([^{}]*,[^{}]*)\}")


def expand_shards(spec: str | Sequence[str]) -> list[str]:
    """Shard paths of a brace pattern (``a-{000..127}.tar``, ``{train,extra}-{0..3}.tar``), glob or list."""
    if not isinstance(spec, str):
        return [path for item in spec for path in expand_shards(item)]
    # Expand the leftmost brace first, so the order is the shell's: {a,b}-{0..1} -> a-0 a-1 b-0 b-1.
    matches = [m for m in (_RANGE.search(spec), _CHOICE.search(spec)) if m]
    if matches:
        match = min(matches, key=lambda m: m.start())
        head, tail = spec[: match.start()], spec[match.end():]
        if match.re is _CHOICE:
            choices = match.group(1).split(",")
        else:
            first, last = match.group(1), match.group(2)
            if int(last) < int(first):
                raise ValueError(f"shard range {match.group(0)} in {spec!r} runs backwards")
            width = len(first)  # {000..127} keeps the zero padding of its first number
            choices = [f"{i:0{width}d}" for i in range(int(first), int(last) + 1)]
        return [p for choice in choices for p in expand_shards(f"{head}{choice}{tail}")]
    if any(ch in spec for ch in "*?["):
        return sorted(glob.glob(spec))
    return [spec]


def shard_assignment(num_shards: int, rank: int, world_size: int, worker_id: int,
                     num_workers: int) -> tuple[list[int], int, int]:
    """What one reader reads: (shard indices, keep every ``stride``-th sample, starting at ``offset``).

    Reader ``rank * num_workers + worker_id`` of ``world_size * num_workers`` takes every n-th shard
    when there are at least as many shards as readers (stride 1); otherwise every reader scans all
    shards and keeps samples ``offset, offset + n, ...`` of the stream. Either way each sample is
    read by exactly one reader. A pure function, so the split is testable without processes.
    """
    if not (0 <= rank < world_size and 0 <= worker_id < num_workers):
        raise ValueError(f"need 0 <= rank < world_size and 0 <= worker_id < num_workers; got rank {rank}/"
                         f"{world_size}, worker {worker_id}/{num_workers}")
    readers = world_size * num_workers
    reader = rank * num_workers + worker_id
    if num_shards >= readers:
        return list(range(reader, num_shards, readers)), 1, 0
    return list(range(num_shards)), readers, reader


def _split_key(name: str) -> tuple[str, str]:
    """``dir/0001.seg.png`` -> (``dir/0001``, ``seg.png``): the key ends at the file name's first dot."""
    directory, _, base = name.rpartition("/")
    stem, _, extension = base.partition(".")
    return (f"{directory}/{stem}" if directory else stem), extension.lower()


def _check_member(path: str | os.PathLike[str], member: tarfile.TarInfo, max_member_bytes: int) -> None:
    """Refuse, before reading it, a member that is not a regular file, escapes the shard's folder or
    declares more than ``max_member_bytes`` (a 10 KB sparse member may declare gigabytes)."""
    if not member.isfile():
        kind = "symbolic link" if member.issym() else "hard link" if member.islnk() else "device or pipe"
        raise DataError(f"member {member.name!r:.80} is a {kind}, not a regular file", where=path,
                        fix=SHARD_FIX)
    parts = member.name.replace("\\", "/").split("/")
    if member.name.startswith(("/", "\\")) or ".." in parts:
        raise DataError(f"member name {member.name!r:.80} points outside the shard (absolute or '..')",
                        where=path, fix=SHARD_FIX)
    if member.size > max_member_bytes:
        raise LimitError(f"member {member.name!r:.80} declares {member.size:,} bytes, over the limit of "
                         f"{max_member_bytes:,}", where=path,
                         fix="raise data.max_member_bytes if the member is genuine, or rebuild the shard")


def iter_tar_samples(path: str | os.PathLike[str], skipped: Counter[str],
                     max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES) -> Iterator[dict[str, Any]]:
    """Stream the samples of one tar shard as ``{"__key__": key, "__url__": shard, extension: bytes}`` dicts.

    Members are read in order and grouped while their key stays the same. A truncated or damaged
    shard ends early: what was read whole is kept, and ``skipped["truncated shard"]`` counts it.
    Links, devices, names outside the shard (DataError) and members over ``max_member_bytes``
    (LimitError) stop the read before any of their bytes are.
    """
    current: dict[str, Any] = {}
    try:
        with tarfile.open(path, mode="r|*") as tar:
            for member in tar:
                if member.isdir():
                    continue
                _check_member(path, member, max_member_bytes)
                key, extension = _split_key(member.name)
                if current and current["__key__"] != key:
                    yield current
                    current = {}
                handle = tar.extractfile(member)
                current["__key__"], current["__url__"] = key, os.fspath(path)
                current[extension] = handle.read() if handle is not None else b""
    except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as err:
        skipped["truncated shard"] += 1
        logger.warning("shard %s is damaged or truncated, stopping there: %s", path, err)
        return  # the sample being read when the shard broke may be incomplete: drop it
    if current:
        yield current


def _captions_and_attributes(sample: dict[str, Any]) -> tuple[list[str], dict[str, Any] | None]:
    """Captions (and extra JSON fields as attributes) of a raw sample; blank captions are dropped.

    A ``.json`` that is not UTF-8, not JSON or not an object, or whose captions are not strings,
    raises a DataError (the sample is then skipped as ``bad caption``).
    """
    where = f"{sample.get('__url__', 'shard')}:{sample['__key__']}"
    if "txt" in sample:
        text = sample["txt"].decode("utf-8", errors="replace")
        return [line.strip() for line in text.splitlines() if line.strip()], None
    meta = parse_json(decode_utf8(sample["json"], f"{where}.json"), f"{where}.json", SHARD_FIX)
    if not isinstance(meta, dict):
        raise DataError(f".json must hold an object, got {type(meta).__name__}", where=f"{where}.json",
                        fix=SHARD_FIX)
    raw = meta.get("captions", meta.get("caption", meta.get("text", [])))
    captions = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
    attributes = {k: v for k, v in meta.items() if k not in ("captions", "caption", "text")}
    return [c.strip() for c in captions if isinstance(c, str) and c.strip()], attributes or None


class WebDatasetImageText(IterableDataset):
    """Streamed ``ImageTextSample``s from WebDataset tar shards, split by rank and loader worker.

    ``rank`` / ``world_size`` default to torch.distributed's (0 / 1 when not initialised); the worker
    split comes from ``get_worker_info()``. ``shuffle_shards`` reorders shards per epoch from
    ``seed + epoch`` (call ``set_epoch``), identically on every rank. Samples with a missing or
    corrupt image, or no caption, are skipped and counted in ``skipped``.
    """

    def __init__(
        self,
        shards: str | Sequence[str],
        transform: Callable[[Image.Image], torch.Tensor] | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        shuffle_shards: bool = False,
        seed: int = 0,
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
        max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES,
    ) -> None:
        self.shards = expand_shards(shards)
        if not self.shards:
            raise FileNotFoundError(f"no shards match {shards!r}; expected {WEBDATASET_LAYOUT}")
        missing = [s for s in self.shards if not Path(s).is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} of {len(self.shards)} shards not found, first {missing[0]}; "
                                    f"expected {WEBDATASET_LAYOUT}")
        self.transform = transform if transform is not None else ToTensor()
        self.rank = rank
        self.world_size = world_size
        self.shuffle_shards = shuffle_shards
        self.seed = seed
        self.epoch = 0
        self.skipped: Counter[str] = Counter()
        self.max_member_bytes = max_member_bytes
        self._load = LoadImage(max_image_pixels)

    def set_epoch(self, epoch: int) -> None:
        """Select the shard order of ``epoch`` (used when ``shuffle_shards``)."""
        self.epoch = epoch

    def _reader(self) -> tuple[int, int, int, int]:
        """(rank, world_size, worker_id, num_workers) of the process iterating now."""
        initialised = dist.is_available() and dist.is_initialized()
        rank = self.rank if self.rank is not None else (dist.get_rank() if initialised else 0)
        world = self.world_size if self.world_size is not None else (dist.get_world_size() if initialised else 1)
        info = get_worker_info()
        return rank, world, (info.id if info else 0), (info.num_workers if info else 1)

    def shard_order(self) -> list[str]:
        """All shards in this epoch's order (the same on every rank and worker)."""
        order = list(self.shards)
        if self.shuffle_shards:
            random.Random(self.seed + self.epoch).shuffle(order)
        return order

    def iter_all(self) -> Iterator[ImageTextSample]:
        """Every usable sample of every shard, in shard order, ignoring the rank / worker split.

        For evaluation and inspection, where one process must see the whole split exactly once.
        """
        for shard in self.shards:
            for raw in iter_tar_samples(shard, self.skipped, self.max_member_bytes):
                sample = self.decode(raw)
                if sample is not None:
                    yield sample

    def all_captions(self) -> list[str]:
        """Every caption of every shard (e.g. to train a tokenizer), without decoding any image."""
        captions: list[str] = []
        for shard in self.shards:
            for raw in iter_tar_samples(shard, Counter(), self.max_member_bytes):
                if any(e in raw for e in CAPTION_EXTENSIONS):
                    try:
                        captions += _captions_and_attributes(raw)[0]
                    except DataError:
                        continue  # counted as "bad caption" when the sample is decoded for training
        return captions

    def iter_raw(self) -> Iterator[dict[str, Any]]:
        """This reader's raw samples (``{"__key__", extension: bytes}``), before decoding."""
        order = self.shard_order()
        indices, stride, offset = shard_assignment(len(order), *self._reader())
        position = 0
        for index in indices:
            for sample in iter_tar_samples(order[index], self.skipped, self.max_member_bytes):
                if position % stride == offset:
                    yield sample
                position += 1

    def decode(self, sample: dict[str, Any]) -> ImageTextSample | None:
        """An ``ImageTextSample`` from a raw sample, or None (counted in ``skipped``) if unusable."""
        key = sample["__key__"]
        image_ext = next((e for e in IMAGE_EXTENSIONS if e in sample), None)
        if image_ext is None:
            return self._skip("missing image", key)
        if not any(e in sample for e in CAPTION_EXTENSIONS):
            return self._skip("no caption", key)
        try:
            captions, attributes = _captions_and_attributes(sample)
        except DataError as err:
            return self._skip("bad caption", key, err)
        if not captions:
            return self._skip("no caption", key)
        try:
            image = self._load(io.BytesIO(sample[image_ext]), f"{sample.get('__url__', 'shard')}:{key}.{image_ext}")
        except LimitError as err:
            return self._skip("too large", key, err)
        except (DataError, OSError) as err:
            return self._skip("corrupt", key, err)
        return ImageTextSample(self.transform(image), captions, key, attributes)

    def _skip(self, reason: str, key: str, err: Exception | None = None) -> None:
        self.skipped[reason] += 1
        logger.warning("skipping sample %s (%s)%s", key, reason, f": {err}" if err else "")
        return None

    def __iter__(self) -> Iterator[ImageTextSample]:
        for raw in self.iter_raw():
            sample = self.decode(raw)
            if sample is not None:
                yield sample


def split_shards(config: DataConfig, split: str, shards: dict[str, Any] | None = None) -> str | list[str]:
    """The shard spec of ``split``: ``shards[split]``, ``config.path`` with ``{split}`` filled in, or the
    ``*.tar`` files of folder ``config.path/split`` (or ``config.path/split-*.tar``)."""
    if shards:
        if split not in shards:
            raise SplitNotFoundError(f"format_options.shards has no entry for split {split!r}; it has {sorted(shards)}")
        return shards[split]
    if "{split}" in config.path:
        return config.path.replace("{split}", split)
    folder = Path(config.path)
    if folder.is_dir():
        found = sorted(glob.glob(str(folder / split / "*.tar"))) or sorted(glob.glob(str(folder / f"{split}-*.tar")))
        if not found:
            raise FileNotFoundError(f"no {split}/*.tar or {split}-*.tar shards in {folder}; expected {WEBDATASET_LAYOUT}")
        return found
    return config.path


@register_dataset_format("webdataset")
def build_webdataset(config: DataConfig, split: str, transform: Callable | None = None,
                     cache_images: bool = False) -> WebDatasetImageText:
    """Shards for ``split`` (see ``split_shards``). Options: ``shards`` (split -> spec), ``shuffle_shards``,
    ``seed``. ``cache_images`` is accepted for a uniform call and ignored: a stream is read once per epoch."""
    options = check_format_options(config, ("shards", "shuffle_shards", "seed"))
    return WebDatasetImageText(split_shards(config, split, options.get("shards")), transform=transform,
                               shuffle_shards=bool(options.get("shuffle_shards", False)),
                               seed=int(options.get("seed", 0)), max_image_pixels=config.max_image_pixels,
                               max_member_bytes=config.max_member_bytes)


def write_shards(records: Sequence[Any], out_dir: str | os.PathLike[str], prefix: str,
                 samples_per_shard: int = 1000) -> dict[str, Any]:
    """Pack image-text records (``ImageTextRecord``: image path, captions, id, attributes) into tar
    shards ``out_dir/{prefix}-00000.tar``, ... that ``WebDatasetImageText`` streams back.

    Each sample is ``KEY.<ext>`` (the image file's bytes, not re-encoded) plus ``KEY.json``
    (``{"captions": [...], "id": ..., **attributes}``). Keys are the sample's position, zero-padded,
    so shards keep the records' order. Each shard is written to a temporary file and renamed, so an
    interrupted run never leaves a half-written shard under its final name. A record whose image is
    missing is skipped and counted. Returns ``{"shards": [paths], "samples": n, "skipped": {...}}``.
    """
    from mie.io import atomic_path

    if samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be >= 1, got {samples_per_shard}")
    out = Path(out_dir)
    skipped: Counter[str] = Counter()
    shards: list[str] = []
    written = 0
    for start in range(0, len(records), samples_per_shard):
        path = out / f"{prefix}-{len(shards):05d}.tar"
        with atomic_path(path) as tmp, tarfile.open(tmp, "w") as tar:
            for position, record in enumerate(records[start : start + samples_per_shard], start=start):
                image = Path(record.path)
                if not image.is_file():
                    skipped["missing image"] += 1
                    logger.warning("skipping %s: image %s not found", record.image_id, image)
                    continue
                extension = image.suffix.lower().lstrip(".")
                if extension not in IMAGE_EXTENSIONS:
                    skipped["unsupported image type"] += 1
                    logger.warning("skipping %s: %s is not one of %s", record.image_id, image, IMAGE_EXTENSIONS)
                    continue
                key = f"{position:08d}"
                meta = {"captions": list(record.captions), "id": record.image_id, **(record.attributes or {})}
                _add_member(tar, f"{key}.{extension}", image.read_bytes())
                _add_member(tar, f"{key}.json", json.dumps(meta, ensure_ascii=False).encode("utf-8"))
                written += 1
        shards.append(str(path))
    return {"shards": shards, "samples": written, "skipped": dict(skipped)}


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))

