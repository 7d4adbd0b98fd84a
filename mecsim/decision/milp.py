"""Exact references with scipy's HiGHS: a MILP sampler for any BQM and the selection optimum.

Two different formulations, for two different jobs:

* :class:`MILPSampler` solves *any* binary quadratic model exactly by linearising each product
  ``x_u x_v`` with a continuous ``y_uv`` (for a positive coefficient ``y >= x_u + x_v - 1``,
  ``y >= 0``; for a negative one ``y <= x_u``, ``y <= x_v``; at integral ``x`` the optimum then
  has ``y = x_u x_v``). Optional ``one_hot`` groups become equality constraints. It is a dimod
  :class:`~dimod.Sampler`, so it runs wherever SA or tabu does (policy ``"qubo-milp"``). Its LP
  relaxation is weak on the selection QUBO (``x = 1/m`` everywhere lets every ``y`` be 0), so
  HiGHS needs branching and it slows down quickly with size.
* :func:`solve_selection_milp` solves the *selection problem* itself with the positional
  formulation of total-completion-time scheduling on unrelated machines (Horn 1973; Bruno,
  Coffman and Sethi 1974): task ``i`` in the ``p``-th place from the end of server ``j``'s
  shortest-first order delays ``p - 1`` tasks behind it, so it costs
  ``l_ij + (p - 1) s_ij / c_j``. Choosing one place per task and at most one task per place is an
  assignment problem; its optimum equals the QUBO's constrained optimum (for a fixed server
  assignment the cheapest places are ``1..k`` in shortest-first order, which reproduces the pair
  sum ``sum_{i<k} min(s_ij, s_kj) / c_j`` exactly). The constraint matrix is totally unimodular,
  so HiGHS solves it at the root: this is the gap reference of the benchmark.
  :func:`solve_selection_assignment` solves the same model with the Hungarian-type solver
  ``scipy.optimize.linear_sum_assignment`` as an independent cross-check.

Example:
    >>> import dimod
    >>> from mecsim.decision.milp import MILPSampler
    >>> bqm = dimod.BinaryQuadraticModel({"a": -1.0, "b": -1.0}, {("a", "b"): 3.0}, 0.0, "BINARY")
    >>> ss = MILPSampler().sample(bqm)
    >>> float(ss.first.energy)
    -1.0
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import dimod
import numpy as np

from mecsim.decision.qubo import SelectionQUBO
from mecsim.errors import SolverError
from mecsim.state import DEFER

__all__ = [
    "MILPSampler",
    "selection_one_hot",
    "solve_selection_assignment",
    "solve_selection_milp",
]

_STATUS = {
    0: "optimal",
    1: "time or iteration limit reached",
    2: "infeasible",
    3: "unbounded",
    4: "other",
}


def _highs_options(time_limit: float | None, mip_rel_gap: float | None) -> dict[str, Any]:
    options: dict[str, Any] = {"disp": False}
    if time_limit is not None:
        if not time_limit > 0:
            raise SolverError(f"time_limit must be positive seconds, got {time_limit!r}")
        options["time_limit"] = float(time_limit)
    if mip_rel_gap is not None:
        options["mip_rel_gap"] = float(mip_rel_gap)
    return options


class MILPSampler(dimod.Sampler):
    """Exact BQM solver: product linearisation solved as a MILP by HiGHS.

    Deterministic, so it declares no ``seed``. Returns one sample (the incumbent) with
    ``info = {"status", "message", "optimal", "mip_gap", "mip_dual_bound", "wall_s",
    "num_constraints"}``.

    Args:
        time_limit: default wall-clock limit per call (s); ``None`` for none. When it is hit the
            best solution found so far is returned with ``info["optimal"] == False``.
        mip_rel_gap: default relative optimality gap at which HiGHS may stop (HiGHS default
            1e-4 when ``None``).

    Sample parameters:
        one_hot: groups of variables (iterables of labels); each becomes ``sum x = 1`` (in the
            BINARY view), so the result is the optimum subject to those constraints rather than
            under whatever penalties the BQM carries.
        time_limit, mip_rel_gap: override the defaults for one call.
    """

    def __init__(self, time_limit: float | None = None, mip_rel_gap: float | None = None) -> None:
        _highs_options(time_limit, mip_rel_gap)  # validate now, not at the first solve
        self.time_limit = time_limit
        self.mip_rel_gap = mip_rel_gap
        self._parameters = {"one_hot": [], "time_limit": [], "mip_rel_gap": []}
        self._properties = {"exact": True, "backend": "scipy.optimize.milp (HiGHS)"}

    @property
    def parameters(self) -> dict[str, Any]:
        return self._parameters

    @property
    def properties(self) -> dict[str, Any]:
        return self._properties

    def sample(
        self,
        bqm: dimod.BinaryQuadraticModel,
        *,
        one_hot: Iterable[Iterable[Any]] | None = None,
        time_limit: float | None = None,
        mip_rel_gap: float | None = None,
        **kwargs: Any,
    ) -> dimod.SampleSet:
        """Minimise ``bqm`` exactly (see the class docstring for parameters).

        Raises:
            SolverError: HiGHS found no feasible point (e.g. contradictory ``one_hot`` groups) or
                a group names an unknown variable.
        """
        from scipy import sparse  # imported on use: scipy.optimize takes ~0.2 s to import
        from scipy.optimize import Bounds, LinearConstraint, milp

        self.remove_unknown_kwargs(**kwargs)  # dimod's convention: warn, don't fail
        start = time.perf_counter()
        options = _highs_options(
            self.time_limit if time_limit is None else time_limit,
            self.mip_rel_gap if mip_rel_gap is None else mip_rel_gap,
        )
        labels = list(bqm.variables)
        n = len(labels)
        if n == 0:
            info = {
                "status": 0,
                "message": "empty model",
                "optimal": True,
                "mip_gap": 0.0,
                "mip_dual_bound": float(bqm.offset),
                "wall_s": time.perf_counter() - start,
                "num_constraints": 0,
            }
            return dimod.SampleSet.from_samples_bqm((np.zeros((1, 0), np.int8), []), bqm, info=info)
        binary = bqm if bqm.vartype is dimod.BINARY else bqm.change_vartype(dimod.BINARY, inplace=False)
        lin, (row, col, quad), offset = binary.to_numpy_vectors(variable_order=labels)
        keep = quad != 0
        row, col, quad = row[keep].astype(np.int64), col[keep].astype(np.int64), quad[keep]
        k = quad.size
        c = np.concatenate([np.asarray(lin, float), np.asarray(quad, float)])
        pos = np.flatnonzero(quad > 0)
        neg = np.flatnonzero(quad < 0)
        # Rows: positive products  y - x_u - x_v >= -1; negative products  y - x_u <= 0, y - x_v <= 0.
        r_ids, c_ids, vals, lb, ub = [], [], [], [], []
        r0 = 0
        if pos.size:
            rr = r0 + np.arange(pos.size)
            r_ids += [rr, rr, rr]
            c_ids += [n + pos, row[pos], col[pos]]
            vals += [np.ones(pos.size), -np.ones(pos.size), -np.ones(pos.size)]
            lb.append(np.full(pos.size, -1.0))
            ub.append(np.full(pos.size, np.inf))
            r0 += pos.size
        for ends in (row, col):
            if neg.size:
                rr = r0 + np.arange(neg.size)
                r_ids += [rr, rr]
                c_ids += [n + neg, ends[neg]]
                vals += [np.ones(neg.size), -np.ones(neg.size)]
                lb.append(np.full(neg.size, -np.inf))
                ub.append(np.zeros(neg.size))
                r0 += neg.size
        if one_hot is not None:
            where = {v: i for i, v in enumerate(labels)}
            for group in one_hot:
                try:
                    members = np.array([where[v] for v in group], dtype=np.int64)
                except KeyError as exc:
                    raise SolverError(f"one_hot names {exc.args[0]!r}, not a variable of the model") from None
                r_ids.append(np.full(members.size, r0))
                c_ids.append(members)
                vals.append(np.ones(members.size))
                lb.append(np.ones(1))
                ub.append(np.ones(1))
                r0 += 1
        constraints = []
        if r0:
            a = sparse.csr_array(
                (np.concatenate(vals), (np.concatenate(r_ids), np.concatenate(c_ids))),
                shape=(r0, n + k),
            )
            constraints = [LinearConstraint(a, np.concatenate(lb), np.concatenate(ub))]
        integrality = np.concatenate([np.ones(n), np.zeros(k)])
        res = milp(
            c, integrality=integrality, bounds=Bounds(0.0, 1.0), constraints=constraints, options=options
        )
        wall = time.perf_counter() - start
        if res.x is None:
            raise SolverError(
                f"HiGHS found no solution ({_STATUS.get(res.status, res.status)}: {res.message})"
            )
        x = np.rint(res.x[:n]).astype(np.int8)
        if bqm.vartype is dimod.SPIN:
            x = (2 * x - 1).astype(np.int8)
        info = {
            "status": int(res.status),
            "message": str(res.message),
            "optimal": res.status == 0,
            "mip_gap": float(getattr(res, "mip_gap", np.nan)),
            "mip_dual_bound": float(getattr(res, "mip_dual_bound", np.nan)) + float(offset),
            "wall_s": wall,
            "num_constraints": r0,
        }
        return dimod.SampleSet.from_samples_bqm((x[None, :], labels), bqm, info=info)


def _positions(q: SelectionQUBO) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Columns of the positional model: (task row, server, place, cost) for every usable triple.

    Task rows index the placeable tasks. Server ``j`` gets as many places as tasks that can use
    it, place ``p = 0`` being the last served.
    """
    idx = np.flatnonzero(q.placeable)
    usable = np.isfinite(q.linear_cost[idx])  # p x m
    rows, servers, places, costs = [], [], [], []
    for j in range(q.n_servers):
        tasks = np.flatnonzero(usable[:, j])
        if tasks.size == 0:
            continue
        place = np.arange(tasks.size)
        rr, pp = np.meshgrid(tasks, place, indexing="ij")
        rows.append(rr.ravel())
        places.append(pp.ravel())
        servers.append(np.full(rr.size, j))
        cost = q.linear_cost[idx[rr], j] + pp * q.service_s[idx[rr], j] / q.slots[j]
        costs.append(cost.ravel())
    if not rows:
        e = np.zeros(0, np.int64)
        return e, e, e, np.zeros(0)
    return np.concatenate(rows), np.concatenate(servers), np.concatenate(places), np.concatenate(costs)


