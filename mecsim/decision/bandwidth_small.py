"""The ``"completion"`` bandwidth rule for fewer than 8 tasks on Python floats, bit for bit.

:func:`mecsim.decision.bandwidth.allocate_rule` with ``"completion"`` solves a few tiny KKT
systems per epoch (2 to 7 tasks on ``paper-medium-v1``), and with numpy every one of the dozens
of operations of a Newton step costs about a microsecond whatever the size. This module repeats
:func:`~mecsim.decision.bandwidth._completion` and what it calls (``_allocate`` with the
``"sum"`` and ``"equal"`` objectives, ``_solve_sum``, ``_find_level``, ``_solve_h``,
``_h_log``, ``_upload_times``, ``_lane_completion_times``, ``_spt_order``) element by element
on Python floats, in the same operations and the same order, so that it returns the same bits:

* ``+ - * /`` are correctly rounded in IEEE arithmetic, in Python as in numpy's loops;
* numpy sums fewer than 8 contiguous values one after the other (its pairwise summation only
  splits longer arrays), which :func:`_sum` does; hence the limit :data:`SMALL_N`;
* numpy's ``exp``, ``log`` and ``log1p`` may differ from the C library's (Python's ``math``) in
  the last bit (numpy uses its own SIMD versions where the CPU has them, e.g. AVX-512), so they
  are still computed by numpy, several values per call (:func:`_np`); ``logaddexp`` is numpy's
  formula on the C library's ``exp`` and ``log1p``, which :func:`_logaddexp` repeats.

tests/test_bandwidth_small.py compares every function here with its numpy original for
equality of the bits on random and edge-case inputs. On ``paper-medium-v1`` with ``qubo-sa`` the
rule takes about a quarter of the time it takes with numpy.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from mecsim.decision import bandwidth as _bw

#: Tasks below which the rule runs here: numpy's sums of fewer than 8 values are sequential.
SMALL_N = 8

_INF = math.inf
_LN2 = _bw._LN2
_LN_LN2 = math.log(_bw._LN2)
_LOGE2 = math.log(2.0)  # numpy's NPY_LOGE2, the same double
_G = _bw._G_SERIES.tolist()  # the Horner coefficients of _h_log, highest power first
_G0, _G_REST = _G[0], _G[1:]
_DH_MIN, _DH_MAX = _bw._DH_MIN, _bw._DH_MAX
_INNER_TOL, _MAX_INNER = _bw._INNER_TOL, _bw._MAX_INNER
_exp, _log1p = math.exp, math.log1p
_NP_EXP, _NP_LOG, _array = np.exp, np.log, np.array


def _np(f: Callable[[np.ndarray], np.ndarray], xs: list[float]) -> list[float]:
    """numpy's ``f`` of each value (one call for all of them)."""
    return f(np.array(xs, dtype=float)).tolist()


def _logaddexp(x: float, y: float) -> float:
    """``np.logaddexp(x, y)``: numpy's formula (``npy_logaddexp``) on the C library's exp and
    log1p, which are also Python's."""
    if x == y:
        return x + _LOGE2
    t = x - y
    if t > 0:
        return x + math.log1p(math.exp(-t))
    if t <= 0:
        return y + math.log1p(math.exp(t))
    return t  # nan


def _sum(xs: list[float]) -> float:
    """``np.sum`` of fewer than 8 values: one after the other (not ``sum()``, which is
    compensated from Python 3.12 on)."""
    total = 0.0
    for x in xs:
        total += x
    return total


def _min(xs: list[float]) -> float:
    """``np.min``: nan if any value is nan."""
    return math.nan if any(x != x for x in xs) else min(xs)


def _max(xs: list[float]) -> float:
    """``np.max``: nan if any value is nan."""
    return math.nan if any(x != x for x in xs) else max(xs)


def _maximum(x: float, y: float) -> float:
    """``np.maximum(x, y)`` for a number ``y``: nan when ``x`` is nan."""
    return x if (x >= y or x != x) else y


def _argmin(xs: list[float]) -> int:
    """``np.argmin``: the first least value, or the first nan."""
    best, low = 0, xs[0]
    if low != low:
        return 0
    for j in range(1, len(xs)):
        v = xs[j]
        if v != v:
            return j
        if v < low:
            best, low = j, v
    return best


