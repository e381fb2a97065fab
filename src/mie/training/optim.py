"""AdamW with decay / no-decay parameter groups (the nanoGPT / CLIP recipe).

Weight decay shrinks matrices towards zero; applied to biases, norm gains, embeddings, positional
embeddings, class tokens or the CLIP temperature it only hurts, so those get ``weight_decay=0``.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from mie.errors import ConfigError
from mie.training.config import OptimizerConfig

# Devices with a fused AdamW kernel (the CPU one arrived in torch 2.4).
_FUSED_DEVICES = ("cpu", "cuda") if tuple(int(v) for v in torch.__version__.split(".")[:2]) >= (2, 4) else ("cuda",)

# Parameter names that never get weight decay, whatever their shape.
_NO_DECAY_NAME = re.compile(r"embedding|pos_emb|position|cls_token|class_token|logit_scale|logit_bias")
_NO_DECAY_MODULES = (nn.Embedding, nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.RMSNorm)


def split_decay_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter], list[str]]:
    """Trainable parameters split into ``(decay, no_decay, no_decay_names)``.

    No decay: ``ndim < 2``, parameters of embedding / norm modules, names matching
    ``embedding|pos_emb|position|cls_token|class_token|logit_scale|logit_bias``, and names the model lists in
    an optional ``no_weight_decay()`` method (the timm convention). Tied parameters appear once.
    """
    extra = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    no_decay_names: list[str] = []
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            name = f"{module_name}.{param_name}" if module_name else param_name
            if (param.ndim < 2 or isinstance(module, _NO_DECAY_MODULES) or _NO_DECAY_NAME.search(name.lower())
                    or name in extra):
                no_decay.append(param)
                no_decay_names.append(name)
            else:
                decay.append(param)
    return decay, no_decay, no_decay_names


def create_optimizer(model: nn.Module, cfg: OptimizerConfig, lr: float | None = None) -> torch.optim.AdamW:
    """AdamW over ``model``'s trainable parameters; ``lr`` (e.g. a stage's) overrides ``cfg.lr``.

    Groups are named ``"decay"`` / ``"no_decay"`` (an extra ``name`` key in each param group).
    Frozen parameters (``requires_grad=False``) are left out; ``cfg.implementation`` picks the kernel
    (:func:`create_adamw`).
    """
    if cfg.name.lower() != "adamw":
        raise ValueError(f"optimizer.name={cfg.name!r} is not supported; use 'adamw'")
    if len(cfg.betas) != 2:
        raise ValueError(f"optimizer.betas must hold two numbers, got {cfg.betas}")
    decay, no_decay, _ = split_decay_parameters(model)
    if not decay and not no_decay:
        raise ValueError("the model has no trainable parameters (all frozen?); unfreeze some before training")
    groups = [{"params": params, "weight_decay": wd, "name": name}
              for name, params, wd in (("decay", decay, cfg.weight_decay), ("no_decay", no_decay, 0.0)) if params]
    return create_adamw(groups, cfg, cfg.lr if lr is None or lr <= 0 else lr)


def create_adamw(groups: list[dict], cfg: OptimizerConfig, lr: float) -> torch.optim.AdamW:
    """AdamW over ready parameter ``groups`` (a group's own ``lr`` / ``weight_decay`` win over ``lr``).

    ``cfg.implementation``: ``fused`` (one kernel per tensor: a single pass over parameter, gradient and both
    moments), ``foreach`` (PyTorch's multi-tensor default) or ``auto``, which is :func:`fused_available`.
    """
    if cfg.name.lower() != "adamw":
        raise ValueError(f"optimizer.name={cfg.name!r} is not supported; use 'adamw'")
    params = [p for group in groups for p in group["params"]]
    choice = getattr(cfg, "implementation", "auto")
    fused = choice == "fused" or (choice == "auto" and fused_available(params))
    if fused and not fused_available(params):
        raise ConfigError("the fused AdamW kernel needs float parameters on the CPU or CUDA",
                          where="optimizer.implementation: fused", fix="use auto or foreach")
    return torch.optim.AdamW(groups, lr=lr, betas=(float(cfg.betas[0]), float(cfg.betas[1])), eps=cfg.eps,
                             fused=True if fused else None)


def fused_available(params: list[torch.Tensor]) -> bool:
    """Whether torch's fused AdamW runs on every tensor of ``params`` (floating point, on CPU or CUDA).

    On this project's 2-core CPU it is faster than foreach (benchmarks/lm_train_throughput.py
    ``--adamw``): foreach walks the tensors once per elementwise op, fused once in all.
    """
    return bool(params) and all(p.is_floating_point() and p.device.type in _FUSED_DEVICES for p in params)
