"""mecsim: a discrete-event simulator of mobile edge computing networks serving AI-generated
content, with pluggable policies and QUBO solvers.

Example:
    >>> import mecsim
    >>> res = mecsim.simulate("smoke-v1", policy="greedy", seed=1, duration_s=30)
    >>> list(res.tasks.columns[:4])
    ['task_id', 'device', 'model', 'input_bits']
"""

from mecsim.api import simulate
from mecsim.errors import MecsimError, PolicyError, ScenarioError, SolverError
from mecsim.policies import BasePolicy, check_policy, make_policy
from mecsim.results import Result
from mecsim.scenario import Scenario, load_scenario, registered_scenarios
from mecsim.state import DEFER, DROP, Decision, EpochState

__version__ = "0.1.0"

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
    "MecsimError",
    "ScenarioError",
    "PolicyError",
    "SolverError",
    "__version__",
]