# --------------------------------------------------------------------------------------------
# The KKT solver of the "sum" objective (bandwidth._h_log, _solve_h, _find_level, _solve_sum)
# --------------------------------------------------------------------------------------------


def _h_log(u: list[float]) -> tuple[list[float], list[float]]:
    """:func:`mecsim.decision.bandwidth._h_log` (with its ``_ln_log1p_exp``) of each value."""
    n = len(u)
    l1: list[float] = []
    ln_y: list[float] = []
    tiny = False
    for v in u:
        # _logaddexp(0.0, v): 0.0 - v is exactly -v, and 0.0 + r is r for r >= 0
        if v < 0.0:
            w = _log1p(_exp(v))
            tiny = tiny or v < -30.0
        elif v > 0.0:
            w = v + _log1p(_exp(-v))
        elif v == 0.0:
            w = _LOGE2
        else:
            w = v  # nan
        l1.append(w)
        ln_y.append(v - w)
    if tiny:
        return _h_log_tiny(u, l1, ln_y)
    y = _NP_EXP(_array(ln_y)).tolist()
    args = []
    for i in range(n):
        yi = y[i]
        if yi < 0.1:  # ln g by its series (Horner, highest power first)
            acc = _G0
            for c in _G_REST:
                acc = acc * yi + c
            args.append(acc)
        else:
            args.append(l1[i] - yi)
    logs = _NP_LOG(_array(args + l1)).tolist()  # ln g (or ln of the series), then ln ln(1 + x)
    h: list[float] = []
    ea: list[float] = []
    eb: list[float] = []
    for i in range(n):
        ly, lg, ll1 = ln_y[i], logs[i], logs[n + i]
        if y[i] < 0.1:
            lg = 2.0 * ly + lg
        h.append(2.0 * u[i] + lg - 2.0 * ll1)
        ea.append(2.0 * ly - lg)
        eb.append(ly - ll1)
    e = _NP_EXP(_array(ea + eb)).tolist()
    dh: list[float] = []
    for i in range(n):
        d = 2.0 + e[i] - 2.0 * e[n + i]
        dh.append(_DH_MIN if d < _DH_MIN else (_DH_MAX if d > _DH_MAX else d))
    return h, dh


def _h_log_tiny(u: list[float], l1: list[float], ln_y: list[float]) -> tuple[list[float], list[float]]:
    """:func:`_h_log` when some ``u < -30`` (``ln ln(1 + x)`` by ``u - x / 2`` there)."""
    n = len(u)
    tiny = [i for i in range(n) if u[i] < -30.0]
    ex = _np(np.exp, ln_y + [u[i] for i in tiny])
    y = ex[:n]
    small = [v < 0.1 for v in y]
    args = []
    for i in range(n):
        if small[i]:
            acc = _G0
            yi = y[i]
            for c in _G_REST:
                acc = acc * yi + c
            args.append(acc)
        else:
            args.append(l1[i] - y[i])
    is_tiny = set(tiny)
    logs = _np(np.log, args + [l1[i] for i in range(n) if i not in is_tiny])
    rest = iter(logs[n:])
    tiny_exp = iter(ex[n:])
    ln_l1 = [u[i] - 0.5 * next(tiny_exp) if i in is_tiny else next(rest) for i in range(n)]
    ln_g = [2.0 * ln_y[i] + logs[i] if small[i] else logs[i] for i in range(n)]
    h = [2.0 * u[i] + ln_g[i] - 2.0 * ln_l1[i] for i in range(n)]
    e = _np(np.exp, [2.0 * ln_y[i] - ln_g[i] for i in range(n)] + [ln_y[i] - ln_l1[i] for i in range(n)])
    dh = []
    for i in range(n):
        d = 2.0 + e[i] - 2.0 * e[n + i]
        dh.append(_DH_MIN if d < _DH_MIN else (_DH_MAX if d > _DH_MAX else d))
    return h, dh


def _solve_h(target: list[float], u: list[float]) -> tuple[list[float], list[float]]:
    """:func:`mecsim.decision.bandwidth._solve_h`."""
    tol = _INNER_TOL
    for _ in range(_MAX_INNER):
        h, dh = _h_log(u)
        new: list[float] = []
        done = True
        for a, t, d, v in zip(h, target, dh, u, strict=True):
            step = (a - t) / d
            w = v - step
            new.append(w)
            if done and not abs(step) <= tol * (1.0 + abs(w)):
                done = False
        u = new
        if done:
            break
    return u, dh


