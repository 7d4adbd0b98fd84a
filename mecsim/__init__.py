"""mecsim: a discrete-event simulator of mobile edge computing networks serving AI-generated
content, with pluggable policies and QUBO solvers.

The flat API below is loaded lazily (PEP 562): ``import mecsim`` imports no numerical library;
``mecsim.simulate`` imports the engine on first use.

Example:
    >>> import mecsim
    >>> res = mecsim.simulate("smoke-v1", policy="greedy", seed=1, duration_s=30)
    >>> list(res.tasks.columns[:4])
    ['task_id', 'device', 'model', 'input_bits']
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mecsim import errors
from mecsim.errors import MecsimError, PolicyError, ScenarioError, SolverError

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from mecsim.api import simulate
    from mecsim.policies import BasePolicy, check_policy, make_policy
    from mecsim.results import Result
    from mecsim.scenario import Scenario, load_scenario, registered_scenarios
    from mecsim.state import DEFER, DROP, Decision, EpochState

__version__ = "0.1.0"

# public name -> module that defines it (imported on first attribute access)
_LAZY = {
    "simulate": "mecsim.api",
    "Result": "mecsim.results",
    "Scenario": "mecsim.scenario",
    "load_scenario": "mecsim.scenario",
    "registered_scenarios": "mecsim.scenario",
    "EpochState": "mecsim.state",
    "Decision": "mecsim.state",
    "DROP": "mecsim.state",
    "DEFER": "mecsim.state",
    "BasePolicy": "mecsim.policies",
    "make_policy": "mecsim.policies",
    "check_policy": "mecsim.policies",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mecsim' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "simulate",
    "Result",
    "Scenario",
    "load_scenario",
    "registered_scenarios",
    "EpochState",
    "Decision",
    "DROP",
    "DEFER",
    "BasePolicy",
    "make_policy",
    "check_policy",
    "errors",
    "MecsimError",
    "ScenarioError",
    "PolicyError",
    "SolverError",
    "__version__",
]
