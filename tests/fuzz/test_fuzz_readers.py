"""Property-based fuzzing of the config, checkpoint, trainer-state and manifest readers: any bytes on
disk give either a result or one of the project's named errors (``mie.errors.MieError``), never a
traceback of another type. ``make fuzz`` runs these with thousands of examples."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from tests.fuzz.mutations import edit_lists, mutate

from mie.config import load_config
from mie.errors import MieError
from mie.io import load_state, load_weights, save_state, save_weights
from mie.io.store import CheckpointStore
from mie.recipes.clip.config import ClipConfig

pytestmark = pytest.mark.fuzz
REPO = Path(__file__).resolve().parents[2]
DEMO = (REPO / "configs" / "demo.yaml").read_bytes()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)




EDITS = edit_lists()


def _only_named_errors(call):
    try:
        return call()
    except MieError:
        return None
    except FileNotFoundError:
        return None


@given(edits=EDITS)
def test_config_reader_on_mutated_demo_config(edits):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_bytes(mutate(DEMO, edits))
        _only_named_errors(lambda: load_config(path, ClipConfig))


@given(data=st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
def test_config_reader_on_arbitrary_bytes(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_bytes(data)
        _only_named_errors(lambda: load_config(path, ClipConfig))


@given(value=json_values)
def test_config_reader_on_arbitrary_documents(value):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_text(json.dumps({"recipe": "clip", "model": value, "loss": {"kwargs": value}}))
        _only_named_errors(lambda: load_config(path, ClipConfig))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One valid weights file + sidecar and one valid state file, as bytes."""
    folder = tmp_path_factory.mktemp("ck")
    weights = save_weights(folder / "w.safetensors", {"a": torch.randn(3, 4), "b": torch.arange(5)}, {"step": 3})
    state = save_state(folder / "s.pt", {"step": 3, "t": torch.ones(2), "nested": {"x": [1, 2.0, "z"]}})
    return weights.read_bytes(), weights.with_suffix(".json").read_bytes(), state.read_bytes()


@given(edits=EDITS, target=st.sampled_from(["weights", "sidecar"]), verify=st.booleans())
def test_weights_reader_on_mutated_files(saved, edits, target, verify):
    weights, sidecar, _ = saved
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "w.safetensors"
        path.write_bytes(mutate(weights, edits) if target == "weights" else weights)
        path.with_suffix(".json").write_bytes(mutate(sidecar, edits) if target == "sidecar" else sidecar)
        result = _only_named_errors(lambda: load_weights(path, verify=verify))
        if result is not None and verify and target == "weights":
            expected = load_weights_bytes(weights)  # the hash passed: these are exactly the saved tensors
            assert result[0].keys() == expected.keys()
            assert all(torch.equal(result[0][k], expected[k]) for k in expected)


def load_weights_bytes(data: bytes) -> dict:
    from safetensors.torch import load

    return load(data)


@given(edits=EDITS)
def test_state_reader_on_mutated_files(saved, edits):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.pt"
        path.write_bytes(mutate(saved[2], edits))
        _only_named_errors(lambda: load_state(path))


@given(value=json_values, raw=st.binary(max_size=80), use_raw=st.booleans())
def test_manifest_reader_on_arbitrary_documents(value, raw, use_raw):
    with tempfile.TemporaryDirectory() as tmp:
        store = CheckpointStore(tmp)
        manifest = {"format": "mie-checkpoint-manifest-v1", "step": 1, "commit": "c", "files": value}
        store.manifest_path.write_bytes(raw if use_raw else json.dumps(manifest).encode())
        _only_named_errors(store.manifest)
        _only_named_errors(lambda: store.resolve("last_state.pt"))
        _only_named_errors(store.repair)
