"""The IDX reader (MNIST / Fashion-MNIST format) on files written here, plain and gzipped."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from mie.data.idx import load_fashion_mnist, read_idx
from mie.errors import DataError


def _idx(array: np.ndarray, type_byte: int = 0x08) -> bytes:
    header = bytes([0, 0, type_byte, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def test_reads_plain_and_gzipped_files(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a-idx3-ubyte").write_bytes(_idx(images))
    (tmp_path / "a-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(images)))
    assert np.array_equal(read_idx(tmp_path / "a-idx3-ubyte"), images)
    assert np.array_equal(read_idx(tmp_path / "a-idx3-ubyte.gz"), images)
    ints = np.array([1, -2, 70000], dtype=np.int32)
    (tmp_path / "b").write_bytes(_idx(ints, 0x0C))
    assert read_idx(tmp_path / "b").tolist() == [1, -2, 70000]


def test_corrupt_and_missing_files_are_one_line_errors(tmp_path):
    images = np.zeros((2, 3, 4), dtype=np.uint8)
    (tmp_path / "short").write_bytes(_idx(images)[:-5])
    (tmp_path / "magic").write_bytes(b"\x01\x02\x03\x04" + bytes(10))
    (tmp_path / "gz.gz").write_bytes(b"\x1f\x8b" + bytes(10))
    for name, message in (("short", "declares"), ("magic", "bad magic"), ("gz.gz", "gzip")):
        with pytest.raises(DataError, match=message) as err:
            read_idx(tmp_path / name)
        assert "\n" not in str(err.value)
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("train", tmp_path / "absent")


def test_fashion_mnist_from_a_folder_of_idx_files(tmp_path):
    images, labels = np.ones((3, 28, 28), dtype=np.uint8), np.array([0, 9, 4], dtype=np.uint8)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(images)))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx(labels))
    x, y = load_fashion_mnist("test", tmp_path)
    assert x.shape == (3, 28, 28) and y.tolist() == [0, 9, 4] and y.dtype == np.int64
