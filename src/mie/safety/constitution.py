"""The constitution: the principles a model is judged and revised by, loaded from YAML.

Each :class:`ConstitutionalPrinciple` carries what the safety methods need: a description, the
critique and revision prompts of the critique-revision phase (Bai et al. 2022, "Constitutional AI:
Harmlessness from AI Feedback"), a multiple-choice question for an LM judge, a sampling weight and a
few labelled exemplars. :class:`ConstitutionalFramework` holds them in order::

    framework = ConstitutionalFramework.default()          # the packaged five principles
    framework.disable("privacy")
    [p.name for p in framework.active]                      # the four still enabled
    principle = framework.sample(random.Random(0))          # weighted by ``weight``
    principle.critique_prompt
"""

from __future__ import annotations

import difflib
import math
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mie.errors import ConfigError, storage_error
from mie.safe_yaml import parse_yaml

DEFAULT_PATH = Path(__file__).resolve().parent / "data" / "constitution.yaml"
REQUIRED = ("name", "description", "critique_prompt", "revision_prompt")
OPTIONAL = ("judge_question", "weight", "enabled", "exemplars")
TOP_LEVEL = ("version", "principles")


@dataclass
class Exemplar:
    """A labelled example of a principle: ``violates`` is True when ``text`` breaks it."""

    text: str
    violates: bool


@dataclass
class ConstitutionalPrinciple:
    """One principle: what it asks, how to critique and revise against it, and how a judge asks it."""

    name: str
    description: str
    critique_prompt: str
    revision_prompt: str
    judge_question: str = ""  # empty: built from the description (see ``question``)
    weight: float = 1.0  # relative chance of being drawn by ``ConstitutionalFramework.sample``
    exemplars: list[Exemplar] = field(default_factory=list)
    enabled: bool = True

    @property
    def question(self) -> str:
        """The multiple-choice question an LM judge answers with (A) violates or (B) does not."""
        if self.judge_question:
            return self.judge_question
        return f"Does this text violate the principle '{self.description}'? (A) yes (B) no"

    def to_dict(self) -> dict[str, Any]:
        """The YAML-ready form (what :meth:`ConstitutionalFramework.from_dict` reads back)."""
        return {"name": self.name, "description": self.description, "critique_prompt": self.critique_prompt,
                "revision_prompt": self.revision_prompt, "judge_question": self.judge_question,
                "weight": self.weight, "enabled": self.enabled,
                "exemplars": [{"text": e.text, "violates": e.violates} for e in self.exemplars]}


class ConstitutionalFramework:
    """An ordered set of principles, each of which can be enabled or disabled by name."""

    def __init__(self, principles: list[ConstitutionalPrinciple]):
        self._principles: dict[str, ConstitutionalPrinciple] = {}
        for principle in principles:
            if principle.name in self._principles:
                raise ConfigError(f"principle '{principle.name}' is defined twice", fix="give each principle one entry")
            self._principles[principle.name] = principle

    # --- loading -------------------------------------------------------------------------------
    @classmethod
    def default(cls) -> ConstitutionalFramework:
        """The packaged constitution: harm_prevention, truthfulness, fairness, autonomy_respect, privacy."""
        return cls.from_yaml(DEFAULT_PATH)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> ConstitutionalFramework:
        """Load a constitution file; any mistake is one :class:`ConfigError` naming the file and key."""
        try:
            text = Path(path).read_bytes()
        except OSError as exc:
            raise storage_error(exc, path) from None
        return cls.from_dict(parse_yaml(text, where=os.fspath(path)), where=os.fspath(path))

    @classmethod
    def from_dict(cls, data: Any, where: str = "constitution") -> ConstitutionalFramework:
        """Build from parsed YAML (``{"principles": [...]}``), validating every key once, here."""
        if not isinstance(data, dict):
            raise ConfigError(f"expected a mapping with a 'principles' list, got {type(data).__name__}",
                              where=where, fix="write 'principles:' followed by a list of principles")
        _check_keys(data, TOP_LEVEL, "", where)
        items = data.get("principles")
        if not isinstance(items, list) or not items:
            raise ConfigError(f"principles: expected a non-empty list, got {_show(items)}", where=where,
                              fix="list at least one principle with name, description, critique_prompt, "
                                  "revision_prompt")
        principles = [_principle(item, f"principles[{i}]", where) for i, item in enumerate(items)]
        seen: set[str] = set()
        for i, principle in enumerate(principles):
            if principle.name in seen:
                raise ConfigError(f"principles[{i}].name: '{principle.name}' is defined twice", where=where,
                                  fix="give each principle a different name")
            seen.add(principle.name)
        return cls(principles)

    def to_dict(self) -> dict[str, Any]:
        """The YAML-ready form of every principle, enabled or not."""
        return {"version": 1, "principles": [p.to_dict() for p in self._principles.values()]}

    # --- access --------------------------------------------------------------------------------
    def get(self, name: str) -> ConstitutionalPrinciple:
        """The principle called ``name``; a :class:`ConfigError` suggests the closest name if there is none."""
        try:
            return self._principles[name]
        except KeyError:
            match = difflib.get_close_matches(name, list(self._principles), n=1, cutoff=0.6)
            hint = f"did you mean '{match[0]}'?" if match else f"choose one of {', '.join(self._principles)}"
            raise ConfigError(f"no principle named '{name}'", where="constitution", fix=hint) from None

    def enable(self, name: str) -> None:
        """Enable the principle ``name`` (it is judged and sampled again)."""
        self.get(name).enabled = True

    def disable(self, name: str) -> None:
        """Disable the principle ``name``: it is left out of ``active`` and ``sample``."""
        self.get(name).enabled = False

    @property
    def names(self) -> list[str]:
        """Every principle's name, in order."""
        return list(self._principles)

    @property
    def active(self) -> list[ConstitutionalPrinciple]:
        """The enabled principles, in order."""
        return [p for p in self._principles.values() if p.enabled]

    def sample(self, rng: random.Random | None = None) -> ConstitutionalPrinciple:
        """One enabled principle, drawn with probability proportional to its ``weight``.

        The critique-revision phase draws one principle per revision, as in Bai et al. 2022; pass a
        seeded ``random.Random`` for a reproducible draw.
        """
        active = [p for p in self.active if p.weight > 0]
        if not active:
            raise ConfigError("no enabled principle with a positive weight to sample", where="constitution",
                              fix="enable a principle")
        rng = rng if rng is not None else random.Random()
        return rng.choices(active, weights=[p.weight for p in active], k=1)[0]

    def __iter__(self) -> Iterator[ConstitutionalPrinciple]:
        return iter(list(self._principles.values()))

    def __len__(self) -> int:
        return len(self._principles)

    def __contains__(self, name: object) -> bool:
        return name in self._principles

    def __repr__(self) -> str:
        marks = ", ".join(p.name + ("" if p.enabled else " (disabled)") for p in self._principles.values())
        return f"ConstitutionalFramework({marks})"


