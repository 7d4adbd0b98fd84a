"""Queues over time: time-weighted levels on a regular grid, Little's law as a check, and the
stability test (does a policy's backlog keep growing with the run's length?)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from mecsim.analysis.stats import AnalysisError, _as_list, _need, t_interval

__all__ = ["queue_timeseries", "littles_law", "stability", "GROWTH_LIMIT", "GROWTH_MIN_TASKS"]


def _slots_of(slots: Any) -> dict[str, int] | None:
    """Slots per server from a mapping, a Scenario, or a resolved scenario dict."""
    if slots is None:
        return None
    if hasattr(slots, "servers"):
        return {s.name: int(s.slots) for s in slots.servers}
    if isinstance(slots, Mapping) and "servers" in slots:
        return {s["name"]: int(s.get("slots", 1)) for s in slots["servers"]}
    return {str(k): int(v) for k, v in dict(slots).items()}


def _step_integral(t: np.ndarray, v: np.ndarray, x: np.ndarray) -> np.ndarray:
    """F(x) = integral from -inf to x of a step function that is 0 before t[0] and v[k] on
    [t[k], t[k+1]) (t sorted, one value per time), for each x; v may have several columns."""
    if len(t) == 0:
        return np.zeros((len(x),) + v.shape[1:])
    cum = np.concatenate([np.zeros((1,) + v.shape[1:]), np.cumsum(v[:-1] * np.diff(t)[:, None], axis=0)])
    k = np.searchsorted(t, x, side="right") - 1
    inside = k >= 0
    kk = np.where(inside, k, 0)
    val = cum[kk] + v[kk] * (x - t[kk])[:, None]
    return np.where(inside[:, None], val, 0.0)


def _levels(g: pd.DataFrame, cols: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """One server's change log as (times, levels), the last row winning at equal times."""
    order = np.argsort(g["t"].to_numpy(float), kind="stable")
    t = g["t"].to_numpy(float)[order]
    v = g[cols].to_numpy(float)[order]
    last = np.r_[t[1:] != t[:-1], True]
    return t[last], v[last]


_LEVELS = ["queue_len", "busy_slots", "in_transit", "in_system"]


def queue_timeseries(
    servers: pd.DataFrame, dt: float, slots: Any = None, t0: float = 0.0, t1: float | None = None
) -> pd.DataFrame:
    """Time-weighted queue length, busy slots, in-transit and in-system counts per server on a
    regular grid.

    The servers table has one row per change; a level holds from its row until the next row of
    the same server (and is 0 before the first). Each grid cell ``[t, t + dt)`` gets the time
    average of the level over the cell, so the cells' mean is the exact time average.

    Args:
        servers: a servers table (several runs if it has ``run_id``: each run separately).
        dt: the grid step (s).
        slots: slots per server (a mapping, a Scenario or a resolved scenario dict), for
            ``utilisation = busy_slots / slots``; without it utilisation is NaN.
        t0: start of the grid.
        t1: end of the grid (default: the last change in the table; pass the run's duration to
            cover the end of the run).

    Returns:
        Columns ``[run_id,] server, t, queue_len, busy_slots, in_transit, in_system,
        utilisation``; ``t`` is the start of each cell.
    """
    if not dt > 0:
        raise AnalysisError(f"dt must be > 0, got {dt}")
    _need(servers, ["t", "server", "queue_len", "busy_slots"], "queue_timeseries")
    df = servers
    if "in_system" not in df.columns:
        df = df.assign(in_system=df["queue_len"] + df["busy_slots"])
    if "in_transit" not in df.columns:
        df = df.assign(in_transit=0)
    end = float(df["t"].max()) if t1 is None else float(t1)
    if not end > t0:
        raise AnalysisError(f"the grid [{t0}, {end}] is empty")
    n = math.ceil((end - t0) / dt - 1e-9)
    edges = np.minimum(t0 + dt * np.arange(n + 1), end)
    width = np.diff(edges)
    slot_map = _slots_of(slots)
    keys = ["run_id", "server"] if "run_id" in df.columns else ["server"]
    parts = []
    for key, g in df.groupby(keys, observed=True, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        t, v = _levels(g, _LEVELS)
        avg = np.diff(_step_integral(t, v, edges), axis=0) / width[:, None]
        part = pd.DataFrame(avg, columns=_LEVELS)
        part.insert(0, "t", edges[:-1])
        for k, val in zip(reversed(keys), reversed(key), strict=True):
            part.insert(0, k, val)
        srv = str(key[-1])
        cap = slot_map.get(srv) if slot_map else None
        part["utilisation"] = part["busy_slots"] / cap if cap else np.nan
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=[*keys, "t", *_LEVELS, "utilisation"])
    return pd.concat(parts, ignore_index=True)


