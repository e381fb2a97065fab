"""The embeddings behind the Search and Caption tabs: a clip run's test split, embedded once and cached.

The first start embeds every image and caption of the split (``Run.embed_split``, as ``mie embed``
does) and writes them to ``<run>/cache/serve_<checkpoint>_<split>.safetensors`` with a JSON sidecar
(image ids, paths, captions and a key: the checkpoint's SHA-256, the split and the data path). A later
start whose key matches reads the file instead. A query then costs one text-encoder forward and one
``[N, D] @ [D]`` product (milliseconds on CPU).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mie.io import load_weights, save_weights, sha256_file

log = logging.getLogger(__name__)
CACHE_VERSION = 1


@dataclass
class EmbeddingIndex:
    """Unit-norm image embeddings of a split (``[N, D]``) and of its distinct captions (``[C, D]``)."""

    split: str
    image_embeds: torch.Tensor
    image_ids: list[str]
    paths: list[str]
    captions: list[str]
    caption_embeds: torch.Tensor

    def top_images(self, query: torch.Tensor, k: int) -> list[tuple[int, float]]:
        """``(row, cosine)`` of the ``k`` images closest to the unit-norm ``query`` ``[D]``, best first."""
        return _top(self.image_embeds @ query, k)

    def top_captions(self, image: torch.Tensor, k: int) -> list[tuple[str, float]]:
        """``(caption, cosine)`` of the ``k`` captions closest to the unit-norm ``image`` ``[D]``, best first."""
        return [(self.captions[i], s) for i, s in _top(self.caption_embeds @ image, k)]


def _top(scores: torch.Tensor, k: int) -> list[tuple[int, float]]:
    top = torch.topk(scores, min(k, scores.numel()))
    return list(zip(top.indices.tolist(), top.values.tolist()))


def cache_file(cache_dir: Path, checkpoint: Path, split: str) -> Path:
    """Where the embeddings of ``split`` by ``checkpoint`` are cached."""
    return cache_dir / f"serve_{checkpoint.stem}_{split}.safetensors"


def load_index(run: Any, split: str | None = None, cache_dir: Path | None = None) -> EmbeddingIndex:
    """The index of ``split`` (default: the run's first test split) of ``run`` (a ``mie.api.Run``), read
    from ``cache_dir`` when it holds it for these weights, else embedded and written there (best effort:
    a read-only run directory only costs the embedding at each start)."""
    data = run.config.data
    name = split or (data.test_splits[0] if data.test_splits else "test")
    key = {"version": CACHE_VERSION, "checkpoint_sha256": sha256_file(run.checkpoint), "split": name,
           "data": str(data.path)}
    path = cache_file(cache_dir, run.checkpoint, name) if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            tensors, meta = load_weights(path)
            if meta.get("key") == key:
                log.info("read the %s embeddings from %s", name, path)
                return EmbeddingIndex(name, tensors["image_embeds"], meta["image_ids"], meta["image_paths"],
                                      meta["captions"], tensors["caption_embeds"])
        except (OSError, ValueError, KeyError) as exc:  # a damaged cache is rebuilt, never trusted
            log.warning("ignoring the embedding cache %s: %s", path, exc)
    embedded = run.embed_split(name)
    first: dict[str, int] = {}
    for row, caption in enumerate(embedded.captions):
        first.setdefault(caption, row)
    index = EmbeddingIndex(name, embedded.image_embeds.contiguous(), list(embedded.image_ids),
                           list(embedded.paths), list(first), embedded.text_embeds[list(first.values())].contiguous())
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_weights(path, {"image_embeds": index.image_embeds, "caption_embeds": index.caption_embeds},
                         {"key": key, "image_ids": index.image_ids, "image_paths": index.paths,
                          "captions": index.captions})
            log.info("cached the %s embeddings in %s", name, path)
        except OSError as exc:
            log.warning("could not cache the embeddings in %s: %s", path, exc)
    return index
