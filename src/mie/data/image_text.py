"""Image–caption datasets: records, a map-style dataset over them, batching and evaluation iteration.

A missing or corrupt image never stops an epoch: the dataset returns ``None`` for it (warning once
per file) and ``collate_image_text`` drops it. The formats that read records from disk live beside
this module (``jsonl``, ``flickr``, ``coco``, ``tabular``, ``webdataset``).
"""

from __future__ import annotations

import functools
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import regex
import torch
from PIL import Image
from torch.utils.data import Dataset, Subset

from mie.data.caption_negatives import negative_captions
from mie.data.transforms import DEFAULT_MAX_IMAGE_PIXELS, LoadImage, ToTensor
from mie.errors import DataError, LimitError
from mie.tokenization.base import BaseTokenizer

logger = logging.getLogger(__name__)
_WORDS = regex.compile(r"\w+")  # caption words, for tag targets


class SplitNotFoundError(DataError):
    """The dataset has no such split, or nothing usable in it: ``mie data inspect`` moves on to the next."""


@dataclass
class ImageTextRecord:
    """One un-decoded dataset entry: where the image is and what describes it."""

    path: Path
    captions: list[str]
    image_id: str
    split: str | None = None
    attributes: dict[str, Any] | None = None


@dataclass
class ImageTextSample:
    """One decoded entry: the transformed image tensor and all its captions."""

    image: torch.Tensor
    captions: list[str]
    image_id: str
    attributes: dict[str, Any] | None = None


@dataclass
class EvalBatch:
    """A batch for retrieval evaluation: every image once, with all of its captions."""

    images: torch.Tensor
    captions: list[list[str]]
    image_ids: list[str]


class ImageTextDataset(Dataset):
    """Map-style dataset over ``ImageTextRecord``s: ``dataset[i]`` is an ``ImageTextSample`` or ``None``.

    ``None`` means the image was missing or could not be decoded; it is logged once per file and
    counted in ``skipped`` (reason -> number of distinct files). ``cache_images=True`` keeps every
    decoded image as uint8 in memory after its first use, so later epochs skip PNG decoding (each
    DataLoader worker holds its own cache; use ``persistent_workers=True`` to keep it across epochs).
    """

    def __init__(
        self,
        records: Sequence[ImageTextRecord],
        transform: Callable[[Image.Image], torch.Tensor] | None = None,
        cache_images: bool = False,
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    ) -> None:
        self.records = list(records)
        self.transform = transform if transform is not None else ToTensor()
        self.cache_images = cache_images
        self.skipped: Counter[str] = Counter()
        self._bad: dict[int, str] = {}
        self._cache: dict[int, np.ndarray] = {}
        self._load = LoadImage(max_image_pixels)

    def __len__(self) -> int:
        return len(self.records)

    def _decode(self, index: int) -> Image.Image | None:
        """The RGB image of record ``index``, from the cache when possible; ``None`` if unreadable."""
        if index in self._bad:
            return None
        if index in self._cache:
            return Image.fromarray(self._cache[index], mode="RGB")
        path = self.records[index].path
        try:
            image = self._load(path)
        except FileNotFoundError:
            return self._skip(index, "missing")
        except LimitError as err:  # refused before decoding: one bomb must not stop an epoch either
            return self._skip(index, "too large", err)
        except (DataError, OSError) as err:  # LoadImage turns every malformed file into a DataError
            return self._skip(index, "corrupt", err)
        if self.cache_images:
            self._cache[index] = np.asarray(image, dtype=np.uint8)
        return image

    def _skip(self, index: int, reason: str, err: Exception | None = None) -> None:
        """Remember a bad file, count it and warn about it once."""
        self._bad[index] = reason
        self.skipped[reason] += 1
        detail = f": {err}" if err is not None else ""
        logger.warning("skipping %s image %s%s", reason, self.records[index].path, detail)
        return None

    def __getitem__(self, index: int) -> ImageTextSample | None:
        image = self._decode(index)
        if image is None:
            return None
        record = self.records[index]
        return ImageTextSample(self.transform(image), record.captions, record.image_id, record.attributes)


