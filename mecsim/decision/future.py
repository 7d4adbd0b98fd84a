"""What a placement costs the tasks still to come: a per-(task, server) linear cost for the QUBO.

The selection QUBO (:mod:`mecsim.decision.qubo`) minimises the sum of the epoch's expected
completion times and nothing else: a placement that leaves a server with a long backlog costs
the epoch's own tasks what they wait, but not the tasks that will be routed there in the next
seconds. This module prices that.

Model (the marginal delay of a work-conserving queue with Poisson arrivals). Let server ``j``
see future arrivals at rate ``lam_j`` (tasks/s) bringing work at rate ``rho_j`` (the load, in
server-seconds per second, over its ``c_j`` slots: ``rho_j = lam_j E[s_j] / c_j``), and let its
unfinished work now be ``W_j`` (the backlog in the epoch state, in seconds of the whole server).
Treat the server as one queue of speed ``c_j``; task ``i`` adds the work ``w_ij = s_ij / c_j``.
With the workload process ``V(t)`` of the queue without the task and ``V'(t)`` with it, their
difference ``D(t) = V'(t) - V(t)`` starts at ``w`` and shrinks only while ``V`` is idle, so an
arrival at ``t`` waits ``D(t) = max(w - I(t), 0)`` longer, ``I(t)`` being the idle time of ``V``
in ``[0, t]``. The expected extra waiting of all future arrivals is ``lam E[int D(t) dt]``:
``V`` first empties after a mean ``W / (1 - rho)`` (a busy period started by work ``W``), during
which ``D = w``; then each unit of idle time lowers ``D`` by one and is accompanied by a mean
``rho / (1 - rho)`` of busy time (busy periods started by the arrivals in it), so

``F_ij = lam_j w_ij (W_j + w_ij / 2) / (1 - rho_j)``

exactly for an M/G/1 queue in its FIFO workload (Poisson arrivals, any service distribution;
shortest-first order within an epoch changes who waits, not the total work ahead). It is the
Lyapunov drift-plus-penalty term ``w (Q + w/2)`` of backlog-based offloading (Neely 2010),
weighted by the arrivals that will actually see the backlog (``lam / (1 - rho)``), i.e. the
queue's own answer to "how heavily should the future weigh". Approximations, documented: ``c_j``
slots are treated as one server of speed ``c_j`` (exact for the work, not for a lone task that
would find a free slot), ``rho_j`` is capped at ``rho_max`` (an overloaded queue has an
unbounded marginal delay), and the tasks the same epoch puts on ``j`` are priced separately
(the pairwise terms between them are the QUBO's congestion terms; the ``w^2`` cross-terms
among them for future arrivals are left out so that ``F`` stays linear).

The rates are *estimated*, never read from the scenario: :class:`ArrivalEstimator` keeps the
policy's own record of what it dispatched to each server (arrival times and work) over a sliding
window of the epochs it has seen. A policy with no history yet prices nothing (``F = 0``): the
myopic QUBO.

Example:
    >>> import numpy as np
    >>> from mecsim.decision.future import future_cost
    >>> service = np.array([[10.0, 20.0]])        # one task, two one-slot servers
    >>> f = future_cost(service, np.array([1, 1]), np.array([0.0, 5.0]),
    ...                 lam=np.array([0.05, 0.0]), rho=np.array([0.5, 0.0]))
    >>> f.tolist()                                 # 0.05 * 10 * (0 + 5) / 0.5; no arrivals at 1
    [[5.0, 0.0]]
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["DEFAULT_RHO_MAX", "DEFAULT_WINDOW_S", "ArrivalEstimator", "future_cost"]

#: Largest load used in ``1 / (1 - rho)`` (a queue measured at or above 1 is priced as at 0.95:
#: 20 times the arrivals of an idle queue).
DEFAULT_RHO_MAX = 0.95

#: Length of the sliding window over which the per-server rates are measured (s).
DEFAULT_WINDOW_S = 120.0


def future_cost(
    service_s: np.ndarray,
    slots: np.ndarray,
    backlog_s: np.ndarray,
    lam: np.ndarray,
    rho: np.ndarray,
    rho_max: float = DEFAULT_RHO_MAX,
) -> np.ndarray:
    """``F_ij = lam_j w_ij (W_j + w_ij / 2) / (1 - min(rho_j, rho_max))`` with ``w_ij = s_ij / c_j``.

    Args:
        service_s: ``n x m`` service times ``s_ij`` (``inf`` where task ``i`` cannot use ``j``).
        slots: ``m`` slot counts ``c_j`` (>= 1 where used).
        backlog_s: ``m`` backlogs ``W_j`` (s).
        lam: ``m`` arrival rates of future tasks at each server (1/s), >= 0.
        rho: ``m`` loads of each server (busy fraction of its slots), >= 0.
        rho_max: cap on ``rho`` (in ``[0, 1)``).

    Returns:
        ``n x m`` non-negative costs (s of future waiting); ``inf`` where ``service_s`` is, 0 where
        ``lam_j = 0``.
    """
    if not 0.0 <= rho_max < 1.0:
        raise ValueError(f"rho_max must be in [0, 1), got {rho_max!r}")
    s = np.asarray(service_s, dtype=float)
    if s.ndim == 2 and s.size <= _FEW_CELLS:
        return _future_cost_few(s, slots, backlog_s, lam, rho, rho_max)
    c = np.maximum(np.asarray(slots, dtype=float), 1.0)
    w = s / c[None, :]
    lam = np.asarray(lam, dtype=float)
    r = np.minimum(np.maximum(np.asarray(rho, dtype=float), 0.0), rho_max)  # np.clip, less overhead
    weight = lam / (1.0 - r)
    with np.errstate(invalid="ignore"):
        f = weight[None, :] * w * (np.asarray(backlog_s, dtype=float)[None, :] + 0.5 * w)
    f = np.where(np.isfinite(s), np.where(weight[None, :] > 0, f, 0.0), np.inf)
    return f


#: Tasks x servers up to which :func:`future_cost` runs on Python floats.
_FEW_CELLS = 64


def _future_cost_few(
    s: np.ndarray, slots: np.ndarray, backlog_s: np.ndarray, lam: np.ndarray, rho: np.ndarray, rho_max: float
) -> np.ndarray:
    """:func:`future_cost` cell by cell on Python floats: the same operations in the same order
    (numpy's elementwise arithmetic is correctly rounded as Python's is), without numpy's cost
    per call on a few cells. Maximum and minimum keep numpy's nan (a nan first argument wins)."""
    c = [max(v, 1.0) for v in np.asarray(slots, dtype=float).tolist()]
    backlog = np.asarray(backlog_s, dtype=float).tolist()
    weight = [
        a / (1.0 - min(max(r, 0.0), rho_max))
        for a, r in zip(
            np.asarray(lam, dtype=float).tolist(), np.asarray(rho, dtype=float).tolist(), strict=True
        )
    ]
    inf = math.inf
    out = []
    for row in s.tolist():
        cells = []
        for j, sij in enumerate(row):
            if not math.isfinite(sij):
                cells.append(inf)
                continue
            w = sij / c[j]
            cells.append(weight[j] * w * (backlog[j] + 0.5 * w) if weight[j] > 0 else 0.0)
        out.append(cells)
    return np.array(out, dtype=float).reshape(s.shape)