def littles_law(tasks: pd.DataFrame, servers: pd.DataFrame, t0: float, t1: float) -> dict[str, float]:
    """Little's law at the servers over [t0, t1): L against lambda * W.

    ``L`` is the time-average number of tasks at the servers (queued or in service: the
    servers table's ``in_system``, summed over servers); ``lambda`` the rate of arrivals at the
    servers in the window (tasks table); ``W`` the mean time at a server (``t_service_end -
    t_server_arrival``) of those arrivals. They agree up to edge effects at t0 and t1, which
    shrink as the window grows. Arrivals without a recorded departure (still there at the end,
    or dropped from a queue) are left out of W and counted in ``n_unfinished``.

    Args:
        tasks: one run's tasks table.
        servers: the same run's servers table.
        t0: start of the window (e.g. the warm-up).
        t1: end of the window (e.g. the duration).

    Returns:
        ``{"L", "lambda", "W", "lambda_W", "rel_diff", "n_arrivals", "n_unfinished", "t0", "t1"}``
        with ``rel_diff = (L - lambda_W) / lambda_W``.
    """
    if not t1 > t0:
        raise AnalysisError(f"the window [{t0}, {t1}) is empty")
    for name, df in (("tasks", tasks), ("servers", servers)):
        if "run_id" in df.columns and df["run_id"].nunique() > 1:
            raise AnalysisError(
                f"littles_law takes one run; the {name} table has {df['run_id'].nunique()} (filter on run_id)"
            )
    _need(tasks, ["t_server_arrival", "t_service_end"], "littles_law")
    df = (
        servers
        if "in_system" in servers.columns
        else servers.assign(in_system=servers["queue_len"] + servers["busy_slots"])
    )
    area = 0.0
    for _, g in df.groupby("server", observed=True):
        t, v = _levels(g, ["in_system"])
        f = _step_integral(t, v, np.array([t0, t1], dtype=float))
        area += float(f[1, 0] - f[0, 0])
    span = t1 - t0
    arr = tasks["t_server_arrival"].to_numpy(float)
    dep = tasks["t_service_end"].to_numpy(float)
    inwin = (arr >= t0) & (arr < t1)
    done = inwin & np.isfinite(dep)
    lam = float(inwin.sum()) / span
    w = float((dep[done] - arr[done]).mean()) if done.any() else math.nan
    L = area / span
    lw = lam * w
    return {
        "L": L,
        "lambda": lam,
        "W": w,
        "lambda_W": lw,
        "rel_diff": (L - lw) / lw if lw else math.nan,
        "n_arrivals": int(inwin.sum()),
        "n_unfinished": int(inwin.sum() - done.sum()),
        "t0": float(t0),
        "t1": float(t1),
    }


#: A policy is unstable when the tasks in its system in the second half of the measured window
#: exceed the first half's by more than this fraction, with confidence (see :func:`stability`).
GROWTH_LIMIT = 0.2

#: ... and by at least this many tasks on average (a backlog of 0.1 task growing to 0.2 is noise).
GROWTH_MIN_TASKS = 0.5


