"""One registry style for every "name -> thing" table of mie: losses, dataset formats, model presets, fusion
blocks, tokenizer normalizers, recipes, pretrained models.

A :class:`Registry` is a ``dict`` (so ``name in LOSSES``, ``sorted(LOSSES)`` and ``LOSSES.get(name)`` work as
before) that things join with the :meth:`~Registry.register` decorator, or with :meth:`~Registry.add` for
values that are not classes or functions (presets, specs), and that is read with :meth:`~Registry.lookup`,
whose error for an unknown name is one line listing the choices::

    LOSSES = Registry("loss", plural="losses")

    @LOSSES.register("clip")
    class CLIPLoss(LossBase): ...

    LOSSES.lookup("clp")  # ConfigError: unknown loss 'clp'; known losses: clip, siglip, ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from mie.errors import ConfigError, MieError

T = TypeVar("T")
V = TypeVar("V")


class Registry(dict[str, T]):
    """Names of one ``kind`` of thing -> the things; a name is registered once (a second registration of
    another thing under it is a ``ValueError``: two modules would otherwise silently fight over it)."""

    def __init__(self, kind: str, plural: str | None = None, error: type[MieError] = ConfigError,
                 fix: str | None = None) -> None:
        super().__init__()
        self.kind, self.plural, self.error, self.fix = kind, plural or f"{kind}s", error, fix

    def add(self, name: str, value: T) -> T:
        """Register ``value`` under ``name``; returns it."""
        if name in self and self[name] is not value:
            raise ValueError(f"{self.kind} name {name!r} is already registered to {_describe(self[name])}")
        self[name] = value
        return value

    def register(self, name: str) -> Callable[[V], V]:
        """Decorator that registers a class or function under ``name`` and returns it unchanged."""
        def decorate(value: V) -> V:
            self.add(name, value)  # type: ignore[arg-type]
            return value
        return decorate

    def choices(self, also: Iterable[str] = ()) -> str:
        """The registered names and ``also``, sorted and comma-separated (what an error lists)."""
        return ", ".join(sorted({*self, *also}))

    def lookup(self, name: str, where: str | None = None, fix: str | None = None, also: Iterable[str] = ()) -> T:
        """The thing registered as ``name``; an unknown name raises the registry's error (a
        :class:`~mie.errors.ConfigError` unless told otherwise) in one line with every known name
        (and ``also``: names the caller handles before the registry, such as ``auto``)."""
        try:
            return self[name]
        except (KeyError, TypeError):  # TypeError: an unhashable name from a config (a list, a mapping)
            raise self.error(f"unknown {self.kind} {name!r}; known {self.plural}: {self.choices(also)}",
                             where=where, fix=fix or self.fix) from None


def _describe(value: Any) -> str:
    name = getattr(value, "__qualname__", None)
    return f"{name} ({value.__module__})" if name and getattr(value, "__module__", None) else repr(value)
