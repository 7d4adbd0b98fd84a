r"""Exact preallocation of a shared uplink bandwidth budget among n uploads.

Model
-----
Task ``i`` uploads ``D_i`` bits over a share ``b_i`` (Hz) of an uplink budget ``B``. Its
"SNR per Hz" is ``a_i = p_i g_i / N0``: with ``b`` Hz the received SNR is ``a_i / b`` and the
Shannon rate and upload time are::

    r_i(b) = b log2(1 + a_i / b),        T_i(b) = D_i / r_i(b).

``r_i`` increases from 0 (at ``b = 0``) towards the power-limited rate ``a_i / ln 2``, so
``T_i`` decreases towards ``D_i ln 2 / a_i``; more bandwidth always helps, hence every optimum
spends the whole budget.

Why the problems are convex
---------------------------
``r_i(b) = b * phi(a_i / b)`` with ``phi(z) = log2(1 + z)`` concave, i.e. ``r_i`` is the
*perspective* of ``z -> log2(1 + a_i z)``, and perspectives of concave functions are concave.
``T_i = D_i / r_i`` is then convex: the reciprocal of a positive concave function is convex.
Minimising ``sum_i T_i(b_i)`` subject to ``sum_i b_i = B`` and ``b_i >= b_min`` is therefore a
smooth convex program whose KKT conditions are necessary and sufficient:

    -T_i'(b_i) = lambda   if b_i > b_min,        -T_i'(b_min) <= lambda   if b_i = b_min,

with ``-T_i'(b) = D_i r_i'(b) / r_i(b)^2`` and
``r_i'(b) = log2(1 + x) - x / ((1 + x) ln 2)``, ``x = a_i / b``.

How the KKT system is solved
----------------------------
Everything is done in scaled units (``s = b / B``, ``alpha_i = a_i / B``, ``c_i = D_i ln 2 / B``)
and in logarithms, so no intermediate overflows whatever the magnitudes. Writing
``x = alpha_i / s = e^u`` the marginal value of bandwidth becomes

    -T_i'(s) = (c_i / alpha_i^2) h(x),     h(x) = x^2 (ln(1+x) - x/(1+x)) / ln(1+x)^2,

a *single* increasing function ``h`` shared by all tasks. In log-space ``H(u) = ln h(e^u)`` is
almost a straight line: its slope lies in ``[1.79, 2]`` (``h ~ x^2/2`` for small ``x``,
``h ~ x^2 / ln x`` for large ``x``). So for a trial multiplier ``lambda = e^L`` every task's
equation ``H(u_i) = L + 2 ln alpha_i - ln c_i`` is solved *for all tasks at once* by Newton's
method, which is globally convergent here: each step cuts the error at least ~8-fold, and then
quadratically. The shares are ``s_i = max(b_min / B, alpha_i e^{-u_i})``. Their sum falls
monotonically with ``L``; a safeguarded Newton iteration on ``ln(sum_i s_i) = ln(1)`` (exact
derivative ``d ln s_i / dL = -1 / H'(u_i)``, bisection fallback inside a bracket derived from the
equal split) finds the multiplier to ~1e-13, warm-starting each inner solve. A last rescaling of
the shares above the floor makes them sum to ``B`` to rounding.

The "minmax" objective (minimise the slowest upload) equalises the upload times instead: for a
common time ``t`` each task needs the ``s_i`` with ``s ln(1 + alpha_i / s) = c_i / t``, i.e.
``psi(u_i) = ln(c_i / (alpha_i t))`` with ``psi(u) = ln(ln(1+x)/x)`` concave and decreasing, so
Newton started from the explicit upper bound ``x <= 1/q^2 - 1`` (from
``ln(1+x) <= x / sqrt(1+x)``) converges monotonically. ``sum_i s_i`` decreases with ``t``, and the
outer safeguarded Newton iteration runs on ``ln sum_i s_i`` as above, with the level
``ln ln(t / t_pole)``, where ``t_pole = max_i D_i ln 2 / a_i`` is the time below which some task
cannot finish even with unlimited bandwidth. Measuring ``t`` from that pole keeps full precision
when a nearly power-limited task needs almost the whole budget (its share grows like
``1 / ln(t / t_pole)``). Tasks whose floor ``b_min`` already finishes by ``t`` keep the floor.

The "pf" objective (proportional fair) maximises ``sum_i ln r_i(b_i)``. Its KKT condition
``r_i'(b_i) / r_i(b_i) = lambda`` reads ``e(x_i) / b_i = lambda`` with the elasticity
``e(x) = d ln r / d ln b = 1 - x / ((1 + x) ln(1 + x))`` (``x = a_i / b_i``), which rises from
``x / 2`` (power-limited) to 1 (bandwidth-limited): shares are proportional to each task's
elasticity, so with high SNR everywhere pf is the equal split, and a power-limited task, whose
rate gains little from bandwidth, gets less. ``u + ln e(e^u)`` has slope in ``[1, 2]``, so the
same vectorised Newton scheme solves it.

Rules that account for time (:func:`allocate_rule`, :data:`BANDWIDTH_RULES`) add
``"completion"`` (least sum of completion times counting the tasks left waiting, in a fluid model
of preallocated shares) and ``"srpt-<k>"`` (smallest upload first, in groups of ``k``); they may
leave tasks without a share (deferred). :func:`simulate_preallocated` replays a rule the way the
engine admits tasks, and :func:`completion_lower_bound` is the exact optimum of the fluid
problem with reassignable shares (a lower bound for every rule), by enumeration of orders.

Special tasks: a task with ``D_i = 0`` needs no time and gets ``b_min``; so does a task with
``a_i = 0`` and ``D_i > 0``, whose upload can never finish (its time is ``inf`` whatever it is
given). If no task can use bandwidth at all, the budget is split equally.

Example:
    >>> import numpy as np
    >>> from mecsim.decision.bandwidth import allocate_bandwidth, upload_times
    >>> bits = np.array([1e6, 4e6])          # the second upload is 4x larger
    >>> snr = np.array([1e9, 1e9])           # same channel
    >>> b = allocate_bandwidth(bits, snr, 20e6)
    >>> [round(float(x) / 1e6, 3) for x in b]   # MHz: roughly proportional to sqrt(D), not D
    [6.406, 13.594]
    >>> float(b.sum())
    20000000.0
    >>> t = upload_times(bits, snr, allocate_bandwidth(bits, snr, 20e6, objective="minmax"))
    >>> bool(np.isclose(t[0], t[1], rtol=1e-12))
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

from mecsim.errors import MecsimError

__all__ = [
    "BANDWIDTH_RULES",
    "HeldBandwidth",
    "OBJECTIVES",
    "InfeasibleBandwidthError",
    "allocate_bandwidth",
    "allocate_rule",
    "check_rule",
    "completion_lower_bound",
    "lane_completion_times",
    "rule_defers",
    "simulate_preallocated",
    "spt_order",
    "upload_times",
]

#: Objectives understood by :func:`allocate_bandwidth` (each gives every task a share).
OBJECTIVES = ("sum", "minmax", "equal", "pf")
#: Named bandwidth rules for policies (:func:`allocate_rule`); ``"srpt-<k>"`` works for any k.
BANDWIDTH_RULES = ("equal", "sum", "minmax", "pf", "completion", "srpt", "srpt-2", "srpt-4")

_LN2 = math.log(2.0)
#: Relative slack allowed when checking ``n * min_hz <= budget_hz`` (rounding of ``B / n``).
_FLOOR_SLACK = 1e-12
#: The outer iterations stop once ``|ln(sum s / R)|`` is below this.
_OUTER_TOL = 1e-13
#: Inner Newton iterations stop once every step is below this (relative to ``1 + |u|``).
_INNER_TOL = 1e-13
_MAX_OUTER = 200
_MAX_INNER = 100
_LN_TENTH = math.log(0.1)
# Bounds of H'(u) = d ln h / d ln x over the whole real line (numerically 1.7938... and 2).
_DH_MIN, _DH_MAX = 1.75, 2.0
# Coefficients 1/2, 1/3, ..., 1/19 of  g(x) / y^2 = sum_{k>=2} y^(k-2) / k,  y = x / (1 + x),
# highest power first for Horner; used for y < 0.1 where ln(1+x) - y cancels.
_G_SERIES = 1.0 / np.arange(19.0, 1.0, -1.0)
# Coefficients of  ln(1+x)/x - 1 = sum_{k>=1} (-1)^k x^k / (k+1)  (x < 0.1), highest first.
_Q_SERIES = np.array([(-1.0) ** k / (k + 1) for k in range(17, 0, -1)] + [0.0])


class InfeasibleBandwidthError(MecsimError, ValueError):
    """The bandwidth allocation problem is malformed or has no feasible point.

    Raised for negative or non-finite inputs, mismatched shapes, an unknown objective and a
    floor ``min_hz`` that the budget cannot give every task.

    Attributes:
        field: name of the offending argument, e.g. ``"snr_per_hz"``.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def upload_times(input_bits: ArrayLike, snr_per_hz: ArrayLike, bandwidth_hz: ArrayLike) -> np.ndarray:
    """Upload times ``D / (b log2(1 + a / b))`` (s), element-wise with broadcasting.

    Args:
        input_bits: upload sizes ``D`` (bits), finite and >= 0.
        snr_per_hz: ``a = p g / N0`` (SNR with 1 Hz of bandwidth, linear), finite and >= 0.
        bandwidth_hz: shares ``b`` (Hz), finite and >= 0.

    Returns:
        The times, ``inf`` where ``b == 0`` or ``a == 0`` (with ``D > 0``) and ``0`` where
        ``D == 0``.

    Raises:
        InfeasibleBandwidthError: an argument is negative or not finite (named in the message).
    """
    d = _nonnegative(input_bits, "input_bits")
    a = _nonnegative(snr_per_hz, "snr_per_hz")
    b = _nonnegative(bandwidth_hz, "bandwidth_hz")
    d, a, b = np.broadcast_arrays(d, a, b)
    return _upload_times(d, a, b)


