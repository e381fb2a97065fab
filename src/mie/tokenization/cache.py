"""Turbo pre-processing: tokenize a corpus once into an on-disk cache, memory-map it for training.

Layout of ``<cache_dir>/<key>/``: ``index.json`` (tokenizer hash, corpus fingerprint, one entry per file)
and one ``NNNNN.npy`` token array per corpus file (uint16 when the vocab fits, else uint32; an EOS id
ends each file when ``append_eos``). Arrays are read with ``np.load(mmap_mode="r", allow_pickle=False)``;
nothing is ever pickled.

The key is the SHA-256 of: the cache format version, the tokenizer's JSON text, ``append_eos``, and for
each corpus file its resolved path, size, ``mtime_ns`` and a content digest. The digest is the SHA-256
of the first and last MiB (fast; with size and mtime it catches real edits) or, with ``full_hash=True``,
of the whole file. Changing the tokenizer or any file gives a new key, hence a new cache; the same inputs
reuse the existing one. Files are tokenized in parallel by a ``spawn`` process pool whose workers rebuild
the tokenizer from its JSON string.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mie.tokenization.tokenizer import BPETokenizer

CACHE_VERSION = 1
_EDGE_BYTES = 1 << 20  # the fast digest reads this much from each end of a file
INDEX_NAME = "index.json"


def file_fingerprint(path: str | Path, full_hash: bool = False) -> dict[str, Any]:
    """Path, size, mtime and a content digest of one corpus file (see the module docstring)."""
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"corpus file {path} does not exist (or is not a file)")
    stat = path.stat()
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        if full_hash or stat.st_size <= 2 * _EDGE_BYTES:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        else:
            digest.update(fh.read(_EDGE_BYTES))
            fh.seek(-_EDGE_BYTES, os.SEEK_END)
            digest.update(fh.read(_EDGE_BYTES))
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest.hexdigest()}


def cache_key(tokenizer_json: str, fingerprints: Sequence[dict[str, Any]], append_eos: bool) -> str:
    """Hex key naming the cache of this tokenizer over these files."""
    blob = json.dumps(
        {
            "version": CACHE_VERSION,
            "tokenizer": hashlib.sha256(tokenizer_json.encode("utf-8")).hexdigest(),
            "append_eos": append_eos,
            "files": list(fingerprints),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


class TokenCache:
    """A built cache: its ``index`` and memory-mapped token ``arrays`` (one per corpus file)."""

    def __init__(self, path: Path, index: dict[str, Any], reused: bool) -> None:
        self.path = path
        self.index = index
        self.reused = reused  # True when an existing cache was found and nothing was tokenized
        self._arrays: list[np.ndarray] | None = None

    @classmethod
    def open(cls, path: str | Path) -> TokenCache:
        """Open a cache directory written by :func:`build_token_cache`."""
        path = Path(path)
        index_path = path / INDEX_NAME
        if not index_path.is_file():
            raise FileNotFoundError(f"{index_path} does not exist; build the cache with build_token_cache")
        index = json.loads(index_path.read_text(encoding="utf-8"))
        if index.get("version") != CACHE_VERSION:
            raise ValueError(f"{index_path}: cache version {index.get('version')!r}, expected {CACHE_VERSION}")
        for entry in index["files"]:
            if not (path / entry["array"]).is_file():
                raise FileNotFoundError(f"{path / entry['array']} listed in {index_path} is missing")
        return cls(path, index, reused=True)

    @property
    def key(self) -> str:
        """The cache key (also the directory name)."""
        return self.index["key"]

    @property
    def arrays(self) -> list[np.ndarray]:
        """Read-only memory-mapped token arrays, in corpus order."""
        if self._arrays is None:
            self._arrays = [
                np.load(self.path / e["array"], mmap_mode="r", allow_pickle=False) for e in self.index["files"]
            ]
        return self._arrays

    @property
    def n_tokens(self) -> int:
        """Total tokens over all files."""
        return int(self.index["n_tokens"])

    def __len__(self) -> int:
        return self.n_tokens

    def __repr__(self) -> str:
        return f"TokenCache({str(self.path)!r}, files={len(self.index['files'])}, tokens={self.n_tokens})"


_WORKER_TOKENIZER: BPETokenizer | None = None


def _init_worker(tokenizer_json: str) -> None:
    """Pool initializer: build the tokenizer once per worker process."""
    global _WORKER_TOKENIZER
    _WORKER_TOKENIZER = BPETokenizer.from_json(tokenizer_json)


def _encode_file(task: tuple[str, str, str, bool]) -> int:
    """Worker entry point (top level, so spawn can find it): encode one file with the worker's tokenizer."""
    if _WORKER_TOKENIZER is None:
        raise RuntimeError("worker tokenizer missing: the pool must use initializer=_init_worker")
    return _encode_into(_WORKER_TOKENIZER, task)


