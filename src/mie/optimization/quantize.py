"""Quantize a model in place by swapping its modules, and redo the same swaps on a fresh model before loading.

>>> scheme = quantize_model(model, "int4-weight", group_size=64)  # doctest: +SKIP
>>> save_weights(path, model.state_dict(), {"optimization": scheme})  # doctest: +SKIP
>>> apply_scheme(CausalLM(config), scheme)  # a model built from the run's config, ready for load_state_dict

The model is never rebuilt from its class: every ``nn.Linear`` found by walking the module tree (the attention
projections, MLPs, heads of every family) is replaced by its integer counterpart
(:mod:`mie.optimization.int_linear`) under the same name, so the state dict keeps its layout and only the
tensors under each swapped name change (``qweight``, ``scales``, ``zeros``, ``bias``). The weight-only methods
also quantize a causal LM's token embedding (and its tied LM head, which reads the same integers): at 135 M
parameters SmolLM2's embedding is a fifth of the model.

``static-int8`` swaps each linear whose input range was calibrated (:mod:`mie.optimization.static_int8`) for
a layer with a fixed input grid (``input_scale``, ``input_zero_point``), and one never reached by calibration
for dynamic int8.

The scheme (method and, per swapped module, its kind, bits and group size, and static int8's input scales and
observed ranges) is plain JSON: it goes into the checkpoint's sidecar, and :func:`apply_scheme` reads it back.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from mie.errors import ConfigError
from mie.optimization.int_linear import (
    DynamicInt8Linear,
    QuantizedEmbedding,
    TiedQuantizedHead,
    WeightOnlyLinear,
    fitting_group_size,
)
from mie.optimization.static_int8 import StaticInt8Linear

METHODS = ("dynamic-int8", "static-int8", "int8-weight", "int4-weight")
DEFAULT_GROUP = {"dynamic-int8": 0, "static-int8": 0, "int8-weight": 0, "int4-weight": 32}  # 0 = one scale per output row


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    """Replace the submodule called ``name`` (dotted) by ``module``."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def _linears(model: nn.Module, skip: tuple[str, ...]) -> list[tuple[str, nn.Linear]]:
    """Every plain ``nn.Linear`` of ``model`` by name, except those whose name contains one of ``skip``."""
    return [(name, module) for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and not any(part in name for part in skip)]


def _tied_embedding(model: nn.Module) -> str | None:
    """The name of a causal LM's token embedding (``tok_embeddings``) when the model has one."""
    embedding = getattr(model, "tok_embeddings", None)
    return "tok_embeddings" if isinstance(embedding, nn.Embedding) else None


def _check_method(method: str, group_size: int | None) -> int:
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}", where="--method", fix=f"choose one of {', '.join(METHODS)}")
    group = DEFAULT_GROUP[method] if group_size is None else group_size
    if group < 0 or (group and group < 8):
        raise ConfigError(f"{group} is not a group size", where="--group-size",
                          fix="use 0 (one scale per output row) or a size such as 32, 64 or 128")
    if method in ("dynamic-int8", "static-int8") and group:
        raise ConfigError(f"{method} keeps one scale per output row", where="--group-size",
                          fix=f"leave --group-size out for {method}")
    return group


