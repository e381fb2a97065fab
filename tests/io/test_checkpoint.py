"""Weights (safetensors + sidecar) and trainer-state files: round trips and every refusal path."""

import hashlib
import json
import os
import random

import numpy as np
import pytest
import torch

from mie.io import (
    CheckpointError,
    check_safetensors_header,
    load_state,
    load_weights,
    save_state,
    save_weights,
    sidecar_path,
)


def _state():
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    return {"w": base, "w_t": base.t(), "tied": base, "b": torch.ones(3, dtype=torch.bfloat16)}


def test_round_trip_with_shared_and_non_contiguous_tensors(tmp_path):
    state = _state()
    path = save_weights(tmp_path / "m.safetensors", state, {"step": 7, "config": {"lr": 0.1}})
    loaded, meta = load_weights(path)
    assert set(loaded) == set(state)
    for name, tensor in state.items():
        assert loaded[name].dtype == tensor.dtype
        assert torch.equal(loaded[name], tensor)
    assert loaded["w_t"].is_contiguous()
    assert meta["step"] == 7 and meta["config"] == {"lr": 0.1}
    assert meta["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert set(meta["versions"]) >= {"mie", "torch", "python"}
    assert meta["weights_file"] == "m.safetensors" and "created" in meta
    assert sidecar_path(path) == tmp_path / "m.json"


def test_dataclass_metadata_is_stored_as_dict(tmp_path):
    from mie.training.config import OptimizerConfig

    meta_in = {"opt": OptimizerConfig(lr=0.5), "where": tmp_path / "data", "loss": torch.tensor(0.25)}
    path = save_weights(tmp_path / "m.safetensors", {"x": torch.zeros(2)}, meta_in)
    _, meta = load_weights(path)
    assert meta["opt"]["lr"] == 0.5 and meta["where"] == str(tmp_path / "data") and meta["loss"] == 0.25


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="must end with .safetensors"):
        save_weights(tmp_path / "m.pt", {"x": torch.zeros(1)})
    with pytest.raises(ValueError, match="reserved"):
        save_weights(tmp_path / "m.safetensors", {"x": torch.zeros(1)}, {"sha256": "x"})
    with pytest.raises(ValueError, match="'x' is a int"):
        save_weights(tmp_path / "m.safetensors", {"x": 3})
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        save_weights(tmp_path / "m.safetensors", {"x": torch.zeros(1)}, {"f": object()})
    assert not (tmp_path / "m.safetensors").exists()


def test_hash_mismatch_is_detected(tmp_path):
    path = save_weights(tmp_path / "m.safetensors", {"x": torch.zeros(4)})
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # flip a byte of tensor data: the header stays valid
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match its sidecar"):
        load_weights(path)
    loaded, _ = load_weights(path, verify=False)
    assert loaded["x"].shape == (4,)


def test_truncated_file_is_detected(tmp_path):
    path = save_weights(tmp_path / "m.safetensors", {"x": torch.zeros(64)})
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="truncated"):
        load_weights(path, verify=False)
    path.write_bytes(b"\x01\x02")
    with pytest.raises(CheckpointError, match="truncated"):
        load_weights(path, verify=False)
    header = path.read_bytes()
    assert len(header) == 2


