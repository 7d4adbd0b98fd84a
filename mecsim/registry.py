"""Registered names for scenarios, policies and solvers, and "package.module:Object" loading.

A registered name maps to a factory (a class or a function returning an object). Users name
their own code as ``"package.module:Object"``; that is the only code a scenario or a command line
can name, and it is imported with :func:`importlib.import_module` (nothing is evaluated).

The built-in names are listed below (:data:`BUILTIN_POLICIES`, :data:`BUILTIN_SOLVERS`) as lazy
entries: ``name -> (target, one-line doc)``, so that ``mecsim list`` and ``names()`` work without
importing numpy, scipy or dimod. A target is either ``"package.module:Object"`` (the factory
itself) or ``"package.module"`` (a module that registers the name with :meth:`Registry.register`
when imported); it is imported the first time the name is resolved.

Adding a built-in name is one line in the table (plus, for a module target, the usual
``@POLICIES.register("name")`` in that module). ``tests/test_conformance.py`` checks that every
name the built-in modules register is in the table and passes ``check_policy``/``check_sampler``.

Example:
    >>> from mecsim.registry import POLICIES
    >>> "random" in POLICIES.names()
    True
    >>> POLICIES.describe()["greedy"]
    'Earliest expected completion, tasks placed one by one.'
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
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
        builtins: lazy entries ``name -> (target, doc)``; see the module docstring.
    """

    def __init__(
        self, kind: str, error: type[MecsimError], builtins: Mapping[str, tuple[str, str]] | None = None
    ) -> None:
        self.kind = kind
        self.error = error
        self._factories: dict[str, Callable[..., Any]] = {}
        self._docs: dict[str, str] = {}
        self._lazy: dict[str, str] = {}
        self._builtin_module_names = sorted({t.partition(":")[0] for t, _ in (builtins or {}).values()})
        for name, (target, doc) in (builtins or {}).items():
            self._lazy[name] = target
            self._docs[name] = doc

    def register(self, name: str, doc: str = "") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: register a factory under ``name``.

        A built-in module may register a name that its lazy entry points to; any other second
        registration of a name is an error.
        """

        def deco(factory: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._factories or (name in self._lazy and not self._owns(name, factory)):
                raise self.error(f"{self.kind} {name!r} is registered twice")
            self._factories[name] = factory
            self._lazy.pop(name, None)
            lines = (factory.__doc__ or "").strip().splitlines()
            self._docs[name] = doc or self._docs.get(name) or (lines[0] if lines else "")
            return factory

        return deco

    def _owns(self, name: str, factory: Callable[..., Any]) -> bool:
        """Whether ``factory`` comes from the module that ``name``'s lazy entry names."""
        module = self._lazy[name].partition(":")[0]
        return getattr(factory, "__module__", None) == module

    def names(self) -> list[str]:
        """Registered names (built-in and registered at run time), sorted; imports nothing."""
        return sorted(set(self._factories) | set(self._lazy))

    def describe(self) -> dict[str, str]:
        """Registered names with their one-line descriptions; imports nothing."""
        return {k: self._docs.get(k, "") for k in self.names()}

    def builtin_modules(self) -> list[str]:
        """The modules that hold the built-in entries (imported only when one is resolved)."""
        return list(self._builtin_module_names)

    def load_all(self) -> list[str]:
        """Import every built-in module and entry (e.g. to check them all); returns :meth:`names`."""
        self._import_builtin_modules()
        for name in list(self._lazy):
            self.resolve(name)
        return self.names()

    def _import_builtin_modules(self) -> bool:
        """Import the built-in modules (only after a miss); False if they were all imported."""
        todo = [m for m in self._builtin_module_names if m not in sys.modules]
        for module in todo:
            try:
                importlib.import_module(module)
            except ImportError:  # pragma: no cover - a broken install; the miss is reported anyway
                pass
        return bool(todo)

    def _load(self, name: str) -> Callable[..., Any]:
        target = self._lazy[name]
        if ":" in target:
            factory = load_object(target, self.error)
            if name not in self._factories:  # the module may have registered it on import
                self._factories[name] = factory
                self._lazy.pop(name, None)
            return self._factories[name]
        try:
            importlib.import_module(target)
        except ImportError as exc:
            raise self.error(f"{self.kind} {name!r}: cannot import {target!r}: {exc}") from exc
        if name not in self._factories:
            raise self.error(f"built-in {self.kind} {name!r}: module {target!r} did not register it")
        return self._factories[name]

    def resolve(self, spec: str) -> Callable[..., Any]:
        """The factory for a registered name or a ``"package.module:Object"`` spec."""
        if spec in self._factories:
            return self._factories[spec]
        if spec in self._lazy:
            return self._load(spec)
        if ":" in spec:
            return load_object(spec, self.error)
        if self._import_builtin_modules() and spec in self._factories:
            return self._factories[spec]  # registered by a built-in module but missing from the table
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