def solve_selection_milp(q: SelectionQUBO, time_limit: float | None = None) -> tuple[np.ndarray, float]:
    """The optimum of the selection problem (one server per task), by the positional MILP.

    Args:
        q: the selection problem (its penalty weight plays no role here).
        time_limit: HiGHS wall-clock limit (s). If it is hit with a solution in hand, that
            solution is returned with a :class:`RuntimeWarning` (it may not be optimal).

    Returns:
        ``(server, objective)``: the optimal server per task (:data:`~mecsim.state.DEFER` for
        tasks that cannot be placed) and ``q.objective(server)``.

    Raises:
        SolverError: HiGHS returned no solution.

    Example:
        >>> from mecsim.testing import random_epoch_state
        >>> from mecsim.decision.qubo import build_selection_qubo
        >>> s = random_epoch_state(6, 3, seed=0)
        >>> q = build_selection_qubo(s, s.equal_share())
        >>> server, best = solve_selection_milp(q)
        >>> abs(best - solve_selection_assignment(q)[1]) < 1e-9 * best
        True
    """
    from scipy import sparse  # on use (see MILPSampler.sample)
    from scipy.optimize import Bounds, LinearConstraint, milp

    idx = np.flatnonzero(q.placeable)
    server = np.where(q.placeable, -1, DEFER).astype(np.int64)
    if idx.size == 0:
        return server, 0.0
    rows, servers, places, costs = _positions(q)
    nv = costs.size
    # One capacity row per (server, place).
    slot_id = servers * (idx.size + 1) + places
    uniq, slot_row = np.unique(slot_id, return_inverse=True)
    a_task = sparse.csr_array((np.ones(nv), (rows, np.arange(nv))), shape=(idx.size, nv))
    a_slot = sparse.csr_array((np.ones(nv), (slot_row, np.arange(nv))), shape=(uniq.size, nv))
    res = milp(
        costs,
        integrality=np.ones(nv),
        bounds=Bounds(0.0, 1.0),
        constraints=[LinearConstraint(a_task, 1.0, 1.0), LinearConstraint(a_slot, 0.0, 1.0)],
        options=_highs_options(time_limit, None),
    )
    if res.x is None:
        raise SolverError(f"HiGHS found no selection ({_STATUS.get(res.status, res.status)}: {res.message})")
    if res.status != 0:
        warnings.warn(
            f"selection MILP stopped early ({res.message}); the result may not be optimal",
            RuntimeWarning,
            stacklevel=2,
        )
    chosen = np.flatnonzero(res.x > 0.5)
    server[idx[rows[chosen]]] = servers[chosen]
    return server, q.objective(server)


