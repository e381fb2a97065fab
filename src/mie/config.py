"""Typed configuration machinery: YAML <-> dataclasses, ``--set`` overrides, strict validation.

The schema lives beside what it configures (``mie.models.multimodal.DualEncoderConfig``,
``mie.data.config.DataConfig``, ``mie.training.config.TrainerConfig``, ...); a recipe composes
them into one dataclass. This module knows no schema: every function takes the dataclass to build.
A dataclass may declare ``RULES: ClassVar[dict[str, Rule]]``, checked after every load, and a
``check_limits(key)`` method, called after its rules (a model config refuses sizes past the machine's memory).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mie.errors import ConfigError, LimitError
from mie.safe_yaml import parse_yaml

MAX_CONFIG_BYTES = 1 << 20

T = TypeVar("T")


# --------------------------------------------------------------------------------------------------
# Loading, overrides, validation
# --------------------------------------------------------------------------------------------------


# A float written as ``3e-4`` is a string to YAML 1.1 (PyYAML wants ``3.0e-4``); float fields accept it.
_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _describe(tp: Any) -> str:
    """A short human name for a type annotation, used in error messages."""
    if dataclasses.is_dataclass(tp):
        return f"a mapping ({tp.__name__})"
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list:
        return f"a list of {_describe(args[0])}"
    if origin is dict:
        return "a mapping"
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _describe(a) for a in args)
    return getattr(tp, "__name__", str(tp))


def _type_error(key: str, value: Any, tp: Any) -> ConfigError:
    error = ConfigError(f"{key}: expected {_describe(tp)}, got {value!r} ({type(value).__name__})")
    error.key = key  # lets a union re-describe a mismatch at its own key (see _convert)
    return error


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against annotation ``tp`` and return it in the field's type (int -> float)."""
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            value = dataclasses.asdict(value)
        if not isinstance(value, Mapping):
            raise _type_error(key, value, tp)
        return _build(tp, value, key)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(value, option, key)
            except ConfigError as exc:
                if exc.key != key:
                    raise  # a mistake deeper inside (e.g. stages[0].loss.name) keeps its own message
        raise _type_error(key, value, tp)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise _type_error(key, value, tp)
        return [_convert(item, args[0], f"{key}[{i}]") for i, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise _type_error(key, value, tp)
        key_tp, value_tp = args
        return {
            _convert(k, key_tp, f"{key} key"): _convert(v, value_tp, f"{key}.{k}") for k, v in value.items()
        }
    if tp is bool:
        if not isinstance(value, bool):
            raise _type_error(key, value, tp)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(key, value, tp)
        return value
    if tp is float:
        if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
            return float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _type_error(key, value, tp)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _type_error(key, value, tp)
        return value
    raise TypeError(f"config.py: no conversion for annotation {tp!r} of {key}")  # a schema bug, not user input


def _closest(name: str, allowed: Iterable[str], prefix: str) -> str:
    match = difflib.get_close_matches(name, list(allowed), n=1, cutoff=0.6)
    return f" (did you mean '{prefix + '.' if prefix else ''}{match[0]}'?)" if match else ""


def _build(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    """Build dataclass ``cls`` from a (possibly partial) mapping; missing keys keep their defaults."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        if name not in names:
            raise ConfigError(
                f"unknown key '{key}'{_closest(str(name), names, prefix)}; "
                f"allowed keys{' in ' + prefix if prefix else ''}: {', '.join(names)}"
            )
        kwargs[name] = _convert(value, hints[name], key)
    return cls(**kwargs)


# ---- value rules: a dataclass declares ``RULES: ClassVar[dict[field, Rule]]`` beside its fields ----

Rule = tuple[Callable[[Any], bool], str]  # (predicate, what is allowed)
POSITIVE: Rule = (lambda v: v > 0, "> 0")
NON_NEGATIVE: Rule = (lambda v: v >= 0, ">= 0")
FRACTION: Rule = (lambda v: 0.0 <= v <= 1.0, "in [0, 1]")


def one_of(*choices: str) -> Rule:
    """A rule accepting exactly ``choices``."""
    return (lambda v: v in choices, "one of " + " | ".join(choices))


def _check_values(obj: Any, prefix: str) -> None:
    """Apply ``_RULES`` (and finiteness of every float) to a built dataclass tree."""
    rules = getattr(type(obj), "RULES", {})
    for f in dataclasses.fields(obj):
        key = f"{prefix}.{f.name}" if prefix else f.name
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            _check_values(value, key)
            continue
        if isinstance(value, list):
            for i, item in enumerate(value):
                if dataclasses.is_dataclass(item):
                    _check_values(item, f"{key}[{i}]")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key}: got {value!r}; must be a finite number")
        if isinstance(value, int) and not isinstance(value, bool) and not -2**63 <= value < 2**63:
            # torch and NumPy take seeds and sizes as 64-bit integers: "Overflow when unpacking long long"
            raise ConfigError(f"{key}: got {value}; must be a whole number between -2**63 and 2**63 - 1")
        if f.name in rules:
            ok, allowed = rules[f.name]
            if not ok(value):
                raise ConfigError(f"{key}: got {value!r}; must be {allowed}")
    # Sizes the rules cannot judge alone (a model past the machine's memory) are refused here too, at every
    # load, so a run folder read from disk is checked like a config given to `mie train`.
    check_limits = getattr(obj, "check_limits", None)
    if check_limits is not None:
        check_limits(prefix)


# ---- public API ------------------------------------------------------------------------------------


def config_from_dict(cls: type[T], data: Mapping[str, Any] | None) -> T:
    """Build and validate a ``cls`` config from a (possibly partial) nested mapping."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"config: expected a mapping at the top level, got {type(data).__name__}")
    cfg = _build(cls, data, "")
    _check_values(cfg, "")
    return cfg


def validate_config(cfg: T) -> T:
    """Check the types and values of a config built in Python; returns a clean copy or raises ConfigError."""
    return config_from_dict(type(cfg), config_to_dict(cfg))


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain nested dicts/lists (what YAML stores)."""
    return dataclasses.asdict(cfg)


def save_config(cfg: Any, path: str | Path) -> Path:
    """Write ``cfg`` as YAML (keys in schema order); returns the path written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), encoding="utf-8")
    return path