def test_truncated_header_is_detected(tmp_path):
    path = save_weights(tmp_path / "m.safetensors", {"x": torch.zeros(64)})
    header_len = int.from_bytes(path.read_bytes()[:8], "little")
    path.write_bytes(path.read_bytes()[: 8 + header_len // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_weights(path, verify=False)


def test_pickle_renamed_safetensors_is_refused_without_executing(tmp_path):
    # Hand-written bytes of a pickle stream (protocol 4 header, then a GLOBAL opcode for os.system):
    # if anything unpickled this, the marker file would be created.
    marker = tmp_path / "pwned"
    payload = b"\x80\x04\x95\x30\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x8c\x06system\x93\x8c"
    payload += f"\x15touch {marker}".encode() + b"\x85R."
    path = tmp_path / "evil.safetensors"
    path.write_bytes(payload)
    sidecar_path(path).write_text(json.dumps({"sha256": hashlib.sha256(payload).hexdigest()}))
    with pytest.raises(CheckpointError, match="pickle"):
        load_weights(path)
    assert not marker.exists()


def test_zip_renamed_safetensors_is_named(tmp_path):
    path = tmp_path / "z.safetensors"
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 60)
    with pytest.raises(CheckpointError, match="zip"):
        load_weights(path, verify=False)


def test_missing_sidecar_and_missing_file(tmp_path):
    path = save_weights(tmp_path / "m.safetensors", {"x": torch.zeros(2)})
    sidecar_path(path).unlink()
    with pytest.raises(CheckpointError, match="no metadata sidecar m.json"):
        load_weights(path)
    tensors, meta = load_weights(path, verify=False)
    assert meta == {} and torch.equal(tensors["x"], torch.zeros(2))
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        load_weights(tmp_path / "nothing.safetensors")


def test_corrupt_sidecar_json(tmp_path):
    path = save_weights(tmp_path / "m.safetensors", {"x": torch.zeros(2)})
    sidecar_path(path).write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_weights(path)


def test_header_checks_offsets_and_shape(tmp_path):
    header = json.dumps({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    good = len(header).to_bytes(8, "little") + header + b"\x00" * 16
    assert check_safetensors_header(good, "g")["x"]["shape"] == [4]
    bad = json.dumps({"x": {"dtype": "F32", "shape": [4]}}).encode()
    with pytest.raises(CheckpointError, match="data_offsets"):
        check_safetensors_header(len(bad).to_bytes(8, "little") + bad, "b")
    listy = b"[1, 2]"
    with pytest.raises(CheckpointError, match="not a JSON object"):
        check_safetensors_header(len(listy).to_bytes(8, "little") + listy, "l")
    junk = b"\x05\x00\x00\x00\x00\x00\x00\x00abcde"
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        check_safetensors_header(junk, "j")
    # A well-formed header over malformed tensor data is caught by the library and re-raised.
    wrong_dtype = json.dumps({"x": {"dtype": "NOPE", "shape": [4], "data_offsets": [0, 16]}}).encode()
    path = tmp_path / "w.safetensors"
    path.write_bytes(len(wrong_dtype).to_bytes(8, "little") + wrong_dtype + b"\x00" * 16)
    with pytest.raises(CheckpointError, match="could not be parsed"):
        load_weights(path, verify=False)


def test_state_round_trip_with_rng_states(tmp_path):
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "step": 3,
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": {"kind": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                      "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "python_rng": [py_state[0], list(py_state[1]), py_state[2]],
        "dtype": torch.float16,
        "nested": [{"a": (1, 2.5, None)}],
    }
    path = save_state(tmp_path / "s.pt", state)
    loaded = load_state(path)
    assert torch.equal(loaded["torch_rng"], state["torch_rng"])
    assert loaded["python_rng"][1] == list(py_state[1])
    assert loaded["dtype"] is torch.float16 and loaded["nested"][0]["a"] == (1, 2.5, None)


def test_save_state_refuses_objects_weights_only_cannot_load(tmp_path):
    with pytest.raises(ValueError, match=r"state\['rng'\]\[1\] is a ndarray"):
        save_state(tmp_path / "s.pt", {"rng": ["MT19937", np.zeros(3)]})
    with pytest.raises(ValueError, match="use str or int keys"):
        save_state(tmp_path / "s.pt", {("a", "b"): 1})
    assert not (tmp_path / "s.pt").exists()


class _Arbitrary:
    """A custom class: a weights_only load must refuse to rebuild it."""

    def __init__(self):
        self.value = 1


def test_load_state_rejects_arbitrary_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"obj": _Arbitrary()}, path)  # written by torch directly, bypassing save_state's check
    with pytest.raises(CheckpointError, match="not a safe trainer-state file"):
        load_state(path)
    with pytest.raises(FileNotFoundError):
        load_state(tmp_path / "missing.pt")
    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError):
        load_state(path)


def test_crash_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = save_weights(tmp_path / "m.safetensors", {"x": torch.zeros(3)}, {"step": 1})
    before = path.read_bytes()

    def crash(src, dst):
        raise OSError("disk died")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk died"):
        save_weights(path, {"x": torch.ones(3)}, {"step": 2})
    monkeypatch.undo()
    assert path.read_bytes() == before
    loaded, meta = load_weights(path)
    assert torch.equal(loaded["x"], torch.zeros(3)) and meta["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]


def test_weights_to_device_argument(tmp_path):
    path = save_weights(tmp_path / "m.safetensors", {"x": torch.ones(2)})
    loaded, _ = load_weights(path, device=torch.device("meta"))
    assert loaded["x"].device.type == "meta"
