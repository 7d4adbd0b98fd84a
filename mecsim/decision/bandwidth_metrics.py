"""How a bandwidth rule spends the uplink over time, measured from the traces.

The per-epoch bandwidth optimum is judged by what happens *between* epochs: how long a share is
held, whether released bandwidth sits idle while tasks wait for the next epoch, and how long tasks
queue for bandwidth. These functions compute that from a run's tasks table (columns
``t_arrival``, ``t_upload_start``, ``t_upload_end``, ``bandwidth_hz``, ``input_bits``,
``latency``, ``status``), so they work on any run, streamed or in memory.

Definitions (``B`` = the uplink budget, ``H(t)`` = the bandwidth held at time ``t`` = the sum of
the shares of the uploads running at ``t``, ``W(t)`` = the number of tasks that have arrived and
not started uploading; tasks that never start (dropped while waiting, still waiting at the end)
count in ``W`` until the end of the window):

* ``bw_s_per_bit``: ``sum_i b_i (t_upload_end - t_upload_start) / sum_i D_i`` over the uploaded
  tasks: Hz s per bit, the inverse of the spectral efficiency actually obtained (a large share
  given to one upload buys less rate per hertz: ``log2(1 + a / b)`` falls with ``b``).
* ``idle_bw_s``: ``integral (B - H(t)) [W(t) > 0] dt``: bandwidth left free while some task
  waits for it; with preallocated shares this is bandwidth released mid-epoch waiting for the
  next epoch (or kept free by a rule).
* ``utilisation``: ``integral H(t) dt / (B (t1 - t0))`` over the window.
* ``queue_s``: ``t_upload_start - t_arrival`` per task (waiting for bandwidth, including the
  wait for the next epoch).

Example:
    >>> import pandas as pd
    >>> from mecsim.decision.bandwidth_metrics import bandwidth_usage
    >>> tasks = pd.DataFrame({"t_arrival": [0.0], "t_upload_start": [0.5],
    ...                       "t_upload_end": [1.5], "bandwidth_hz": [10.0], "input_bits": [20.0]})
    >>> u = bandwidth_usage(tasks, budget_hz=10.0, t_start=0.0, t_end=2.0)
    >>> u["idle_bw_s"], u["utilisation"]   # 0.5 s x 10 Hz free while the task waited
    (5.0, 0.5)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["bandwidth_metrics", "bandwidth_queueing", "bandwidth_seconds_per_bit", "bandwidth_usage"]


def _uploaded(tasks: pd.DataFrame) -> pd.DataFrame:
    ok = np.isfinite(tasks["t_upload_start"].to_numpy(float)) & np.isfinite(
        tasks["t_upload_end"].to_numpy(float)
    )
    return tasks[ok]


def bandwidth_seconds_per_bit(tasks: pd.DataFrame) -> float:
    """Bandwidth-seconds consumed per uploaded bit (Hz s / bit) over the uploaded tasks."""
    up = _uploaded(tasks)
    bits = float(up["input_bits"].sum())
    if bits <= 0:
        return float("nan")
    held = up["bandwidth_hz"].to_numpy(float) * (
        up["t_upload_end"].to_numpy(float) - up["t_upload_start"].to_numpy(float)
    )
    return float(held.sum()) / bits


def bandwidth_queueing(tasks: pd.DataFrame) -> pd.Series:
    """Time from arrival to upload start (s) of each task that started uploading."""
    up = _uploaded(tasks)
    return (up["t_upload_start"] - up["t_arrival"]).rename("queue_s")


def _levels(times: np.ndarray, deltas: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Value at each of ``at`` of the step function that jumps by ``deltas`` at ``times``
    (right-continuous: the jumps at a time count from that time on)."""
    order = np.argsort(times, kind="stable")
    t = times[order]
    level = np.concatenate([[0.0], np.cumsum(deltas[order])])
    return level[np.searchsorted(t, at, side="right")]


