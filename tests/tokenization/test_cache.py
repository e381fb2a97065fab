"""On-disk token cache: contents, memory mapping, reuse and invalidation."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from mie.tokenization import BPETokenizer, TokenCache, build_token_cache
from mie.tokenization.cache import cache_key, file_fingerprint


@pytest.fixture()
def corpus(tmp_path):
    paths = []
    for i, text in enumerate(["the cat sat on the mat\n", "naïve 😀 text\n\nmore text", ""]):
        path = tmp_path / f"doc{i}.txt"
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def test_cache_contents_are_memory_mapped_ids(trained, corpus, tmp_path):
    cache = build_token_cache(trained, corpus, tmp_path / "cache")
    assert not cache.reused and cache.path.name == cache.key
    for path, array in zip(corpus, cache.arrays):
        assert isinstance(array, np.memmap) and array.dtype == np.uint16 and not array.flags.writeable
        assert array.tolist() == trained.encode(path.read_text(encoding="utf-8")) + [trained.eos_id]
    assert cache.n_tokens == len(cache) == sum(len(a) for a in cache.arrays)
    index = json.loads((cache.path / "index.json").read_text())
    assert index["files"][0]["path"] == str(corpus[0].resolve()) and index["dtype"] == "uint16"
    assert not list((tmp_path / "cache").glob(".*tmp*"))  # the temp build directory was renamed away
    assert "tokens=" in repr(cache)


def test_same_inputs_reuse_changes_invalidate(trained, corpus, tmp_path):
    root = tmp_path / "cache"
    first = build_token_cache(trained, corpus, root)
    again = build_token_cache(trained, corpus, root)
    assert again.reused and again.key == first.key
    # A different tokenizer -> a different key.
    other = BPETokenizer.train(["completely different words"] * 3, vocab_size=270)
    assert build_token_cache(other, corpus, root).key != first.key
    # Editing a file (same size, new content) -> a different key; the new cache holds the new ids.
    corpus[0].write_text("the dog sat on the mat\n", encoding="utf-8")
    changed = build_token_cache(trained, corpus, root)
    assert changed.key != first.key and not changed.reused
    assert changed.arrays[0].tolist()[:-1] == trained.encode("the dog sat on the mat\n")
    assert build_token_cache(trained, corpus, root, append_eos=False).key != changed.key
    assert len(list(root.iterdir())) == 4


def test_fingerprint_edges_and_full_hash(tmp_path):
    path = tmp_path / "big.bin"
    data = bytearray(os.urandom(3 << 20))
    path.write_bytes(bytes(data))
    fast, full = file_fingerprint(path), file_fingerprint(path, full_hash=True)
    data[(3 << 20) // 2] ^= 1  # a middle byte: only the full hash sees it (mtime may not change)
    path.write_bytes(bytes(data))
    os.utime(path, ns=(fast["mtime_ns"], fast["mtime_ns"]))
    assert file_fingerprint(path) == fast
    assert file_fingerprint(path, full_hash=True) != full
    assert cache_key("{}", [fast], True) != cache_key("{}", [fast], False)


def test_damaged_cache_is_rebuilt_and_errors(trained, corpus, tmp_path):
    root = tmp_path / "cache"
    cache = build_token_cache(trained, corpus, root)
    (cache.path / cache.index["files"][1]["array"]).unlink()
    with pytest.raises(FileNotFoundError, match="is missing"):
        TokenCache.open(cache.path)
    rebuilt = build_token_cache(trained, corpus, root)
    assert not rebuilt.reused and rebuilt.arrays[1].tolist()[-1] == trained.eos_id
    index = json.loads((cache.path / "index.json").read_text())
    (cache.path / "index.json").write_text(json.dumps({**index, "version": 0}))
    with pytest.raises(ValueError, match="cache version 0"):
        TokenCache.open(cache.path)
    with pytest.raises(FileNotFoundError, match="build the cache"):
        TokenCache.open(tmp_path)
    with pytest.raises(ValueError, match="at least one corpus file"):
        build_token_cache(trained, [], root)
    with pytest.raises(ValueError, match="workers must be >= 1"):
        build_token_cache(trained, corpus, root, workers=0)
    with pytest.raises(FileNotFoundError, match="nope.txt does not exist"):
        build_token_cache(trained, [tmp_path / "nope.txt"], root)


@pytest.mark.slow
def test_parallel_workers_match_serial(trained, corpus, tmp_path):
    serial = build_token_cache(trained, corpus, tmp_path / "a")
    parallel = build_token_cache(trained, corpus, tmp_path / "b", workers=2)
    assert parallel.key == serial.key
    assert [a.tolist() for a in parallel.arrays] == [a.tolist() for a in serial.arrays]
