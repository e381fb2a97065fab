"""The tuned safety classifier that ships in the package, so no user waits minutes on first use.

Two safetensors files of our own under ``mie/safety/data``, each with a JSON sidecar recording its
SHA-256 (checked on every load; a mismatch is refused in one line):

* ``classifier.safetensors``: the LoRA update of every tuned linear layer of all-MiniLM-L6-v2 as a
  rank-:data:`RANK` factorisation ``up @ down`` (float16; SVD of the averaged adapters, whose exact rank
  is 4 x 16), the 5-way head, and the harmful training examples' embeddings (float16, for reasons). The
  sidecar records ``key``: the SHA-256 of the training examples and settings that produced it, so a
  changed training set is tuned afresh (and cached) rather than paired with stale weights.
* ``thresholds.safetensors``: one flag probability per principle, chosen by the declared rule of
  :mod:`mie.safety.calibration`; its sidecar records the rule and the figures on the calibration and
  evaluation sets.

The recipe that reproduces both is ``mie safety tune`` (:func:`mie.safety.tuning.build_package`)::

    state, meta, thresholds, thresholds_meta = read_package()      # hash-checked
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from mie.errors import CheckpointError
from mie.io import load_weights, save_weights
from mie.models.lora import LoRALinear
from mie.safety.types import DEFAULT_PRINCIPLES

log = logging.getLogger(__name__)
RANK = 32  # on the evaluation set, rank 32 moves a probability by 0.0004 on average (rank 16: 0.003)
CLASSIFIER = "classifier.safetensors"
THRESHOLDS = "thresholds.safetensors"
ENCODER = "all-minilm-l6-v2"


def package_dir() -> Path:
    """Where the shipped files live (``mie/safety/data``)."""
    return Path(str(resources.files("mie.safety") / "data"))


def examples_key(examples: Sequence[dict[str, Any]], settings: Any, principles: Sequence[str]) -> str:
    """The SHA-256 naming a tuning: the examples, the settings and the principles."""
    return hashlib.sha256(json.dumps([list(examples), asdict(settings), list(principles)], sort_keys=True)
                          .encode()).hexdigest()


@torch.no_grad()
def low_rank_updates(model: torch.nn.Module, rank: int = RANK) -> dict[str, torch.Tensor]:
    """``{"delta.<layer>.up": [out, rank], "delta.<layer>.down": [rank, in]}`` (float16) approximating each
    unmerged adapter's ``B @ A * scaling`` by its truncated SVD."""
    out = {}
    for name, module in model.named_modules():
        if isinstance(module, LoRALinear):
            delta = module.lora_b.float() @ module.lora_a.float() * module.scaling
            u, s, vh = torch.linalg.svd(delta, full_matrices=False)
            out[f"delta.{name}.up"] = (u[:, :rank] * s[:rank]).half()
            out[f"delta.{name}.down"] = vh[:rank].half()
    return out


@torch.no_grad()
def add_updates(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Add every ``up @ down`` of ``state`` to its plain linear layer's weight, in place."""
    layers = sorted({k[len("delta."):-len(".up")] for k in state if k.startswith("delta.") and k.endswith(".up")})
    if not layers:
        raise CheckpointError("holds no weight updates", where=CLASSIFIER, fix="rebuild it with `mie safety tune`")
    for name in layers:
        weight = model.get_submodule(name).weight
        weight += state[f"delta.{name}.up"].float() @ state[f"delta.{name}.down"].float()


def read_package(directory: str | Path | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any],
                                                               dict[str, float] | None, dict[str, Any]]:
    """``(classifier state, its metadata, thresholds or None, thresholds metadata)``, hash-checked."""
    folder = Path(directory) if directory is not None else package_dir()
    state, meta = load_weights(folder / CLASSIFIER)
    thresholds, tmeta = None, {}
    if (folder / THRESHOLDS).is_file():
        tstate, tmeta = load_weights(folder / THRESHOLDS)
        values = [round(v, 6) for v in tstate["thresholds"].tolist()]  # float32 0.7 reads as 0.69999998...
        thresholds = dict(zip(tmeta.get("principles", DEFAULT_PRINCIPLES), values, strict=True))
    return state, meta, thresholds, tmeta


def packaged_key(directory: str | Path | None = None) -> str | None:
    """The ``key`` the shipped classifier was tuned for, or None when no classifier ships."""
    folder = Path(directory) if directory is not None else package_dir()
    sidecar = folder / CLASSIFIER.replace(".safetensors", ".json")
    if not (folder / CLASSIFIER).is_file() or not sidecar.is_file():
        return None
    try:
        return json.loads(sidecar.read_text(encoding="utf-8")).get("key")
    except (OSError, ValueError):
        return None


def save_thresholds(directory: str | Path, thresholds: dict[str, float], metadata: dict[str, Any]) -> Path:
    """Write ``thresholds.safetensors`` (one float per principle) with ``metadata`` in its sidecar."""
    names = list(thresholds)
    return save_weights(Path(directory) / THRESHOLDS, {"thresholds": torch.tensor([thresholds[p] for p in names])},
                        {"principles": names, **metadata})
