"""Policies: the decision interface and the shipped policies.

Importing this package is cheap (numpy only): the shipped policies are built-in lazy entries of
:data:`mecsim.registry.POLICIES`, and their modules (the QUBO policies need dimod and scipy, "rl"
needs torch when used) are imported the first time a name is resolved, e.g. by
:func:`make_policy`.
"""

from mecsim.policies.base import BasePolicy, FunctionPolicy, Policy, make_policy
from mecsim.policies.check import check_policy

__all__ = ["BasePolicy", "FunctionPolicy", "Policy", "make_policy", "check_policy"]
