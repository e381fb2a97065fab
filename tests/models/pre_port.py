"""Models saved by the code before the one attention module (issue 27), for the checkpoint tests.

``fixtures/pre_port_models.safetensors`` was written once by the pre-port tree (``git archive fe7110f~1 src``,
run with that ``src`` first on ``PYTHONPATH``): seeded tiny models (the CLIP dual encoder of
``tests.tiny.TINY_CLIP_MODEL`` with vocabulary 64, LayerNorm/cls and RMSNorm/mean; the four fusions at
width 16 with text 16 / image 24; a 2-layer BERT of width 16), their inputs and their outputs in eval mode.
Tensor names are ``<model>.state.<parameter>``, ``<group>.input.<name>`` and ``<model>.output.<name>``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import torch
from safetensors.torch import load_file

FIXTURE = Path(__file__).parent / "fixtures" / "pre_port_models.safetensors"


@cache
def _tensors() -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURE))


def _group(prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v.clone() for k, v in _tensors().items() if k.startswith(prefix)}


def pre_port(model: str, inputs: str | None = None
             ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``(state dict, inputs, outputs)`` of the saved ``model`` (inputs of group ``inputs``, default the
    model's name up to its first ``_``: ``clip_ln`` reads ``clip.input.*``)."""
    group = inputs or model.split("_")[0]
    return _group(f"{model}.state."), _group(f"{group}.input."), _group(f"{model}.output.")
