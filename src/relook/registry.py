"""One generic name -> factory registry, used by every kind of interchangeable part.

>>> RERANKERS = Registry("reranker")
>>> @RERANKERS.register("gv")
... class GeometricVerification: ...
>>> RERANKERS.create("gv")  # -> instance; a typo raises ConfigError listing the known names
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from relook.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories (classes or functions) of one kind of part."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str | None = None) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator registering a factory under ``name`` (default: its ``__name__``)."""

        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            key = name or factory.__name__
            if key in self._factories and self._factories[key] is not factory:
                raise ConfigError(f"{self.kind} {key!r} is already registered")
            self._factories[key] = factory
            return factory

        return deco

    def get(self, name: str) -> Callable[..., T]:
        """The factory registered as ``name``; an unknown name raises and lists the valid ones."""
        try:
            return self._factories[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._factories, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            known = ", ".join(sorted(self._factories)) or "(none registered)"
            raise ConfigError(f"unknown {self.kind} {name!r}; known: {known}.{hint}") from None

    def create(self, name: str, **conf: Any) -> T:
        """Build the part registered as ``name`` with keyword configuration ``conf``."""
        factory = self.get(name)
        try:
            sig = inspect.signature(factory)
        except (TypeError, ValueError):  # builtins without a signature
            sig = None
        if sig is not None and not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
            unknown = sorted(set(conf) - set(sig.parameters))
            if unknown:
                known = [p for p in sig.parameters if p not in ("self", "root")]
                raise ConfigError(f"{self.kind} {name!r}: unknown option(s) {unknown}; known: {known}")
        return factory(**conf)

    def names(self) -> list[str]:
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._factories)