def bandwidth_usage(
    tasks: pd.DataFrame, budget_hz: float, t_start: float | None = None, t_end: float | None = None
) -> dict[str, float]:
    """Held and idle bandwidth over ``[t_start, t_end]`` (default: first arrival to last upload end).

    Returns:
        ``busy_bw_s`` (integral of the held bandwidth, Hz s), ``idle_bw_s`` (integral of the free
        bandwidth while at least one task waits for bandwidth, Hz s), ``utilisation``
        (``busy / (B T)``), ``idle_fraction`` (``idle / (B T)``), ``waiting_s`` (time with at
        least one task waiting) and ``window_s``.
    """
    arr = tasks["t_arrival"].to_numpy(float)
    start = tasks["t_upload_start"].to_numpy(float)
    end = tasks["t_upload_end"].to_numpy(float)
    bw = tasks["bandwidth_hz"].to_numpy(float)
    up = np.isfinite(start) & np.isfinite(end)
    t0 = float(np.min(arr)) if t_start is None else float(t_start)
    t1 = float(np.max(end[up], initial=t0)) if t_end is None else float(t_end)
    if t1 <= t0:
        return {
            "busy_bw_s": 0.0,
            "idle_bw_s": 0.0,
            "utilisation": float("nan"),
            "idle_fraction": float("nan"),
            "waiting_s": 0.0,
            "window_s": 0.0,
        }
    cuts = np.unique(np.clip(np.concatenate([[t0, t1], arr, start[up], end[up]]), t0, t1))
    length = np.diff(cuts)
    # On each segment [cuts[k], cuts[k+1]): bandwidth held, and tasks waiting (+1 at arrival,
    # -1 at upload start; never decremented for tasks that did not start).
    held = _levels(np.concatenate([start[up], end[up]]), np.concatenate([bw[up], -bw[up]]), cuts[:-1])
    waiting = _levels(
        np.concatenate([arr, start[up]]),
        np.concatenate([np.ones(arr.size), -np.ones(int(up.sum()))]),
        cuts[:-1],
    )
    busy = float(np.sum(held * length))
    wait = waiting > 0
    free = np.maximum(budget_hz - held, 0.0)
    idle = float(np.sum(free[wait] * length[wait]))
    total = budget_hz * (t1 - t0)
    return {
        "busy_bw_s": busy,
        "idle_bw_s": idle,
        "utilisation": busy / total,
        "idle_fraction": idle / total,
        "waiting_s": float(np.sum(length[wait])),
        "window_s": t1 - t0,
    }


def bandwidth_metrics(
    tasks: pd.DataFrame,
    budget_hz: float,
    epochs: pd.DataFrame | None = None,
    t_start: float | None = None,
    t_end: float | None = None,
) -> dict[str, Any]:
    """One row of the measures above for a run, plus latency and upload statistics.

    Args:
        tasks: the run's tasks table.
        budget_hz: the uplink budget ``B`` (``scenario.radio.bandwidth_hz``).
        epochs: the epochs table; adds ``deferred_per_task`` (deferrals by the rule or for lack
            of a server, per uploaded task).
        t_start, t_end: the window of :func:`bandwidth_usage` (default: the whole run); with
            ``t_start`` the per-task statistics are over the tasks arriving in the window (e.g.
            after the warm-up), while the bandwidth held in the window counts every task.

    Returns:
        ``mean_latency_s`` and ``p99_latency_s`` (completed tasks), ``mean_upload_s``,
        ``bw_s_per_bit``, ``idle_bw_s``, ``idle_per_task_hz_s`` (idle bandwidth-seconds per
        uploaded task), ``idle_fraction``, ``utilisation``, ``mean_queue_s``, ``p99_queue_s``,
        ``small_share_fraction`` (uploaded tasks that got less than ``B / 4``: stuck with a
        sliver of the band for their whole upload), ``n_tasks``, ``n_uploaded`` (and
        ``deferred_per_task`` with ``epochs``: summed over the whole table, not the window).
    """
    usage = bandwidth_usage(tasks, budget_hz, t_start, t_end)
    if t_start is not None:  # per-task statistics: the tasks arriving in the window
        arr = tasks["t_arrival"].to_numpy(float)
        tasks = tasks[(arr >= t_start) & (arr <= (np.inf if t_end is None else t_end))]
    up = _uploaded(tasks)
    done = tasks[tasks["status"] == "completed"] if "status" in tasks else tasks
    lat = done["latency"] if "latency" in done else done["t_complete"] - done["t_arrival"]
    queue = bandwidth_queueing(tasks)
    n_up = len(up)
    row: dict[str, Any] = {
        "n_tasks": len(tasks),
        "n_uploaded": n_up,
        "mean_latency_s": float(lat.mean()),
        "p99_latency_s": float(lat.quantile(0.99)),
        "mean_upload_s": float((up["t_upload_end"] - up["t_upload_start"]).mean()),
        "bw_s_per_bit": bandwidth_seconds_per_bit(tasks),
        "idle_bw_s": usage["idle_bw_s"],
        "idle_per_task_hz_s": usage["idle_bw_s"] / n_up if n_up else float("nan"),
        "idle_fraction": usage["idle_fraction"],
        "utilisation": usage["utilisation"],
        "mean_queue_s": float(queue.mean()),
        "p99_queue_s": float(queue.quantile(0.99)),
        "small_share_fraction": float(np.mean(up["bandwidth_hz"].to_numpy(float) < budget_hz / 4))
        if n_up
        else float("nan"),
    }
    if epochs is not None and "n_deferred" in epochs and n_up:
        row["deferred_per_task"] = float(epochs["n_deferred"].sum()) / n_up
    return row
