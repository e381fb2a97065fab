"""The optimization recorded in a checkpoint's sidecar (``"optimization"``), applied to a freshly built model.

A run written by ``mie optimize`` keeps its original ``config.yaml``; its sidecar says what was done on top:

``{"quantization": {...}}`` (:func:`mie.optimization.quantize.quantize_model`'s scheme),
``{"structure": {"mlp": {...}, "attention": {...}}}`` (:mod:`mie.optimization.structured`'s sizes) and
``{"pruning": {...}}`` (unstructured: informational, the zeros are in the weights). :func:`apply_optimization`
shrinks then swaps the modules of a model built from that config, so the checkpoint loads with
``load_state_dict`` (``mie.io.run_files.load_run_weights`` calls it), and every command that loads a run
(``mie eval``, ``generate``, ``serve``, ``mie.load_run``) loads an optimized one the same way.
"""

from __future__ import annotations

from typing import Any

from torch import nn


def apply_optimization(model: nn.Module, optimization: dict[str, Any]) -> nn.Module:
    """Shrink (structured pruning) and swap (quantization) ``model``'s modules as ``optimization`` records."""
    if optimization.get("structure"):
        from mie.optimization.structured import apply_structure

        apply_structure(model, optimization["structure"])
    if optimization.get("quantization"):
        from mie.optimization.quantize import apply_scheme

        apply_scheme(model, optimization["quantization"])
    return model
