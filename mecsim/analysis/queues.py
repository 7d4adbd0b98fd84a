"""Queues over time: time-weighted levels on a regular grid, and Little's law as a check."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from mecsim.analysis.stats import AnalysisError, _need

__all__ = ["queue_timeseries", "littles_law"]


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
