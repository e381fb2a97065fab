"""Full and read-only disks: a failed write names the file and the fix, and never replaces a good file."""

from __future__ import annotations

import errno
import os

import pytest
import torch

import mie.io.checkpoint as checkpoint
from mie.errors import StorageError
from mie.io import atomic_write_text, load_weights, save_state, save_weights


def test_a_full_disk_in_safetensors_is_a_storage_error_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = save_weights(tmp_path / "w.safetensors", {"a": torch.ones(2)}, {"step": 1})

    def full(*args, **kwargs):  # what safetensors raises on ENOSPC (measured on a full tmpfs)
        raise RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(checkpoint, "_st_save_file", full)
    with pytest.raises(StorageError) as err:
        save_weights(path, {"a": torch.zeros(2)}, {"step": 2})
    assert str(err.value) == f"{path}: no space left on the device — free some space or choose another output_dir"
    assert load_weights(path)[1]["step"] == 1 and not list(tmp_path.glob(".*.tmp"))


def test_a_failed_torch_save_is_a_storage_error(tmp_path, monkeypatch):
    def failed(*args, **kwargs):  # torch.save's own wording for a short write
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed")

    monkeypatch.setattr(torch, "save", failed)
    with pytest.raises(StorageError, match=r"s.pt: the write failed \(.*file write failed\) — check the free"):
        save_state(tmp_path / "s.pt", {"x": 1})


def test_an_unwritable_directory_names_the_target_not_the_temporary(tmp_path, monkeypatch):
    import tempfile

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", os.path.join(kwargs["dir"], ".x.abc.tmp"))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(OSError) as err:
        atomic_write_text(tmp_path / "results.json", "{}")
    assert err.value.errno == errno.EROFS and err.value.filename == str(tmp_path / "results.json")


def test_saved_files_get_the_usual_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "report.md", "hi")
    finally:
        os.umask(mask)
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
