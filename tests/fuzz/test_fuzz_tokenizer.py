"""Property-based fuzzing of the tokenizer readers and ``decode`` (issue 11): any bytes on disk, any edit of a
valid ``tokenizer.json`` and any id list give a result or one of the project's named errors
(``mie.errors.MieError``), never a traceback of another type; a file that loads encodes and decodes a short
text quickly (no file can choose a regex that backtracks). ``make fuzz`` runs these with thousands of examples."""

from __future__ import annotations

import copy
import functools
import json
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.fuzz.mutations import edit_lists, mutate

from mie.errors import MieError, TokenizerError
from mie.tokenization.factory import load_any_tokenizer
from mie.tokenization.simple import SimpleTokenizer
from mie.tokenization.tokenizer import BPETokenizer, load_tokenizer

pytestmark = pytest.mark.fuzz
TEXT = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab the cat, 42!"
CORPUS = ["the cat sat on the mat, the end. " * 3, "low lower lowest 42 43 " * 3]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)
EDITS = edit_lists()


@functools.lru_cache(maxsize=1)
def valid_tokenizer() -> BPETokenizer:
    """A small trained tokenizer (about 280 ids, so its file is a few KB and loads in milliseconds)."""
    return BPETokenizer.train(CORPUS, vocab_size=280, min_frequency=1)


@functools.lru_cache(maxsize=1)
def valid_bytes() -> bytes:
    """The saved file of :func:`valid_tokenizer`, as ``save`` writes it."""
    with tempfile.TemporaryDirectory() as tmp:
        return valid_tokenizer().save(Path(tmp) / "tokenizer.json").read_bytes()


def node_paths(value, prefix=()):
    """Every path (a tuple of keys and indices) to a node of a JSON document, the root included."""
    yield prefix
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield from node_paths(child, (*prefix, key))


@functools.lru_cache(maxsize=1)
def valid_paths() -> list[tuple]:
    """Node paths of the valid document: every structural node, plus a few vocab entries and merges."""
    paths = list(node_paths(valid_tokenizer().to_dict()))
    keep = [p for p in paths if len(p) < 3 or p[1] not in ("vocab", "merges")]
    return keep + [p for p in paths if len(p) >= 3 and p[1] in ("vocab", "merges")][::25]




def exercise(tokenizer) -> None:
    """A loaded tokenizer encodes and decodes a short text within a bounded time."""
    start = time.perf_counter()
    ids = tokenizer.encode(TEXT)
    assert all(0 <= i < tokenizer.vocab_size for i in ids)
    assert isinstance(tokenizer.decode(ids), str)
    tokenizer([TEXT], 16)
    assert time.perf_counter() - start < 2.0


def load_bytes(raw: bytes, loader=load_tokenizer) -> None:
    """Write ``raw`` to a temp file and load it; only named errors may escape, a success is exercised."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tokenizer.json"
        path.write_bytes(raw)
        try:
            tokenizer = loader(path)
        except MieError as err:
            assert str(err).startswith(f"{path}: ") and "\n" not in str(err)
            return
    exercise(tokenizer)


@given(st.binary(max_size=600))
def test_loaders_on_arbitrary_bytes(raw):
    load_bytes(raw)
    load_bytes(raw, load_any_tokenizer)


@given(EDITS)
def test_loader_on_mutated_valid_files(edits):
    load_bytes(mutate(valid_bytes(), edits))


@given(st.data(), st.lists(json_values, min_size=1, max_size=3))
def test_loader_on_documents_with_values_replaced_by_random_json(data, values):
    document = copy.deepcopy(valid_tokenizer().to_dict())
    for value in values:
        path = data.draw(st.sampled_from(valid_paths()))
        if not path:
            document = value
            continue
        parent = document
        try:
            for key in path[:-1]:
                parent = parent[key]
            parent[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier replacement removed this node
    load_bytes(json.dumps(document).encode("utf-8"))


@given(st.sampled_from(["simple", "char", "bpe", None]), json_values, json_values)
def test_load_any_tokenizer_on_random_documents(kind, vocab, extra):
    load_bytes(json.dumps({"type": kind, "vocab": vocab, "lowercase": extra}).encode("utf-8"), load_any_tokenizer)


ids = st.integers(-(2**70), 2**70) | st.integers(-2, 300)
junk = st.none() | st.text(max_size=3) | st.floats() | st.booleans()


@given(st.lists(ids, max_size=20), st.lists(junk, max_size=2), st.booleans())
def test_decode_of_random_ids_is_text_or_a_tokenizer_error(numbers, others, skip_special):
    bpe, simple = valid_tokenizer(), SimpleTokenizer.build(CORPUS)
    for tokenizer, kwargs in ((bpe, {"skip_special_tokens": skip_special}), (simple, {})):
        for sequence in (numbers, [*numbers, *others]):
            try:
                text = tokenizer.decode(sequence, **kwargs)
            except TokenizerError:
                valid = all(type(i) is int and 0 <= i < tokenizer.vocab_size for i in sequence)
                assert not valid, sequence
                continue
            assert isinstance(text, str)
