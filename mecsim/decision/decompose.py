"""Decomposition of large one-hot QUBOs as a dimod composite, so any Ocean code can stack it.

:class:`OneHotDecomposeComposite` solves a BQM whose variables are organised in one-hot groups
(a task's servers) with a child sampler that takes at most ``max_variables`` variables (QAOA's
``max_qubits``). The groups, in the order given, are packed into consecutive blocks of at most
``max_variables`` variables; each block is solved with every other variable fixed: variables of
earlier blocks at their chosen values, later blocks at 0. Fixing folds each earlier choice's
interactions with the block into the block's linear terms (``BinaryQuadraticModel.fix_variables``),
so every subproblem is exact given the earlier decisions: a sequential, not a joint, optimum. A
group the child's best sample leaves broken is repaired by the cheapest variable of the group given
everything chosen so far (counted in ``info["repairs"]``). Variables in no group form blocks of
their own after the groups.

The result is one sample (the assembled assignment) with its energy on the whole model.
``info`` has ``subproblems``, ``repairs``, ``feasible_before_repair``, and, summed over the
subproblems (they run one after another), the child's ``evaluations``, ``circuit_depth``,
``two_qubit_gates``, ``circuit_duration_s``, ``qpu_time_s`` and ``wall_s`` where it reports
them; other scalar child figures are those of the last subproblem.

This is the same procedure as ``QuboPolicy``'s ``decompose`` option (tested to give the same
assignment), packaged as a sampler.

Example:
    >>> from mecsim.testing import random_epoch_state
    >>> from mecsim.decision.qubo import build_selection_qubo
    >>> from mecsim.decision.solvers import get_sampler
    >>> s = random_epoch_state(9, 3, seed=4)
    >>> q = build_selection_qubo(s, s.equal_share())
    >>> comp = OneHotDecomposeComposite(get_sampler("exact"), max_variables=9)
    >>> ss = comp.sample(q.bqm, one_hot=[g for g in q.one_hot if g])
    >>> ss.info["subproblems"], len(ss)
    (3, 1)
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import dimod
import numpy as np

from mecsim.errors import SolverError

__all__ = ["SUMMED_INFO_KEYS", "OneHotDecomposeComposite"]

#: Child ``info`` entries added up over the subproblems.
SUMMED_INFO_KEYS = (
    "evaluations",
    "circuit_depth",
    "two_qubit_gates",
    "circuit_duration_s",
    "qpu_time_s",
    "wall_s",
)


class OneHotDecomposeComposite(dimod.ComposedSampler):
    """Solve one-hot QUBOs larger than the child takes, block by block (see the module docstring).

    Args:
        child: the sampler of each block.
        max_variables: largest block (default: the child's ``properties["max_qubits"]``).

    Sample parameters: ``one_hot`` (the groups; required), ``seed`` (block ``k`` gets
    ``seed + 7919 k``, as the policy does), and anything else the child takes (passed to every
    block, e.g. ``initial_angles``).

    Raises:
        SolverError: no limit known, or a group larger than the limit.
    """

    def __init__(self, child: dimod.Sampler, max_variables: int | None = None) -> None:
        limit = max_variables if max_variables is not None else (child.properties or {}).get("max_qubits")
        if not limit or int(limit) < 1:
            raise SolverError("OneHotDecomposeComposite needs max_variables (or a child with max_qubits)")
        self._child = child
        self.max_variables = int(limit)

    @property
    def children(self) -> list[dimod.Sampler]:
        return [self._child]

    @property
    def parameters(self) -> dict[str, Any]:
        return {**self._child.parameters, "one_hot": [], "seed": []}

    @property
    def properties(self) -> dict[str, Any]:
        return {"child_properties": dict(self._child.properties or {}), "max_variables": self.max_variables}

    def _blocks(
        self, bqm: dimod.BinaryQuadraticModel, groups: list[list[Hashable]]
    ) -> list[list[list[Hashable]]]:
        limit = self.max_variables
        grouped = {v for g in groups for v in g}
        units = [list(g) for g in groups if g]
        units += [[v] for v in bqm.variables if v not in grouped]
        blocks: list[list[list[Hashable]]] = [[]]
        used = 0
        for unit in units:
            if len(unit) > limit:
                raise SolverError(
                    f"a one-hot group has {len(unit)} variables, more than max_variables={limit}"
                )
            if used + len(unit) > limit and blocks[-1]:
                blocks.append([])
                used = 0
            blocks[-1].append(unit)
            used += len(unit)
        return [b for b in blocks if b]

    def sample(self, bqm: dimod.BinaryQuadraticModel, **parameters: Any) -> dimod.SampleSet:
        """Solve block by block; one assembled sample (see the module docstring)."""
        one_hot = parameters.pop("one_hot", None)
        if one_hot is None:
            raise SolverError("OneHotDecomposeComposite needs one_hot=[[labels...], ...]")
        groups = [list(g) for g in one_hot]
        seed = parameters.pop("seed", None)
        params = self._child.parameters
        labels = list(bqm.variables)
        if not labels:
            return self._child.sample(bqm, **parameters)
        zero = -1 if bqm.vartype is dimod.SPIN else 0
        value = dict.fromkeys(labels, zero)  # later blocks "nowhere" while earlier ones are solved
        group_of = {v: gi for gi, g in enumerate(groups) for v in g}
        info: dict[str, Any] = {}
        repairs = 0
        blocks = self._blocks(bqm, groups)
        for k, block in enumerate(blocks):
            members = [v for unit in block for v in unit]
            inside = set(members)
            sub = bqm.copy()
            sub.fix_variables({v: value[v] for v in labels if v not in inside})
            kwargs = dict(parameters)
            if "seed" in params and seed is not None:
                kwargs["seed"] = (int(seed) + 7919 * k) % (2**31 - 1)
            if "one_hot" in params:
                kwargs["one_hot"] = [u for u in block if len(u) > 1 or u[0] in group_of]
            ss = self._child.sample(sub, **kwargs)
            ss.resolve()
            if len(ss) == 0:
                raise SolverError(f"the child returned an empty sample set (subproblem {k})")
            for key, val in (ss.info or {}).items():
                if not isinstance(val, bool | int | float | str | np.integer | np.floating):
                    continue
                old = info.get(key)
                summed = key in SUMMED_INFO_KEYS and isinstance(old, int | float | np.integer | np.floating)
                info[key] = old + val if summed else val
            best = ss.first.sample
            for unit in block:
                for v in unit:
                    value[v] = int(best.get(v, zero))
                if unit[0] in group_of:
                    one = 1
                    ones = [v for v in unit if value[v] == one]
                    if len(ones) != 1:  # repair: the cheapest member given everything so far
                        repairs += 1
                        for v in unit:
                            value[v] = zero
                        costs = []
                        for v in unit:
                            value[v] = one
                            costs.append(bqm.energy(value))
                            value[v] = zero
                        value[unit[int(np.argmin(costs))]] = one
        info.update(subproblems=len(blocks), repairs=repairs, feasible_before_repair=repairs == 0)
        x = np.array([[value[v] for v in labels]], dtype=np.int8)
        return dimod.SampleSet.from_samples_bqm((x, labels), bqm, info=info)
