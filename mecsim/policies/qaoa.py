"""QAOA policies: the hybrid scheme of the paper with server selection by QAOA.

``qubo-qaoa`` optimises the QAOA angles every epoch (COBYLA, a bounded number of evaluations),
warm-started from the previous epoch's angles; ``qubo-qaoa-fixed`` uses a fixed linear-ramp
schedule with no optimisation loop. Both use the constraint-preserving XY mixer on each task's
one-hot register by default (every shot is a valid assignment), and decompose epochs with more
than ``max_qubits`` variables into groups of tasks solved in turn (recorded as ``subproblems`` in
the epochs table). The QAOA sampler's own figures (p, evaluations, probability of the best
sample, feasible fraction, circuit depth and two-qubit gates after transpiling) land in the
epochs table as ``sampler_*`` columns.

The QAOA settings are policy parameters, so scenarios name them under ``policy.params``::

    policy:
      name: qubo-qaoa
      params: {p: 2, shots: 512, optimizer: COBYLA, maxiter: 40, max_qubits: 20, method: auto}

``objective: cvar`` with ``cvar_alpha`` optimises CVaR_alpha instead of the mean;
``classical_start: greedy`` warm-starts every epoch's QAOA state from cheapest insertion (see
:class:`~mecsim.decision.qaoa.QAOASampler`). ``tests/benchmarks/qaoa.py`` measures these against
the null sampler ``random-feasible`` at equal shots.

Needs the ``qaoa`` extra (qiskit, qiskit-aer).
"""

from __future__ import annotations

from typing import Any

from mecsim.errors import PolicyError
from mecsim.policies.qubo import QuboPolicy
from mecsim.registry import POLICIES

#: Sampler settings a scenario may give as policy parameters (QAOASampler constructor names).
QAOA_SETTINGS = (
    "p",
    "shots",
    "mixer",
    "optimizer",
    "maxiter",
    "expectation",
    "sampling",
    "start",
    "dt",
    "rhobeg",
    "xy_topology",
    "target",
    "noise_model",
    "mps_max_bond",
    "objective",
    "cvar_alpha",
    "classical_start",
    "warm_start_weight",
    "job_latency_s",
    "fast_precision",
)


def make_qaoa_policy(
    *,
    mode: str = "optimize",
    p: int = 2,
    shots: int = 512,
    maxiter: int = 40,
    max_qubits: int = 20,
    method: str = "auto",
    local_search: bool = False,
    name: str | None = None,
    **params: Any,
) -> QuboPolicy:
    """A :class:`~mecsim.policies.qubo.QuboPolicy` whose sampler is QAOA.

    Args:
        mode: ``"optimize"`` (angles optimised each epoch) or ``"fixed"`` (fixed schedule).
        p: QAOA layers.
        shots: samples drawn from the final state.
        maxiter: bound on optimiser evaluations per solve.
        max_qubits: variables per QAOA problem; larger epochs are decomposed into groups.
        method: Aer simulation method for the final shots (``"auto"``, ``"statevector"``,
            ``"matrix_product_state"``); the angle optimisation uses the exact numpy statevector
            where the problem fits (see :mod:`mecsim.decision.qaoa`).
        local_search: polish QAOA's best assignment with the reassign/swap local search. Off by
            default so that the decisions are QAOA's own; ``qubo-sa`` has it on.
        name: policy name.
        **params: other QAOA settings (:data:`QAOA_SETTINGS`) and QuboPolicy parameters
            (bandwidth, reference, fallback, time_budget_s, decompose, warm_start, ...).
    """
    from mecsim.decision.solvers import SOLVERS

    sampler_kw = {k: params.pop(k) for k in list(params) if k in QAOA_SETTINGS}
    if mode not in ("optimize", "fixed"):
        raise PolicyError(f"mode must be 'optimize' or 'fixed', got {mode!r}")
    if not (isinstance(max_qubits, int) and max_qubits >= 1):
        raise PolicyError(f"max_qubits must be an integer >= 1, got {max_qubits!r}")
    try:
        sampler = SOLVERS.make(
            "qaoa",
            mode=mode,
            p=p,
            shots=shots,
            maxiter=maxiter,
            max_qubits=max_qubits,
            aer_method=method,
            **sampler_kw,
        )
    except (ValueError, TypeError) as exc:
        raise PolicyError(f"bad QAOA setting: {exc}") from exc
    default = "qubo-qaoa" if mode == "optimize" else "qubo-qaoa-fixed"
    pol = QuboPolicy(solver=sampler, local_search=local_search, name=name or default, **params)
    pol.solver_label = "qaoa" if mode == "optimize" else "qaoa-fixed"
    return pol


def _optimized(**params: Any) -> QuboPolicy:
    return make_qaoa_policy(**params)


def _fixed(**params: Any) -> QuboPolicy:
    params.setdefault("mode", "fixed")
    return make_qaoa_policy(**params)


POLICIES.register("qubo-qaoa", "hybrid: convex bandwidth + QUBO server selection by QAOA (extra 'qaoa')")(
    _optimized
)
POLICIES.register("qubo-qaoa-fixed", "hybrid with fixed-angle QAOA, no optimisation loop (extra 'qaoa')")(
    _fixed
)
