"""Ablations of the hybrid policy, as registered baselines: which stage makes the gain?

The hybrid (:class:`~mecsim.policies.qubo.QuboPolicy`) has three stages: a bandwidth rule, a
sampler on the selection QUBO, and repair + local search of the best reads. Each preset here
removes or replaces one stage and keeps the rest identical, so that paired differences between
them attribute the hybrid's gain:

* ``greedy-ls``: no sampler. The starting assignments are cheapest insertion on the QUBO
  (:meth:`~mecsim.decision.qubo.SelectionQUBO.greedy_assignment`) and greedy earliest completion
  (:class:`~mecsim.policies.heuristics.GreedyPolicy`'s choice), each polished by the hybrid's own
  local search; the lower objective wins. Same bandwidth rule as the hybrid (``"sum"`` unless
  ``bandwidth`` is given). Since the local search only ever improves, its objective is never
  above greedy's with the same bandwidth shares.
* ``qubo-sa-nols``: simulated annealing, the lowest-energy read only (``candidates=1``), repaired
  but not polished (``local_search=False``): what the annealer itself decides.
* ``qubo-random``: the null sampler ``random-feasible`` (uniform random one-hot assignments) at
  the SA preset's reads, with the same candidates, repair and local search as ``qubo-sa``: what
  the pipeline gets from chance at equal effort.
* ``qubo-random-nols``: the null sampler's best read alone (no local search, one candidate).

``random-feasible`` is registered by :mod:`mecsim.decision.solvers`; the two ``qubo-random``
presets raise a :class:`~mecsim.errors.PolicyError` naming it when it is not available.

Every parameter of :class:`~mecsim.policies.qubo.QuboPolicy` can still be given (for example
``bandwidth="equal"``); the epochs table records the solver label (``greedy-ls``, ``sa``,
``random-feasible``), so decision-time models (:mod:`mecsim.decision.timing`) apply per stage.

Example:
    >>> import numpy as np
    >>> from mecsim.policies.ablations import GreedyLocalSearchPolicy
    >>> from mecsim.testing import random_epoch_state
    >>> policy = GreedyLocalSearchPolicy()
    >>> policy.reset(np.random.default_rng(0))
    >>> d = policy.decide(random_epoch_state(8, 4, seed=3))
    >>> d.info["solver"], d.info["fallback"]
    ('greedy-ls', None)
"""

from __future__ import annotations

import time
from typing import Any

import dimod
import numpy as np

from mecsim.decision.qubo import SelectionQUBO
from mecsim.errors import PolicyError
from mecsim.policies.heuristics import GreedyPolicy
from mecsim.policies.qubo import QuboPolicy
from mecsim.registry import POLICIES, SOLVERS
from mecsim.state import DEFER, Decision, EpochState

__all__ = ["GreedyLocalSearchPolicy", "NULL_SOLVER", "ABLATIONS"]

#: The registered null sampler the ``qubo-random`` presets use.
NULL_SOLVER = "random-feasible"


class GreedyLocalSearchPolicy(QuboPolicy):
    """The hybrid with its sampler replaced by cheapest insertion (``greedy-ls``).

    Everything else is :class:`~mecsim.policies.qubo.QuboPolicy`'s: the bandwidth rule, the
    QUBO, the local search of each start and the choice of the lowest objective, the optional
    exact reference and the ``info`` columns (``solver`` is ``"greedy-ls"``; ``best_energy`` is
    the objective of the better start before the local search).

    Args:
        **params: QuboPolicy parameters except ``solver``/``solver_params``/``decompose``
            (``bandwidth``, ``local_search``, ``reference``, ...).
    """

    def __init__(self, **params: Any) -> None:
        for key in ("solver", "solver_params", "decompose", "candidates"):
            if key in params:
                raise PolicyError(f"greedy-ls takes no {key!r} parameter (it has no sampler)")
        params.setdefault("name", "greedy-ls")
        # The sampler is never called (``_solve`` is replaced); dimod's NullSampler makes that
        # visible should it ever be: it returns an empty sample set, which would be recorded.
        super().__init__(solver=dimod.NullSampler(), decompose=None, **params)
        self.solver_label = "greedy-ls"
        self._greedy = GreedyPolicy()
        self._state: EpochState | None = None
        self._bw: np.ndarray | None = None

    def _select(self, state: EpochState, bw: np.ndarray) -> Decision:
        """The QUBO step of the hybrid on the tasks its bandwidth rule admitted (``state`` is then
        the admitted tasks' snapshot); the greedy start needs that snapshot and its shares."""
        self._state, self._bw = state, bw
        try:
            return super()._select(state, bw)
        finally:
            self._state = self._bw = None

    def _solve(
        self, q: SelectionQUBO, seed: int, info: dict[str, Any]
    ) -> tuple[list[np.ndarray], str | None]:
        state, bw = self._state, self._bw
        assert state is not None and bw is not None  # set by decide
        t0 = time.perf_counter()
        starts = [q.greedy_assignment()]
        # Greedy earliest completion with the same shares (tasks without a server get a dummy
        # share so the upload time is finite; they are deferred, as in the QUBO).
        chosen = self._greedy.choose(state, np.where(q.placeable, bw, state.bandwidth_budget_hz))
        starts.append(np.where(q.placeable, chosen, DEFER).astype(np.int64))
        starts.sort(key=q.objective)  # stable: cheapest insertion first on ties
        info["best_energy"] = float(q.objective(starts[0]))
        info["feasible_before_repair"] = True
        info["repairs"] = 0
        info["solve_wall_s"] = time.perf_counter() - t0
        return starts, None


def _ablation(
    name: str,
    solver: str,
    *,
    local_search: bool,
    candidates: int | None = None,
    solver_params: dict[str, Any] | None = None,
):
    def factory(**params: Any) -> QuboPolicy:
        if solver not in SOLVERS.names():
            raise PolicyError(
                f"policy {name!r} needs the solver {solver!r}, which is not registered "
                f"(registered: {', '.join(SOLVERS.names())})"
            )
        params.setdefault("name", name)
        params.setdefault("local_search", local_search)
        if candidates is not None:
            params.setdefault("candidates", candidates)
        if solver_params:
            params["solver_params"] = {**solver_params, **(params.get("solver_params") or {})}
        return QuboPolicy(solver=solver, **params)

    factory.__name__ = name.replace("-", "_")
    return factory


def _sa_reads() -> int:
    from mecsim.decision.solvers import SA_DEFAULTS

    return int(SA_DEFAULTS["num_reads"])


#: name -> (one-line description, factory)
ABLATIONS = {
    "greedy-ls": (
        "ablation: cheapest insertion + the hybrid's local search, no sampler",
        GreedyLocalSearchPolicy,
    ),
    "qubo-sa-nols": (
        "ablation: hybrid with SA, its best read only, no local search",
        _ablation("qubo-sa-nols", "sa", local_search=False, candidates=1),
    ),
    "qubo-random": (
        "ablation: hybrid with the null sampler random-feasible (SA's reads), same repair + LS",
        _ablation("qubo-random", NULL_SOLVER, local_search=True, solver_params={"num_reads": _sa_reads()}),
    ),
    "qubo-random-nols": (
        "ablation: the null sampler's best read only, no local search",
        _ablation(
            "qubo-random-nols",
            NULL_SOLVER,
            local_search=False,
            candidates=1,
            solver_params={"num_reads": _sa_reads()},
        ),
    ),
}

for _name, (_doc, _factory) in ABLATIONS.items():
    POLICIES.register(_name, _doc)(_factory)
