"""The loss section of a config: a registered loss by name, with its constructor arguments.

A weighted sum is the registered ``combined`` loss::

    loss:
      name: combined
      kwargs: {losses: [{name: clip}, {name: decorrelation, weight: 0.5}]}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from mie.config import Rule


@dataclass
class LossConfig:
    """A loss from ``mie.losses.LOSSES`` by name, with its constructor keyword arguments."""

    RULES: ClassVar[dict[str, Rule]] = {
        "name": (lambda v: bool(v.strip()), "a loss name from mie.losses.LOSSES such as clip"),
    }

    name: str = "clip"
    kwargs: dict[str, Any] = field(default_factory=dict)
