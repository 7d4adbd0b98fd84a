"""Server selection as a QUBO: formulation, penalty rule, decoder with repair, local search.

Given the bandwidth shares ``b`` of an epoch (step 1 of the decision module), task ``i`` placed on
server ``j`` costs

* ``d_ij = upload_i(b_i) + backhaul_ij``: the time until its input reaches ``j``;
* ``W_j``: the backlog already at ``j``;
* ``s_ij``: its service time on ``j``; ``r_ij``: the return of its result.

When the tasks an epoch puts on one single-slot server are served shortest-first (the engine does
this within an epoch), task ``i`` waits for every task on ``j`` that is shorter than it, so the
total latency is

``L(x) = sum_ij x_ij (d_ij + W_j + s_ij + r_ij) + sum_j sum_{i<k} x_ij x_kj min(s_ij, s_kj) / c_j``

(linear terms plus pairwise congestion terms). For ``c_j = 1`` the pair term is exact: under
shortest-processing-time order every pair ``{i, k}`` on a server delays the longer task by the
shorter one's service, ``min(s_ij, s_kj)``. Dividing by the slot count ``c_j`` is the documented
multi-slot approximation (``c_j`` parallel slots spread the waiting about ``c_j`` ways). The engine
starts a task at ``W_j`` regardless of when its input arrives, which is the model's approximation
for staggered uploads; the traces record the real latencies.

Binary variables ``x_ij`` exist only for pairs that can be chosen (``state.feasible[i, j]`` and
``state.server_up[j]``). Each task with at least one variable gets the one-hot penalty
``A (sum_j x_ij - 1)^2``, which is 0 on every feasible assignment, so the BQM energy equals ``L``
there whatever ``A`` is. A task without any variable is not part of the problem: it is deferred
(:data:`~mecsim.state.DEFER`) to the next epoch, as the heuristic policies do, since a server
that hosts its model may be back up by then.

GPU-server terms (runs with ``service.batching`` or ``service.residency`` on; see
:func:`add_gpu_terms`): each ``l_ij`` gains the expected load time of task ``i``'s weights on
``j`` (0 when some GPU holds them), and a pair of tasks of the same model key on a server that can
batch it costs ``2 (f_j(2) - 1) max(s_ij, s_kj) / c_j`` (they share a batch) in place of
``min(s_ij, s_kj) / c_j``, optionally less a throughput credit (``batch_weight``) that can make it
negative. The BQM energy then equals the epoch's total completion time in the cases stated in
:func:`add_gpu_terms` (one GPU per server, one key and at most two tasks per server) and
approximates it otherwise; :func:`penalty_bound` stays safe with negative pair terms. Without the
GPU-server fields in the state (batching and residency off) the BQM is exactly the one above.
The positional MILP reference (:func:`mecsim.decision.milp.solve_selection_milp`) assumes the
``min(s)/c`` pairs, so it is not the optimum of a BQM with GPU terms (the ``milp`` sampler is).

The selection problem on its own is an assignment problem in disguise (unrelated parallel
machines, total completion time; Horn 1973, Bruno, Coffman and Sethi 1974); see
:mod:`mecsim.decision.milp` for the exact reference that uses this.

Example:
    >>> from mecsim.testing import random_epoch_state
    >>> from mecsim.decision.qubo import build_selection_qubo
    >>> import dimod
    >>> s = random_epoch_state(3, 2, seed=1)
    >>> q = build_selection_qubo(s, s.equal_share())
    >>> q.bqm.num_variables
    6
    >>> best = dimod.ExactSolver().sample(q.bqm)
    >>> server, info = q.decode(best)
    >>> info["feasible_before_repair"], info["repairs"]
    (True, 0)
    >>> abs(q.objective(server) - info["best_energy"]) < 1e-9
    True
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import dimod
import numpy as np

from mecsim.decision.bandwidth_small import _argmin  # np.argmin of a list (first least or nan)
from mecsim.errors import SolverError
from mecsim.state import DEFER, EpochState

__all__ = [
    "DEFAULT_PENALTY_SCALE",
    "add_gpu_terms",
    "SelectionQUBO",
    "build_selection_qubo",
    "congestion_matrix",
    "local_search",
    "penalty_bound",
]

#: Fraction of the safe bound used as the one-hot penalty by default (``penalty="auto"``).
#:
#: Chosen with ``tests/benchmarks/decision.py`` for the policy's whole pipeline (SA, repair,
#: local search from the best reads). The bound of :func:`penalty_bound` is already tight: it is
#: about 0.33 / 0.23 / 0.15 (medians at 10x4 / 30x6 / 60x8) of the textbook bound
#: ``max_ij (l_ij + sum_k Q[j, i, k])``, i.e. where the project's earlier measurements found SA
#: to work best (about 0.3 of the textbook bound). Going lower still makes the BQM's minimum
#: infeasible (a costly task is cheaper dropped than placed): raw SA then scores better at 30+
#: tasks, but after repair and local search the pipeline missed the optimum in 2.5% of small
#: epochs at 0.5 against none at 1.0 (see the benchmark's docstring). Users who switch the local
#: search off may prefer 0.3-0.5.
DEFAULT_PENALTY_SCALE = 1.0

#: Relative margin put on the supremum of the violation gain so that ``A_safe`` is strictly
#: above it (a tie would let an infeasible state share the minimum energy).
_SAFE_MARGIN = 1e-6


#: Recent results of :func:`_ising_order`, keyed by the pair arrays (epochs repeat a few shapes).
_ISING_ORDERS: dict[tuple[bytes, bytes], tuple[np.ndarray, ...]] = {}
_ISING_ORDERS_MAX = 256


def _ising_order(rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, ...]:
    """The index work of :meth:`SelectionQUBO.ising`, which depends only on the pairs:
    ``(order, irow, icol, v_seq, src)``. dimod lists the pairs ``(v, u)``, ``u < v``, by ``v``
    then ``u`` (``order`` sorts the model's pairs so; ``irow``, ``icol`` are then ``v``, ``u``);
    it adds the neighbour terms variable by variable, each pair seen from both ends, by variable
    then neighbour (``v_seq``: the variable of each term in that sequence, ``src``: the model's
    pair it comes from)."""
    key = (rows.tobytes(), cols.tobytes())
    hit = _ISING_ORDERS.get(key)
    if hit is not None:
        return hit
    hi, lo = np.maximum(rows, cols), np.minimum(rows, cols)
    order = np.lexsort((lo, hi))
    irow, icol = hi[order], lo[order]
    v = np.concatenate([irow, icol])
    u = np.concatenate([icol, irow])
    seq = np.lexsort((u, v))
    out = (order, irow, icol, v[seq], np.concatenate([order, order])[seq])
    for arr in out:
        arr.setflags(write=False)
    if len(_ISING_ORDERS) >= _ISING_ORDERS_MAX:
        _ISING_ORDERS.clear()
    _ISING_ORDERS[key] = out
    return out


def congestion_matrix(service_s: np.ndarray, slots: np.ndarray, variable: np.ndarray) -> np.ndarray:
    """Pairwise congestion coefficients ``min(s_ij, s_kj) / c_j``, laid out ``m x n x n``.

    Args:
        service_s: ``n x m`` service times (may be ``inf`` where ``variable`` is False).
        slots: ``m`` slot counts ``c_j``.
        variable: ``n x m`` mask of the pairs that have a binary variable.

    Returns:
        ``Q`` with ``Q[j, i, k] = min(s_ij, s_kj) / c_j`` when both ``(i, j)`` and ``(k, j)`` are
        variables and ``i != k``, else 0. Symmetric in ``i, k`` with a zero diagonal.
    """
    s = np.where(variable, service_s, 0.0).T  # m x n, zero where no variable keeps inf out
    q = np.minimum(s[:, :, None], s[:, None, :]) / np.asarray(slots, dtype=float)[:, None, None]
    both = variable.T[:, :, None] & variable.T[:, None, :]
    q = np.where(both, q, 0.0)
    n = service_s.shape[0]
    q[:, np.arange(n), np.arange(n)] = 0.0
    return q


def penalty_bound(linear_cost: np.ndarray, congestion: np.ndarray) -> float:
    """The automatic, provably safe one-hot penalty ``A_safe``.

    Claim: let ``U_ij = l_ij + sum_{k != i} Q[j, i, k]`` (the cost of task ``i`` on ``j`` if every
    other task that could go to ``j`` were there) and ``B = max_i min_j U_ij`` over the tasks and
    servers that have variables. Then for every ``A > B`` each minimiser of the penalised energy
    ``E(x) = L(x) + A sum_i (sum_j x_ij - 1)^2`` is a feasible (one-hot) assignment.

    Proof sketch (in the spirit of Lucas 2014: the penalty must beat the best gain a violation can
    buy). All costs are non-negative (times). Take an infeasible ``x``.

    1. A task with ``k >= 2`` ones: clearing one of them lowers ``L`` or leaves it (every
       coefficient is >= 0) and lowers the penalty by ``A ((k-1)^2 - (k-2)^2) = A (2k - 3) >= A``.
       So for any ``A > 0`` the energy drops strictly. Repeat until every task has at most one 1.
    2. A task ``i`` with no 1 (the others now have at most one each): putting it on
       ``j* = argmin_j U_ij`` raises ``L`` by ``l_ij* + sum_{k on j*} Q[j*, i, k] <= U_ij* <= B``
       and lowers the penalty by ``A``; with ``A > B`` the energy drops strictly.

    Each step strictly lowers the energy and the steps end at a feasible assignment, so no
    infeasible ``x`` is a minimiser. Using ``min_j`` rather than ``max_j`` is what makes this bound
    tighter than the textbook "largest cost any variable can have" bound: the repair in step 2 may
    choose the server. Only the *absence* of an assignment needs a large ``A``; duplicates are
    always penalised enough.

    Returns ``(1 + 1e-6) B`` (strictly above ``B``, so ties cannot make an infeasible state a
    minimiser), or 1.0 when ``B`` is 0 (then any positive ``A`` is safe).

    Args:
        linear_cost: ``n x m`` linear costs ``l_ij``, ``inf`` where there is no variable.
        congestion: ``m x n x n`` pair coefficients from :func:`congestion_matrix`.

    Returns:
        ``A_safe``; 0.0 when there are no variables at all.
    """
    lin = np.asarray(linear_cost, dtype=float)
    if lin.size == 0 or not np.isfinite(lin).any():
        return 0.0
    neg = congestion < 0
    if not neg.any():
        worst = lin + congestion.sum(axis=2).T  # U_ij; inf stays inf where there is no variable
        per_task = worst.min(axis=1)
        b = float(per_task[np.isfinite(per_task)].max())
        return b * (1.0 + _SAFE_MARGIN) if b > 0 else 1.0
    # Negative pair terms (batching rewards, see add_gpu_terms): step 2 uses the positive parts
    # only (an upper bound on the rise of L), and step 1 no longer holds for any A > 0: clearing a
    # duplicate of task i on j can raise L by up to R_ij = sum_k max(-Q[j, i, k], 0) - l_ij, so
    # A must also exceed max R_ij.
    worst = lin + np.where(neg, 0.0, congestion).sum(axis=2).T
    per_task = worst.min(axis=1)
    b = float(per_task[np.isfinite(per_task)].max())
    gain = np.where(neg, -congestion, 0.0).sum(axis=2).T - lin  # -inf where there is no variable
    b = max(b, float(gain[np.isfinite(gain)].max()))
    return b * (1.0 + _SAFE_MARGIN) if b > 0 else 1.0


_UPPER: dict[int, np.ndarray] = {}

#: Placed tasks up to which :meth:`SelectionQUBO._insert_greedily` runs on Python floats (its
#: marginal costs then sum at most two congestion terms, exact in any order).
_FEW_PLACED = 2

#: Reads x variables up to which :meth:`SelectionQUBO.decode_arrays` decodes on Python lists
#: (e.g. 8 SA reads of up to 64 variables).
_FEW_READ_VALUES = 512


def _upper_mask(p: int) -> np.ndarray:
    """``p x p`` mask of the entries above the diagonal (kept for small ``p``)."""
    mask = _UPPER.get(p)
    if mask is None:
        mask = np.triu(np.ones((p, p), dtype=bool), 1)
        mask.setflags(write=False)
        if p <= 64:
            _UPPER[p] = mask
    return mask


def _unique_rows(reads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(reads, axis=0, return_index=True)`` for 0/1 rows: the distinct rows in
    lexicographic order and the first index of each. Rows of at most 62 values are compared as
    the integers they spell (same order, much less overhead)."""
    k = reads.shape[1]
    if k > 62:
        return np.unique(reads, axis=0, return_index=True)
    weights = np.left_shift(np.int64(1), np.arange(k - 1, -1, -1, dtype=np.int64))
    seen: dict[int, int] = {}
    for i, key in enumerate((reads.astype(np.int64) @ weights).tolist()):
        seen.setdefault(key, i)  # the first read with each value
    first = np.array([seen[key] for key in sorted(seen)], dtype=np.intp)
    return reads[first], first


@dataclass(frozen=True, eq=False)
class SelectionQUBO:
    """The server-selection QUBO of one epoch and what is needed to read its samples.

    Attributes:
        bqm: BINARY model over variables labelled ``(i, j)`` (task, server), energy
            ``L(x) + A sum_i (sum_j x_ij - 1)^2`` including the constant ``A`` per placeable task.
        one_hot: per task ``i``, its variables in server order (empty for tasks without any).
        penalty: the one-hot weight ``A`` used in ``bqm``.
        safe_penalty: ``A_safe`` from :func:`penalty_bound` for this instance.
        linear_cost: ``n x m`` array ``d_ij + W_j + s_ij + r_ij`` (plus the future cost
            ``F_ij`` when one was given to :func:`build_selection_qubo`), ``inf`` where there is
            no variable.
        congestion: ``m x n x n`` array ``Q[j, i, k] = min(s_ij, s_kj) / c_j`` (0 on the diagonal
            and where either pair has no variable). Chosen over ``n x n x m`` so that one server's
            block is contiguous.
        service_s: ``n x m`` service times ``s_ij`` (``inf`` where there is no variable).
        slots: ``m`` slot counts ``c_j``.
        placeable: ``n`` bools: the task has at least one variable (tasks without any are
            decoded as :data:`DEFER`).
        terms: the model as arrays, ``(linear, (row, col, bias), offset)`` over the variables in
            (task, server) order, each pair once: what ``bqm`` is built from (on first use) and
            what :meth:`ising` converts.
    """

    one_hot: tuple[tuple[tuple[int, int], ...], ...]
    penalty: float
    safe_penalty: float
    linear_cost: np.ndarray
    congestion: np.ndarray
    service_s: np.ndarray
    slots: np.ndarray
    placeable: np.ndarray
    terms: tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray], float]

    @functools.cached_property
    def bqm(self) -> dimod.BinaryQuadraticModel:
        """The BINARY model (built from :attr:`terms` when first asked for)."""
        linear, quadratic, offset = self.terms
        labels = [v for group in self.one_hot for v in group]
        return dimod.BinaryQuadraticModel.from_numpy_vectors(
            linear, quadratic, offset, dimod.BINARY, variable_order=labels
        )

    @property
    def n_variables(self) -> int:
        """Number of binary variables (``bqm.num_variables``)."""
        return int(self.terms[0].size)

    @property
    def n_interactions(self) -> int:
        """Number of pair terms (``bqm.num_interactions``)."""
        return int(self.terms[1][0].size)

    def ising(self) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray], float]:
        """The model in spin form, as ``bqm.change_vartype("SPIN").to_numpy_vectors()`` gives it.

        Same numbers in the same order, computed from :attr:`terms` without building the BQM:
        dimod substitutes ``x = (s + 1) / 2`` variable by variable (linear ``b / 2`` plus
        ``J / 4`` of each neighbour in index order, offset accumulated in the same sequence)
        and lists the pairs ``(v, u)``, ``u < v``, ordered by ``v`` then ``u``. The operations
        are repeated here in that order, so the floats are identical (tests/test_qubo_fast_paths.py
        compares them with dimod's on random models); the annealer then sees exactly what the
        library's ``sample`` would give it.
        """
        linear, (rows, cols, bias), offset = self.terms
        order, irow, icol, v_seq, src = _ising_order(rows, cols)
        b = bias[order]
        b_seq = bias[src]  # each pair as seen from both ends, by variable then neighbour
        h = linear * 0.5
        np.add.at(h, v_seq, 0.25 * b_seq)  # in index order: the same sequence of sums
        off = np.cumsum(np.concatenate([[float(offset)], linear * 0.5, 0.125 * b_seq]))[-1]
        return h, (irow, icol, b * 0.25), float(off)

    @property
    def n_tasks(self) -> int:
        """Number of tasks n (placeable or not)."""
        return int(self.linear_cost.shape[0])

    @property
    def n_servers(self) -> int:
        """Number of servers m."""
        return int(self.linear_cost.shape[1])

    @functools.cached_property
    def _placed(self) -> np.ndarray:
        """Indices of the placeable tasks (read-only)."""
        idx = np.flatnonzero(self.placeable)
        idx.setflags(write=False)
        return idx

    @functools.cached_property
    def _few_lists(self) -> tuple[list[list[float]], list[list[list[float]]]]:
        """The placeable tasks' linear costs (``p x m``) and congestion (``m x p x p``) as lists,
        for :func:`_descend_few`."""
        idx = self._placed
        return self.linear_cost[idx].tolist(), self.congestion[:, idx][:, :, idx].tolist()

    def _check_assignment(self, server: np.ndarray) -> np.ndarray:
        return self._checked(server)[0]

    def _checked(self, server: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(server, placeable indices, their servers, their linear costs)``, or ValueError."""
        server = np.asarray(server, dtype=np.int64)
        if server.shape != (self.n_tasks,):
            raise ValueError(f"assignment has shape {server.shape}, expected ({self.n_tasks},)")
        idx = self._placed
        sv = server[idx]
        if sv.size == 0:
            return server, idx, sv, np.zeros(0)
        if sv.min() >= 0 and sv.max() < self.n_servers:
            cost = self.linear_cost[idx, sv]
            if np.isfinite(cost).all():
                return server, idx, sv, cost
        bad = (sv < 0) | (sv >= self.n_servers)
        if not bad.any():
            bad = ~np.isfinite(self.linear_cost[idx, sv])
        i = int(idx[np.argmax(bad)])
        raise ValueError(f"task {i} is assigned to server {int(server[i])}, which it cannot use")

    def objective(self, server: np.ndarray) -> float:
        """The completion-time objective ``L`` of an assignment, computed from the cost arrays.

        Args:
            server: server index per task; entries of tasks that are not placeable are ignored.

        Raises:
            ValueError: a placeable task is unassigned or on a server it cannot use.
        """
        return self._objective(*self._checked(server)[1:])

    def _objective(self, idx: np.ndarray, sv: np.ndarray, cost: np.ndarray) -> float:
        """:meth:`objective` of checked input: placeable tasks, their servers and linear costs."""
        if idx.size == 0:
            return 0.0
        total = float(cost.sum())
        # Pairs sharing a server: Q[s_i, i, k] where s_i == s_k, each unordered pair once.
        same = (sv[:, None] == sv[None, :]) & _upper_mask(idx.size)
        pair = self.congestion[sv[:, None], idx[:, None], idx[None, :]]
        total += float(np.where(same, pair, 0.0).sum())
        return total

    def marginal_cost(self, server: np.ndarray) -> np.ndarray:
        """``n x m`` cost of putting task ``i`` on ``j`` given where the other tasks are.

        Entry ``(i, j)`` is ``l_ij`` plus the congestion with the tasks ``k != i`` that ``server``
        puts on ``j`` (negative entries of ``server`` count as nowhere); ``inf`` where ``(i, j)``
        has no variable.
        """
        server = np.asarray(server, dtype=np.int64)
        x = np.zeros((self.n_tasks, self.n_servers))
        ok = server >= 0
        x[np.flatnonzero(ok), server[ok]] = 1.0
        return self.linear_cost + np.einsum("jik,kj->ij", self.congestion, x)

    def decode(self, sampleset: dimod.SampleSet) -> tuple[np.ndarray, dict[str, Any]]:
        """Read the lowest-energy sample as an assignment, repairing broken one-hots greedily.

        A task with exactly one 1 keeps its server. Tasks with none or several are taken out and
        put back one at a time, always the (task, server) pair with the least marginal objective
        given the tasks already placed (cheapest insertion).

        Args:
            sampleset: a sample set over this model's variables.

        Returns:
            ``(server, info)``: server index per task (:data:`DEFER` for tasks that are not
            placeable) and ``{"feasible_before_repair": bool, "repairs": int,
            "best_energy": float}``, where ``repairs`` counts the tasks re-placed.

        Raises:
            SolverError: the sample set is empty or lacks some of the model's variables.
        """
        return self.decode_reads(sampleset, limit=1)[0]

    def decode_reads(
        self, sampleset: dimod.SampleSet, limit: int | None = None
    ) -> list[tuple[np.ndarray, dict[str, Any]]]:
        """Decode (and repair) the ``limit`` lowest-energy distinct samples, lowest first.

        Each entry is what :meth:`decode` returns for that sample (``best_energy`` being that
        sample's energy). Below the safe penalty the energy order is only a hint of the
        objective order after repair, which is why a policy may want to look at a few reads.

        Raises:
            SolverError: the sample set is empty or lacks some of the model's variables.
        """
        if len(sampleset) == 0:
            raise SolverError("the sampler returned an empty sample set")
        labels = list(self.bqm.variables)
        try:
            cols = np.array([sampleset.variables.index(v) for v in labels], dtype=np.int64)
        except ValueError:
            missing = [v for v in labels if v not in sampleset.variables]
            raise SolverError(f"the sample set has no value for variable {missing[0]!r}") from None
        record = sampleset.record
        reads = np.asarray(record.sample)[:, cols]
        if sampleset.vartype is dimod.SPIN:
            reads = (reads + 1) // 2
        return self.decode_arrays(reads, record.energy, limit)

    def decode_arrays(
        self, reads: np.ndarray, energy: np.ndarray, limit: int | None = None
    ) -> list[tuple[np.ndarray, dict[str, Any]]]:
        """:meth:`decode_reads` of samples given as arrays.

        Args:
            reads: ``num_reads x num_variables`` 0/1 values, columns in the order of
                ``bqm.variables``.
            energy: the energy of each read.
            limit: decode only the ``limit`` lowest-energy distinct reads.

        Raises:
            SolverError: no reads, or not one column per variable.
        """
        reads = np.asarray(reads)
        energy = np.asarray(energy, dtype=float)
        vi, vj = self._variable_cells
        if reads.ndim != 2 or reads.shape[0] == 0 or reads.shape[1] != vi.size:
            raise SolverError(
                f"expected reads of shape (k >= 1, {vi.size}) over the model's variables, got {reads.shape}"
            )
        if reads.size <= _FEW_READ_VALUES and not np.isnan(energy).any():
            return self._decode_few(reads, energy, limit)
        # Distinct reads, lowest energy first (stable, so ties keep the sampler's order).
        _, first = _unique_rows(reads)
        order = first[np.argsort(energy[first], kind="stable")]
        if limit is not None:
            order = order[: max(1, int(limit))]
        x = np.zeros((order.size, self.n_tasks, self.n_servers), dtype=np.int64)
        x[:, vi, vj] = reads[order]
        ones = x.sum(axis=2)
        servers = np.where(self.placeable, np.argmax(x, axis=2), DEFER).astype(np.int64)
        broken = self.placeable & (ones != 1)
        out = []
        for k, (r, needs_repair) in enumerate(zip(order, broken.any(axis=1).tolist(), strict=True)):
            server = servers[k]
            info = {"feasible_before_repair": True, "repairs": 0, "best_energy": float(energy[r])}
            if needs_repair:
                server[broken[k]] = -1
                self._insert_greedily(server, np.flatnonzero(broken[k]))
                info["feasible_before_repair"] = False
                info["repairs"] = int(broken[k].sum())
            out.append((server, info))
        return out

    def _decode_few(
        self, reads: np.ndarray, energy: np.ndarray, limit: int | None
    ) -> list[tuple[np.ndarray, dict[str, Any]]]:
        """:meth:`decode_arrays` of a few 0/1 reads on Python lists: the same distinct reads in
        the same order (energy, then the rows' lexicographic order, as ``_unique_rows`` and the
        stable argsort give them), the same servers and repairs, without numpy's per-call cost.
        Energies must not be nan (Python's sort does not place them as numpy's does)."""
        rows = reads.tolist()
        e = energy.tolist()
        first: dict[tuple[int, ...], int] = {}
        for r, row in enumerate(rows):
            first.setdefault(tuple(row), r)
        order = [first[key] for key in sorted(first)]  # rows in lexicographic order
        order.sort(key=e.__getitem__)  # stable: energy ties keep that order
        if limit is not None:
            order = order[: max(1, int(limit))]
        base, tasks = self._few_decoding
        out = []
        for r in order:
            row = rows[r]
            server = base.copy()
            broken = []
            for i, start, stop, servers in tasks:
                seg = row[start:stop]
                if sum(seg) == 1:
                    server[i] = servers[seg.index(1)]
                else:
                    broken.append(i)
            srv = np.array(server, dtype=np.int64)
            info: dict[str, Any] = {"feasible_before_repair": True, "repairs": 0, "best_energy": e[r]}
            if broken:
                self._insert_greedily(srv, np.array(broken, dtype=np.int64))
                info["feasible_before_repair"] = False
                info["repairs"] = len(broken)
            out.append((srv, info))
        return out

    def _insert_few(self, server: np.ndarray, todo: list[int]) -> None:
        """:meth:`_insert_greedily` on Python floats, bit for bit, when at most 2 tasks are placed
        (a marginal cost then adds at most two congestion terms, which every order of
        ``marginal_cost``'s sum gives alike) or there are few tasks (:func:`_few`: the terms in
        index order, as its ``einsum`` adds them); ties go to the first (task, server) in
        ``todo`` order, as ``argmin`` does."""
        lin, cq = self._lists
        m = self.n_servers
        placed = [(k, j) for k, j in enumerate(server.tolist()) if j >= 0]
        cost = []
        for i in todo:
            g = [0.0] * m
            for k, j in placed:
                if k != i:
                    g[j] += cq[j][i][k]
            cost.append([a + b for a, b in zip(lin[i], g, strict=True)])
        inf = math.inf
        left = [True] * len(todo)
        for _ in todo:
            flat = [v if ok else inf for row, ok in zip(cost, left, strict=True) for v in row]
            r, j = divmod(_argmin(flat), m)
            i = todo[r]
            server[i] = j
            left[r] = False
            for row, t in zip(cost, todo, strict=True):  # the tasks still waiting see i on j
                row[j] += cq[j][t][i]

    @functools.cached_property
    def _lists(self) -> tuple[list[list[float]], list[list[list[float]]]]:
        """:attr:`linear_cost` and :attr:`congestion` as nested lists (for the few-task paths)."""
        return self.linear_cost.tolist(), self.congestion.tolist()

    @functools.cached_property
    def _few_decoding(self) -> tuple[list[int], list[tuple[int, int, int, list[int]]]]:
        """For :meth:`_decode_few`: the servers of a read before decoding (:data:`DEFER` for the
        tasks that are not placeable, -1 for the others) and, per placeable task, its index, the
        columns of its variables (consecutive, in server order) and their servers."""
        base = np.where(self.placeable, -1, DEFER).tolist()
        tasks = []
        start = 0
        for i, group in enumerate(self.one_hot):
            if group:
                tasks.append((i, start, start + len(group), [j for _, j in group]))
                start += len(group)
        return base, tasks

    @functools.cached_property
    def _variable_cells(self) -> tuple[np.ndarray, np.ndarray]:
        """``(task, server)`` index arrays of the variables, in the order of ``bqm.variables``."""
        labels = list(self.bqm.variables)
        vi = np.fromiter((v[0] for v in labels), dtype=np.int64, count=len(labels))
        vj = np.fromiter((v[1] for v in labels), dtype=np.int64, count=len(labels))
        return vi, vj

    def greedy_assignment(self) -> np.ndarray:
        """Cheapest-insertion assignment of every placeable task, starting from none placed."""
        server = np.where(self.placeable, -1, DEFER).astype(np.int64)
        self._insert_greedily(server, np.flatnonzero(self.placeable))
        return server

    def _insert_greedily(self, server: np.ndarray, todo: np.ndarray) -> None:
        """Place the tasks ``todo`` (currently ``-1`` in ``server``) in place, cheapest first."""
        if todo.size == 0:
            return
        if int(np.count_nonzero(server >= 0)) <= _FEW_PLACED or _few(self.n_tasks, self.n_servers):
            self._insert_few(server, todo.tolist())
            return
        cost = self.marginal_cost(server)[todo]  # rows of todo only
        left = np.ones(todo.size, dtype=bool)
        for _ in range(todo.size):
            masked = np.where(left[:, None], cost, np.inf)
            r, j = np.unravel_index(int(np.argmin(masked)), masked.shape)
            i = int(todo[r])
            server[i] = j
            left[r] = False
            # The tasks still waiting now see i on server j.
            cost[:, j] += self.congestion[j, todo, i]


def local_search(
    q: SelectionQUBO,
    server: np.ndarray,
    *,
    swaps: bool = True,
    max_moves: int | None = None,
) -> tuple[np.ndarray, int]:
    """Best-improvement descent over feasible assignments: move one task, or swap two.

    Each round evaluates every single-task reassignment (``n x m`` moves) in closed form from the
    marginal costs and applies the best one if it lowers the objective; when none does and
    ``swaps`` is on, it evaluates every exchange of two tasks on different servers (``n^2``
    moves) and applies the best improving one. Swaps matter because a server that is full of
    tasks is often only improved by trading, not by moving. The result is a local optimum for
    both neighbourhoods.

    Args:
        q: the selection problem.
        server: a feasible assignment (e.g. from :meth:`SelectionQUBO.decode`).
        swaps: also try pairwise exchanges.
        max_moves: stop after this many improving moves (default ``10 n``; the descent also stops
            at a local optimum, which it always reaches since each move strictly improves).

    Returns:
        ``(server, n_moves)``: the improved assignment (a new array) and the moves applied.
    """
    return _descend(q, q._check_assignment(server).copy(), swaps, max_moves)


def _descend(
    q: SelectionQUBO, server: np.ndarray, swaps: bool, max_moves: int | None
) -> tuple[np.ndarray, int]:
    """:func:`local_search` of a checked assignment (changed in place and returned)."""
    idx = q._placed
    p = idx.size
    if p == 0:
        return server, 0
    if _few(p, q.n_servers):
        s, moves = _descend_few(q, server[idx].tolist(), swaps, 10 * p if max_moves is None else max_moves)
        server[idx] = s
        return server, moves
    if p == q.n_tasks:  # every task placeable: the arrays as they are (same values, no copies)
        lin, cq = q.linear_cost, q.congestion
    else:
        lin = q.linear_cost[idx]
        cq = q.congestion[:, idx][:, :, idx]
    s = server[idx].copy()
    ar = np.arange(p)
    if p == 1:  # no others: the einsum below would give exact zeros (0 * 1 summed)
        g = np.zeros((1, q.n_servers))
    else:
        x = np.zeros((p, q.n_servers))
        x[ar, s] = 1.0
        g = np.einsum("jik,kj->ij", cq, x)  # congestion of i with the others on j
    limit = 10 * p if max_moves is None else max_moves
    moves = 0
    while moves < limit:
        m_cost = lin + g
        cur = m_cost[ar, s]
        # A tolerance relative to the objective keeps float noise from cycling.
        tol = 1e-12 * (float(cur.sum()) + 1.0)
        delta = m_cost - cur[:, None]
        k = int(np.argmin(delta))
        best, move = float(delta.flat[k]), ("move", *divmod(k, q.n_servers))
        # Swaps cost O(n^2) to evaluate against O(n m) for moves, so they are only looked at
        # once no single move improves (same local optima, several times faster).
        if swaps and p > 1 and not best < -tol:
            # to_other[i, k]: cost of i on k's server once k has left it.
            to_other = m_cost[:, s] - cq[s[None, :], ar[:, None], ar[None, :]]
            gain = to_other + to_other.T - cur[:, None] - cur[None, :]
            gain[s[:, None] == s[None, :]] = np.inf
            k2 = int(np.argmin(gain))
            if gain.flat[k2] < best:
                best, move = float(gain.flat[k2]), ("swap", *divmod(k2, p))
        if not best < -tol:
            break
        if move[0] == "move":
            pairs = [(move[1], move[2])]
        else:
            a, b = move[1], move[2]
            pairs = [(a, s[b]), (b, s[a])]
        for i, j in pairs:
            old = s[i]
            g[:, old] -= cq[old, :, i]
            g[:, j] += cq[j, :, i]
            s[i] = j
        moves += 1
    server[idx] = s
    return server, moves


def polish_reads(
    q: SelectionQUBO, reads: list[np.ndarray], descend: bool = True
) -> tuple[np.ndarray, int, float]:
    """The best of the decoded reads after the local search: ``(server, moves, objective)``.

    Reads that repair to the same assignment polish to the same one (the descent is
    deterministic), so only the first of each is polished. Each start is checked once (the
    descent only moves tasks to usable servers, so what it returns is valid too). The lowest
    objective wins; ties go to the earlier read (the lower energy). With few placeable tasks
    (:func:`_few`) the check, the descent and the objective run on Python floats, bit for bit
    (:func:`_descend_few`; the objective's sums are numpy's, :func:`_np_sum`).

    Args:
        q: the selection problem.
        reads: feasible assignments (server per task), e.g. from :meth:`SelectionQUBO.decode_arrays`.
        descend: polish with :func:`local_search` (best-improvement moves and swaps).

    Raises:
        ValueError: no reads, or a read puts a placeable task on a server it cannot use.
    """
    distinct: dict[bytes, np.ndarray] = {}
    for r in reads:  # int64 assignments of one length: equal bytes = equal arrays
        arr = np.asarray(r, dtype=np.int64)
        distinct.setdefault(arr.tobytes(), arr)
    if not distinct:
        raise ValueError("polish_reads needs at least one read")
    idx = q._placed
    p = idx.size
    if _few(p, q.n_servers):
        lin, cq = q._few_lists
        m, n = q.n_servers, q.n_tasks
        at = idx.tolist()
        best: tuple[list[int], list[int], int, float] | None = None
        for r in distinct.values():
            if r.shape != (n,):
                q._checked(r)  # raises
            full = r.tolist()
            s = [full[i] for i in at]
            for t, j in enumerate(s):
                if not (0 <= j < m and lin[t][j] < math.inf):
                    q._checked(r)  # raises, naming the task
            moves = 0
            if descend:
                s, moves = _descend_few(q, s, True, 10 * p)
            total = 0.0
            for t, j in enumerate(s):
                total += lin[t][j]
            # the pairs sharing a server, as the p x p matrix that _objective sums
            pairs = [cq[s[a]][a][b] if a < b and s[a] == s[b] else 0.0 for a in range(p) for b in range(p)]
            objective = total + _np_sum(pairs)
            if best is None or objective < best[3]:
                best = (full, s, moves, objective)
        full, s, moves, objective = best
        server = np.array(full, dtype=np.int64)
        server[idx] = s
        return server, moves, objective
    polished = [
        _descend(q, q._check_assignment(r).copy(), True, None) if descend else (q._check_assignment(r), 0)
        for r in distinct.values()
    ]
    objectives = [q._objective(idx, sm[0][idx], q.linear_cost[idx, sm[0][idx]]) for sm in polished]
    k = min(range(len(polished)), key=objectives.__getitem__)
    return polished[k][0], polished[k][1], objectives[k]


#: Placeable tasks up to which :func:`_descend` runs on Python floats (:func:`_descend_few`)
#: whatever the number of servers; with 2 or more servers, up to :data:`_SMALL_TASKS`.
_FEW_TASKS = 3
_SMALL_TASKS = 7


def _few(p: int, m: int) -> bool:
    """Whether :func:`_descend` and :func:`polish_reads` take the Python-float path for ``p``
    placeable tasks on ``m`` servers. It sums each task's congestion on a server over the other
    tasks in index order, which is what numpy's ``einsum("jik,kj->ij")`` does when ``m >= 2``
    (with ``m = 1`` it groups longer sums its own way, so there only sums of at most two terms,
    exact in any order, are taken); below 8 tasks numpy's sum of the current costs is sequential."""
    return 0 < p and (p <= _FEW_TASKS or (p <= _SMALL_TASKS and m >= 2))


def _np_sum(values: list[float]) -> float:
    """``np.sum`` of a contiguous float64 array of at most 128 values, bit for bit: one after the
    other below 8 values, else numpy's pairwise scheme (8 running sums over blocks of 8, added
    pairwise, then the rest one by one)."""
    n = len(values)
    if n < 8:
        total = 0.0
        for v in values:
            total += v
        return total
    if n > 128:
        return float(np.sum(np.array(values, dtype=float)))
    r = values[:8]
    i = 8
    end = n - n % 8
    while i < end:
        for j in range(8):
            r[j] += values[i + j]
        i += 8
    total = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
    for k in range(i, n):
        total += values[k]
    return total


def _descend_few(q: SelectionQUBO, s: list[int], swaps: bool, limit: int) -> tuple[list[int], int]:
    """:func:`_descend` of few placeable tasks (:func:`_few`) on Python floats, bit for bit.

    The same operations in the same order, element by element (each numpy call costs about a
    microsecond whatever the size): ``+ -`` are correctly rounded in both; the congestion of a
    task with the others on a server is summed over them in index order (see :func:`_few`); the
    sum of fewer than 8 current costs is sequential in numpy too; ties go to the first index, as
    ``argmin`` does. tests/test_qubo_fast_paths.py compares the two on random problems.
    """
    lin, cq = q._few_lists
    p = len(s)
    rng_p = range(p)
    g = [[0.0] * q.n_servers for _ in rng_p]
    for i in rng_p:
        gi = g[i]
        for k in rng_p:
            if k != i:  # (the diagonal of the congestion is 0)
                j = s[k]
                gi[j] += cq[j][i][k]
    m_cost = [[a + b for a, b in zip(lin[i], g[i], strict=True)] for i in rng_p]
    inf = math.inf
    moves = 0
    # No nan can arise (costs are finite or inf, the current ones finite), so min() and
    # list.index() find argmin's first least entry.
    while moves < limit:
        cur = [m_cost[i][s[i]] for i in rng_p]
        total = 0.0
        for c in cur:
            total += c
        tol = 1e-12 * (total + 1.0)
        best, move = inf, None
        for i in rng_p:  # the first least entry of delta = m_cost - cur, row by row
            ci = cur[i]
            row = [v - ci for v in m_cost[i]]
            low = min(row)
            if move is None or low < best:
                best, move = low, (i, row.index(low))
        swap = False
        if swaps and p > 1 and not best < -tol:
            # gain of exchanging tasks i and k (inf when they share a server): first least
            g_best, g_at = inf, (0, 0)
            for i in rng_p:
                si, mi, ci = s[i], m_cost[i], cur[i]
                for k in rng_p:
                    sk = s[k]
                    if si == sk:
                        continue  # inf: never below the first entry's inf or anything else
                    v = mi[sk] - cq[sk][i][k] + (m_cost[k][si] - cq[si][k][i]) - ci - cur[k]
                    if v < g_best:
                        g_best, g_at = v, (i, k)
            if g_best < best:
                best, move, swap = g_best, g_at, True
        if not best < -tol:
            break
        if swap:
            a, b = move
            pairs = [(a, s[b]), (b, s[a])]
        else:
            pairs = [move]
        for i, j in pairs:
            old = s[i]
            for r in rng_p:
                g[r][old] -= cq[old][r][i]
            for r in rng_p:
                g[r][j] += cq[j][r][i]
            for r in rng_p:  # the two columns of m_cost that changed
                m_cost[r][old] = lin[r][old] + g[r][old]
                m_cost[r][j] = lin[r][j] + g[r][j]
            s[i] = j
        moves += 1
    return s, moves


# ---------------------------------------------------------------------------------------------
# GPU-server terms: model residency (load cost) and batching (pairs of the same key)


def add_gpu_terms(
    state: EpochState,
    variable: np.ndarray,
    linear: np.ndarray,
    congestion: np.ndarray,
    slots: np.ndarray,
    batch_weight: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Add the GPU-server model's costs (:mod:`mecsim.sim.gpu`) to the selection QUBO's arrays.

    * Load cost (linear): task ``i`` on ``j`` also waits ``state.load_s[i, j]``, the time to load
      its weights when no GPU of ``j`` holds them (0 when warm).
    * Batching (pairs): two tasks ``i, k`` of the same key (``state.key``) on a server where the
      key can be batched (``state.batch_cap[i, j] >= 2``) are served together: both start when the
      first could and end ``f_j(2) max(s_ij, s_kj)`` later, so the pair adds
      ``2 (f_j(2) - 1) max(s_ij, s_kj)`` to the linear costs' ``s_ij + s_kj``, instead of the
      congestion ``min(s_ij, s_kj)`` of two tasks served in turn. With ``batch_weight = w > 0``
      it also subtracts ``w (2 - f_j(2)) max(s_ij, s_kj)``: the GPU time the batch saves, gained
      by ``w`` later tasks waiting behind the pair. Both are divided by ``c_j`` as the
      congestion is.

    On the shipped profiles ``f(2)`` is 1.59 (A100) and 1.84 (RTX 3060), above 1.5: within one
    epoch a batch of two adds more total completion time than serving the two in turn (the pair
    term is then above the congestion it replaces); batching pays through throughput, which
    ``batch_weight`` credits.

    Exactness: the BQM energy of a feasible assignment equals the sum of the epoch's completion
    times (arrival at the server included, as for the base QUBO) when every server that receives
    tasks has one GPU (``c_j = 1``), receives tasks of a single key, at most two of them (and
    ``batch_cap >= 2``), with equal steps, the GPU is busy until ``W_j`` (so the pair is queued
    together) or idle and cold (so both wait for the same load), ``batch_weight = 0``, and uploads
    take no time (ideal radio). tests/test_gpu_engine.py checks this by enumerating every assignment
    against a replay of :class:`~mecsim.sim.gpu.GPUServerModel`. Beyond that it is an
    approximation: a batch of b > 2 costs ``b (b - 1) (f(2) - 1) s`` by pairs against
    ``b (f(b) - 1) s`` (on the shipped curves within 10% for b <= 16), tasks of other keys behind
    a batch or a load wait the whole batch or load, and the load is counted for each task (each
    waits for it) but its occupation of the GPU is not charged to later tasks.

    Returns:
        ``(linear, congestion)``: new arrays (the inputs are not changed).
    """
    if state.key is None or state.load_s is None:
        raise ValueError("gpu_terms need an EpochState with the GPU-server fields (key, load_s, ...)")
    if not (np.isfinite(batch_weight) and batch_weight >= 0):
        raise ValueError(f"batch_weight must be finite and >= 0, got {batch_weight!r}")
    load = np.asarray(state.load_s, dtype=float)
    linear = np.where(variable, linear + np.where(variable, load, 0.0), np.inf)
    cong = np.array(congestion, dtype=float)
    keys = state.key
    cap = np.asarray(state.batch_cap)
    f2 = np.asarray(state.batch_factor2, dtype=float)
    s = np.asarray(state.service_s, dtype=float)
    groups: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    for idx in groups.values():
        if len(idx) < 2:
            continue
        a = np.array(idx)
        for j in range(variable.shape[1]):
            t = a[variable[a, j] & (cap[a, j] >= 2)]
            if t.size < 2:
                continue
            mx = np.maximum(s[t, j][:, None], s[t, j][None, :])
            f = f2[t[0], j]  # one key: one curve
            q = (2.0 * (f - 1.0) - batch_weight * (2.0 - f)) * mx / slots[j]
            q[np.arange(t.size), np.arange(t.size)] = 0.0
            cong[j][np.ix_(t, t)] = q
    return linear, cong


def _pairs_within_groups(sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair ``(p, q)``, ``p < q``, of positions in the same group, for consecutive groups
    of the given sizes (positions ``0 .. sum(sizes) - 1``), ordered by ``p`` then ``q``."""
    sizes = np.asarray(sizes, dtype=np.int64)
    total = int(sizes.sum())
    pos = np.arange(total)
    end = np.repeat(np.cumsum(sizes), sizes)  # one past the last position of p's group
    after = end - pos - 1  # partners of p later in its group
    first = np.repeat(pos, after)
    runs = np.cumsum(after) - after
    second = first + 1 + np.arange(first.size) - np.repeat(runs, after)
    return first, second


#: Structures of recent variable masks (:func:`_structure`), keyed by the mask; small masks only.
_STRUCTURES: dict[tuple[tuple[int, ...], bytes], tuple[Any, ...]] = {}
_STRUCTURES_MAX = 256
_STRUCTURE_MAX_CELLS = 256


def _structure(variable: np.ndarray) -> tuple[Any, ...]:
    """What the QUBO's shape depends on, from the ``n x m`` mask of the pairs with a variable:
    ``(vi, vj, labels, one_hot, r1, c1, r2, c2, cells, rows, cols)`` with the variables in (task,
    server) order (``vi``, ``vj`` their cells, ``labels`` the tuples ``(i, j)``), ``one_hot`` the
    labels of each task, ``(r1, c1)`` the variable pairs of one task and ``(r2, c2)`` those of one
    server (first index lower), ``cells`` the index of each server pair's weight in the
    congestion array and ``(rows, cols)`` all the pairs (one-hot first). Epochs repeat a few
    masks (the tasks present and the servers that host their models), so recent small ones are
    kept (read-only arrays, tuples)."""
    key = (variable.shape, variable.tobytes())
    hit = _STRUCTURES.get(key)
    if hit is not None:
        return hit
    vi, vj = np.nonzero(variable)
    labels = tuple(zip(vi.tolist(), vj.tolist(), strict=True))
    ends = np.cumsum(variable.sum(axis=1)).tolist()
    one_hot = tuple(labels[e0:e1] for e0, e1 in zip([0, *ends][:-1], ends, strict=True))
    # One-hot pairs: the variables of one task are consecutive (task-major order).
    r1, c1 = _pairs_within_groups(variable.sum(axis=1))
    # Congestion pairs: the variables of one server, in task order (a stable sort by server).
    by_server = np.argsort(vj, kind="stable")
    r2, c2 = _pairs_within_groups(variable.sum(axis=0))
    r2, c2 = by_server[r2], by_server[c2]
    cells = (vj[r2], vi[r2], vi[c2])  # where the congestion pairs' weights are in Q
    rows, cols = np.concatenate([r1, r2]), np.concatenate([c1, c2])
    for arr in (vi, vj, r1, c1, r2, c2, *cells, rows, cols):
        arr.setflags(write=False)
    out = (vi, vj, labels, one_hot, r1, c1, r2, c2, cells, rows, cols)
    if variable.size <= _STRUCTURE_MAX_CELLS:
        if len(_STRUCTURES) >= _STRUCTURES_MAX:
            _STRUCTURES.clear()
        _STRUCTURES[key] = out
    return out


def build_selection_qubo(
    state: EpochState,
    bandwidth_hz: np.ndarray,
    *,
    penalty: str | float = "auto",
    penalty_scale: float = DEFAULT_PENALTY_SCALE,
    gpu_terms: bool | str = "auto",
    batch_weight: float = 0.0,
    future_cost: np.ndarray | None = None,
) -> SelectionQUBO:
    """Build the server-selection QUBO of an epoch for given bandwidth shares.

    What the BQM equals: on every feasible (one-hot) assignment ``x`` of the placeable tasks its
    energy is ``L(x) + sum_ij x_ij F_ij``, where ``L`` is the epoch's completion-time objective
    of the module docstring and ``F`` the optional ``future_cost`` (0 without it): the
    per-(task, server) price of the load a placement adds for the tasks still to come
    (:func:`mecsim.decision.future.future_cost`, the expected extra waiting of a server's future
    arrivals in an M/G/1 workload model, times the policy's weight). ``F`` enters as linear terms
    only, so the congestion terms, the penalty rule (:func:`penalty_bound`, still safe since
    ``F >= 0``), the decoder and the local search are unchanged, and
    :meth:`SelectionQUBO.objective` returns ``L + F`` (``tests/test_future_cost.py`` checks this
    by enumeration).

    Args:
        state: the epoch.
        bandwidth_hz: uplink share of each task (Hz); only placeable tasks need a positive one.
        penalty: ``"auto"`` for ``penalty_scale * A_safe`` (see :func:`penalty_bound`), or the
            one-hot weight ``A`` itself.
        penalty_scale: fraction of ``A_safe`` used with ``penalty="auto"``. 1.0 (the default,
            see :data:`DEFAULT_PENALTY_SCALE`) guarantees that the BQM's minimisers are feasible;
            lower values give an easier landscape whose minimum may be infeasible (repaired).
        gpu_terms: add the GPU-server terms of :func:`add_gpu_terms` (expected load cost, batch
            pairs). ``"auto"``: when the state carries the GPU-server model's fields (runs with
            batching or residency on); without them the BQM is the one described above, unchanged.
        batch_weight: with ``gpu_terms``, the number of later tasks assumed to wait behind a batch
            pair, which gain the GPU time the batch saves (0: the epoch's own tasks only).
        future_cost: ``n x m`` non-negative costs ``F_ij`` added to the linear terms (entries of
            pairs without a variable are ignored); None for the myopic QUBO.

    Returns:
        The :class:`SelectionQUBO`.

    Raises:
        ValueError: a negative or non-finite cost on a usable pair (e.g. a zero share for a task
            that has a server), or a bad ``penalty``.
    """
    n, m = state.n_tasks, state.n_servers
    variable = np.asarray(state.feasible, dtype=bool) & np.asarray(state.server_up, dtype=bool)[None, :]
    placeable = variable.any(axis=1)
    bw = np.asarray(bandwidth_hz, dtype=float)
    if bw.shape != (n,):
        raise ValueError(f"bandwidth_hz has shape {bw.shape}, expected ({n},)")
    with np.errstate(invalid="ignore"):
        upload = np.where(placeable, state.upload_s(np.where(placeable, bw, 1.0)), 0.0)
        total = (
            upload[:, None]
            + np.asarray(state.backhaul_s, dtype=float)
            + np.asarray(state.backlog_s, dtype=float)[None, :]
            + np.asarray(state.service_s, dtype=float)
            + np.asarray(state.return_s, dtype=float)
        )
    bad = variable & ~(np.isfinite(total) & (total >= 0) & (state.service_s >= 0))
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        raise ValueError(
            f"task {i} on server {j} has cost {total[i, j]!r} (upload {upload[i]!r} s with "
            f"{bw[i]!r} Hz); costs of usable pairs must be finite and non-negative"
        )
    # --- future-priced objective (issue 15): F_ij added to the linear costs --------------------
    if future_cost is not None:
        fut = np.asarray(future_cost, dtype=float)
        if fut.shape != (n, m):
            raise ValueError(f"future_cost has shape {fut.shape}, expected ({n}, {m})")
        badf = variable & ~(np.isfinite(fut) & (fut >= 0))
        if badf.any():
            i, j = (int(v) for v in np.argwhere(badf)[0])
            raise ValueError(
                f"future_cost of task {i} on server {j} is {fut[i, j]!r}; it must be finite and non-negative"
            )
        total = total + np.where(variable, fut, 0.0)
    # --- end of the future-priced block ------------------------------------------------------
    linear = np.where(variable, total, np.inf)
    service = np.where(variable, np.asarray(state.service_s, dtype=float), np.inf)
    slots = np.array(state.slots, dtype=float)  # a copy: it is frozen below
    if (slots[np.asarray(state.server_up, dtype=bool)] < 1).any():
        raise ValueError(f"every server that is up needs at least one slot, got {state.slots!r}")
    cong = congestion_matrix(service, np.maximum(slots, 1.0), variable)
    if gpu_terms is True or (gpu_terms == "auto" and state.key is not None):  # GPU-server terms
        linear, cong = add_gpu_terms(state, variable, linear, cong, np.maximum(slots, 1.0), batch_weight)
    elif gpu_terms not in (False, "auto"):
        raise ValueError(f"gpu_terms must be True, False or 'auto', got {gpu_terms!r}")
    safe = penalty_bound(linear, cong)
    if isinstance(penalty, str):
        if penalty != "auto":
            raise ValueError(f"penalty must be 'auto' or a number, got {penalty!r}")
        if not penalty_scale > 0:
            raise ValueError(f"penalty_scale must be positive, got {penalty_scale!r}")
        a = float(penalty_scale) * safe
    else:
        a = float(penalty)
        if not (np.isfinite(a) and a >= 0):
            raise ValueError(f"penalty must be finite and non-negative, got {penalty!r}")

    vi, vj, labels, one_hot, r1, c1, r2, c2, cells, rows, cols = _structure(variable)
    lin_bias = linear[vi, vj] - a  # A (sum x - 1)^2 = A (1 - sum x + 2 sum_{j<j'} x x') on 0/1
    w = cong[cells]  # Q[j, i, k] of the congestion pairs
    keep = w != 0  # zero-length services add no interaction worth storing
    if keep.all():  # the usual case: every pair, as laid out once per structure
        pairs = (rows, cols, np.concatenate([np.full(r1.size, 2.0 * a), w]))
    else:
        pairs = (
            np.concatenate([r1, r2[keep]]),
            np.concatenate([c1, c2[keep]]),
            np.concatenate([np.full(r1.size, 2.0 * a), w[keep]]),
        )
    terms = (lin_bias, pairs, a * int(placeable.sum()))
    for arr in (linear, cong, service, slots, placeable, lin_bias, *terms[1]):
        arr.setflags(write=False)
    q = SelectionQUBO(
        one_hot=one_hot,
        penalty=a,
        safe_penalty=safe,
        linear_cost=linear,
        congestion=cong,
        service_s=service,
        slots=slots,
        placeable=placeable,
        terms=terms,
    )
    q.__dict__["_variable_cells"] = (vi, vj)  # the cached property, known here
    return q