class ArrivalEstimator:
    """Per-server arrival rate and load, measured from the policy's own dispatches.

    Every epoch the policy reports what it dispatched (:meth:`record`: the server and the work
    ``s_ij / c_j`` of each task sent); :meth:`rates` returns, for each server, the number of
    tasks and the work sent there over the last ``window_s`` seconds (or since the first epoch
    seen, if that is shorter), divided by that span. Only what the policy saw and did enters: no
    scenario parameter.

    Args:
        n_servers: ``m``.
        window_s: the sliding window (s).
    """

    def __init__(self, n_servers: int, window_s: float = DEFAULT_WINDOW_S) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s must be positive, got {window_s!r}")
        self.window_s = float(window_s)
        self.m = int(n_servers)
        self.t0: float | None = None
        self.t = np.zeros(0)
        self.j = np.zeros(0, dtype=np.int64)
        self.work = np.zeros(0)

    def record(self, now: float, server: np.ndarray, work_s: np.ndarray) -> None:
        """Record the tasks sent at ``now``: their servers (negative = not sent) and works (s)."""
        if self.t0 is None:
            self.t0 = float(now)
        server = np.asarray(server, dtype=np.int64)
        go = server >= 0
        if go.any():
            self.t = np.concatenate([self.t, np.full(int(go.sum()), float(now))])
            self.j = np.concatenate([self.j, server[go]])
            self.work = np.concatenate([self.work, np.asarray(work_s, dtype=float)[go]])
        keep = self.t > float(now) - self.window_s
        if not keep.all():
            self.t, self.j, self.work = self.t[keep], self.j[keep], self.work[keep]

    def rates(self, now: float) -> tuple[np.ndarray, np.ndarray]:
        """``(lam, rho)`` per server over the window ending at ``now``; zeros before any history.

        The span is ``min(window_s, now - first epoch seen)``; an estimate over a span shorter
        than one second is not trusted (zeros).
        """
        if self.t0 is None or min(self.window_s, float(now) - self.t0) < 1.0:
            return np.zeros(self.m), np.zeros(self.m)
        span = min(self.window_s, float(now) - self.t0)
        inside = self.t > float(now) - self.window_s
        j = self.j[inside]
        lam = np.bincount(j, minlength=self.m)[: self.m] / span
        rho = np.bincount(j, weights=self.work[inside], minlength=self.m)[: self.m] / span
        return lam, rho  # float already (counts / span; weighted counts / span)