def collate_image_text(
    batch: Sequence[ImageTextSample | None],
    tokenizer: BaseTokenizer,
    context_length: int,
    caption_index: str | int = "random",
    generator: torch.Generator | None = None,
    negatives: Callable[[str, torch.Generator | None], str | None] | None = None,
    tags: Sequence[str] = (),
    tag_ids: torch.Tensor | None = None,
) -> dict[str, Any] | None:
    """Batch samples for contrastive training, choosing ONE caption per image.

    Drops ``None`` samples (reported as ``num_skipped``). ``caption_index="random"`` picks a caption
    uniformly (from ``generator``, else torch's global RNG, which DataLoader seeds per worker); an
    int picks that caption (modulo the count). ``match_ids`` gives the same integer to entries of
    the same image, so a loss can treat them as positives of each other. Returns ``None`` when every
    sample was dropped, so the caller skips the step. Use with ``functools.partial`` as a
    DataLoader ``collate_fn``. ``negatives`` (a ``mie.data.caption_negatives.CaptionSwapper``) adds
    ``negative_input_ids`` ``[N, L]``: one hard negative caption for each of the N captions it can alter.
    ``tags`` (words) adds ``tag_targets`` ``[B, T]``: 1 where any caption of the image holds the word;
    ``tag_ids`` (the tags tokenized once, ``[T, L]``) rides along as ``tag_input_ids`` for a loss that
    encodes the tags as texts (``tag_match``).
    """
    samples = [s for s in batch if s is not None]
    num_skipped = len(batch) - len(samples)
    if not samples:
        return None
    if caption_index == "random":
        picks = torch.randint(0, 2**31 - 1, (len(samples),), generator=generator).tolist()
        captions = [s.captions[p % len(s.captions)] for s, p in zip(samples, picks)]
    elif isinstance(caption_index, int):
        captions = [s.captions[caption_index % len(s.captions)] for s in samples]
    else:
        raise ValueError(f"caption_index must be 'random' or an int, got {caption_index!r}")
    first_seen: dict[str, int] = {}
    match_ids = [first_seen.setdefault(s.image_id, len(first_seen)) for s in samples]
    extra: dict[str, Any] = {}
    if negatives is not None:
        extra["negative_input_ids"] = tokenizer(negative_captions(captions, negatives, generator), context_length)
    if tags:
        extra["tag_targets"] = caption_tag_targets([s.captions for s in samples], tags)
    if tag_ids is not None:
        extra["tag_input_ids"] = tag_ids
    return {**extra,
        "images": torch.stack([s.image for s in samples]),
        "input_ids": tokenizer(captions, context_length),
        "match_ids": torch.tensor(match_ids, dtype=torch.long),
        "image_ids": [s.image_id for s in samples],
        "captions": captions,
        "num_skipped": num_skipped,
    }


def caption_tag_targets(captions: Sequence[Sequence[str]], tags: Sequence[str]) -> torch.Tensor:
    """``[len(captions), len(tags)]`` float: 1 where one of an image's captions holds the tag: a word, or a
    phrase of words in a row ("red circle" is in "a small red circle", not in "a red square and a circle")."""
    wanted = tuple(" ".join(_WORDS.findall(tag.lower())) for tag in tags)
    out = torch.zeros(len(captions), len(tags))
    for row, texts in enumerate(captions):
        for text in texts:
            for k in _tags_in(text, wanted):
                out[row, k] = 1.0
    return out


def tags_in(text: str, tags: Sequence[str]) -> tuple[int, ...]:
    """Indices of ``tags`` found in ``text`` as whole words in a row, case-insensitive (the matching
    ``caption_tag_targets`` uses)."""
    return _tags_in(text, tuple(" ".join(_WORDS.findall(tag.lower())) for tag in tags))


@functools.lru_cache(maxsize=1 << 16)
def _tags_in(text: str, tags: tuple[str, ...]) -> tuple[int, ...]:
    """Indices of ``tags`` (normalised words joined by spaces) found in ``text``; cached, since a training
    run meets each caption once per epoch."""
    words = " " + " ".join(_WORDS.findall(text.lower())) + " "
    return tuple(k for k, tag in enumerate(tags) if tag and f" {tag} " in words)