def stability(
    tasks: pd.DataFrame,
    by: str | Iterable[str] = ("policy",),
    ci: float = 0.95,
    limit: float = GROWTH_LIMIT,
    min_tasks: float = GROWTH_MIN_TASKS,
) -> pd.DataFrame:
    """Does a policy's backlog (and so its latency) keep growing with run length? An unstable
    queue has no steady-state mean latency: its mean grows with the run's length.

    The test: each run's measured window (from its warm-up to its duration) is cut in two
    halves. In each half, the backlog ``B`` is the time-average number of tasks in the system
    (arrived and not yet completed; a task still in flight at the end stays in the system to the
    end; dropped tasks are left out). By Little's law ``B = lambda * W``, so in a stable queue
    past its warm-up both halves have the same backlog and the same mean latency, whatever the
    load; tasks left unfinished at the end, which a latency mean over completed tasks would
    hide, are counted in full. The growth of one run is ``g = B2 / B1 - 1``. Across seeds ``g``
    gets the usual t-interval (:func:`t_interval`), and the group is **unstable** when the
    interval's lower bound exceeds ``limit`` (20%) and the backlog grew by at least ``min_tasks``
    tasks on average; with a single seed, when ``g > 2 * limit`` and the same absolute growth.
    A queue whose backlog grows linearly from empty has g near 2.

    Args:
        tasks: a tasks table with ``seed``, the ``by`` columns, ``status``, ``t_arrival``,
            ``t_complete``, ``warmup_s`` and ``duration_s`` (as :meth:`RunSet.tasks` returns).
        by: the grouping columns.
        ci: the confidence level.
        limit: the relative growth above which a group is unstable.
        min_tasks: the least absolute growth of the backlog (tasks) that counts.

    Returns:
        One row per group: ``growth`` with ``growth_lo``/``growth_hi``, ``backlog_1``,
        ``backlog_2`` (mean over seeds, tasks), ``n_seeds``, ``unfinished_frac`` (tasks in flight
        at the end over the measured arrivals) and ``unstable`` (bool).
    """
    keys = _as_list(by)
    _need(tasks, [*keys, "status", "t_arrival", "t_complete", "warmup_s", "duration_s"], "stability")
    df = pd.DataFrame({k: tasks[k].to_numpy() for k in keys})
    df["seed"] = tasks["seed"].to_numpy() if "seed" in tasks.columns else 0
    status = tasks["status"].astype(str).to_numpy()
    df["a"] = tasks["t_arrival"].to_numpy(float)
    df["w"] = pd.to_numeric(tasks["warmup_s"], errors="coerce").fillna(0.0).to_numpy(float)
    df["end"] = pd.to_numeric(tasks["duration_s"], errors="coerce").to_numpy(float)
    df["c"] = np.where(status == "completed", tasks["t_complete"].to_numpy(float), np.inf)
    df["kept"] = status != "dropped"
    df["unfinished"] = (status == "in_flight") & (df["a"] >= df["w"])
    df["measured"] = df["a"] >= df["w"]
    rows = []
    groups = df.groupby(keys, observed=True, sort=True) if keys else [((), df)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        growth, b1s, b2s = [], [], []
        for _, r in g.groupby("seed", sort=True):
            r = r[r["kept"]]
            if r.empty:
                continue
            w, end = float(r["w"].iloc[0]), float(r["end"].iloc[0])
            mid = (w + end) / 2
            a, c = r["a"].to_numpy(), np.minimum(r["c"].to_numpy(), end)

            def backlog(h0: float, h1: float, a: np.ndarray = a, c: np.ndarray = c) -> float:
                return float(np.clip(np.minimum(c, h1) - np.maximum(a, h0), 0, None).sum() / (h1 - h0))

            b1, b2 = backlog(w, mid), backlog(mid, end)
            b1s.append(b1)
            b2s.append(b2)
            growth.append(b2 / b1 - 1 if b1 > 0 else (0.0 if b2 == 0 else math.inf))
        mean, lo, hi, _ = t_interval(growth, ci)
        n = len(growth)
        grew = (np.mean(b2s) - np.mean(b1s)) >= min_tasks if n else False
        if n >= 2 and np.isfinite(lo):
            unstable = bool(lo > limit and grew)
        else:
            unstable = bool(n >= 1 and mean > 2 * limit and grew)
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "growth": mean,
                "growth_lo": lo,
                "growth_hi": hi,
                "backlog_1": float(np.mean(b1s)) if n else math.nan,
                "backlog_2": float(np.mean(b2s)) if n else math.nan,
                "n_seeds": n,
                "unfinished_frac": float(g["unfinished"].sum() / max(g["measured"].sum(), 1)),
                "unstable": unstable,
            }
        )
    return pd.DataFrame(rows)