# --- validation ----------------------------------------------------------------------------------
def _show(value: Any) -> str:
    text = repr(value)
    return (text[:60] + "...") if len(text) > 60 else text


def _check_keys(data: dict, allowed: tuple[str, ...], prefix: str, where: str) -> None:
    """Refuse unknown keys, naming the closest allowed one (a typo would otherwise be silently ignored)."""
    for key in data:
        if key not in allowed:
            match = difflib.get_close_matches(str(key), list(allowed), n=1, cutoff=0.6)
            fix = f"did you mean '{prefix}{match[0]}'?" if match else f"use only {', '.join(allowed)}"
            raise ConfigError(f"{prefix}{key}: unknown key", where=where, fix=fix)


def _text(item: dict, key: str, prefix: str, where: str, required: bool) -> str:
    value = item.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        what = "missing" if value is None else f"expected non-empty text, got {_show(value)}"
        raise ConfigError(f"{prefix}.{key}: {what}", where=where, fix=f"write {key}: <text> under {prefix}")
    return " ".join(value.split())  # YAML folding leaves stray newlines; prompts read as one paragraph


def _principle(item: Any, prefix: str, where: str) -> ConstitutionalPrinciple:
    """Validate one principle mapping; every message names ``prefix.key``."""
    if not isinstance(item, dict):
        raise ConfigError(f"{prefix}: expected a mapping, got {_show(item)}", where=where,
                          fix="write each principle as name:, description:, critique_prompt:, revision_prompt:")
    _check_keys(item, REQUIRED + OPTIONAL, prefix + ".", where)
    texts = {key: _text(item, key, prefix, where, key in REQUIRED) for key in REQUIRED + ("judge_question",)}
    if not texts["name"].isidentifier():
        raise ConfigError(f"{prefix}.name: '{texts['name']}' is not a plain name", where=where,
                          fix="use letters, digits and underscores, e.g. harm_prevention")
    weight = item.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
        raise ConfigError(f"{prefix}.weight: got {_show(weight)}; must be a finite number >= 0", where=where,
                          fix="set weight: 1.0 (or 0 to never sample it)")
    enabled = item.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{prefix}.enabled: got {_show(enabled)}; must be true or false", where=where,
                          fix="write enabled: true or enabled: false")
    return ConstitutionalPrinciple(**texts, weight=float(weight), enabled=enabled,
                                   exemplars=_exemplars(item.get("exemplars", []), prefix, where))


def _exemplars(items: Any, prefix: str, where: str) -> list[Exemplar]:
    if not isinstance(items, list):
        raise ConfigError(f"{prefix}.exemplars: expected a list, got {_show(items)}", where=where,
                          fix="write - {text: ..., violates: true}")
    out = []
    for j, ex in enumerate(items):
        key = f"{prefix}.exemplars[{j}]"
        if not isinstance(ex, dict):
            raise ConfigError(f"{key}: expected a mapping, got {_show(ex)}", where=where,
                              fix="write - {text: ..., violates: true}")
        _check_keys(ex, ("text", "violates"), key + ".", where)
        if not isinstance(ex.get("text"), str) or not ex["text"].strip():
            raise ConfigError(f"{key}.text: expected non-empty text, got {_show(ex.get('text'))}", where=where,
                              fix="write the example text")
        if not isinstance(ex.get("violates"), bool):
            raise ConfigError(f"{key}.violates: got {_show(ex.get('violates'))}; must be true or false",
                              where=where, fix="write violates: true or violates: false")
        out.append(Exemplar(ex["text"], ex["violates"]))
    return out