def _find_level(
    shares_at: Callable[[float], tuple[list[float], list[float]]],
    lo: float,
    hi: float,
    start: float,
    rest: float,
    m: float,
) -> list[float]:
    """:func:`mecsim.decision.bandwidth._find_level`."""
    level = min(max(start, lo), hi)
    ln_rest = math.log(rest)
    for _ in range(_bw._MAX_OUTER):
        raw, dlog = shares_at(level)
        total = _sum([r if r > m else m for r in raw])
        gap = math.log(total) - ln_rest if math.isfinite(total) else math.inf
        if abs(gap) <= _bw._OUTER_TOL:
            break
        if gap > 0:
            lo = level
        else:
            hi = level
        if hi - lo <= 4e-16 * max(1.0, abs(level)):
            break
        if math.isfinite(gap):
            slope = _sum([r * d for r, d in zip(raw, dlog, strict=True) if r > m]) / total
        else:
            slope = 0.0
        candidate = level - gap / slope if slope < 0 else math.nan
        if not lo < candidate < hi:
            candidate = 0.5 * (lo + hi)
        level = candidate
    if not math.isfinite(total):
        raw, _ = shares_at(hi)
    n = len(raw)
    free = [r for r in raw if r > m]
    if not free:
        return [rest / n] * n
    factor = (rest - m * (n - len(free))) / _sum(free)
    return [_maximum(r * factor, m) if r > m else m for r in raw]


def _solve_sum(ln_alpha: list[float], ln_c: list[float], rest: float, m: float) -> list[float]:
    """:func:`mecsim.decision.bandwidth._solve_sum`."""
    n = len(ln_alpha)
    k = [2.0 * a - c for a, c in zip(ln_alpha, ln_c, strict=True)]
    ln_eq = math.log(rest / n)
    h_eq, _ = _h_log([a - ln_eq for a in ln_alpha])
    marginal = [h - kk for h, kk in zip(h_eq, k, strict=True)]
    lo, hi = _min(marginal), _max(marginal)
    if hi - lo <= 4e-16 * max(1.0, abs(hi)):
        return [rest / n] * n
    w = [a - 0.5 * (kk + _LN2) for a, kk in zip(ln_alpha, k, strict=True)]
    acc = w[0]
    for v in w[1:]:
        acc = _logaddexp(acc, v)
    start = 2.0 * (acc - math.log(rest))
    state = [start, [0.5 * (start + kk + _LN2) for kk in k], [2.0] * n]

    def shares_at(level: float) -> tuple[list[float], list[float]]:
        move = level - state[0]
        guess = [v + move / d for v, d in zip(state[1], state[2], strict=True)]
        u, dh = _solve_h([level + kk for kk in k], guess)
        state[0], state[1], state[2] = level, u, dh
        return _np(np.exp, [a - v for a, v in zip(ln_alpha, u, strict=True)]), [-1.0 / d for d in dh]

    return _find_level(shares_at, lo, hi, start, rest, m)


def _allocate(d: list[float], a: list[float], budget: float, floor: float, objective: str) -> list[float]:
    """:func:`mecsim.decision.bandwidth._allocate` with the ``"sum"`` or ``"equal"`` objective."""
    n = len(d)
    if n == 0:
        return []
    if floor * n > budget * (1.0 + _bw._FLOOR_SLACK):  # infeasible: the original says why
        return _bw._allocate(np.array(d), np.array(a), budget, floor, objective).tolist()
    if n == 1:
        return [max(budget, floor)]
    if floor * n >= budget * (1.0 - _bw._FLOOR_SLACK):
        return [max(floor, budget / n)] * n
    if objective == "equal" or budget == 0.0:
        return [budget / n] * n
    active = [i for i in range(n) if d[i] > 0 and a[i] > 0]
    n_active = len(active)
    if n_active == 0:
        return [budget / n] * n
    m = floor / budget
    rest = 1.0 - m * (n - n_active)
    shares = [m] * n
    logs = _np(np.log, [a[i] for i in active] + [d[i] for i in active])
    ln_budget = math.log(budget)
    if n_active == 1:
        shares[active[0]] = rest
    else:
        ln_alpha = [v - ln_budget for v in logs[:n_active]]
        ln_c = [v + _LN_LN2 - ln_budget for v in logs[n_active:]]
        for i, s in zip(active, _solve_sum(ln_alpha, ln_c, rest, m), strict=True):
            shares[i] = s
    return [_maximum(s * budget, floor) for s in shares]