def solve_selection_assignment(q: SelectionQUBO) -> tuple[np.ndarray, float]:
    """The same optimum as :func:`solve_selection_milp` by ``linear_sum_assignment``.

    Builds the dense tasks x (server, place) cost matrix (``inf`` where unusable) and solves the
    rectangular assignment problem. Polynomial, and fast at the sizes mecsim simulates.

    Returns:
        ``(server, objective)`` as :func:`solve_selection_milp`.
    """
    idx = np.flatnonzero(q.placeable)
    server = np.where(q.placeable, -1, DEFER).astype(np.int64)
    if idx.size == 0:
        return server, 0.0
    rows, servers, places, costs = _positions(q)
    slot_id = servers * (idx.size + 1) + places
    uniq, col = np.unique(slot_id, return_inverse=True)
    cost = np.full((idx.size, uniq.size), np.inf)
    cost[rows, col] = costs
    from scipy.optimize import linear_sum_assignment  # on use (see MILPSampler.sample)

    r, c = linear_sum_assignment(cost)
    server[idx[r]] = uniq[c] // (idx.size + 1)
    return server, q.objective(server)


def selection_one_hot(q: SelectionQUBO) -> Sequence[Sequence[tuple[int, int]]]:
    """The non-empty one-hot groups of ``q``, as :class:`MILPSampler`'s ``one_hot`` wants them."""
    return [g for g in q.one_hot if g]
