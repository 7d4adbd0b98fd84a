"""The statistics a latency study needs, with ONE t-interval (:func:`t_interval`) used everywhere.

:func:`latency_stats` (mean and tail latency with confidence intervals across seeds, deadline
misses, and an account of every task left out), :func:`paired_differences` (each policy minus a
reference, seed by seed), :func:`latency_breakdown` (where the time goes) and
:func:`censored_cdf` (the latency distribution with dropped and unfinished tasks counted as
censored). The stability test (does a policy's backlog keep growing with run length?) is
:func:`mecsim.analysis.queues.stability`.

Example:
    >>> import mecsim
    >>> from mecsim.analysis import latency_breakdown, latency_stats
    >>> res = mecsim.simulate("smoke-v1", policy="greedy", seed=1, duration_s=30)
    >>> stats = latency_stats(res.tasks.assign(policy="greedy", seed=1))
    >>> int(stats["n_tasks"].iloc[0]) == len(res.tasks)
    True
    >>> stages = latency_breakdown(res.tasks)
    >>> bool(((stages.drop(columns="latency").sum(axis=1) - stages["latency"]).abs().max() < 1e-9))
    True
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mecsim.errors import MecsimError

__all__ = [
    "AnalysisError",
    "STAGES",
    "t_interval",
    "latency_stats",
    "per_seed_stats",
    "latency_breakdown",
    "mean_breakdown",
    "paired_differences",
    "policy_table",
    "censored_cdf",
    "MIN_SEEDS",
]

#: Fewer seeds than this and a table carries a warning: the t-intervals are too wide to trust.
MIN_SEEDS = 5

#: The stages of a task's latency, in order; they add up to ``latency``.
STAGES = ("wait", "upload", "backhaul", "queue", "inference", "return")

# stage -> (end time, start time) columns of the tasks table
_STAGE_TIMES = {
    "wait": ("t_decision", "t_arrival"),
    "upload": ("t_upload_end", "t_upload_start"),
    "backhaul": ("t_server_arrival", "t_upload_end"),
    "queue": ("t_service_start", "t_server_arrival"),
    "inference": ("t_service_end", "t_service_start"),
    "return": ("t_complete", "t_service_end"),
}


class AnalysisError(MecsimError, ValueError):
    """A results folder cannot be read, or a table lacks what a statistic needs."""


# ---------------------------------------------------------------------------------------------
# latency statistics


def _as_list(by: str | Iterable[str] | None) -> list[str]:
    if by is None:
        return []
    return [by] if isinstance(by, str) else list(by)


def _need(df: pd.DataFrame, cols: Iterable[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise AnalysisError(f"{what} needs column(s) {missing}; the table has {list(df.columns)}")


def _warmup(df: pd.DataFrame, warmup_s: float | None) -> np.ndarray:
    if warmup_s is not None:
        return np.full(len(df), float(warmup_s))
    if "warmup_s" in df.columns:
        return pd.to_numeric(df["warmup_s"], errors="coerce").fillna(0.0).to_numpy(float)
    return np.zeros(len(df))


def _task_masks(tasks: pd.DataFrame, warmup_s: float | None) -> dict[str, np.ndarray]:
    """Which tasks count for latency and why the others do not.

    Every task is in exactly one of: used, dropped, in_flight, warmup (completed, but arrived
    during the warm-up). Deadline accounting follows the run summary: tasks arriving after the
    warm-up, not in flight, with a finite deadline; dropped ones count as missed.
    """
    status = tasks["status"].astype(str).to_numpy()
    after = tasks["t_arrival"].to_numpy(float) >= _warmup(tasks, warmup_s)
    completed = status == "completed"
    if "deadline" in tasks.columns and "deadline_met" in tasks.columns:
        dl_known = after & (status != "in_flight") & np.isfinite(tasks["deadline"].to_numpy(float))
        met = tasks["deadline_met"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    else:
        dl_known = met = np.zeros(len(tasks), dtype=bool)
    return {
        "used": completed & after,
        "dropped": status == "dropped",
        "in_flight": status == "in_flight",
        "warmup": completed & ~after,
        "deadline": dl_known,
        "missed": dl_known & ~met,
    }


def per_seed_stats(
    tasks: pd.DataFrame, by: str | Iterable[str] = ("policy",), warmup_s: float | None = None
) -> pd.DataFrame:
    """Latency statistics per group and seed, from a tasks table.

    Args:
        tasks: a tasks table with the ``by`` columns and ``seed`` (as :meth:`RunSet.tasks`
            returns; without ``seed`` all tasks count as one seed).
        by: the grouping columns.
        warmup_s: leave out tasks arriving earlier (default: the ``warmup_s`` column, else 0).

    Returns:
        One row per (group, seed): ``mean_s, p50_s, p95_s, p99_s`` over the used tasks,
        ``miss_rate``, ``n_tasks, n_latency, excluded_dropped, excluded_in_flight,
        excluded_warmup, n_deadline, n_missed`` and ``n_runs`` (runs pooled in the row).
    """
    keys = _as_list(by)
    _need(tasks, [*keys, "status", "t_arrival", "latency", "deadline", "deadline_met"], "latency_stats")
    df = pd.DataFrame({k: tasks[k].to_numpy() for k in keys}, index=tasks.index)
    df["seed"] = tasks["seed"].to_numpy() if "seed" in tasks.columns else 0
    keys_s = [*keys, "seed"]
    m = _task_masks(tasks, warmup_s)
    for name in ("used", "dropped", "in_flight", "warmup", "deadline", "missed"):
        df[name] = m[name]
    df["latency"] = np.where(m["used"], tasks["latency"].to_numpy(float), np.nan)
    df["run"] = tasks["run_id"].astype(str).to_numpy() if "run_id" in tasks.columns else ""
    g = df.groupby(keys_s, observed=True, dropna=False, sort=True)
    out = pd.DataFrame(
        {
            "n_tasks": g.size(),
            "n_latency": g["used"].sum(),
            "excluded_dropped": g["dropped"].sum(),
            "excluded_in_flight": g["in_flight"].sum(),
            "excluded_warmup": g["warmup"].sum(),
            "n_deadline": g["deadline"].sum(),
            "n_missed": g["missed"].sum(),
            "n_runs": g["run"].nunique(),
            # pandas' quantile is linear interpolation, like numpy's default used by the summary
            "mean_s": g["latency"].mean(),
            "p50_s": g["latency"].quantile(0.5),
            "p95_s": g["latency"].quantile(0.95),
            "p99_s": g["latency"].quantile(0.99),
        }
    )
    out["miss_rate"] = np.where(
        out["n_deadline"] > 0, out["n_missed"] / out["n_deadline"].where(out["n_deadline"] > 0, 1), np.nan
    )
    out = out.reset_index()
    if (out["n_runs"] > 1).any():
        warnings.warn(
            "some (group, seed) rows pool several runs; add the columns that vary between "
            "them (e.g. an override) to `by` to keep them apart",
            stacklevel=3,
        )
    return out


def _per_seed_from_summaries(summ: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    _need(summ, [*by, "seed", "latency_mean_s", "latency_n", "tasks_generated"], "latency_stats")
    out = summ[[*by, "seed"]].copy()
    out["n_tasks"] = summ["tasks_generated"].astype("int64")
    out["n_latency"] = summ["latency_n"].astype("int64")
    out["excluded_dropped"] = summ["tasks_dropped"].astype("int64")
    out["excluded_in_flight"] = summ["tasks_in_flight"].astype("int64")
    out["excluded_warmup"] = (summ["tasks_completed"] - summ["latency_n"]).astype("int64")
    out["n_deadline"] = summ["deadline_tasks"].astype("int64")
    out["n_missed"] = summ["deadline_missed"].astype("int64")
    out["n_runs"] = 1
    for src, dst in (
        ("latency_mean_s", "mean_s"),
        ("latency_p50_s", "p50_s"),
        ("latency_p95_s", "p95_s"),
        ("latency_p99_s", "p99_s"),
        ("deadline_miss_rate", "miss_rate"),
    ):
        out[dst] = pd.to_numeric(summ[src], errors="coerce").astype(float)
    if out.duplicated([*by, "seed"]).any():
        warnings.warn(
            "several runs share a (group, seed): each counts as a replicate; add the "
            "columns that vary between them to `by` to keep them apart",
            stacklevel=3,
        )
    return out.sort_values([*by, "seed"], kind="stable").reset_index(drop=True)


def t_interval(x: Any, ci: float = 0.95) -> tuple[float, float, float, float]:
    """(mean, low, high, std) of replicate values (one per seed), with a Student-t interval
    ``mean +- t_{n-1} * s / sqrt(n)``; NaN values are left out; NaN bounds below two values,
    and a zero-width interval when all values are equal. The one interval of every table.

    Example:
        >>> m, lo, hi, sd = t_interval([1.0, 2.0, 3.0])
        >>> round(lo, 3), round(hi, 3)   # 2 -+ 4.303 * 1 / sqrt(3)
        (-0.484, 4.484)
    """
    from scipy import stats

    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return (math.nan,) * 4
    mean = float(x.mean())
    if n < 2:
        return mean, math.nan, math.nan, math.nan
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + ci / 2, n - 1)) * sd / math.sqrt(n)
    return mean, mean - half, mean + half, sd


def latency_stats(
    data: pd.DataFrame, by: str | Iterable[str] = ("policy",), ci: float = 0.95, warmup_s: float | None = None
) -> pd.DataFrame:
    """Latency per group, with t-based confidence intervals across seeds.

    Each seed is one replicate: the statistics are computed per seed first (mean, p50, p95, p99
    of the latency of the completed tasks that arrived after the warm-up, and the deadline-miss
    rate), then averaged over the seeds with a Student-t interval ``mean +- t * s / sqrt(n)``.
    No task is dropped silently: ``n_tasks = n_latency + excluded_dropped + excluded_in_flight
    + excluded_warmup``.

    Args:
        data: a tasks table (with ``seed`` and the ``by`` columns, as :meth:`RunSet.tasks`
            returns) or a summaries table (:meth:`RunSet.summaries`, one row per run).
        by: the grouping columns.
        ci: the confidence level of the intervals.
        warmup_s: tasks only: the warm-up to leave out (default: the ``warmup_s`` column, else 0).

    Returns:
        One row per group: ``n_seeds``; ``mean_s, p50_s, p95_s, p99_s, miss_rate``, each with
        ``_lo`` and ``_hi`` bounds (NaN with fewer than two seeds); ``seed_std_s`` (std of the
        per-seed mean latency: how stable the policy is across seeds); and the task counts
        ``n_tasks, n_latency, excluded_dropped, excluded_in_flight, excluded_warmup, n_deadline,
        n_missed``. ``attrs["ci"]`` holds the level.
    """
    if not 0 < ci < 1:
        raise AnalysisError(f"ci must be in (0, 1), got {ci}")
    keys = _as_list(by)
    if "seed" in keys:
        raise AnalysisError(
            "seed is the replicate the intervals are taken over, not a grouping "
            "column; use per_seed_stats for one row per seed"
        )
    if "latency" in data.columns and "status" in data.columns:
        per = per_seed_stats(data, keys, warmup_s)
    elif "latency_mean_s" in data.columns:
        per = _per_seed_from_summaries(data, keys)
    else:
        raise AnalysisError(
            "latency_stats takes a tasks table (with latency, status) or a summaries "
            "table (with latency_mean_s)"
        )
    counts = [
        "n_tasks",
        "n_latency",
        "excluded_dropped",
        "excluded_in_flight",
        "excluded_warmup",
        "n_deadline",
        "n_missed",
    ]
    rows = []
    groups = per.groupby(keys, observed=True, dropna=False, sort=True) if keys else [((), per)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(keys, key, strict=True))
        row["n_seeds"] = int(g["seed"].nunique())
        for stat in ("mean_s", "p50_s", "p95_s", "p99_s", "miss_rate"):
            mean, lo, hi, sd = t_interval(g[stat].to_numpy(float), ci)
            row[stat], row[f"{stat}_lo"], row[f"{stat}_hi"] = mean, lo, hi
            if stat == "mean_s":
                row["seed_std_s"] = sd
        for c in counts:
            row[c] = int(g[c].sum())
        rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs["ci"] = ci
    return out


# ---------------------------------------------------------------------------------------------
# latency breakdown


def latency_breakdown(tasks: pd.DataFrame) -> pd.DataFrame:
    """Each task's latency split into stages (s).

    ``wait`` (arrival to decision, including the decision's own time), ``upload``, ``backhaul``
    (to the server), ``queue`` (at the server), ``inference`` and ``return`` (backhaul and
    downlink of the result). For a completed task they add up to ``latency``; stages that did
    not happen (dropped or unfinished tasks) are NaN.

    Returns:
        A DataFrame with the index of ``tasks`` and the columns :data:`STAGES` + ``latency``.
    """
    _need(tasks, {c for pair in _STAGE_TIMES.values() for c in pair} | {"latency"}, "latency_breakdown")
    out = pd.DataFrame(index=tasks.index)
    for stage in STAGES:
        end, start = _STAGE_TIMES[stage]
        out[stage] = tasks[end].to_numpy(float) - tasks[start].to_numpy(float)
    out["latency"] = tasks["latency"].to_numpy(float)
    return out


def mean_breakdown(
    tasks: pd.DataFrame, by: str | Iterable[str] = ("policy",), warmup_s: float | None = None
) -> pd.DataFrame:
    """Mean time per stage by group, over the completed tasks that arrived after the warm-up
    (the tasks :func:`latency_stats` uses), pooled over seeds.

    Returns:
        One row per group: ``n`` and the mean of each of :data:`STAGES` and of ``latency``.
    """
    keys = _as_list(by)
    _need(tasks, [*keys, "status", "t_arrival"], "mean_breakdown")
    used = _task_masks(tasks, warmup_s)["used"]
    stages = latency_breakdown(tasks)[used]
    for k in keys:
        stages[k] = tasks.loc[used, k].to_numpy()
    if not keys:
        res = stages[[*STAGES, "latency"]].mean().to_frame().T
        res.insert(0, "n", int(used.sum()))
        return res
    g = stages.groupby(keys, observed=True, dropna=False, sort=True)
    res = g[[*STAGES, "latency"]].mean()
    res.insert(0, "n", g.size())
    return res.reset_index()


# ---------------------------------------------------------------------------------------------
# comparisons of policies


def paired_differences(
    summ: pd.DataFrame,
    reference: str,
    stats: Sequence[str] = ("latency_mean_s", "latency_p95_s"),
    ci: float = 0.95,
    tie_s: float = 1e-3,
) -> pd.DataFrame:
    """Each policy minus the reference, seed by seed (common random numbers), with t intervals.

    Args:
        summ: one row per run with ``policy``, ``seed`` and the statistics.
        reference: the reference policy's label.
        stats: summary columns to compare.
        ci: the confidence level.
        tie_s: differences below this (s) count as ties.

    Returns:
        One row per other policy: for each statistic ``s`` (without its ``latency_`` prefix):
        ``s_diff`` (mean of policy - reference over the shared seeds), ``s_diff_lo``,
        ``s_diff_hi``, ``ref_better_<s>`` (seeds on which the reference was lower by more than
        ``tie_s``), ``ties_<s>`` (seeds within ``tie_s``); and ``n_seeds``.
    """
    rows = []
    ref = summ[summ["policy"] == reference].set_index("seed")
    for pol, g in summ[summ["policy"] != reference].groupby("policy", sort=False, observed=True):
        g = g.set_index("seed")
        seeds = sorted(set(g.index) & set(ref.index))
        row: dict[str, Any] = {"policy": pol, "reference": reference, "n_seeds": len(seeds)}
        for s in stats:
            d = (
                pd.to_numeric(g.loc[seeds, s], errors="coerce")
                - pd.to_numeric(ref.loc[seeds, s], errors="coerce")
            ).to_numpy(float)
            d = d[np.isfinite(d)]
            key = s.removeprefix("latency_")
            mean, lo, hi, _ = t_interval(d, ci)
            row.update(
                {
                    f"{key}_diff": mean,
                    f"{key}_diff_lo": lo,
                    f"{key}_diff_hi": hi,
                    f"ref_better_{key}": int((d > tie_s).sum()),
                    f"ties_{key}": int((np.abs(d) <= tie_s).sum()),
                }
            )
        rows.append(row)
    return pd.DataFrame(rows)


def policy_table(summ: pd.DataFrame, order: Sequence[str], ci: float = 0.95) -> pd.DataFrame:
    """One row per policy from run summaries: latency statistics with intervals across seeds
    (:func:`latency_stats`), miss rate, stability across seeds, decision time and energy."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lat = latency_stats(summ, ["policy"], ci=ci)
    s = summ.copy()
    s["decision_ms_per_epoch"] = 1e3 * s["decision_wall_s_total"] / s["epochs"].where(s["epochs"] > 0)
    n = s["tasks_generated"].where(s["tasks_generated"] > 0)
    s["energy_tx_j_per_task"] = s["energy_tx_j_total"] / n
    s["energy_server_j_per_task"] = s["energy_server_j_total"] / n
    extra = s.groupby("policy", observed=True)[
        ["decision_ms_per_epoch", "energy_tx_j_per_task", "energy_server_j_per_task", "throughput_per_s"]
    ].mean()
    cols = [
        "policy",
        "n_seeds",
        "mean_s",
        "mean_s_lo",
        "mean_s_hi",
        "p95_s",
        "p95_s_lo",
        "p95_s_hi",
        "p99_s",
        "p99_s_lo",
        "p99_s_hi",
        "miss_rate",
        "miss_rate_lo",
        "miss_rate_hi",
        "seed_std_s",
    ]
    out = lat[cols].merge(extra.reset_index(), on="policy", how="left")
    out = out.merge(
        lat[["policy", "n_tasks", "n_latency", "excluded_dropped", "excluded_in_flight"]], on="policy"
    )
    rank = {p: k for k, p in enumerate(order)}
    out = out.sort_values("policy", key=lambda c: c.map(lambda p: rank.get(p, len(rank))))
    return out.reset_index(drop=True)


def censored_cdf(
    tasks: pd.DataFrame,
    by: str | Iterable[str] = ("policy",),
    grid: Any = None,
    ci: float = 0.95,
    points: int = 200,
) -> pd.DataFrame:
    """The latency CDF per group with dropped and unfinished tasks counted as censored.

    ``F(x)`` is the fraction of ALL tasks that arrived after the warm-up that completed within
    ``x`` seconds: a task dropped or still in flight at the end never counts as done, so the
    curve ends below 1 by the fraction of such tasks (a policy that drops work cannot look fast
    by leaving it out). F is computed per seed, then averaged over the seeds with the
    t-interval of :func:`t_interval` at each point of the grid.

    Args:
        tasks: a tasks table (with ``seed`` and the ``by`` columns).
        by: the grouping columns.
        grid: latencies to evaluate at (default: ``points`` log-spaced values over the data).
        ci: the confidence level of the band.
        points: the default grid's size.

    Returns:
        Long format: the ``by`` columns, ``x``, ``F``, ``F_lo``, ``F_hi``, ``n_seeds`` and
        ``censored`` (the mean fraction of tasks never done).
    """
    keys = _as_list(by)
    _need(tasks, [*keys, "status", "t_arrival", "latency"], "censored_cdf")
    after = tasks["t_arrival"].to_numpy(float) >= _warmup(tasks, None)
    status = tasks["status"].astype(str).to_numpy()
    lat = np.where(status == "completed", tasks["latency"].to_numpy(float), np.inf)
    df = pd.DataFrame({k: tasks[k].to_numpy() for k in keys})
    df["seed"] = tasks["seed"].to_numpy() if "seed" in tasks.columns else 0
    df["lat"] = lat
    df = df[after]
    if grid is None:
        fin = df["lat"].to_numpy(float)
        fin = fin[np.isfinite(fin) & (fin > 0)]
        if len(fin) == 0:
            grid = np.array([1.0])
        else:
            grid = np.geomspace(max(fin.min(), 1e-6), fin.max(), points)
    grid = np.asarray(grid, dtype=float)
    parts = []
    groups = df.groupby(keys, observed=True, sort=True) if keys else [((), df)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        curves, cens = [], []
        for _, r in g.groupby("seed", sort=True):
            x = np.sort(r["lat"].to_numpy(float))
            if len(x) == 0:
                continue
            curves.append(np.searchsorted(x, grid, side="right") / len(x))
            cens.append(float(np.isinf(x).mean()))
        if not curves:
            continue
        c = np.array(curves)
        stats_ = [t_interval(c[:, j], ci) for j in range(len(grid))]
        part = pd.DataFrame(
            {
                "x": grid,
                "F": [s[0] for s in stats_],
                "F_lo": [s[1] for s in stats_],
                "F_hi": [s[2] for s in stats_],
            }
        )
        part["n_seeds"] = len(curves)
        part["censored"] = float(np.mean(cens))
        for k, v in zip(reversed(keys), reversed(key), strict=True):
            part.insert(0, k, v)
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=[*keys, "x", "F", "F_lo", "F_hi", "n_seeds", "censored"])
    return pd.concat(parts, ignore_index=True)