def _upload_times(d: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`upload_times` of checked float arrays (broadcast by the arithmetic)."""
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        x = a / b
        nats = np.log1p(x)
        # a / b overflowed (tiny b): ln(1 + a/b) = ln a - ln b to double precision.
        nats = np.where(np.isinf(x) & (b > 0), np.log(a) - np.log(b), nats)
        rate = b * nats / _LN2
        t = d / rate
    t = np.where(rate > 0, t, np.inf)
    return np.where(d == 0, 0.0, t)


def allocate_bandwidth(
    input_bits: ArrayLike,
    snr_per_hz: ArrayLike,
    budget_hz: float,
    min_hz: float = 0.0,
    objective: str = "sum",
) -> np.ndarray:
    """Split an uplink budget among tasks, exactly optimising the chosen objective.

    Args:
        input_bits: upload size ``D_i`` of each task (bits), 1-D, finite, >= 0.
        snr_per_hz: ``a_i = p_i g_i / N0`` of each task (linear SNR with 1 Hz), 1-D, finite,
            >= 0, same length as ``input_bits``.
        budget_hz: total bandwidth ``B`` (Hz), finite, >= 0.
        min_hz: floor ``b_min`` on every share (Hz), finite, >= 0, ``n * min_hz <= B``.
        objective: ``"sum"`` minimises ``sum_i T_i(b_i)``; ``"minmax"`` minimises
            ``max_i T_i(b_i)`` (equal times for all tasks above the floor); ``"equal"`` gives
            ``B / n`` to everybody; ``"pf"`` (proportional fair) maximises ``sum_i ln r_i(b_i)``
            (the sizes ``D_i`` play no part except ``D_i = 0``).

    Returns:
        The shares ``b`` (Hz), shape ``(n,)``: finite, ``>= min_hz``, summing to ``B`` up to
        rounding (``sum b <= B (1 + 1e-12)``). Tasks with ``D_i = 0`` (and tasks that can never
        upload, ``a_i = 0``) get ``min_hz`` unless no task can use bandwidth, in which case the
        budget is split equally. One task gets the whole budget.

    Raises:
        InfeasibleBandwidthError: an argument is negative, non-finite or mis-shaped,
            ``n * min_hz > B``, or ``objective`` is unknown (it is a ``ValueError``).
    """
    if objective not in OBJECTIVES:
        raise InfeasibleBandwidthError(
            f"unknown objective {objective!r}; expected one of {', '.join(OBJECTIVES)}",
            field="objective",
        )
    d = _vector(input_bits, "input_bits")
    a = _vector(snr_per_hz, "snr_per_hz")
    if d.shape != a.shape:
        raise InfeasibleBandwidthError(
            f"input_bits has {d.size} entries but snr_per_hz has {a.size}", field="snr_per_hz"
        )
    budget = _scalar(budget_hz, "budget_hz")
    floor = _scalar(min_hz, "min_hz")
    return _allocate(d, a, budget, floor, objective)


def _allocate(d: np.ndarray, a: np.ndarray, budget: float, floor: float, objective: str) -> np.ndarray:
    """:func:`allocate_bandwidth` of checked inputs (1-D float arrays, float scalars)."""
    n = d.size
    if n == 0:
        return np.zeros(0)
    if floor * n > budget * (1.0 + _FLOOR_SLACK):
        raise InfeasibleBandwidthError(
            f"n={n} tasks at min_hz={floor} Hz each need {floor * n} Hz, more than the "
            f"budget budget_hz={budget} Hz",
            field="min_hz",
        )
    if n == 1:
        return np.array([max(budget, floor)])
    if floor * n >= budget * (1.0 - _FLOOR_SLACK):
        # Floors use the whole budget: the only feasible point (up to rounding).
        return np.full(n, max(floor, budget / n))
    if objective == "equal" or budget == 0.0:
        return np.full(n, budget / n)

    active = (d > 0) & (a > 0)
    n_active = int(np.count_nonzero(active))
    if n_active == 0:
        return np.full(n, budget / n)
    m = floor / budget
    rest = 1.0 - m * (n - n_active)  # scaled budget left for the active tasks
    shares = np.full(n, m)
    ln_alpha = np.log(a[active]) - math.log(budget)
    ln_c = np.log(d[active]) + math.log(_LN2) - math.log(budget)
    if n_active == 1:
        shares[active] = rest
    elif objective == "sum":
        shares[active] = _solve_sum(ln_alpha, ln_c, rest, m)
    elif objective == "pf":
        shares[active] = _solve_pf(ln_alpha, rest, m)
    else:
        shares[active] = _solve_minmax(ln_alpha, ln_c, rest, m)
    # Floored shares come back as exactly min_hz (m * budget may round below it).
    return np.maximum(shares * budget, floor)


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def _nonnegative(value: ArrayLike, name: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InfeasibleBandwidthError(f"must be numeric ({exc})", field=name) from None
    if arr.size < 8 and all(0.0 <= v < math.inf for v in arr.ravel().tolist()):
        return arr  # the usual small case, checked without numpy's per-call overhead
    bad = ~(np.isfinite(arr) & (arr >= 0))
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        if arr.ndim == 0:
            index = ""
        else:
            index = f" at index {where[0] if arr.ndim == 1 else where}"
        raise InfeasibleBandwidthError(f"must be finite and >= 0; got {float(arr[where])}{index}", field=name)
    return arr


def _vector(value: ArrayLike, name: str) -> np.ndarray:
    arr = _nonnegative(value, name)
    if arr.ndim != 1:
        raise InfeasibleBandwidthError(
            f"must be one-dimensional (one entry per task); got shape {arr.shape}", field=name
        )
    return arr


def _scalar(value: float, name: str) -> float:
    if isinstance(value, float) and 0.0 <= value < math.inf:
        return float(value)  # (np.float64 is a float too)
    arr = _nonnegative(value, name)
    if arr.ndim != 0:
        raise InfeasibleBandwidthError(f"must be a scalar; got shape {arr.shape}", field=name)
    return float(arr)


# --------------------------------------------------------------------------------------------
# Special functions, evaluated in log-space (u = ln x) without overflow or cancellation
# --------------------------------------------------------------------------------------------


def _ln_log1p_exp(u: np.ndarray, l1: np.ndarray) -> np.ndarray:
    """``ln ln(1 + e^u)`` given ``l1 = ln(1 + e^u)``; stays finite where ``l1`` underflows."""
    if u.min() >= -30.0:
        return np.log(l1)
    tiny = u < -30.0
    with np.errstate(divide="ignore"):
        out = np.log(l1)
    # ln(1+x)/x = 1 - x/2 + O(x^2): for x < 1e-13 the O(x^2) term is below rounding.
    out[tiny] = u[tiny] - 0.5 * np.exp(u[tiny])
    return out


def _h_log(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``H(u) = ln h(e^u)`` and its derivative ``H'(u)`` (clamped to its true range)."""
    l1 = np.logaddexp(0.0, u)  # ln(1 + x)
    ln_y = u - l1  # ln(x / (1 + x))
    y = np.exp(ln_y)
    small = y < 0.1
    if small.any():
        ln_g = np.empty_like(u)
        big = ~small
        ln_g[big] = np.log(l1[big] - y[big])
        ys = y[small]
        ln_g[small] = 2.0 * ln_y[small] + np.log(_horner(_G_SERIES, ys))
    else:
        ln_g = np.log(l1 - y)
    ln_l1 = _ln_log1p_exp(u, l1)
    h = 2.0 * u + ln_g - 2.0 * ln_l1
    dh = 2.0 + np.exp(2.0 * ln_y - ln_g) - 2.0 * np.exp(ln_y - ln_l1)
    return h, np.minimum(np.maximum(dh, _DH_MIN), _DH_MAX)  # np.clip, with less overhead


def _psi(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``psi(u) = ln(ln(1+x)/x)`` (<= 0) and ``-psi'(u) = 1 - x / ((1+x) ln(1+x))`` (in (0,1))."""
    l1 = np.logaddexp(0.0, u)
    small = u < _LN_TENTH  # x < 0.1
    if small.any():
        psi = np.empty_like(u)
        slope = np.empty_like(u)
        big = ~small
        psi[big] = np.log(l1[big]) - u[big]
        slope[big] = 1.0 - np.exp(u[big] - l1[big]) / l1[big]
        xs = np.exp(u[small])
        sigma = _horner(_Q_SERIES, xs)  # ln(1+x)/x - 1, accurate for small x
        psi[small] = np.log1p(sigma)
        slope[small] = (xs + sigma * (1.0 + xs)) / ((1.0 + xs) * (1.0 + sigma))
    else:
        psi = np.log(l1) - u
        slope = 1.0 - np.exp(u - l1) / l1
    return psi, np.maximum(slope, 1e-300)


def _horner(coefficients: np.ndarray, x: np.ndarray) -> np.ndarray:
    acc = np.full_like(x, coefficients[0])
    for c in coefficients[1:]:
        acc = acc * x + c
    return acc


# --------------------------------------------------------------------------------------------
# Solvers (all in scaled units: shares s = b / B of the budget)
# --------------------------------------------------------------------------------------------


def _solve_h(target: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Solve ``H(u) = target`` element-wise by Newton's method from ``u``; returns ``u, H'(u)``.

    Because ``H'`` stays in ``[1.79, 2]``, the error after a Newton step is at most
    ``2/1.79 - 1 ~ 0.12`` times the error before it, wherever it starts, and it shrinks
    quadratically near the root.
    """
    for _ in range(_MAX_INNER):
        h, dh = _h_log(u)
        step = (h - target) / dh
        u = u - step
        if np.all(np.abs(step) <= _INNER_TOL * (1.0 + np.abs(u))):
            break
    return u, dh


def _solve_psi(target: np.ndarray, u: np.ndarray, u_max: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Solve ``psi(u) = target`` (< 0) by Newton's method; returns ``u, -psi'(u)``.

    ``psi`` is concave and decreasing and ``u_max`` lies right of the root, so the iterates,
    clipped to ``u_max``, sit right of the root after the first step and then decrease
    monotonically to it.
    """
    u = np.minimum(u, u_max)
    for _ in range(_MAX_INNER):
        psi, slope = _psi(u)
        step = (psi - target) / slope
        u = np.minimum(u + step, u_max)
        if np.all(np.abs(step) <= _INNER_TOL * (1.0 + np.abs(u))):
            break
    return u, slope


def _find_level(
    shares_at: Callable[[float], tuple[np.ndarray, np.ndarray]],
    lo: float,
    hi: float,
    start: float,
    rest: float,
    m: float,
) -> np.ndarray:
    """Find the level ``L`` in ``[lo, hi]`` where ``sum_i max(m, s_i(L)) = rest``.

    ``shares_at(L)`` returns the unfloored shares ``s_i(L)`` (decreasing in ``L``) and
    ``d ln s_i / dL``. Safeguarded Newton on ``ln sum - ln rest``: a Newton step that leaves the
    current bracket is replaced by bisection. The shares above the floor are finally rescaled so
    that the sum is exactly ``rest`` (to rounding).
    """
    level = min(max(start, lo), hi)
    ln_rest = math.log(rest)
    for _ in range(_MAX_OUTER):
        raw, dlog = shares_at(level)
        free = raw > m
        total = float(np.sum(np.where(free, raw, m)))
        gap = math.log(total) - ln_rest if math.isfinite(total) else math.inf
        if abs(gap) <= _OUTER_TOL:
            break
        if gap > 0:
            lo = level
        else:
            hi = level
        if hi - lo <= 4e-16 * max(1.0, abs(level)):
            break
        slope = float(np.sum(raw[free] * dlog[free])) / total if math.isfinite(gap) else 0.0
        candidate = level - gap / slope if slope < 0 else math.nan
        if not lo < candidate < hi:
            candidate = 0.5 * (lo + hi)
        level = candidate
    if not math.isfinite(total):  # stopped on the infeasible side of a collapsed bracket
        raw, _ = shares_at(hi)
        free = raw > m
    if not free.any():
        return np.full(raw.size, rest / raw.size)
    target_free = rest - m * (raw.size - np.count_nonzero(free))
    scaled = raw[free] * (target_free / float(np.sum(raw[free])))
    out = np.full(raw.size, m)
    out[free] = np.maximum(scaled, m)
    return out


def _solve_sum(ln_alpha: np.ndarray, ln_c: np.ndarray, rest: float, m: float) -> np.ndarray:
    """Minimise ``sum c_i / f_i(s_i)`` over ``sum s_i = rest``, ``s_i >= m`` (scaled units)."""
    n = ln_alpha.size
    k = 2.0 * ln_alpha - ln_c  # task i's inner equation: H(u_i) = L + k_i
    # Multipliers -T_i'(equal share) bracket the optimum: at the smallest every task wants at
    # least the equal share, at the largest at most.
    h_eq, _ = _h_log(ln_alpha - math.log(rest / n))
    marginal = h_eq - k
    lo, hi = float(marginal.min()), float(marginal.max())
    if hi - lo <= 4e-16 * max(1.0, abs(hi)):
        return np.full(n, rest / n)
    # Start from the small-x approximation H(u) ~ 2u - ln 2, which gives sum s in closed form.
    w = ln_alpha - 0.5 * (k + _LN2)
    start = 2.0 * (float(np.logaddexp.reduce(w)) - math.log(rest))
    state = {"level": start, "u": 0.5 * (start + k + _LN2), "dh": np.full(n, 2.0)}

    def shares_at(level: float) -> tuple[np.ndarray, np.ndarray]:
        # Warm start: first-order prediction of u from the previous level.
        guess = state["u"] + (level - state["level"]) / state["dh"]
        u, dh = _solve_h(level + k, guess)
        state.update(level=level, u=u, dh=dh)
        return np.exp(ln_alpha - u), -1.0 / dh

    return _find_level(shares_at, lo, hi, start, rest, m)


def _solve_minmax(ln_alpha: np.ndarray, ln_c: np.ndarray, rest: float, m: float) -> np.ndarray:
    """Minimise ``max c_i / f_i(s_i)`` over ``sum s_i = rest``, ``s_i >= m`` (scaled units).

    The common time is parametrised as ``t = t_pole e^delta`` with
    ``t_pole = max_i c_i / alpha_i`` (below it some task cannot finish even with unlimited
    bandwidth) and the level is ``ln delta``. Near the pole the binding task's share behaves
    like ``1 / delta``, so this keeps full relative precision when that task needs almost the
    whole budget, where ``ln t`` itself would be resolved to only a few digits.
    """
    n = ln_alpha.size
    # ln of the time with unlimited bandwidth, c_i / alpha_i, relative to the largest one.
    ln_t_min = ln_c - ln_alpha
    offset = ln_t_min - ln_t_min.max()  # <= 0, exactly 0 for the binding task

    def ln_time(share: float) -> tuple[np.ndarray, np.ndarray]:
        # ln(T_i(s) / t_pole) = offset_i - psi(u_i): time with the same share for every task.
        u = ln_alpha - math.log(share)
        return offset - _psi(u)[0], u

    excess_eq, u_eq = ln_time(rest / n)
    excess_all, _ = ln_time(rest)
    # At the largest equal-share time every task needs at most the equal share; below the
    # smallest one every task needs more, and below T_i(rest) task i needs more than everything.
    hi = float(excess_eq.max())
    lo = max(float(excess_all.max()), float(excess_eq.min()), 1e-300)
    if hi <= lo * (1.0 + 1e-15):
        return np.full(n, rest / n)
    ln_hi = math.log(hi)
    state = {"level": ln_hi, "u": u_eq, "slope": np.ones(n)}

    def shares_at(level: float) -> tuple[np.ndarray, np.ndarray]:
        delta = math.exp(level)
        target = offset - delta  # psi(u_i) = ln(c_i / (alpha_i t)) = ln q_i
        feasible = target < 0
        raw = np.full(n, np.inf)
        dlog = np.full(n, -np.inf)
        if feasible.any():
            tq = target[feasible]
            # ln(1+x)/x <= (1+x)^(-1/2) gives the root's upper bound x <= q^-2 - 1.
            u_max = -2.0 * tq + np.log(-np.expm1(2.0 * tq))
            du = (delta - math.exp(state["level"])) / state["slope"][feasible]
            u, slope = _solve_psi(tq, state["u"][feasible] + du, u_max)
            raw[feasible] = np.exp(ln_alpha[feasible] - u)
            dlog[feasible] = -delta / slope  # d ln s / d ln delta
            state["u"][feasible] = u
            state["slope"][feasible] = slope
        state["level"] = level
        return raw, dlog

    return _find_level(shares_at, math.log(lo), ln_hi, ln_hi, rest, m)


# --------------------------------------------------------------------------------------------
# Proportional fair: maximise sum_i ln r_i(b_i)
# --------------------------------------------------------------------------------------------


def _elasticity(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``ln e(x)`` and ``d ln e / d u`` for ``e(x) = d ln r / d ln b = 1 - x / ((1+x) ln(1+x))``.

    ``e`` is ``-psi'`` of :func:`_psi` (accurate for small ``x``); its log-derivative is
    ``x (x - ln(1+x)) / ((1+x)^2 ln(1+x)^2 e)``, clipped to its range ``[0, 1]`` (it only steers
    Newton's method, whose fixed point does not depend on it).
    """
    _, e = _psi(u)
    x = np.exp(np.minimum(u, 700.0))
    l1 = np.logaddexp(0.0, u)
    with np.errstate(over="ignore", invalid="ignore"):
        de = x * (x - l1) / ((1.0 + x) ** 2 * l1**2 * e)
    de = np.where(np.isfinite(de), de, 0.0)
    return np.log(e), np.clip(de, 0.0, 1.0)


def _solve_pf(ln_alpha: np.ndarray, rest: float, m: float) -> np.ndarray:
    """Maximise ``sum ln f_i(s_i)`` over ``sum s_i = rest``, ``s_i >= m`` (scaled units).

    KKT: ``f_i'(s_i) / f_i(s_i) = lambda``, i.e. ``e(x_i) / s_i = lambda`` with
    ``x_i = alpha_i / s_i = e^{u_i}``: ``G(u_i) = u_i + ln e(e^{u_i}) = ln alpha_i + L``
    (``L = ln lambda``). ``G' = 1 + d ln e / du`` lies in ``[1, 2]``, so Newton's method converges
    for every task at once, as in :func:`_solve_sum`; ``s_i = alpha_i e^{-u_i}`` falls with ``L``.
    """
    n = ln_alpha.size
    # Level at which each task wants exactly the equal share: L_i = ln e(x_eq) - ln(rest / n).
    ln_e_eq, _ = _elasticity(ln_alpha - math.log(rest / n))
    marginal = ln_e_eq - math.log(rest / n)
    lo, hi = float(marginal.min()), float(marginal.max())
    if hi - lo <= 4e-16 * max(1.0, abs(hi)):
        return np.full(n, rest / n)
    state = {"u": ln_alpha - math.log(rest / n)}

    def shares_at(level: float) -> tuple[np.ndarray, np.ndarray]:
        u = state["u"]
        target = ln_alpha + level
        for _ in range(_MAX_INNER):
            ln_e, de = _elasticity(u)
            step = (u + ln_e - target) / (1.0 + de)
            u = u - step
            if np.all(np.abs(step) <= _INNER_TOL * (1.0 + np.abs(u))):
                break
        _, de = _elasticity(u)
        state["u"] = u
        return np.exp(ln_alpha - u), -1.0 / (1.0 + de)

    return _find_level(shares_at, lo, hi, 0.5 * (lo + hi), rest, m)


# --------------------------------------------------------------------------------------------
# Rules that account for time: they may defer tasks (share 0)
# --------------------------------------------------------------------------------------------


def check_rule(rule: str) -> tuple[str, int]:
    """Validate a bandwidth rule name; returns ``(kind, k)``.

    ``kind`` is one of :data:`OBJECTIVES`, ``"completion"`` or ``"srpt"``; ``k`` is the group size
    of ``"srpt-<k>"`` (1 for ``"srpt"``) and 0 otherwise.

    Raises:
        InfeasibleBandwidthError: unknown name (field ``bandwidth``).
    """
    if isinstance(rule, str):
        if rule in OBJECTIVES or rule == "completion":
            return rule, 0
        if rule == "srpt":
            return "srpt", 1
        if rule.startswith("srpt-") and rule[5:].isdigit() and int(rule[5:]) >= 1:
            return "srpt", int(rule[5:])
    raise InfeasibleBandwidthError(
        f"unknown rule {rule!r}; use one of {', '.join(BANDWIDTH_RULES)} (or srpt-<k>, k >= 1)",
        field="bandwidth",
    )


def rule_defers(rule: str) -> bool:
    """Whether ``rule`` may give some tasks no bandwidth (to be deferred to a later epoch)."""
    return check_rule(rule)[0] in ("srpt", "completion")


def allocate_rule(
    rule: str,
    input_bits: ArrayLike,
    snr_per_hz: ArrayLike,
    budget_hz: float,
    min_hz: float = 0.0,
    epoch_s: float = 0.0,
    held_release_s: ArrayLike = (),
    held_hz: ArrayLike = (),
) -> np.ndarray:
    """Shares of the epoch's uplink budget by a named rule (0 = the task waits for bandwidth).

    Rules (all evaluate only the epoch's tasks; ``T_i(b)`` is task ``i``'s upload time with
    ``b`` Hz on the current channel and the "SPT order" sorts tasks by ``T_i(B)``, their upload
    time alone on the whole budget, ties by position):

    * ``"sum"``, ``"minmax"``, ``"equal"``, ``"pf"``: :func:`allocate_bandwidth` with that
      objective; every task gets a share.
    * ``"srpt-<k>"`` (``"srpt"`` = ``"srpt-1"``): smallest upload first, in groups. The ``k``
      first tasks of the SPT order (at most ``B / min_hz``) get ``B / k`` each; the others get 0
      and wait. *Why deferral:* a share is fixed until its upload ends (``preallocated``), so
      "the whole band to the shortest upload, then to the next" can only be realised by
      admitting the first ``k`` now and leaving the rest to a later epoch, which sees the
      bandwidth they release (the engine offers a later epoch only the free bandwidth and defers
      tasks whose server is :data:`mecsim.state.DEFER`). With zero-length epochs the next task
      starts the instant a group member finishes, so ``srpt`` is exactly sequential SPT.
    * ``"completion"``: minimises the epoch's *sum of completion times, counting the tasks left
      waiting for bandwidth*, in this fluid "lane" model of preallocation
      (:func:`lane_completion_times`): the admitted tasks ``A`` hold their shares ``b_l`` until
      their uploads end, and so do the uploads of earlier epochs (lanes ``held_hz`` freeing up
      ``held_release_s`` from now, if the caller knows them: see :class:`HeldBandwidth`); each
      waiting task, in SPT order, takes the lane on which it would finish first, when it frees
      up (at once, or at the next epoch boundary when ``epoch_s > 0``), and holds it until its
      own upload ends. The rule searches ``A`` = the first ``k`` tasks of the SPT order (every
      ``k <= 8``, then ``k`` on a geometric grid of ratio 1.5 up to ``n``), each with the
      ``"sum"`` shares and with equal shares on ``A`` (and, with held lanes and
      ``epoch_s > 0``, deferring every task, the free budget then being a lane at the next
      epoch), and returns the candidate of least modelled total (ties: the larger ``k``).
      ``k = n`` with ``"sum"`` shares is the ``"sum"`` rule and ``k = 1`` is ``"srpt"``, so in the
      model it is never worse than either. Cost: ``O(n^2 m)`` for ``m`` lanes plus
      ``O(8 + log n)`` KKT solves (about 10 ms for 5 tasks, 55 ms for 60). It sees only the
      tasks already waiting, not those still to arrive.

    Args:
        rule: a name from :data:`BANDWIDTH_RULES` or ``"srpt-<k>"``.
        input_bits, snr_per_hz, budget_hz, min_hz: as in :func:`allocate_bandwidth`.
        epoch_s: epoch length assumed by ``"completion"`` for the reuse of released shares
            (0: at once).
        held_release_s, held_hz: bandwidth held by earlier uploads, as lanes (``"completion"``
            only): when each frees up (s from now) and its width (Hz).

    Returns:
        Shares (Hz), shape ``(n,)``: each 0 (deferred) or ``>= min_hz``; the positive ones sum
        to the budget (to rounding). At least one task gets a share when ``n > 0`` and
        ``B >= min_hz``.

    Raises:
        InfeasibleBandwidthError: as :func:`allocate_bandwidth`, or an unknown rule.

    Example:
        >>> import numpy as np
        >>> from mecsim.decision.bandwidth import allocate_rule
        >>> bits, snr = np.array([4e6, 1e6, 2e6]), np.full(3, 1e9)
        >>> (allocate_rule("srpt", bits, snr, 5e6) / 1e6).tolist()   # MHz: shortest first
        [0.0, 5.0, 0.0]
        >>> (allocate_rule("srpt-2", bits, snr, 5e6) / 1e6).tolist()
        [0.0, 2.5, 2.5]
    """
    kind, k = check_rule(rule)
    if kind in OBJECTIVES:
        return allocate_bandwidth(input_bits, snr_per_hz, budget_hz, min_hz, kind)
    d = _vector(input_bits, "input_bits")
    a = _vector(snr_per_hz, "snr_per_hz")
    if d.shape != a.shape:
        raise InfeasibleBandwidthError(
            f"input_bits has {d.size} entries but snr_per_hz has {a.size}", field="snr_per_hz"
        )
    budget = _scalar(budget_hz, "budget_hz")
    floor = _scalar(min_hz, "min_hz")
    epoch = _scalar(epoch_s, "epoch_s")
    n = d.size
    if n == 0:
        return np.zeros(0)
    if floor > budget * (1.0 + _FLOOR_SLACK):
        raise InfeasibleBandwidthError(
            f"min_hz={floor} Hz is more than the budget budget_hz={budget} Hz", field="min_hz"
        )
    cap = n if floor == 0.0 else max(1, min(n, int(budget / floor * (1.0 + _FLOOR_SLACK))))
    if kind == "srpt":
        order = _spt_order(d, a, budget) if n > 1 else np.zeros(1, dtype=np.intp)
        g = min(k, cap)
        out = np.zeros(n)
        out[order[:g]] = budget / g
        return out
    rel = _nonnegative(held_release_s, "held_release_s").reshape(-1)
    held = _nonnegative(held_hz, "held_hz").reshape(-1)
    if rel.shape != held.shape:
        raise InfeasibleBandwidthError(
            f"held_release_s has {rel.size} entries but held_hz has {held.size}", field="held_hz"
        )
    if n < _small.SMALL_N:  # the same computation on Python floats, bit for bit (bandwidth_small)
        dl, al = d.tolist(), a.tolist()
        order_l = _small.spt_order(dl, al, budget) if n > 1 else [0]
        shares = _small.completion(dl, al, budget, floor, order_l, cap, epoch, rel.tolist(), held.tolist())
        return np.array(shares, dtype=float)
    order = _spt_order(d, a, budget)
    return _completion(d, a, budget, floor, order, cap, epoch, rel, held)


def spt_order(input_bits: np.ndarray, snr_per_hz: np.ndarray, budget_hz: float) -> np.ndarray:
    """Tasks sorted by their upload time alone on the whole budget (stable: ties by position)."""
    d = _nonnegative(input_bits, "input_bits")
    a = _nonnegative(snr_per_hz, "snr_per_hz")
    return _spt_order(d, a, _scalar(budget_hz, "budget_hz"))


def _spt_order(d: np.ndarray, a: np.ndarray, budget: float) -> np.ndarray:
    """:func:`spt_order` of checked inputs."""
    alone = _upload_times(d, a, np.full(d.shape, float(budget)))
    return np.argsort(alone, kind="stable")


def lane_completion_times(
    input_bits: np.ndarray,
    snr_per_hz: np.ndarray,
    admitted: np.ndarray,
    shares: np.ndarray,
    waiting: np.ndarray,
    epoch_s: float = 0.0,
    held_release_s: ArrayLike = (),
    held_hz: ArrayLike = (),
) -> np.ndarray:
    """Completion times in the lane model of the ``"completion"`` rule (all tasks present at 0).

    Lanes are shares of the band held whole until the upload on them ends: task
    ``admitted[l]`` starts at 0 on a lane of ``shares[l]`` Hz, and bandwidth still held by
    earlier uploads forms lanes of ``held_hz[h]`` Hz that free up at ``held_release_s[h]``.
    The ``waiting`` tasks, in the given order, each take the lane on which they would finish
    first, starting when it frees up (rounded up to a multiple of ``epoch_s`` when positive:
    released bandwidth waits for the next epoch), and hold it until their upload ends.

    Returns:
        Completion time of every task, indexed like ``input_bits`` (``nan`` for tasks in neither
        list).
    """
    return _lane_completion_times(
        _nonnegative(input_bits, "input_bits"),
        _nonnegative(snr_per_hz, "snr_per_hz"),
        np.asarray(admitted, dtype=np.int64),
        _nonnegative(shares, "bandwidth_hz").reshape(-1),
        np.asarray(waiting, dtype=np.int64),
        float(epoch_s),
        np.asarray(held_release_s, dtype=float).reshape(-1),
        _nonnegative(held_hz, "held_hz").reshape(-1),
    )


def _lane_completion_times(
    input_bits: np.ndarray,
    snr_per_hz: np.ndarray,
    admitted: np.ndarray,
    shares: np.ndarray,
    waiting: np.ndarray,
    epoch_s: float,
    held_release_s: np.ndarray,
    held_hz: np.ndarray,
) -> np.ndarray:
    """:func:`lane_completion_times` of checked float arrays."""
    out = np.full(input_bits.shape, np.nan)
    first = _upload_times(input_bits[admitted], snr_per_hz[admitted], shares)
    out[admitted] = first
    if waiting.size == 0:
        return out
    lane_hz = np.concatenate([shares, held_hz])
    free = np.concatenate([first, held_release_s])
    if lane_hz.size == 0:
        return out
    # Upload time of every waiting task on every lane, vectorised: (n_waiting, n_lanes).
    times = _upload_times(input_bits[waiting][:, None], snr_per_hz[waiting][:, None], lane_hz[None, :])
    done = np.empty(waiting.size)
    for row in range(waiting.size):
        start = free
        if epoch_s > 0:
            start = np.where(np.isfinite(free), np.ceil(free / epoch_s - 1e-9) * epoch_s, free)
        finish = start + times[row]
        lane = int(np.argmin(finish))
        done[row] = finish[lane]
        free = free.copy()
        free[lane] = finish[lane]
    out[waiting] = done
    return out


def _group_sizes(cap: int) -> list[int]:
    """Admission sizes the ``"completion"`` rule tries, largest first: every ``k <= 8``, then a
    geometric grid (ratio 1.5) up to ``cap``, which is always included."""
    sizes = set(range(1, min(cap, 8) + 1))
    k = 8.0
    while k < cap:
        k *= 1.5
        sizes.add(min(cap, int(round(k))))
    sizes.add(cap)
    return sorted(sizes, reverse=True)


def _completion(
    d: np.ndarray,
    a: np.ndarray,
    budget: float,
    floor: float,
    order: np.ndarray,
    cap: int,
    epoch: float,
    held_release: np.ndarray,
    held_hz: np.ndarray,
) -> np.ndarray:
    n = d.size
    deferring = bool(held_hz.size) and epoch > 0  # the defer-everybody candidate is tried
    if n == 1 and not deferring:
        # One candidate only (k = 1, the whole budget), taken whatever its modelled total.
        return np.array([max(budget, floor)])
    best_total, best = math.inf, np.zeros(n)
    for k in _group_sizes(cap):
        admitted, waiting = order[:k], order[k:]
        for objective in ("sum", "equal"):
            shares = _allocate(d[admitted], a[admitted], budget, floor, objective)
            ends = _lane_completion_times(d, a, admitted, shares, waiting, epoch, held_release, held_hz)
            total = float(np.sum(ends))
            # nan/inf totals (a task that can never upload) compare false: kept only if first.
            if total < best_total or (best_total == math.inf and not best.any()):
                best_total = total
                best = np.zeros(n)
                best[admitted] = shares
            if k == 1:
                break  # one task: both objectives give it the whole budget
    if deferring:
        # Defer everybody: the free budget becomes a lane at the next epoch, next to the held
        # ones (worth it when a large share frees up soon and the free budget is a sliver).
        lanes_at = np.concatenate([[epoch], held_release])
        lanes_hz = np.concatenate([[budget], held_hz])
        empty = np.zeros(0, dtype=np.int64)
        total = float(
            np.sum(_lane_completion_times(d, a, empty, np.zeros(0), order, epoch, lanes_at, lanes_hz))
        )
        if total < best_total:
            return np.zeros(n)
    return best


# --------------------------------------------------------------------------------------------
# References: the engine's preallocated semantics in a fluid model, and an exact lower bound
# --------------------------------------------------------------------------------------------


def simulate_preallocated(
    rule: str | Callable[[np.ndarray, np.ndarray, float, float], np.ndarray],
    input_bits: ArrayLike,
    snr_per_hz: ArrayLike,
    budget_hz: float,
    min_hz: float = 0.0,
    epoch_s: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run a rule the way the engine does, on a static channel with every task present at 0.

    At each decision time (0, then the first epoch boundary at or after an upload ends; with
    ``epoch_s = 0`` the instant it ends), the waiting tasks, oldest (lowest index) first and at
    most ``free / min_hz`` of them, get shares of the *free* bandwidth from the rule; a task
    with share 0 keeps waiting; a share is held until the upload ends (``preallocated``). This
    mirrors the engine's admission (``Simulation._admit``) without fading, backhaul or servers.

    Args:
        rule: a rule name for :func:`allocate_rule`, or a callable
            ``f(bits, snr, budget, min_hz) -> shares`` (e.g. a deliberately bad rule in tests).
        input_bits, snr_per_hz, budget_hz, min_hz: as in :func:`allocate_bandwidth`.
        epoch_s: epoch length (0: decide whenever an upload ends).

    Returns:
        ``(start, end, share)`` per task: upload start and end times (s) and the share (Hz).

    Raises:
        InfeasibleBandwidthError: bad input, or the rule leaves every task waiting while
            bandwidth is free (it would never finish).
    """
    d = _vector(input_bits, "input_bits")
    a = _vector(snr_per_hz, "snr_per_hz")
    budget = _scalar(budget_hz, "budget_hz")
    floor = _scalar(min_hz, "min_hz")
    epoch = _scalar(epoch_s, "epoch_s")
    if callable(rule):
        fn = rule
    else:
        check_rule(rule)

        def fn(bits: np.ndarray, snr: np.ndarray, free: float, lo: float) -> np.ndarray:
            return allocate_rule(rule, bits, snr, free, lo, epoch)

    n = d.size
    start = np.full(n, np.nan)
    end = np.full(n, np.nan)
    share = np.zeros(n)
    waiting = list(range(n))
    running: list[int] = []
    now = 0.0
    while waiting:
        running = [i for i in running if end[i] > now * (1 + 1e-15)]
        free = budget - float(share[running].sum()) if running else budget
        k = len(waiting) if floor == 0.0 else min(len(waiting), int(free / floor * (1 + 1e-12)))
        if k > 0:
            ids = np.array(waiting[:k])
            b = np.asarray(fn(d[ids], a[ids], free, floor), dtype=float)
            go = b > 0
            if not go.any() and not running:
                raise InfeasibleBandwidthError(
                    f"the rule left all {k} tasks waiting with {free:g} Hz free", field="bandwidth"
                )
            sel = ids[go]
            share[sel] = b[go]
            start[sel] = now
            end[sel] = now + upload_times(d[sel], a[sel], b[go])
            running += sel.tolist()
            started = set(sel.tolist())
            waiting = [i for i in waiting if i not in started]
        if not waiting:
            break
        nxt = min(end[i] for i in running)
        if not math.isfinite(nxt):
            raise InfeasibleBandwidthError("an upload can never finish (snr_per_hz = 0)", field="snr_per_hz")
        now = math.ceil(nxt / epoch - 1e-9) * epoch if epoch > 0 else nxt
        now = max(now, nxt)
    return start, end, share


def completion_lower_bound(
    input_bits: ArrayLike, snr_per_hz: ArrayLike, budget_hz: float, max_tasks: int = 5
) -> tuple[float, tuple[int, ...]]:
    """Least sum of upload completion times of n uploads present at 0, bandwidth reassignable.

    The *reallocated* fluid problem: shares ``b_i(t) >= 0`` with ``sum_i b_i(t) <= B`` may change
    at any instant; task ``i`` completes when ``integral r_i(b_i(t)) dt = D_i``. Every
    preallocated schedule (of any rule, with any admission) is feasible here, so its optimum is
    a lower bound on every rule's total completion time.

    Exact by enumeration: fix the completion order ``pi``. Between consecutive completions
    (phase ``k``, length ``tau_k``) the active set is fixed, and constant shares are optimal
    there (``r_i`` is concave: replacing ``b_i(t)`` by its phase average loses no bits, Jensen).
    With bandwidth-time ``w_ik = tau_k b_ik`` the bits of task ``i`` in phase ``k`` are
    ``w_ik log2(1 + a_i tau_k / w_ik)``, the perspective of a concave function, hence jointly
    concave in ``(tau, w)``. So for each order the problem

        minimise  sum_k (n - k + 1) tau_k
        s.t.      sum_{k <= pos(i)} w_ik log2(1 + a_i tau_k / w_ik) >= D_i,   sum_i w_ik <= B tau_k

    is convex; it is solved by SLSQP (scipy; a local optimum of a convex program is global)
    from the feasible sequential-SPT point of that order, whose last iterate is repaired into a
    feasible point (phase lengths raised to their bandwidth-time, then ``(tau, w)`` scaled up,
    which the degree-1 homogeneity allows; a repair above 1e-6 is an error). The value is
    therefore attained by a real schedule and exceeds the true optimum by at most the solver's
    tolerance (``ftol = 1e-12``). The least over the ``n!`` orders is returned with its order.

    Args:
        input_bits, snr_per_hz, budget_hz: as in :func:`allocate_bandwidth`; all ``D_i, a_i > 0``.
        max_tasks: refuse more tasks than this (``n!`` convex programs).

    Returns:
        ``(total, order)``: the least total completion time (s) and the completion order.

    Raises:
        InfeasibleBandwidthError: bad input, a zero size or SNR, or more than ``max_tasks``.
    """
    import itertools

    from scipy.optimize import minimize

    d = _vector(input_bits, "input_bits")
    a = _vector(snr_per_hz, "snr_per_hz")
    budget = _scalar(budget_hz, "budget_hz")
    n = d.size
    if n > max_tasks:
        raise InfeasibleBandwidthError(f"{n} tasks is more than max_tasks={max_tasks}", field="input_bits")
    if n == 0:
        return 0.0, ()
    if (d <= 0).any() or (a <= 0).any() or budget <= 0:
        raise InfeasibleBandwidthError("sizes, SNRs and the budget must be > 0", field="input_bits")
    alone = upload_times(d, a, np.full(n, budget))
    scale = float(alone.max())  # time unit: keeps the variables near 1
    c = d / (budget * scale)  # bits in units of B * scale
    alpha = a / budget  # SNR per unit of the (scaled) budget
    # Variables: tau_1..tau_n, then w for each (position p, phase k <= p): the task at
    # position p of the order is active in phases 0..p.
    pos = np.array([p for p in range(n) for _ in range(p + 1)])
    phase = np.array([k for p in range(n) for k in range(p + 1)])
    nw = pos.size
    nv = n + nw
    weights = np.arange(n, 0, -1, dtype=float)  # phase k delays the n - k tasks still active
    grad = np.concatenate([weights, np.zeros(nw)])
    band_jac = np.zeros((n, nv))
    band_jac[np.arange(n), np.arange(n)] = 1.0
    band_jac[phase, n + np.arange(nw)] = -1.0
    rows = np.arange(nw)
    best: tuple[float, tuple[int, ...]] = (math.inf, ())
    for order in itertools.permutations(range(n)):
        ca = c[list(order)]
        aa = alpha[list(order)][pos]  # per (p, k) pair

        def bits(x: np.ndarray, ca: np.ndarray = ca, aa: np.ndarray = aa) -> np.ndarray:
            w = x[n:]
            got = w * np.log1p(aa * x[phase] / w) / _LN2
            return np.bincount(pos, got, minlength=n) - ca

        def bits_jac(x: np.ndarray, aa: np.ndarray = aa) -> np.ndarray:
            w = x[n:]
            z = aa * x[phase] / w
            jac = np.zeros((n, nv))
            jac[pos, n + rows] = (np.log1p(z) - z / (1.0 + z)) / _LN2
            np.add.at(jac, (pos, phase), aa / (1.0 + z) / _LN2)
            return jac

        # Start: sequential SPT in this order (feasible), others a sliver of bandwidth-time.
        times = ca / np.log2(1.0 + alpha[list(order)])  # alone on the whole budget (share 1)
        x0 = np.concatenate([times, np.full(nw, 1e-6)])
        own = pos == phase
        x0[n:][own] = times * (1.0 - 1e-6 * np.arange(n))
        res = minimize(
            lambda x: float(weights @ x[:n]),
            x0,
            jac=lambda x: grad,
            method="SLSQP",
            bounds=[(1e-12, None)] * nv,
            constraints=[
                {"type": "ineq", "fun": bits, "jac": bits_jac},
                {"type": "ineq", "fun": lambda x: band_jac @ x, "jac": lambda x: band_jac},
            ],
            options={"ftol": 1e-12, "maxiter": 500},
        )
        x = res.x.copy()
        # Repair SLSQP's last point into a feasible one (so the value is attained): give each
        # phase the time its bandwidth-time needs, then scale (tau, w) up; the bits are
        # homogeneous of degree 1 in (tau, w) and the budget constraint is scale-free.
        for k in range(n):
            x[k] = max(x[k], float(-(band_jac[k, n:] @ x[n:])))
        factor = float(np.max(ca / (bits(x) + ca)))
        if not (res.success or factor < 1.0 + 1e-6) or not 0.0 < factor < 1.0 + 1e-6:
            raise InfeasibleBandwidthError(
                f"SLSQP did not converge for order {order} ({res.message}; repair factor {factor:.3g})",
                field="input_bits",
            )
        x *= max(factor, 1.0)
        total = float(weights @ x[:n]) * scale
        if total < best[0]:
            best = (total, tuple(int(i) for i in order))
    return best


class HeldBandwidth:
    """A policy's own record of the shares it handed out, and when it expects them back.

    The epoch state says only how much bandwidth is free, not who holds the rest or until when;
    the ``"completion"`` rule needs the latter to weigh "a sliver now" against "a large share
    that frees up soon". A policy records each share with the expected end of its upload
    (:meth:`add`) and asks for the held lanes at the next epoch (:meth:`lanes`), which
    reconciles the record with the engine's free budget: when less is held than recorded, the
    shares expected to end first are taken as returned; a share held past its expected end is
    expected back at once (the next epoch).

    Args:
        total_hz: the uplink budget ``B``.
    """

    def __init__(self, total_hz: float) -> None:
        self.total_hz = float(total_hz)
        self.end = np.zeros(0)
        self.hz = np.zeros(0)

    def add(self, now: float, upload_s: np.ndarray, hz: np.ndarray) -> None:
        """Record shares ``hz`` handed out at ``now`` for uploads expected to take ``upload_s``."""
        go = np.asarray(hz) > 0
        self.end = np.concatenate([self.end, now + np.asarray(upload_s, dtype=float)[go]])
        self.hz = np.concatenate([self.hz, np.asarray(hz, dtype=float)[go]])

    def lanes(self, now: float, free_hz: float) -> tuple[np.ndarray, np.ndarray]:
        """Held lanes ``(release time from now, Hz)`` consistent with ``free_hz`` being free."""
        held = max(self.total_hz - float(free_hz), 0.0)
        if self.end.size < 16:
            few = self._lanes_few(now, held)
            if few is not None:
                return few
        order = np.argsort(self.end, kind="stable")
        end, hz = self.end[order], self.hz[order]
        # Keep the latest-ending shares that fit in what the engine says is held.
        keep_from = 0
        tail = np.cumsum(hz[::-1])[::-1]  # hz held by shares k.. (latest-ending)
        while keep_from < hz.size and tail[keep_from] > held * (1 + 1e-9) + 1e-6:
            keep_from += 1
        self.end, self.hz = end[keep_from:], hz[keep_from:]
        return np.maximum(self.end - now, 0.0), self.hz.copy()

    def _lanes_few(self, now: float, held: float) -> tuple[np.ndarray, np.ndarray] | None:
        """:meth:`lanes` of a few shares on Python lists, the same floats (a stable sort by end,
        the tail sums added from the latest-ending share on, as ``cumsum`` does); None if an end
        is nan (Python's sort does not place it as numpy's does)."""
        end, hz = self.end.tolist(), self.hz.tolist()
        if any(v != v for v in end):
            return None
        order = sorted(range(len(end)), key=end.__getitem__)
        end = [end[i] for i in order]
        hz = [hz[i] for i in order]
        tail = [0.0] * len(hz)
        acc = 0.0
        for k in range(len(hz) - 1, -1, -1):
            acc += hz[k]
            tail[k] = acc
        keep_from = 0
        while keep_from < len(hz) and tail[keep_from] > held * (1 + 1e-9) + 1e-6:
            keep_from += 1
        self.end = np.array(end[keep_from:], dtype=float)
        self.hz = np.array(hz[keep_from:], dtype=float)
        return np.maximum(self.end - now, 0.0), self.hz.copy()


# The small-task twin of the "completion" rule reads this module's constants and functions, so it
# is imported once they exist.
from mecsim.decision import bandwidth_small as _small  # noqa: E402