def _encode_into(tokenizer: BPETokenizer, task: tuple[str, str, str, bool]) -> int:
    """Tokenize one file into one ``.npy`` array; return its token count."""
    source, target, dtype, append_eos = task
    ids = tokenizer.encode(Path(source).read_text(encoding="utf-8", errors="replace"))
    if append_eos:
        ids.append(tokenizer.eos_id)
    np.save(target, np.asarray(ids, dtype=dtype), allow_pickle=False)
    return len(ids)


def build_token_cache(
    tokenizer: BPETokenizer,
    paths: Iterable[str | Path],
    cache_dir: str | Path,
    workers: int = 1,
    full_hash: bool = False,
    append_eos: bool = True,
) -> TokenCache:
    """Tokenize ``paths`` into ``cache_dir/<key>/`` unless that cache exists; return it (memory-mapped).

    ``workers`` > 1 tokenizes files in parallel processes. The cache directory appears atomically (built
    under a temporary name, then renamed), so an interrupted run never leaves a half cache behind.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("build_token_cache needs at least one corpus file")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    tokenizer_json = tokenizer.to_json()
    fingerprints = [file_fingerprint(p, full_hash) for p in paths]
    key = cache_key(tokenizer_json, fingerprints, append_eos)
    cache_dir = Path(cache_dir)
    final = cache_dir / key
    if (final / INDEX_NAME).is_file():
        try:
            return TokenCache.open(final)
        except (FileNotFoundError, ValueError, KeyError, json.JSONDecodeError):
            shutil.rmtree(final)  # damaged cache: rebuild it
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache_dir, prefix=f".{key}.tmp-"))
    try:
        dtype = "uint16" if tokenizer.vocab_size <= 1 << 16 else "uint32"
        tasks = [(str(p), str(tmp / f"{i:05d}.npy"), dtype, append_eos) for i, p in enumerate(paths)]
        counts = _run_tasks(tasks, tokenizer, tokenizer_json, workers)
        files = [
            {**fp, "array": f"{i:05d}.npy", "n_tokens": n} for i, (fp, n) in enumerate(zip(fingerprints, counts))
        ]
        index = {
            "version": CACHE_VERSION,
            "key": key,
            "dtype": dtype,
            "append_eos": append_eos,
            "full_hash": full_hash,
            "tokenizer_sha256": hashlib.sha256(tokenizer_json.encode("utf-8")).hexdigest(),
            "n_tokens": sum(counts),
            "files": files,
        }
        (tmp / INDEX_NAME).write_text(json.dumps(index, indent=1), encoding="utf-8")
        try:
            os.replace(tmp, final)
        except OSError:  # another process finished the same cache first: use theirs
            shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    cache = TokenCache.open(final)
    cache.reused = False
    return cache


def _run_tasks(
    tasks: list[tuple[str, str, str, bool]], tokenizer: BPETokenizer, tokenizer_json: str, workers: int
) -> list[int]:
    if workers == 1 or len(tasks) == 1:
        return [_encode_into(tokenizer, t) for t in tasks]
    ctx = multiprocessing.get_context("spawn")  # fork is unsafe with threads (torch) in the parent
    with ctx.Pool(min(workers, len(tasks)), initializer=_init_worker, initargs=(tokenizer_json,)) as pool:
        return pool.map(_encode_file, tasks, chunksize=1)
