"""LoRA: low-rank adapters on a model's linear layers (Hu et al., 2021), merged back for saving.

``apply_lora(model, targets=("q_proj", "v_proj"), r=8, alpha=16)`` swaps each ``nn.Linear`` whose name
ends with a target for a :class:`LoRALinear` and freezes every other parameter; only the adapters train.
Attention projections are named ``q_proj``, ``k_proj``, ``v_proj`` (or a fused ``qkv_proj``) and
``out_proj`` (:mod:`mie.models.attention`); the earlier names of configs written before the one attention
module (``wq``/``wk``/``wv``/``wo`` of the causal LM, ``q``/``k``/``v``/``out`` of BERT) keep working.
``merge_lora(model)`` folds each adapter into its base weight (``W + B @ A * alpha / r``) and puts
plain ``nn.Linear`` layers back, so a saved model has the original architecture and parameter names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from mie.config import NON_NEGATIVE, POSITIVE, Rule
from mie.errors import ConfigError
from mie.models.attention import LEGACY_NAMES


class LoRALinear(nn.Module):
    """``base(x) + dropout(x) @ A.T @ B.T * alpha / r`` with ``base`` frozen and ``B`` starting at zero,
    so a fresh adapter leaves the model's outputs unchanged."""

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 16.0, dropout: float = 0.0) -> None:
        super().__init__()
        if r < 1:
            raise ConfigError(f"rank {r} must be >= 1", where="lora.r")
        self.base = base
        self.base.requires_grad_(False)
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        self.lora_a = nn.Parameter(torch.empty(r, base.in_features, device=base.weight.device))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, r, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))  # as nn.Linear initialises its weight
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen layer plus the scaled low-rank update."""
        update = self.dropout(x) @ self.lora_a.t().to(x.dtype) @ self.lora_b.t().to(x.dtype)
        return self.base(x) + update * self.scaling

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` computing the same function (the adapter folded into the weight)."""
        layer = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None,
                          device=self.base.weight.device, dtype=self.base.weight.dtype)
        layer.weight.copy_(self.base.weight + (self.lora_b @ self.lora_a) * self.scaling)
        if self.base.bias is not None:
            layer.bias.copy_(self.base.bias)
        return layer


@dataclass
class LoRAConfig:
    """Low-rank adapters for fine-tuning (``r: 0`` = none: a fine-tuned model trains all its weights)."""

    RULES: ClassVar[dict[str, Rule]] = {"r": NON_NEGATIVE, "alpha": POSITIVE,
                                        "dropout": (lambda v: 0.0 <= v < 1.0, "in [0, 1)")}

    r: int = 0
    alpha: float = 16.0
    dropout: float = 0.0
    targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])  # linear layers by their last name

    def apply(self, model: nn.Module) -> list[str]:
        """:func:`apply_lora` with these settings when ``r`` > 0 (else nothing); returns the adapted names."""
        if not self.r:
            return []
        return apply_lora(model, tuple(self.targets), r=self.r, alpha=self.alpha, dropout=self.dropout)


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def resolve_targets(model: nn.Module, targets: tuple[str, ...]) -> tuple[str, ...]:
    """``targets`` as ``model`` names its linear layers: an earlier projection name (:data:`LEGACY_NAMES`,
    e.g. ``wq``) that names none of them becomes today's (``q_proj``); every other name is kept."""
    linear = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    return tuple(LEGACY_NAMES.get(t, t) if t not in linear else t for t in targets)


def apply_lora(model: nn.Module, targets: tuple[str, ...] = ("q_proj", "v_proj"), r: int = 8, alpha: float = 16.0,
               dropout: float = 0.0) -> list[str]:
    """Put adapters on every ``nn.Linear`` named ``*.<target>`` (earlier names mapped by
    :func:`resolve_targets`); freeze the rest. Returns the adapted names."""
    wanted = resolve_targets(model, tuple(targets))
    names = [name for name, module in model.named_modules()
             if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in wanted]
    if not names:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise ConfigError(f"no linear layer is named {', '.join(targets)}", where="lora.targets",
                          fix=f"choose among {', '.join(linear) or '(none)'}")
    model.requires_grad_(False)
    for name in names:
        _replace(model, name, LoRALinear(model.get_submodule(name), r=r, alpha=alpha, dropout=dropout))
    return names


def lora_freeze_patterns(model: nn.Module, under: str = "") -> list[str]:
    """The trainer's ``freeze`` patterns that leave only the adapters trainable: every weight and bias of
    ``model`` under ``under`` (a submodule's name; empty = the whole model), e.g. ``["*.weight", "*.bias"]``.

    Adapter parameters end in ``lora_a``/``lora_b`` and every other one in ``.weight`` or ``.bias``, so
    these patterns freeze all but the adapters and whatever lies outside ``under`` (a reward or value
    head); the trainer unfreezes whatever a stage does not freeze.
    """
    prefix = f"{under}." if under else ""
    suffixes = {name.rsplit(".", 1)[-1] for name, _ in model.named_parameters() if name.startswith(prefix)}
    return [f"{prefix}*.{suffix}" for suffix in sorted(suffixes & {"weight", "bias"}, reverse=True)]


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base layer, in place; returns ``model`` with plain linear layers."""
    for name, module in list(model.named_modules()):
        if isinstance(module, LoRALinear):
            _replace(model, name, module.merged())
    return model


@torch.no_grad()
def adapter_snapshot(model: nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Copies of every adapter's ``(A, B)`` by layer name (for :func:`average_adapters`)."""
    return {name: (m.lora_a.detach().clone(), m.lora_b.detach().clone())
            for name, m in model.named_modules() if isinstance(m, LoRALinear)}


@torch.no_grad()
def average_adapters(model: nn.Module, snapshots: list[dict[str, tuple[torch.Tensor, torch.Tensor]]]) -> None:
    """Set every adapter to the mean of the snapshots' updates, exactly (weight averaging, as in SWA).

    ``mean_k(B_k @ A_k)`` is one adapter of rank ``K * r``: the ``A_k`` stacked and the ``B_k`` side by
    side, divided by ``K``. The scaling is kept, so ``merge_lora`` then folds in the averaged weights.
    """
    if not snapshots:
        raise ValueError("average_adapters needs at least one snapshot")
    for name, module in model.named_modules():
        if isinstance(module, LoRALinear):
            module.lora_a = nn.Parameter(torch.cat([s[name][0] for s in snapshots], 0), requires_grad=False)
            module.lora_b = nn.Parameter(torch.cat([s[name][1] for s in snapshots], 1) / len(snapshots),
                                         requires_grad=False)
            module.r = module.lora_a.shape[0]


def lora_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The adapters' parameters by name (what a LoRA run trains)."""
    return {name: p for name, p in model.named_parameters() if name.endswith(("lora_a", "lora_b"))}


@torch.no_grad()
def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` with every adapter folded in and the plain layer names (``...q_proj.weight``);
    the model is left as it is. Without adapters, the state dict itself (what checkpoints save)."""
    state = model.state_dict()
    adapters = {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}
    if not adapters:
        return state
    for name, module in adapters.items():
        prefix = f"{name}." if name else ""
        for key in ("base.weight", "base.bias", "lora_a", "lora_b"):
            state.pop(prefix + key, None)
        state[prefix + "weight"] = module.base.weight + (module.lora_b @ module.lora_a).to(
            module.base.weight.dtype) * module.scaling
        if module.base.bias is not None:
            state[prefix + "bias"] = module.base.bias
    return state