@torch.no_grad()
def quantize_model(model: nn.Module, method: str, group_size: int | None = None,
                   skip: tuple[str, ...] = (), embedding_bits: int | None = None,
                   activation_ranges: dict[str, dict[str, float]] | None = None) -> dict[str, Any]:
    """Quantize ``model``'s linear layers (and an LM's token embedding) in place; returns the scheme.

    ``method``: ``dynamic-int8`` | ``int8-weight`` | ``int4-weight``; ``group_size``: inputs per scale (0 = one
    per output row; default 0 for int8, 32 for int4); a layer whose inputs it does not divide takes the
    largest half of it that does (recorded per module). ``skip``: name fragments of linears to keep in float.
    ``embedding_bits``: 8 or 4 for an LM's token embedding (and tied head); default the method's bits.
    ``activation_ranges``: ``static-int8``'s calibration
    (:func:`mie.optimization.static_int8.activation_ranges`); a linear it never saw gets dynamic int8.
    """
    group = _check_method(method, group_size)
    if method == "static-int8" and not activation_ranges:
        raise ValueError("static-int8 needs activation ranges from calibration (static_int8.activation_ranges)")
    modules: dict[str, dict[str, Any]] = {}
    for name, linear in _linears(model, skip):
        observed = (activation_ranges or {}).get(name) if method == "static-int8" else None
        if observed is not None:
            layer = StaticInt8Linear.from_linear_range(linear, observed["min"], observed["max"])
            _set_module(model, name, layer)
            scale, zero_point = layer.qparams()
            modules[name] = {"kind": "static-int8", "bias": linear.bias is not None, "input_scale": scale,
                             "input_zero_point": zero_point, "observed": [observed["min"], observed["max"]]}
            continue
        if method in ("dynamic-int8", "static-int8"):
            _set_module(model, name, DynamicInt8Linear.from_linear(linear))
            modules[name] = {"kind": "dynamic-int8", "bias": linear.bias is not None}
            continue
        bits = 8 if method == "int8-weight" else 4
        size = fitting_group_size(linear.in_features, group) if group else 0
        if bits == 4 and linear.in_features % 2:
            continue  # an odd width cannot pack two values per byte: kept in float
        _set_module(model, name, WeightOnlyLinear.from_linear(linear, bits, size))
        modules[name] = {"kind": "weight", "bits": bits, "group_size": size, "bias": linear.bias is not None}
    embedding = _tied_embedding(model) if method.endswith("-weight") else None
    if embedding is not None:
        table = model.get_submodule(embedding)
        bits = embedding_bits or (8 if method == "int8-weight" else 4)
        if bits not in (4, 8):
            raise ConfigError(f"{bits} bits", where="--embedding-bits", fix="use 8 or 4")
        # int8 tables keep one scale per token row: torch's int8 kernel takes no groups, and the tied head reads
        # the whole table every decoding step (grouped, it dequantized 49152 x 576 values per token: 2x slower)
        size = fitting_group_size(table.embedding_dim, group) if group and bits == 4 else 0
        quantized = QuantizedEmbedding.from_embedding(table, bits, size)
        _set_module(model, embedding, quantized)
        modules[embedding] = {"kind": "embedding", "bits": bits, "group_size": size}
        if getattr(model, "lm_head", False) is None:  # tied logits: the head reads the embedding's integers
            model.lm_head = TiedQuantizedHead(quantized)
            modules[embedding]["tied_head"] = "lm_head"
    return {"method": method, "group_size": group, "modules": modules}


def apply_scheme(model: nn.Module, scheme: dict[str, Any]) -> nn.Module:
    """Swap ``model``'s modules as ``scheme`` (from :func:`quantize_model`) says, with empty integer buffers
    of the right shapes, so the quantized checkpoint loads with ``load_state_dict``. Returns ``model``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, spec in scheme.get("modules", {}).items():
            old = model.get_submodule(name)
            kind = spec["kind"]
            if kind == "dynamic-int8":
                new: nn.Module = DynamicInt8Linear(old.in_features, old.out_features, bias=spec["bias"])
            elif kind == "static-int8":  # the activation scales load with the state dict (and are in the scheme)
                new = StaticInt8Linear(old.in_features, old.out_features, bias=spec["bias"])
            elif kind == "weight":
                new = WeightOnlyLinear(old.in_features, old.out_features, spec["bits"], spec["group_size"],
                                       bias=spec["bias"])
            elif kind == "embedding":
                new = QuantizedEmbedding(old.num_embeddings, old.embedding_dim, spec["bits"], spec["group_size"])
            else:
                raise ValueError(f"unknown quantized module kind {kind!r} for {name}")
            _set_module(model, name, new)
            if spec.get("tied_head"):
                _set_module(model, spec["tied_head"], TiedQuantizedHead(new))  # type: ignore[arg-type]
    return model
