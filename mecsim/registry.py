"""Registered names for scenarios, policies and solvers, and "package.module:Object" loading.

A registered name maps to a factory (a class or a function returning an object). Users name
their own code as ``"package.module:Object"``; that is the only code a scenario or a command line
can name, and it is imported with :func:`importlib.import_module` (nothing is evaluated).

Example:
    >>> from mecsim.registry import POLICIES
    >>> "random" in POLICIES.names()
    True
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from mecsim.errors import MecsimError, PolicyError, SolverError


def load_object(spec: str, error: type[MecsimError] = MecsimError) -> Any:
    """Import ``"package.module:Object"`` (Object may be dotted: ``"pkg.mod:Cls.attr"``)."""
    if ":" not in spec:
        raise error(f"{spec!r} is neither a registered name nor of the form 'package.module:Object'")
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise error(f"{spec!r} is not of the form 'package.module:Object'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise error(f"cannot import module {module_name!r} named in {spec!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise error(f"module {module_name!r} has no attribute {attr!r} (from {spec!r})") from None
    return obj


class Registry:
    """A name -> factory table with helpful errors.

    Args:
        kind: what is registered ("policy", "solver", ...), used in messages.
        error: the exception type raised for unknown names.
    """

    def __init__(self, kind: str, error: type[MecsimError]) -> None:
        self.kind = kind
        self.error = error
        self._factories: dict[str, Callable[..., Any]] = {}
        self._docs: dict[str, str] = {}

    def register(self, name: str, doc: str = "") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: register a factory under ``name``."""

        def deco(factory: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._factories:
                raise self.error(f"{self.kind} {name!r} is registered twice")
            self._factories[name] = factory
            lines = (factory.__doc__ or "").strip().splitlines()
            self._docs[name] = doc or (lines[0] if lines else "")
            return factory

        return deco

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._factories)

    def describe(self) -> dict[str, str]:
        """Registered names with their one-line descriptions."""
        return {k: self._docs.get(k, "") for k in self.names()}

    def resolve(self, spec: str) -> Callable[..., Any]:
        """The factory for a registered name or a ``"package.module:Object"`` spec."""
        if spec in self._factories:
            return self._factories[spec]
        if ":" in spec:
            return load_object(spec, self.error)
        raise self.error(
            f"unknown {self.kind} {spec!r}; registered: {', '.join(self.names())} "
            "(or name your own as 'package.module:Object')"
        )

    def make(self, spec: str, **params: Any) -> Any:
        """Build an instance by calling the factory with ``params``."""
        factory = self.resolve(spec)
        try:
            return factory(**params)
        except TypeError as exc:
            raise self.error(f"cannot build {self.kind} {spec!r} with parameters {params}: {exc}") from exc


POLICIES = Registry("policy", PolicyError)
SOLVERS = Registry("solver", SolverError)