_HEUR = "mecsim.policies.heuristics"
_QUBO = "mecsim.policies.qubo"
_QAOA = "mecsim.policies.qaoa"
_SOLV = "mecsim.decision.solvers"
_ABL = "mecsim.policies.ablations"

#: Built-in policies: name -> (module that registers it, or "module:Object"; one-line doc).
BUILTIN_POLICIES: dict[str, tuple[str, str]] = {
    "random": (_HEUR, "A uniformly random feasible server per task, equal bandwidth."),
    "round-robin": (_HEUR, "Feasible servers in turn, continuing across epochs."),
    "nearest": (_HEUR, "The feasible server with the lowest backhaul delay."),
    "least-loaded": (_HEUR, "Join the shortest backlog (expected wait), updated as tasks are placed."),
    "greedy": (_HEUR, "Earliest expected completion, tasks placed one by one."),
    "central-queue": (_HEUR, "Hold tasks, oldest first, until a feasible server has a free GPU slot."),
    "greedy-affinity": (
        _HEUR,
        "Earliest expected completion that sees model residency and batching (model affinity).",
    ),
    "qubo": (_QUBO, "hybrid with any solver: params solver=<registered or package.module:Object>"),
    "qubo-sa": (_QUBO, "hybrid: convex bandwidth + QUBO server selection by simulated annealing"),
    "qubo-tabu": (_QUBO, "hybrid: convex bandwidth + QUBO server selection by tabu search"),
    "qubo-exact": (_QUBO, "hybrid with brute-force QUBO solving (<= 20 variables, else fallback)"),
    "qubo-milp": (_QUBO, "hybrid with the exact linearised MILP (HiGHS) as the QUBO solver"),
    "qubo-qaoa": (_QAOA, "hybrid: convex bandwidth + QUBO server selection by QAOA (extra 'qaoa')"),
    "qubo-qaoa-fixed": (_QAOA, "hybrid with fixed-angle QAOA, no optimisation loop (extra 'qaoa')"),
    "greedy-ls": (_ABL, "ablation: cheapest insertion + the hybrid's local search, no sampler"),
    "qubo-sa-nols": (_ABL, "ablation: hybrid with SA, its best read only, no local search"),
    "qubo-random": (
        _ABL,
        "ablation: hybrid with the null sampler random-feasible (SA's reads), same repair + LS",
    ),
    "qubo-random-nols": (_ABL, "ablation: the null sampler's best read only, no local search"),
    "rl": (
        "mecsim.rl.policy",
        "reinforcement-learning baseline: a trained MaskablePPO model (params: model=path.zip)",
    ),
}

#: Built-in solvers (dimod samplers), same form as :data:`BUILTIN_POLICIES`.
BUILTIN_SOLVERS: dict[str, tuple[str, str]] = {
    "sa": (_SOLV, "simulated annealing (dwave-samplers), few short anneals"),
    "tabu": (_SOLV, "tabu search (dwave-samplers)"),
    "sa-standalone": (_SOLV, "SA with per-task one-hot penalties: no repair or local search needed"),
    "random-feasible": (_SOLV, "null model: uniform random one-hot feasible assignments"),
    "exact": (_SOLV, "brute force (dimod.ExactSolver), at most 20 variables"),
    "qaoa": (_SOLV, "QAOA: qiskit circuits, numpy statevector fast path, qiskit-aer (extra 'qaoa')"),
    "milp": (_SOLV, "exact MILP linearisation solved by HiGHS (scipy)"),
}

POLICIES = Registry("policy", PolicyError, BUILTIN_POLICIES)
SOLVERS = Registry("solver", SolverError, BUILTIN_SOLVERS)
