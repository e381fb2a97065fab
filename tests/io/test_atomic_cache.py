"""Atomic writes and the JSON / .npy cache helpers."""

import os

import numpy as np
import pytest

from mie.io import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    load_npy,
    read_json,
    save_json_atomic,
    save_npy,
)


def test_atomic_write_creates_parents_and_replaces(tmp_path):
    target = tmp_path / "a" / "b" / "f.bin"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    atomic_write_text(target, "héllo")
    assert target.read_text(encoding="utf-8") == "héllo"
    assert os.listdir(target.parent) == ["f.bin"]  # no temp files left behind


def test_exception_inside_block_keeps_old_file_and_cleans_temp(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_crash_in_replace_keeps_old_file(tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    target.write_text("old")

    def crash(src, dst):
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        atomic_write_text(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]


def test_json_round_trip_and_errors(tmp_path):
    obj = {"b": [1, 2.5, "x"], "a": {"nested": None}}
    path = save_json_atomic(tmp_path / "c.json", obj)
    assert read_json(path) == obj
    assert list(read_json(path)) == ["b", "a"]  # insertion order kept
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        save_json_atomic(tmp_path / "d.json", {"s": {1, 2}})
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(ValueError, match="bad.json is not valid JSON"):
        read_json(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="none.json"):
        read_json(tmp_path / "none.json")


def test_npy_round_trip_and_pickle_refusal(tmp_path):
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    path = save_npy(tmp_path / "emb.npy", arr)
    assert path.name == "emb.npy" and os.listdir(tmp_path) == ["emb.npy"]
    np.testing.assert_array_equal(load_npy(path), arr)
    np.testing.assert_array_equal(load_npy(path, mmap_mode="r"), arr)
    with pytest.raises(ValueError, match="holds Python objects"):
        save_npy(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object))
    # A hand-written .npy header declaring an object array (whose body NumPy would unpickle).
    header = b"{'descr': '|O', 'fortran_order': False, 'shape': (2,), }"
    header += b" " * (63 - len(header) % 64 - 10) + b"\n"
    (tmp_path / "obj.npy").write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b"\x80\x04.")
    with pytest.raises(ValueError, match="cannot be read safely"):
        load_npy(tmp_path / "obj.npy")
    with pytest.raises(FileNotFoundError):
        load_npy(tmp_path / "missing.npy")
