"""Decision-time benchmark: wall time of whole decisions by problem size, fitted per solver.

For each solver (through the policy that uses it) and each heuristic, this times
``policy.decide(state)`` (bandwidth, QUBO, solve, repair, local search: what the epochs table
records as ``decision_wall_s``) on random epochs of growing size on 7 servers (batch-v1's and
paper-medium-v1's count), hosts drawn with probability 0.6; it keeps the fastest of 3 calls per
epoch and the median over epochs per size, fits ``t = a + b * size^c`` (relative least squares;
a piecewise-linear table instead where the power law cannot describe the solver: the exact
solver's exponential growth and its fallback beyond 20 variables, or any fit more than 50% off at
some size) and writes the timing file that ``decision_time: {mode: measured}`` reads
(:mod:`mecsim.decision.timing`). The size is the QUBO's variables for the QUBO policies and the
epoch's tasks for the heuristics.

Usage::

    python tests/benchmarks/decision_time.py                      # writes models/decision-time.yaml
    python tests/benchmarks/decision_time.py --keys sa,greedy --out /tmp/t.yaml --repeats 3
    python tests/benchmarks/decision_time.py --rl-model models/rl-small.zip   # adds "rl"

The machine is named in the file's header with the load average at the start: on a shared
machine the times are upper bounds of what the code needs.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import curve_fit

from mecsim.policies import make_policy
from mecsim.registry import POLICIES
from mecsim.testing import random_epoch_state

#: timing-file key -> (policy, size unit, largest number of tasks timed)
KEYS: dict[str, tuple[str, str, int]] = {
    "sa": ("qubo-sa", "variables", 32),
    "tabu": ("qubo-tabu", "variables", 32),
    "exact": ("qubo-exact", "variables", 8),  # see EXACT_SHAPES
    "qaoa": ("qubo-qaoa", "variables", 12),
    "qaoa-fixed": ("qubo-qaoa-fixed", "variables", 16),
    "random-feasible": ("qubo-random", "variables", 32),
    "greedy-ls": ("greedy-ls", "variables", 32),
    "greedy": ("greedy", "tasks", 32),
    "least-loaded": ("least-loaded", "tasks", 32),
    "random": ("random", "tasks", 32),
    "round-robin": ("round-robin", "tasks", 32),
    "nearest": ("nearest", "tasks", 32),
}
TASKS = (1, 2, 3, 4, 5, 6, 8, 12, 16, 24, 32)
SERVERS = 7
HOST_PROBABILITY = 0.6
#: The exact solver (dimod's ExactSolver, at most 20 variables) grows as 2^variables and refuses
#: larger QUBOs at once (the policy then falls back, which is fast): a power law cannot describe
#: that, so it gets a piecewise-linear table, timed on epochs of (tasks, servers) where every
#: server hosts every model: 4, 8, ..., 20 variables, then 21 (the first refused: the fallback).
PIECEWISE = {"exact"}
EXACT_SHAPES = ((1, 4), (2, 4), (3, 4), (4, 4), (5, 4), (3, 7), (6, 4), (8, 4))
#: ... and where the power law is more than this far off at some measured size (relative error).
MAX_REL_ERROR = 0.5
#: Each state is timed this often and the fastest kept: on a shared machine a decision of a few
#: milliseconds is often preempted for a time slice, which the minimum removes (as timeit does).
PER_STATE = 3


def _power(x: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return a + b * np.power(x, c)


def fit_power(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """``(a, b, c, worst relative error)`` of ``y ~ a + b x^c`` with a, b >= 0."""
    if len(x) < 3:
        return float(y.min()), 0.0, 1.0, float(np.max(np.abs(y - y.min()) / y))
    p0 = (float(y.min()) * 0.5, float(max(y.max() - y.min(), 1e-9) / x.max()), 1.0)
    try:
        (a, b, c), _ = curve_fit(
            _power, x, y, p0=p0, sigma=y, bounds=([0, 0, 0.2], [np.inf, np.inf, 6]), maxfev=20000
        )
    except RuntimeError:
        return float(y.min()), 0.0, 1.0, float("inf")
    rel = np.abs(_power(x, a, b, c) - y) / y
    return float(a), float(b), float(c), float(rel.max())


def time_key(key: str, repeats: int, max_tasks: int | None, rl_model: str | None) -> dict | None:
    """Median decision wall time per size for one key; None when its policy is unavailable."""
    policy_name, unit, largest = KEYS.get(key, ("rl", "tasks", 32))
    largest = min(largest, max_tasks or largest)
    params = {"model": rl_model} if key == "rl" else {}
    if policy_name not in POLICIES.names():
        print(f"  {key}: policy {policy_name!r} not registered, skipped", file=sys.stderr)
        return None
    try:
        policy = make_policy(policy_name, **params)
    except Exception as exc:  # e.g. the null solver on a branch without it, or no qiskit
        print(f"  {key}: cannot build {policy_name!r}: {exc}", file=sys.stderr)
        return None
    policy.reset(np.random.default_rng(0))
    if hasattr(policy, "bind"):
        policy.bind({"server_names": tuple(f"s{j}" for j in range(SERVERS))})
    policy.decide(random_epoch_state(2, SERVERS, 999, host_probability=HOST_PROBABILITY))  # warm-up
    sizes, secs = [], []
    shapes = EXACT_SHAPES if key == "exact" else [(n, SERVERS) for n in TASKS if n <= largest]
    hosts = 1.0 if key == "exact" else HOST_PROBABILITY
    for n, m in shapes:
        walls, vars_ = [], []
        for r in range(repeats):
            state = random_epoch_state(n, m, 1000 * n + r, host_probability=hosts)
            best = np.inf
            for _ in range(PER_STATE):
                t0 = time.perf_counter()
                d = policy.decide(state)
                best = min(best, time.perf_counter() - t0)
                if best > 1.0:  # long solves are not repeated (preemption is small beside them)
                    break
            walls.append(best)
            vars_.append(d.info.get("variables", n) if unit == "variables" else n)
        sizes.append(float(np.median(vars_)))
        secs.append(float(np.median(walls)))
        print(f"  {key}: {n} tasks, {sizes[-1]:g} {unit}: {secs[-1] * 1e3:.3f} ms", file=sys.stderr)
    # equal medians of size (possible for small n) are merged, keeping the sizes increasing
    x, y = [], []
    for s, t in sorted(zip(sizes, secs, strict=True)):
        if x and s <= x[-1]:
            y[-1] = max(y[-1], t)
            continue
        x.append(s)
        y.append(t)
    xa, ya = np.array(x), np.array(y)
    a, b, c, worst = fit_power(xa, ya)
    entry: dict = {"size": unit}
    if key in PIECEWISE or worst > MAX_REL_ERROR:
        entry["form"] = "piecewise"
        entry["note"] = "piecewise-linear between the measured medians" + (
            "" if key in PIECEWISE else f" (the power law was {worst:.0%} off)"
        )
    else:
        entry.update(form="power", a_s=float(f"{a:.4g}"), b_s=float(f"{b:.4g}"), c=round(c, 3))
        entry["note"] = f"power-law fit, worst relative error {worst:.0%} over the points"
    entry["points"] = [[float(f"{s:.4g}"), float(f"{t:.4g}")] for s, t in zip(x, y, strict=True)]
    return entry


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{cpu}, {os.cpu_count()} cores, load average {load:.1f} at the start; "
        f"Python {platform.python_version()}, numpy {np.__version__}"
    )


def write(entries: dict[str, dict], out: Path, command: str, repeats: int) -> None:
    import yaml

    today = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = _machine()
    head = [
        "# Decision time per solver (and per heuristic), by problem size: the model that",
        "# epoch.decision_time {mode: measured} charges as simulated latency (mecsim/decision/timing.py).",
        "# Fitted from the wall time of whole decisions (policy.decide: bandwidth, QUBO, solve, repair,",
        f"# local search) on random epochs on {SERVERS} servers (hosts with probability {HOST_PROBABILITY}),",
        f"# fastest of {PER_STATE} calls per epoch, median of {repeats} epochs per size; size = QUBO",
        "# variables, or tasks for the heuristics.",
        f"# Machine: {machine}.",
        f"# Date: {today}.",
        f"# Command: {command}",
        "# The machine was shared with other jobs: read the times as upper bounds.",
    ]
    body = yaml.safe_dump(
        {"machine": machine, "date": today, "command": command, "models": entries},
        sort_keys=False,
        default_flow_style=None,
        width=110,
    )
    out.write_text("\n".join(head) + "\n" + body, encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", default=",".join(KEYS), help="comma-separated keys (default: all)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--max-tasks", type=int, default=None, help="cap on tasks per epoch for every key")
    ap.add_argument("--rl-model", default=None, help="a trained RL model: also time the 'rl' policy")
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parents[2] / "models" / "decision-time.yaml"
    )
    args = ap.parse_args()
    keys = [k for k in args.keys.split(",") if k]
    if args.rl_model:
        keys.append("rl")
    entries = {}
    for key in keys:
        t0 = time.perf_counter()
        entry = time_key(key, args.repeats, args.max_tasks, args.rl_model)
        if entry is not None:
            entries[key] = entry
            print(f"{key}: {entry['form']} ({entry['note']}), {time.perf_counter() - t0:.0f} s")
    command = "python tests/benchmarks/decision_time.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    write(entries, args.out, command.strip(), args.repeats)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
