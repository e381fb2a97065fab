"""``compile: true``: ``torch.compile`` each repeated block of a model (every member of an ``nn.ModuleList``:
CLIP's residual blocks, a causal LM's decoder layers), not the whole model.

Per block because every block of a stack has the same code and shapes: inductor compiles one graph and
reuses it for the others, so compile time does not grow with depth, and the parts around the blocks
(embeddings, masks, losses, the host-side logic of generation) stay eager. The compiled forward is an
attribute of the block instance: parameter names and checkpoints are unchanged, and
:func:`release_blocks` restores the eager forward (the trainer does at the end of ``fit``, so decoding
with a KV cache afterwards does not recompile for every length).
"""

from __future__ import annotations

import shutil
import sys

import torch
from torch import nn

from mie.errors import ConfigError


def repeated_blocks(model: nn.Module) -> list[nn.Module]:
    """The members of the outermost ``nn.ModuleList``s under ``model`` (nested lists are left to their block)."""
    blocks: list[nn.Module] = []

    def walk(module: nn.Module) -> None:
        for child in module.children():
            if isinstance(child, nn.ModuleList):
                blocks.extend(child)
            else:
                walk(child)

    walk(model)
    return blocks


def _check_compiler(device: torch.device) -> None:
    if device.type == "cpu" and not any(shutil.which(cc) for cc in ("cc", "gcc", "clang")):
        raise ConfigError("inductor needs a C compiler on the CPU and none was found", where="compile: true",
                          fix="install gcc (apt-get install gcc) or set compile: false")
    if sys.platform == "win32":
        raise ConfigError("torch.compile's inductor backend is not supported on Windows here", where="compile: true",
                          fix="set compile: false")


def compile_blocks(model: nn.Module, device: torch.device | str = "cpu") -> list[nn.Module]:
    """Compile the forward of every repeated block of ``model`` in place; returns the blocks compiled.

    A model with no ``nn.ModuleList`` has nothing to compile (an empty list). Raises
    :class:`~mie.errors.ConfigError` when inductor cannot run here (no C compiler on the CPU).
    """
    blocks = repeated_blocks(model)
    if blocks:
        _check_compiler(torch.device(device))
    for block in blocks:
        if "forward" not in vars(block):  # compiled once, even when called twice
            block.forward = torch.compile(block.forward)  # an instance attribute: state_dict names unchanged
    return blocks


def release_blocks(blocks: list[nn.Module]) -> None:
    """Give ``blocks`` their eager forward back (undo :func:`compile_blocks`)."""
    for block in blocks:
        vars(block).pop("forward", None)