def images_and_all_captions(dataset: Dataset, batch_size: int = 64) -> Iterator[EvalBatch]:
    """Yield every readable image of ``dataset`` once, in order, with ALL its captions (for R@K).

    Unreadable images are left out (and a stream such as WebDataset shards is read through its
    ``iter_all()``, whole and in order), so build the caption index from the yielded batches
    (``caption_image_index``) and both sides stay aligned.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    pending: list[ImageTextSample] = []
    # A stream (WebDataset) is read whole by this one process, not split by rank or worker.
    samples = dataset.iter_all() if hasattr(dataset, "iter_all") else (dataset[i] for i in range(len(dataset)))
    for sample in samples:
        if sample is None:
            continue
        pending.append(sample)
        if len(pending) == batch_size:
            yield _eval_batch(pending)
            pending = []
    if pending:
        yield _eval_batch(pending)


def _eval_batch(samples: list[ImageTextSample]) -> EvalBatch:
    return EvalBatch(
        images=torch.stack([s.image for s in samples]),
        captions=[list(s.captions) for s in samples],
        image_ids=[s.image_id for s in samples],
    )


def caption_image_index(captions_per_image: Sequence[Sequence[str]]) -> tuple[list[str], torch.Tensor]:
    """Flatten per-image captions; return them with ``caption_to_image[k]`` = image row of caption ``k``."""
    flat: list[str] = []
    owners: list[int] = []
    for image_row, captions in enumerate(captions_per_image):
        flat.extend(captions)
        owners.extend([image_row] * len(captions))
    return flat, torch.tensor(owners, dtype=torch.long)


def dataset_records(dataset: Dataset) -> list[ImageTextRecord]:
    """The records behind ``dataset`` (an ``ImageTextDataset`` or a ``Subset`` of one), not decoded."""
    if isinstance(dataset, Subset):
        inner = dataset_records(dataset.dataset)
        return [inner[i] for i in dataset.indices]
    records = getattr(dataset, "records", None)
    if records is None:
        raise TypeError(
            f"{type(dataset).__name__} has no 'records'; expected an ImageTextDataset or a Subset of one"
        )
    return list(records)


def all_captions(dataset: Dataset) -> list[str]:
    """Every caption of every record (e.g. to build a tokenizer) without decoding any image.

    A streamed dataset (WebDataset shards) provides its own ``all_captions()``.
    """
    if hasattr(dataset, "all_captions"):
        return list(dataset.all_captions())
    return [caption for record in dataset_records(dataset) for caption in record.captions]


def usable_records(records: Sequence[ImageTextRecord], source: str | os.PathLike[str], empty: str,
                   max_samples: int, skipped: Counter[str]) -> list[ImageTextRecord]:
    """What a format reader hands to ``ImageTextDataset``: ``records`` without blank captions (counted in
    ``skipped``), at most ``max_samples`` of them (0 = all). Raises ``SplitNotFoundError("{source}: {empty}")``
    when nothing usable is left, so an empty split fails at open time, naming the file."""
    kept = keep_captioned(records, skipped)
    if not kept:
        raise SplitNotFoundError(empty, where=source)
    return kept[:max_samples] if max_samples > 0 else kept


def keep_captioned(records: Sequence[ImageTextRecord], skipped: Counter[str]) -> list[ImageTextRecord]:
    """``records`` with blank captions removed (counted as ``empty caption`` in ``skipped``).

    A record left with no caption at all is dropped and counted as ``no caption``: an image
    nothing describes cannot be a contrastive pair.
    """
    kept: list[ImageTextRecord] = []
    for record in records:
        captions = [c.strip() for c in record.captions if isinstance(c, str) and c.strip()]
        if len(captions) < len(record.captions):
            skipped["empty caption"] += len(record.captions) - len(captions)
        if not captions:
            skipped["no caption"] += 1
            continue
        record.captions = captions
        kept.append(record)
    return kept


def skip_report(dataset: Any) -> str:
    """One line saying what ``dataset`` skipped so far (its ``skipped`` reason -> count), for the epoch log.

    Works on any dataset with a ``skipped`` Counter (all image-text formats, ImageFolder, parallel
    corpora) and on a ``Subset`` of one. With DataLoader workers each worker counts its own copy, so
    the line covers what the main process saw (everything when ``num_workers=0``).
    """
    inner = dataset.dataset if isinstance(dataset, Subset) else dataset
    skipped = getattr(inner, "skipped", None) or {}
    name = type(inner).__name__
    total = sum(skipped.values())
    if not total:
        return f"{name}: nothing skipped"
    parts = ", ".join(f"{count} {reason}" for reason, count in sorted(skipped.items()) if count)
    return f"{name}: skipped {total} ({parts})"