# --------------------------------------------------------------------------------------------
# Upload times, SPT order and the lane model
# --------------------------------------------------------------------------------------------


def _upload_times(d: list[float], a: list[float], b: list[float]) -> list[float]:
    """:func:`mecsim.decision.bandwidth._upload_times` of non-negative finite values."""
    x = [ai / bi if bi > 0 else 0.0 for ai, bi in zip(a, b, strict=True)]
    nats = _np(np.log1p, x)
    out = []
    for di, ai, bi, xi, nat in zip(d, a, b, x, nats, strict=True):
        if di == 0:
            out.append(0.0)
        elif not bi > 0:  # no share: a / 0 is inf or nan, and so is the rate
            out.append(_INF)
        else:
            if xi == _INF:  # a / b overflowed: ln(1 + a/b) = ln a - ln b
                la, lb = _np(np.log, [ai, bi])
                nat = la - lb
            rate = bi * nat / _LN2
            out.append(di / rate if rate > 0 else _INF)
    return out


def spt_order(d: list[float], a: list[float], budget: float) -> list[int]:
    """:func:`mecsim.decision.bandwidth._spt_order` (the times are never nan: 0, inf or finite)."""
    alone = _upload_times(d, a, [budget] * len(d))
    return sorted(range(len(d)), key=alone.__getitem__)


def lane_completion_times(
    d: list[float],
    a: list[float],
    admitted: list[int],
    shares: list[float],
    waiting: list[int],
    epoch_s: float,
    held_release_s: list[float],
    held_hz: list[float],
) -> list[float]:
    """:func:`mecsim.decision.bandwidth._lane_completion_times`."""
    out = [math.nan] * len(d)
    lane_hz = shares + held_hz
    n_lanes, n_adm = len(lane_hz), len(admitted)
    # Every upload time at once: the admitted on their shares, each waiting task on each lane.
    times = _upload_times(
        [d[i] for i in admitted] + [d[i] for i in waiting for _ in range(n_lanes)],
        [a[i] for i in admitted] + [a[i] for i in waiting for _ in range(n_lanes)],
        shares + lane_hz * len(waiting),
    )
    first = times[:n_adm]
    for i, t in zip(admitted, first, strict=True):
        out[i] = t
    if not waiting or not n_lanes:
        return out
    free = first + held_release_s
    for row, i in enumerate(waiting):
        start = free
        if epoch_s > 0:
            start = [float(math.ceil(f / epoch_s - 1e-9)) * epoch_s if math.isfinite(f) else f for f in free]
        base = n_adm + row * n_lanes
        finish = [s + times[base + j] for j, s in enumerate(start)]
        lane = _argmin(finish)
        out[i] = finish[lane]
        free = free.copy()
        free[lane] = finish[lane]
    return out


def completion(
    d: list[float],
    a: list[float],
    budget: float,
    floor: float,
    order: list[int],
    cap: int,
    epoch: float,
    held_release: list[float],
    held_hz: list[float],
) -> list[float]:
    """:func:`mecsim.decision.bandwidth._completion` of fewer than :data:`SMALL_N` tasks."""
    n = len(d)
    deferring = bool(held_hz) and epoch > 0
    if n == 1 and not deferring:
        return [max(budget, floor)]
    best_total, best = _INF, [0.0] * n
    for k in _bw._group_sizes(cap):
        admitted, waiting = order[:k], order[k:]
        d_k, a_k = [d[i] for i in admitted], [a[i] for i in admitted]
        for objective in ("sum", "equal"):
            shares = _allocate(d_k, a_k, budget, floor, objective)
            total = _sum(lane_completion_times(d, a, admitted, shares, waiting, epoch, held_release, held_hz))
            if total < best_total or (best_total == _INF and not any(v != 0 for v in best)):
                best_total = total
                best = [0.0] * n
                for i, s in zip(admitted, shares, strict=True):
                    best[i] = s
            if k == 1:
                break
    if deferring:
        ends = lane_completion_times(d, a, [], [], order, epoch, [epoch, *held_release], [budget, *held_hz])
        if _sum(ends) < best_total:
            return [0.0] * n
    return best
