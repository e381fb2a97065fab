"""Read a GGUF file (llama.cpp's model format): metadata values and tensors dequantized to float32.

>>> gguf_file = GGUFFile("SmolLM2-135M-Instruct.Q4_1.gguf")  # doctest: +SKIP
>>> gguf_file.value("llama.block_count"), gguf_file.tensor("blk.0.attn_q.weight").shape  # doctest: +SKIP
(30, torch.Size([576, 576]))

The ``gguf`` package does the parsing (it memory-maps the file and executes nothing). GGUF lists a
tensor's dimensions fastest-first, the reverse of torch; :meth:`GGUFFile.tensor` returns torch order.
Every problem is a one-line :class:`~mie.errors.CheckpointError` naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mie.errors import CheckpointError, ConfigError

INSTALL_FIX = "run `make pretrained` (or: pip install 'gguf>=0.10')"
_MISSING = object()


def import_gguf() -> Any:
    """The ``gguf`` package, or a ConfigError saying how to install it."""
    try:
        import gguf
    except ImportError:
        raise ConfigError("the 'gguf' package is not installed; it reads GGUF model files",
                          fix=INSTALL_FIX) from None
    return gguf


class GGUFFile:
    """One GGUF file: ``value(key)`` for metadata, ``tensor(name)`` for float32 weights in torch order."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        gguf = import_gguf()
        if not self.path.is_file():
            raise CheckpointError("no such GGUF file", where=self.path, fix="check the path")
        try:
            self._reader = gguf.GGUFReader(self.path, "r")
        except Exception as err:  # the reader raises ValueError/struct.error/... for damaged files
            raise CheckpointError(f"not a readable GGUF file ({type(err).__name__}: {str(err)[:120]})",
                                  where=self.path, fix="download or install the file again") from None
        self._tensors = {t.name: t for t in self._reader.tensors}
        self._dequantize = gguf.quants.dequantize

    @property
    def keys(self) -> list[str]:
        """The metadata keys, in file order."""
        return list(self._reader.fields)

    @property
    def tensor_names(self) -> list[str]:
        """The tensor names, in file order."""
        return list(self._tensors)

    def value(self, key: str, default: Any = _MISSING) -> Any:
        """A metadata value as plain Python (str, int, float, bool or list); ``default`` when absent."""
        field = self._reader.fields.get(key)
        if field is None:
            if default is not _MISSING:
                return default
            raise CheckpointError(f"metadata key {key!r} is missing", where=self.path,
                                  fix="use a GGUF file converted by a recent llama.cpp")
        try:
            return field.contents()
        except Exception as err:
            raise CheckpointError(f"metadata key {key!r} cannot be read ({type(err).__name__})", where=self.path,
                                  fix="download or install the file again") from None

    def tensor(self, name: str) -> torch.Tensor:
        """Tensor ``name`` dequantized to float32, shaped as torch would (GGUF's dims reversed)."""
        info = self._tensors.get(name)
        if info is None:
            raise CheckpointError(f"tensor {name!r} is missing", where=self.path,
                                  fix="use a GGUF file of the expected architecture")
        try:
            array = self._dequantize(info.data, info.tensor_type)
        except NotImplementedError:
            raise CheckpointError(f"tensor {name!r} uses quantization {info.tensor_type.name}, which the gguf "
                                  "package cannot dequantize", where=self.path,
                                  fix="upgrade gguf or use another quantization of the model") from None
        shape = tuple(int(d) for d in reversed(info.shape.tolist()))
        array = np.ascontiguousarray(array, dtype=np.float32)
        if array.size != int(np.prod(shape)):
            raise CheckpointError(f"tensor {name!r} holds {array.size} values, not {shape}", where=self.path,
                                  fix="download or install the file again")
        return torch.from_numpy(array.reshape(shape).copy())