def _parse_override(text: str) -> tuple[list[str], str]:
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"bad override {text!r}: expected KEY=VALUE with a dotted key, e.g. optimizer.lr=3e-4")
    return key.split("."), raw.strip()


def _set_path(tree: Any, parts: list[str], value: Any, key: str) -> None:
    """Set ``value`` at ``parts`` inside nested dicts/lists; list items are addressed by index."""
    node = tree
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = ".".join(parts[:depth]) or "the config"
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"override {key}: '{part}' is not an index of {where} (it has {len(node)} items)")
            index: Any = int(part)
        elif isinstance(node, dict):
            index = part
        else:
            raise ConfigError(f"override {key}: {where} is a value ({node!r}), not a section")
        if last:
            node[index] = value
        else:
            if isinstance(node, dict) and node.get(index) is None:
                node[index] = {}  # an unset optional section (e.g. stages.0.loss) or a new mapping key
            node = node[index]


def _field_annotation(schema: type, parts: list[str]) -> Any:
    """The annotation of the field at a dotted path, or None when the path leaves the schema."""
    tp: Any = schema
    for part in parts:
        origin = typing.get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
            origin = typing.get_origin(tp)
        if origin is list and part.isdigit():
            tp = typing.get_args(tp)[0]
        elif dataclasses.is_dataclass(tp):
            tp = typing.get_type_hints(tp).get(part)
            if tp is None:
                return None
        else:
            return None
    return tp


def apply_overrides(cfg: T, overrides: Iterable[str]) -> T:
    """Return a new config with ``KEY=VALUE`` overrides applied (values parsed as YAML), validated.

    ``optimizer.lr=3e-4``, ``data.test_splits=[test]``, ``stages.0.lr=1e-4``, ``loss.kwargs.t=0.1``.
    """
    tree = config_to_dict(cfg)
    for text in overrides:
        parts, raw = _parse_override(text)
        value = parse_yaml(raw, f"override {text!r}") if raw else None
        if _field_annotation(type(cfg), parts) is str and value is not None and not isinstance(value, str):
            value = raw  # `--set data.path=2024` means the text, not the number
        _set_path(tree, parts, value, ".".join(parts))
    return config_from_dict(type(cfg), tree)


def read_yaml(path: str | Path, _chain: tuple[Path, ...] = ()) -> Any:
    """The YAML document in ``path``, or a one-line error naming the file (and line) that is wrong.

    Parsing is bounded (see :mod:`mie.safe_yaml`): alias bombs and deep nesting are refused. A mapping
    with ``base: other.yaml`` (a path beside this file) is that file's document with this one's keys
    merged over it: mappings merge key by key, anything else (lists included) replaces. So a variant
    (``demo_rerank.yaml``) says only how it differs from the config it builds on.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file '{path}' does not exist; pass a YAML file such as configs/demo.yaml")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise LimitError(f"is {path.stat().st_size:,} bytes; a config is at most {MAX_CONFIG_BYTES:,}", where=path,
                         fix="check that this is the config file you meant")
    data = parse_yaml(path.read_bytes(), str(path))
    if not isinstance(data, dict) or "base" not in data:
        return data
    base = data.pop("base")
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"base: expected the path of the config this one builds on, got {base!r}", where=path)
    chain = (*_chain, path.resolve())
    target = (path.parent / base).resolve()
    if target in chain or len(chain) >= MAX_BASE_DEPTH:
        raise ConfigError(f"base: {base} leads back to a config already read (or past {MAX_BASE_DEPTH} levels)",
                          where=path, fix="make the chain of base configs end in one without base:")
    return _merge(read_yaml(target, chain), data)


MAX_BASE_DEPTH = 8


def _merge(base: Any, over: Any) -> Any:
    """``over`` merged into ``base``: mappings key by key (recursively), anything else replaced."""
    if not (isinstance(base, dict) and isinstance(over, dict)):
        return over
    return {**base, **{k: _merge(base[k], v) if k in base else v for k, v in over.items()}}


def load_config(path: str | Path, schema: type[T], overrides: Iterable[str] = ()) -> T:
    """Read a YAML config into ``schema`` (keys left out take their defaults), apply ``--set`` overrides."""
    data = read_yaml(path)
    try:
        cfg = config_from_dict(schema, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return apply_overrides(cfg, overrides)
