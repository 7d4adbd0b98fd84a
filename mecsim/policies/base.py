"""The policy interface: ``decide(state) -> Decision``.

A policy is any object with a ``decide(state: EpochState) -> Decision`` method. Two optional
hooks:

* ``reset(rng: numpy.random.Generator) -> None``: called once at the start of every run with the
  policy's own random stream (spawned from the run seed), so that a seeded run is reproducible.
* ``bind(info: dict) -> None``: called once before the run with facts about the scenario
  (``{"server_names": ..., "models": ..., "scenario": <Scenario>}``); raise
  :class:`mecsim.errors.PolicyError` there if the policy cannot work with it.

A plain function ``f(state) -> Decision`` is accepted too. :class:`BasePolicy` gives the hooks
a default body.

Example:
    >>> import numpy as np
    >>> from mecsim.policies.base import BasePolicy
    >>> from mecsim.state import Decision
    >>> class FirstServer(BasePolicy):
    ...     name = "first-server"
    ...     def decide(self, state):
    ...         return Decision(state.equal_share(), np.zeros(state.n_tasks, dtype=int))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from mecsim.errors import PolicyError
from mecsim.registry import POLICIES
from mecsim.state import Decision, EpochState


@runtime_checkable
class Policy(Protocol):
    """Structural type of a policy."""

    def decide(self, state: EpochState) -> Decision:  # pragma: no cover - protocol
        ...


class BasePolicy:
    """Convenience base class: stores the run's random generator and has no-op hooks."""

    name: str = "policy"

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)

    def reset(self, rng: np.random.Generator) -> None:
        """Start a run with the policy's own random stream."""
        self.rng = rng

    def bind(self, info: dict[str, Any]) -> None:
        """Check the policy against a scenario (no-op by default)."""

    def decide(self, state: EpochState) -> Decision:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class FunctionPolicy(BasePolicy):
    """Wraps a plain function ``f(state) -> Decision``."""

    def __init__(self, func: Callable[[EpochState], Decision], name: str | None = None) -> None:
        super().__init__()
        self.func = func
        self.name = name or getattr(func, "__name__", "function")

    def decide(self, state: EpochState) -> Decision:
        return self.func(state)


def make_policy(spec: Any, **params: Any) -> Any:
    """Build a policy from a registered name, a ``"package.module:Object"`` spec, a class, an
    instance or a plain function.

    Raises:
        PolicyError: unknown name, import failure, or an object that is not a policy.
    """
    if isinstance(spec, str) and spec in POLICIES.names():
        return POLICIES.make(spec, **params)
    obj = POLICIES.resolve(spec) if isinstance(spec, str) else spec
    if isinstance(obj, type):
        try:
            obj = obj(**params)
        except TypeError as exc:
            raise PolicyError(f"cannot build policy {spec!r} with parameters {params}: {exc}") from exc
    elif params:
        raise PolicyError(f"policy {spec!r} is not a class, so it takes no parameters ({params})")
    if hasattr(obj, "decide"):
        return obj
    if callable(obj):
        return FunctionPolicy(obj, name=spec if isinstance(spec, str) else None)
    raise PolicyError(f"{spec!r} is not a policy: it has no decide(state) method and is not callable")
