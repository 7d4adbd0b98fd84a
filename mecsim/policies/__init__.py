"""Policies: the decision interface and the shipped policies.

Importing this package registers the heuristics (always), the QUBO policies and their ablations
(their solvers import lazily, so the core stays light).
"""

from mecsim.policies import heuristics  # noqa: F401  (registers the heuristics)
from mecsim.policies.base import BasePolicy, FunctionPolicy, Policy, make_policy
from mecsim.policies.check import check_policy

try:  # the hybrid QUBO policies (need dimod/dwave-samplers, core dependencies)
    # qaoa imports qiskit only when built; ablations registers greedy-ls and the hybrid's ablations
    from mecsim.policies import ablations, qaoa, qubo  # noqa: F401
except ImportError as _exc:  # pragma: no cover - only when the core install is broken
    import warnings

    warnings.warn(f"QUBO policies unavailable: {_exc}", stacklevel=1)

from mecsim.rl import policy as _rl  # noqa: E402,F401  (registers "rl"; torch loads only on use)

__all__ = ["BasePolicy", "FunctionPolicy", "Policy", "make_policy", "check_policy"]
