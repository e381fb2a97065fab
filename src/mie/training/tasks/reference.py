"""Frozen reference models, written once for every task that compares its model with one: DPO's and PPO's
reference policy, the contrastive task's reference towers, the ITM task's frozen encoder.

>>> self.encoder = frozen(encoder)                       # a frozen submodule: moves and saves with the task
>>> self._reference = FrozenReference(policy, copy=True)  # outside the task: never saved, trained or wrapped
"""

from __future__ import annotations

import copy as copy_module

import torch
from torch import nn


def frozen(model: nn.Module, copy: bool = False) -> nn.Module:
    """``model`` (or, with ``copy``, a deep copy of it as it is now) in eval mode, no parameter requiring a
    gradient. A task that keeps it as a submodule also overrides ``train`` to leave it in eval mode."""
    return (copy_module.deepcopy(model) if copy else model).requires_grad_(False).eval()


class FrozenReference:
    """A :func:`frozen` model held outside a task's module tree, so the task's ``state_dict``,
    ``parameters()``, ``train()`` and DDP never see it (``task.to`` does not move it either: :meth:`on` does)."""

    def __init__(self, model: nn.Module, copy: bool = False) -> None:
        self.module = frozen(model, copy)

    def on(self, device: torch.device) -> nn.Module:
        """The reference on ``device``, moved there on first use."""
        if next(self.module.parameters()).device != device:
            self.module.to(device)
        return self.module
