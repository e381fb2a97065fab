"""The embedding cache of ``mie serve``: written once, read back while the weights match, rebuilt otherwise."""

from __future__ import annotations

import pytest
import torch

import mie
from mie.serve.search import cache_file, load_index

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_index_is_cached_and_read_back(clip_run, tmp_path, monkeypatch):
    run = mie.load_run(clip_run)
    first = load_index(run, cache_dir=tmp_path)
    path = cache_file(tmp_path, run.checkpoint, "test")
    assert path.is_file() and path.with_suffix(".json").is_file()
    assert len(first.paths) == 8 and len(set(first.captions)) == len(first.captions)

    def no_embedding(*args, **kwargs):
        raise AssertionError("embedded again although the cache matches")

    monkeypatch.setattr(type(run), "embed_split", no_embedding)
    again = load_index(run, cache_dir=tmp_path)
    assert torch.equal(again.image_embeds, first.image_embeds) and again.captions == first.captions
    assert again.paths == first.paths


def test_a_stale_or_damaged_cache_is_rebuilt(clip_run, tmp_path):
    run = mie.load_run(clip_run)
    load_index(run, cache_dir=tmp_path)
    path = cache_file(tmp_path, run.checkpoint, "test")
    path.write_bytes(b"damaged")
    rebuilt = load_index(run, cache_dir=tmp_path)
    assert len(rebuilt.paths) == 8
    assert load_index(run, cache_dir=tmp_path).captions == rebuilt.captions  # and written again


def test_an_unwritable_cache_only_costs_time(clip_run, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    index = load_index(mie.load_run(clip_run), cache_dir=blocker / "cache")
    assert len(index.paths) == 8
