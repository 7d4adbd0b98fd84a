"""A first look at a run in the terminal: what its policy decided, and how it compares with other
policies on the same tasks (``mecsim run SCENARIO --policy qubo-sa --vs greedy``).

Every policy run on one scenario and seed sees the same tasks and the same channels (common random
numbers), so two runs can be compared task by task. One seed is one sample: for intervals across
seeds use ``mecsim compare``.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _ms(x: float) -> str:
    return f"{x * 1e3:.3g} ms"


def decisions_text(res: Any, max_rows: int = 8) -> str:
    """The decisions of a run: epochs, problem sizes, what the solver and its repairs did, and the
    assignment of the largest epoch (task, model, upload size, server, bandwidth)."""
    ep, tasks = res.epochs, res.tasks
    policy = res.summary.get("policy", "?")
    if ep is None or len(ep) == 0:
        return f"decisions ({policy}): no epoch decided a task"
    n = ep["n_decided"].to_numpy()
    lines = [
        f"decisions ({policy}): {len(ep)} epochs; tasks per epoch median {np.median(n):g}, "
        f"max {n.max():g}; decision wall time median {_ms(float(ep['decision_wall_s'].median()))}"
    ]
    if "variables" in ep.columns and ep["variables"].notna().any():
        solver = ", ".join(sorted({str(s) for s in ep["solver"].dropna().unique()}))
        var = ep["variables"].dropna().to_numpy(dtype=float)
        feas = ep["feasible_before_repair"].dropna().astype(bool)
        fallbacks = int(ep["fallback"].notna().sum()) if "fallback" in ep.columns else 0
        moves = ep["local_search_moves"].dropna().to_numpy(dtype=float) if "local_search_moves" in ep else []
        lines.append(
            f"  QUBO ({solver}): variables median {np.median(var):g}, max {var.max():g}; best read "
            f"feasible before repair in {feas.mean():.0%} of epochs, {int(ep['repairs'].fillna(0).sum())} "
            f"repairs; local search moved {int(np.sum(moves))} tasks in all; {fallbacks} fallbacks "
            f"to a heuristic"
        )
    big = int(ep.loc[ep["n_decided"].idxmax(), "epoch"])
    rows = tasks[tasks["epoch"] == big].sort_values("task_id")
    t = float(ep.loc[ep["epoch"] == big, "t"].iloc[0])
    lines.append(
        f"  largest epoch #{big} at t={t:.1f} s, {len(rows)} tasks (first {min(max_rows, len(rows))}):"
    )
    lines.append(f"    {'task':>6}  {'model':<14} {'upload':>10}  {'server':<12} {'bandwidth':>10}")
    for r in rows.head(max_rows).itertuples():
        server = r.server if isinstance(r.server, str) else "-"
        lines.append(
            f"    {r.task_id:>6}  {str(r.model):<14} {r.input_bits / 1e6:>6.2f} Mbit  "
            f"{server:<12} {r.bandwidth_hz / 1e6:>6.2f} MHz"
        )
    return "\n".join(lines)


def _measured(res: Any) -> Any:
    s = res.summary
    t = res.tasks
    return t[t["t_arrival"] >= s.get("warmup_s", 0.0)]


def comparison_text(results: list[Any]) -> str:
    """Side by side: mean/p95/p99 latency, deadline misses and completions of each run (the same
    tasks), then each other run against the first, task by task on the tasks both completed."""
    head = results[0]
    s0 = head.summary
    lines = [
        f"same tasks and channels ({s0['scenario']}, seed {s0['seed']}, {s0['tasks_generated']} tasks):",
        f"  {'policy':<16} {'mean (s)':>9} {'p95 (s)':>9} {'p99 (s)':>9} {'miss':>7} {'completed':>10}",
    ]
    for r in results:
        s = r.summary

        def f(v: Any) -> str:
            return "-" if v is None else f"{v:.3f}"

        miss = s.get("deadline_miss_rate")
        lines.append(
            f"  {str(s['policy']):<16} {f(s['latency_mean_s']):>9} {f(s['latency_p95_s']):>9} "
            f"{f(s['latency_p99_s']):>9} {'-' if miss is None else f'{miss:.1%}':>7} "
            f"{s['tasks_completed']:>10}"
        )
    a = _measured(head).set_index("task_id")
    for r in results[1:]:
        b = _measured(r).set_index("task_id")
        both = a.index.intersection(b.index)
        ok = both[
            (a.loc[both, "status"] == "completed").to_numpy()
            & (b.loc[both, "status"] == "completed").to_numpy()
        ]
        if len(ok) == 0:
            lines.append(f"  {s0['policy']} vs {r.summary['policy']}: no task completed under both")
            continue
        d = a.loc[ok, "latency"].to_numpy() - b.loc[ok, "latency"].to_numpy()
        lines.append(
            f"  {s0['policy']} minus {r.summary['policy']}, per task on the {len(ok)} tasks both "
            f"completed: mean {d.mean():+.3f} s ({d.mean() / b.loc[ok, 'latency'].mean():+.1%}); "
            f"{s0['policy']} faster on {np.mean(d < -1e-9):.0%}, slower on {np.mean(d > 1e-9):.0%}"
        )
    lines.append(
        f"  one seed is one sample: `mecsim compare {s0['scenario']} --policies "
        + ",".join(str(r.summary["policy"]) for r in results)
        + " --seeds 8` gives paired intervals across seeds"
    )
    return "\n".join(lines)
