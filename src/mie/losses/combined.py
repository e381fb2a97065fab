"""Weighted compositions of registered losses, configurable from YAML by name.

>>> loss_fn = build_loss("combined", losses=[{"name": "clip", "weight": 1.0},
...                                          {"name": "vicreg", "weight": 0.1, "sim_coeff": 10}])
>>> loss = loss_fn(image_embeds, text_embeds)             # every term sees the same inputs

>>> loss_fn = build_loss("multitask", tasks={"retrieval": {"name": "clip"},
...                                          "lm": {"name": "cross_entropy", "weight": 0.5}})
>>> loss = loss_fn(retrieval=(img, txt), lm={"logits": logits, "targets": targets})
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from mie.losses.base import LossBase, diagnostics_enabled
from mie.losses.registry import build_loss, register_loss


def _build_term(spec: object, where: str) -> tuple[str, float, nn.Module]:
    """Build one ``{"name": ..., "weight": ..., **kwargs}`` entry."""
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(f"{where} must be a mapping with a 'name' key (and optional 'weight'), got {spec!r}")
    kwargs = dict(spec)
    name, weight = kwargs.pop("name"), float(kwargs.pop("weight", 1.0))
    if weight < 0:
        raise ValueError(f"{where} ({name}): weight must be >= 0, got {weight}")
    return name, weight, build_loss(name, **kwargs)


def _accepted_kwargs(module: nn.Module, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The subset of ``kwargs`` that ``module.forward`` takes by name."""
    params = inspect.signature(module.forward).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params}


def _metrics_of(prefix: str, module: nn.Module) -> dict[str, float]:
    return {f"{prefix}/{k}": v for k, v in getattr(module, "last_metrics", {}).items()}


@register_loss("combined")
class CombinedLoss(LossBase):
    """``sum_i weight_i * loss_i(*args, **kwargs)``: all terms get the same inputs.

    Each term receives only the keyword arguments its ``forward`` accepts (e.g. ``match_ids`` goes to
    ``clip`` but not to ``vicreg``). Metrics are prefixed by the term's name (``clip/loss``).
    ``forward_context`` feeds each term what it consumes; ``after_optimizer_step`` reaches every term.
    """

    consumes: ClassVar[dict[str, str]] = {}  # each term declares its own; see required_inputs

    def __init__(self, losses: list[dict[str, Any]]) -> None:
        super().__init__()
        if not isinstance(losses, list | tuple) or not losses:
            raise ValueError(
                "combined: 'losses' must be a non-empty list of {name: ..., weight: ...} mappings"
            )
        built = [_build_term(spec, f"combined.losses[{i}]") for i, spec in enumerate(losses)]
        names = [name for name, _, _ in built]
        # Repeated names (e.g. two clip terms) get an index so metric keys stay unique.
        self.names = [n if names.count(n) == 1 else f"{n}_{i}" for i, n in enumerate(names)]
        self.weights = [w for _, w, _ in built]
        self.terms = nn.ModuleList(module for _, _, module in built)

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        """The weighted sum of all terms (a scalar)."""
        return self._sum(lambda term: term(*args, **_accepted_kwargs(term, kwargs)))

    def forward_context(self, context: Mapping[str, Any]) -> Tensor:
        """The weighted sum, each term fed from ``context`` by what it consumes."""
        self.check_context(context)
        with self.own_diagnostics():
            return self._sum(lambda term: term.forward_context(context))

    def _sum(self, call: Any) -> Tensor:
        weighted: list[Tensor] = []
        metrics: dict[str, Any] = {}
        for name, weight, term in zip(self.names, self.weights, self.terms):
            value = call(term)
            weighted.append(weight * value)
            if diagnostics_enabled():
                metrics.update(_metrics_of(name, term))
                metrics[f"{name}/weighted"] = weight * value.detach()
        total = torch.stack(weighted).sum()
        self.record(loss=total, **metrics)
        return total

    def required_inputs(self) -> set[str]:
        """What any term cannot run without."""
        return set().union(*(term.required_inputs() for term in self.terms))

    def accepted_inputs(self) -> set[str]:
        """What any term takes."""
        return set().union(*(term.accepted_inputs() for term in self.terms))


@register_loss("multitask")
class MultitaskLoss(LossBase):
    """Weighted sum of per-task losses, each called with its own inputs.

    ``tasks`` maps a task name to ``{"name": loss_name, "weight": w, **kwargs}``. ``forward`` takes one
    keyword per task whose value is a tuple of positional inputs or a dict of keyword inputs. With
    ``uncertainty_weighting`` each task also learns ``s = log sigma^2`` and contributes
    ``w * (exp(-s) * L + s)`` (Kendall et al., 2018, "Multi-Task Learning Using Uncertainty to Weigh Losses").
    ``forward_context`` feeds every task's loss from one context; ``after_optimizer_step`` reaches each.
    """

    consumes: ClassVar[dict[str, str]] = {}  # each task's loss declares its own; see required_inputs

    def __init__(self, tasks: dict[str, dict[str, Any]], uncertainty_weighting: bool = False) -> None:
        super().__init__()
        if not isinstance(tasks, dict) or not tasks:
            raise ValueError(
                "multitask: 'tasks' must be a non-empty mapping task_name -> {name: ..., weight: ...}"
            )
        built = {task: _build_term(spec, f"multitask.tasks.{task}") for task, spec in tasks.items()}
        self.task_names = list(built)
        self.weights = {task: w for task, (_, w, _) in built.items()}
        self.tasks = nn.ModuleDict({task: module for task, (_, _, module) in built.items()})
        self.uncertainty_weighting = uncertainty_weighting
        if uncertainty_weighting:
            self.log_vars = nn.ParameterDict({task: nn.Parameter(torch.zeros(())) for task in built})

    def forward(self, **inputs: Any) -> Tensor:
        """The weighted sum over tasks (a scalar); every configured task needs its inputs."""
        missing = [t for t in self.task_names if t not in inputs]
        unknown = [t for t in inputs if t not in self.tasks]
        if missing or unknown:
            raise ValueError(
                f"multitask inputs: missing {missing}, unknown {unknown}; expected tasks {self.task_names}"
            )

        def call(task: str) -> Tensor:
            given = inputs[task]
            return self.tasks[task](**given) if isinstance(given, dict) else self.tasks[task](*given)

        return self._sum(call)

    def forward_context(self, context: Mapping[str, Any]) -> Tensor:
        """The weighted sum, every task's loss fed from the same ``context`` by what it consumes."""
        self.check_context(context)
        with self.own_diagnostics():
            return self._sum(lambda task: self.tasks[task].forward_context(context))

    def required_inputs(self) -> set[str]:
        """What any task's loss cannot run without."""
        return set().union(*(t.required_inputs() for t in self.tasks.values()))

    def accepted_inputs(self) -> set[str]:
        """What any task's loss takes."""
        return set().union(*(t.accepted_inputs() for t in self.tasks.values()))

    def _sum(self, call: Any) -> Tensor:
        weighted: list[Tensor] = []
        metrics: dict[str, Any] = {}
        for task in self.task_names:
            value = call(task)
            metrics.update(_metrics_of(task, self.tasks[task]))
            if self.uncertainty_weighting:
                log_var = self.log_vars[task]
                term = self.weights[task] * (torch.exp(-log_var) * value + log_var)
                metrics[f"{task}/log_var"] = log_var
            else:
                term = self.weights[task] * value
            weighted.append(term)
        total = torch.stack(weighted).sum()
        self.record(loss=total, **metrics)
        return total
