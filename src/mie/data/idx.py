"""IDX files (LeCun's MNIST format, also Fashion-MNIST's) read with numpy, gzipped or not.

An IDX file is a 4-byte magic ``0x00 0x00 <dtype> <ndim>``, ``ndim`` big-endian uint32 sizes, then
the values in C order (big-endian for multi-byte types). ``load_fashion_mnist`` reads the four files
Debian's ``dataset-fashion-mnist`` package installs::

    images, labels = read_idx("train-images-idx3-ubyte.gz"), read_idx("train-labels-idx1-ubyte.gz")
    split = load_fashion_mnist("train")  # uint8 [60000, 28, 28] and int64 [60000]
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from mie.errors import DataError

# IDX type byte -> numpy dtype (big-endian where it matters).
IDX_DTYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                       "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")
FASHION_MNIST_INSTALL = "install it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu)"


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """The array stored in an IDX file (``.gz`` files are decompressed); a malformed one is a ``DataError``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file {path} not found")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the file is called
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise DataError(f"is not a readable gzip file ({err})", where=path,
                            fix="download or reinstall the file") from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in IDX_DTYPES:
        raise DataError("is not an IDX file (bad magic number)", where=path, fix="pass an IDX (ubyte) file")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"is truncated: its header declares {ndim} dimensions", where=path,
                        fix="download or reinstall the file")
    shape = tuple(int(n) for n in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[raw[2]]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"holds {len(raw) - header} bytes of data but its header declares {shape} "
                        f"({expected} bytes)", where=path, fix="download or reinstall the file")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find(root: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"Fashion-MNIST file {root / stem}[.gz] not found; {FASHION_MNIST_INSTALL} "
                            "or set data.path to a folder holding the four IDX files")


def load_fashion_mnist(split: str, root: str | os.PathLike[str] = FASHION_MNIST_DIR) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 [N, 28, 28], labels int64 [N])`` of Fashion-MNIST's ``train`` or ``test`` split."""
    if split not in FASHION_MNIST_FILES:
        raise ValueError(f"Fashion-MNIST has splits {', '.join(FASHION_MNIST_FILES)}, not {split!r}")
    image_stem, label_stem = FASHION_MNIST_FILES[split]
    images, labels = read_idx(_find(Path(root), image_stem)), read_idx(_find(Path(root), label_stem))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"images {images.shape} and labels {labels.shape} do not pair up", where=root,
                        fix="reinstall the Fashion-MNIST files")
    return images, labels.astype(np.int64)
