"""The exact selection optimum in milliseconds: an assignment problem, solved as one.

The selection QUBO's constrained optimum is the optimum of the positional model of
total-completion-time scheduling on unrelated machines (Horn 1973; Bruno, Coffman and Sethi
1974; see :mod:`mecsim.decision.milp`): task ``i`` in the ``p``-th place from the end of server
``j``'s shortest-first order costs ``l_ij + (p - 1) s_ij / c_j``, and every (server, place) takes
at most one task. That is a rectangular assignment problem (tasks x places), which
:func:`scipy.optimize.linear_sum_assignment` (a shortest augmenting path method, Crouse 2016)
solves in polynomial time; it replaces the HiGHS MILP of the same model as the reference wherever
a gap to the optimum is measured (``reference=True`` in the policies, the benchmarks).

HiGHS stays as the fallback for what is not an assignment problem in this form: when
``linear_sum_assignment`` reports the cost matrix infeasible (it cannot happen for a
:class:`~mecsim.decision.qubo.SelectionQUBO`, whose tasks each have a usable server with as many
places as tasks, but a user's cost arrays could). The positional constraint matrix is totally
unimodular, so the LP relaxation solved by HiGHS (:func:`scipy.optimize.linprog`) is integral.

Only ``p`` places per server are needed (``p`` placeable tasks), and fewer: a server can hold at
most the number of tasks that can use it, so server ``j`` gets ``k_j`` columns, one per place.

Example:
    >>> from mecsim.testing import random_epoch_state
    >>> from mecsim.decision.qubo import build_selection_qubo
    >>> from mecsim.decision.milp import solve_selection_milp
    >>> s = random_epoch_state(8, 3, seed=2)
    >>> q = build_selection_qubo(s, s.equal_share())
    >>> server, best, how = solve_selection_exact(q)
    >>> how, abs(best - solve_selection_milp(q)[1]) <= 1e-9 * best
    ('linear_sum_assignment', True)
"""

from __future__ import annotations

import numpy as np

from mecsim.decision.qubo import SelectionQUBO
from mecsim.errors import SolverError
from mecsim.state import DEFER

__all__ = ["positional_costs", "solve_selection_exact"]


def positional_costs(q: SelectionQUBO) -> tuple[np.ndarray, np.ndarray]:
    """The dense positional cost matrix and the server of each column.

    Returns:
        ``(cost, column_server)``: ``cost`` is ``p x K`` (placeable tasks x places, ``inf`` where
        a task cannot use the column's server), column ``c`` being place ``c - start_j`` from the
        end on server ``column_server[c]``; ``K = sum_j k_j`` with ``k_j`` the number of tasks that
        can use server ``j``.
    """
    idx = np.flatnonzero(q.placeable)
    lin = q.linear_cost[idx]  # p x m, inf where unusable
    usable = np.isfinite(lin)
    per_server = usable.sum(axis=0)  # k_j
    col_server = np.repeat(np.arange(q.n_servers), per_server)
    place = np.arange(col_server.size) - np.repeat(np.cumsum(per_server) - per_server, per_server)
    svc = np.where(usable, q.service_s[idx], 0.0) / q.slots[None, :]
    with np.errstate(invalid="ignore"):
        cost = lin[:, col_server] + svc[:, col_server] * place[None, :]
    return cost, col_server


def _solve_lp(cost: np.ndarray) -> np.ndarray:
    """Column chosen per row by the positional LP (HiGHS); integral by total unimodularity."""
    from scipy import sparse  # imported on use: scipy.optimize takes ~0.2 s to import
    from scipy.optimize import linprog

    rows, cols = np.nonzero(np.isfinite(cost))
    nv = rows.size
    p, k = cost.shape
    a_eq = sparse.csr_array((np.ones(nv), (rows, np.arange(nv))), shape=(p, nv))
    a_ub = sparse.csr_array((np.ones(nv), (cols, np.arange(nv))), shape=(k, nv))
    res = linprog(
        cost[rows, cols],
        A_ub=a_ub,
        b_ub=np.ones(k),
        A_eq=a_eq,
        b_eq=np.ones(p),
        bounds=(0.0, 1.0),
        method="highs",
    )
    if res.status != 0:
        raise SolverError(f"HiGHS found no selection: {res.message}")
    chosen = np.flatnonzero(res.x > 0.5)
    out = np.full(p, -1, dtype=np.int64)
    out[rows[chosen]] = cols[chosen]
    if (out < 0).any():  # a fractional vertex would break total unimodularity: never expected
        raise SolverError("the positional LP returned a fractional solution")
    return out


def solve_selection_exact(q: SelectionQUBO, method: str = "auto") -> tuple[np.ndarray, float, str]:
    """The optimum of the selection problem (one server per placeable task).

    Args:
        q: the selection problem (its penalty weight plays no role).
        method: ``"auto"`` (``linear_sum_assignment``, HiGHS if that reports infeasibility),
            ``"lsa"`` or ``"highs"``.

    Returns:
        ``(server, objective, method_used)``: the optimal server per task (:data:`DEFER` for
        tasks that cannot be placed), ``q.objective(server)`` and ``"linear_sum_assignment"`` or
        ``"highs"``.

    Raises:
        SolverError: no feasible selection (or a bad ``method``).
    """
    if method not in ("auto", "lsa", "highs"):
        raise SolverError(f"method must be 'auto', 'lsa' or 'highs', got {method!r}")
    idx = np.flatnonzero(q.placeable)
    server = np.where(q.placeable, -1, DEFER).astype(np.int64)
    if idx.size == 0:
        return server, 0.0, "none"
    cost, col_server = positional_costs(q)
    used = "highs"
    col = None
    if method in ("auto", "lsa"):
        from scipy.optimize import linear_sum_assignment  # on use (see _solve_lp)

        try:
            r, c = linear_sum_assignment(cost)
            col = np.empty(idx.size, dtype=np.int64)
            col[r] = c
            used = "linear_sum_assignment"
        except ValueError as exc:  # "cost matrix is infeasible"
            if method == "lsa":
                raise SolverError(f"linear_sum_assignment failed: {exc}") from exc
    if col is None:
        col = _solve_lp(cost)
    server[idx] = col_server[col]
    return server, q.objective(server), used
