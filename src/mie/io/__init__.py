"""Safe checkpoint and cache formats: atomic writes, safetensors + JSON, weights-only state files."""

from mie.io.atomic import atomic_path, atomic_write_bytes, atomic_write_text
from mie.io.cache import load_npy, read_json, save_json_atomic, save_npy
from mie.io.checkpoint import (
    CheckpointError,
    check_safetensors_header,
    load_state,
    load_weights,
    save_state,
    save_weights,
    sha256_file,
    sidecar_path,
)

__all__ = [
    "CheckpointError",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_safetensors_header",
    "load_npy",
    "load_state",
    "load_weights",
    "read_json",
    "save_json_atomic",
    "save_npy",
    "save_state",
    "save_weights",
    "sha256_file",
    "sidecar_path",
]
