"""Loss registry: every loss class registers itself by name; ``build_loss`` builds one from a name + kwargs.

    >>> from mie.losses import build_loss
    >>> loss = build_loss("clip", temperature=0.05)

Names come from YAML configs (``loss: {name: clip, kwargs: {...}}``), so unknown names and unknown
keyword arguments raise ``ValueError`` listing what is accepted instead of a bare ``TypeError``. ``LOSSES`` is a
:class:`mie.registry.Registry`, the one registry style of mie.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from mie.registry import Registry

LOSSES: Registry[type[nn.Module]] = Registry("loss", plural="losses")

T = TypeVar("T", bound=type[nn.Module])


def register_loss(name: str) -> Callable[[T], T]:
    """Class decorator that adds a loss class to ``LOSSES`` under ``name`` (names are unique)."""

    def decorate(cls: T) -> T:
        LOSSES.add(name, cls)
        cls.registered_name = name  # type: ignore[attr-defined]
        return cls

    return decorate


def loss_arguments(cls: type[nn.Module]) -> list[str]:
    """The keyword arguments a registered loss class accepts in its constructor."""
    params = inspect.signature(cls.__init__).parameters.values()
    return [p.name for p in params if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def build_loss(name: str, **kwargs: Any) -> nn.Module:
    """Build the loss registered as ``name`` with constructor ``kwargs``.

    Raises a ``ValueError`` (a :class:`~mie.errors.ConfigError`) for an unknown name (listing the known
    ones) or an unknown keyword argument (naming it and the loss's accepted arguments).
    """
    cls = LOSSES.lookup(name)
    accepted = loss_arguments(cls)
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        raise ValueError(
            f"loss {name!r} got unknown argument(s) {', '.join(map(repr, unknown))}; "
            f"accepted arguments: {', '.join(accepted) or '(none)'}"
        )
    return cls(**kwargs)
