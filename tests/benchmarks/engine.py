"""Engine benchmark: mecsim against bare SimPy M/M/1, measured in one process, interleaved.

Run: ``python tests/benchmarks/engine.py [--rounds 3] [--scale 1.0] [--memory]``, or
``python tests/benchmarks/engine.py --profile greedy`` (or ``mm1``, ``qubo-sa``) for the top 10
functions of one run by own time under cProfile (the same runs as below; with ``PYTHONPATH``
pointing at another checkout it profiles that one, for before/after tables).

Each round measures, one after the other (so that load from other processes hits all alike):

1. bare SimPy M/M/1 (lambda 0.9, mu 1; one process per customer, ``Resource(capacity=1)``):
   customers per CPU second;
2. mecsim ``paper-medium-v1`` with ``greedy`` (arrivals, epochs, decisions, fading uploads,
   backhaul, GPU queues, return, all records and the result tables): tasks per CPU second;
3. mecsim ``mm1-v1`` (ideal radio, a decision at every arrival): tasks per CPU second; and the
   same with a subclass of its policy that changes nothing, which is how any policy of a user's
   own runs (the snapshot is built, ``decide`` called, the decision checked; the built-in
   ``least-loaded`` decides small epochs in the engine without them);
4. mecsim ``paper-medium-v1`` with ``qubo-sa`` (the hybrid policy): tasks per CPU second;
5. the fixed cost of a run (scenario lookup and validation, set-up, result tables): CPU time
   of ``simulate`` for 1 s of ``paper-medium-v1`` and of ``azure-code-v1`` (which replays the
   shipped trace), median of 10 seeds;
6. ``paper-medium-v1`` with its devices replaced by N static devices sharing a fixed total rate
   (2.86 tasks/s, as paper-medium), greedy, N = 10, 100, 1,000, 10,000: CPU time per task,
   set-up included, each run after a full garbage collection (Python's collection of the
   objects left by the runs before, charged to whichever run happens to trigger it, had made the
   first of these runs about 25% slower than the others).

The ratios use CPU time (``time.process_time``) of this process, the fairest clock on a shared
machine; the median over rounds is printed. ``--memory`` adds peak RSS of fresh processes. The
last lines are the four ratios with their targets, and the load average seen.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from typing import Any

import numpy as np
import simpy

TOTAL_RATE = 2.86  # tasks/s of paper-medium-v1 (30 x 0.07 + 10 x 0.076)


def bare_simpy_mm1(n: int, lam: float = 0.9, mu: float = 1.0, seed: int = 1) -> float:
    """Customers per CPU second of a plain SimPy M/M/1."""
    rng = np.random.default_rng(seed)
    inter = rng.exponential(1 / lam, n)
    serv = rng.exponential(1 / mu, n)
    env = simpy.Environment()
    server = simpy.Resource(env, 1)
    sojourn = []

    def customer(i):
        t0 = env.now
        with server.request() as req:
            yield req
            yield env.timeout(serv[i])
        sojourn.append(env.now - t0)

    def source():
        for i in range(n):
            yield env.timeout(inter[i])
            env.process(customer(i))

    env.process(source())
    t = time.process_time()
    env.run()
    return n / (time.process_time() - t)


def mecsim_run(scenario: str, policy: Any, duration: float, **over) -> tuple[float, int]:
    """(CPU seconds, tasks) of one simulate() call, result tables included."""
    import mecsim

    t = time.process_time()
    res = mecsim.simulate(scenario, policy=policy, seed=1, duration_s=duration, warmup_s=0, **over)
    n = len(res.tasks)
    _ = res.summary
    return time.process_time() - t, n


def _own_policy():
    """A subclass of least-loaded (mm1-v1's policy) that changes nothing: it decides through the
    documented interface, as a user's policy does."""
    from mecsim.policies.heuristics import LeastLoadedPolicy

    return type("OwnLeastLoaded", (LeastLoadedPolicy,), {})()


def run_overhead(scenario: str, runs: int = 10) -> float:
    """Median CPU seconds of ``simulate`` for 1 simulated second (the fixed cost of a run)."""
    import mecsim

    times = []
    for seed in range(runs):
        t = time.process_time()
        mecsim.simulate(scenario, seed=seed, duration_s=1, warmup_s=0)
        times.append(time.process_time() - t)
    return statistics.median(times)


def many_devices(n_dev: int) -> dict:
    return {
        "devices": [
            {
                "name": "iot",
                "count": n_dev,
                "placement": {"distance_m": [50, 400]},
                "arrivals": {"process": "poisson", "rate_per_s": TOTAL_RATE / n_dev},
                "workload": [{"model": "sd15", "steps": [20, 40], "deadline_s": 30}],
            }
        ]
    }


def _child(duration: float) -> None:
    import resource

    import mecsim
    from mecsim.engine import Simulation
    from mecsim.policies import make_policy
    from mecsim.results import collect
    from mecsim.scenario import load_scenario

    warnings.simplefilter("ignore")
    sc = load_scenario("paper-medium-v1", duration_s=duration)
    sim = Simulation(sc, make_policy("greedy"), 1).run()
    n = sim.tasks.n
    buf = sim.tasks.nbytes() + sim.server_log.nbytes()
    collect(sim)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "tasks": n,
                "peak_rss_mb": rss_mb,
                "buffer_bytes_per_task": buf / n,
                "version": mecsim.__version__,
            }
        )
    )


PROFILED = {  # (scenario, policy, simulated seconds at --scale 1)
    "greedy": ("paper-medium-v1", "greedy", 5000.0),
    "mm1": ("mm1-v1", None, 60_000.0),
    "qubo-sa": ("paper-medium-v1", "qubo-sa", 500.0),
}


def profile(which: str, scale: float, top: int = 10) -> None:
    """Print the top functions of one run by own time (tottime), with their cumulative time."""
    import cProfile
    import pstats

    scenario, policy, duration = PROFILED[which]
    mecsim_run("smoke-v1", policy or "greedy", 10)  # imports and caches out of the profile
    prof = cProfile.Profile()
    prof.enable()
    cpu, n = mecsim_run(scenario, policy, duration * scale)
    prof.disable()
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in stats.values())
    print(f"{scenario} {policy or '(scenario policy)'}: {n} tasks, {total:.2f} s profiled ({cpu:.2f} s CPU)")
    print(f"{'own s':>7} {'cum s':>7} {'calls':>8}  function")
    rows = sorted(stats.items(), key=lambda kv: -kv[1][2])[:top]
    for (path, line, func), (_cc, calls, tt, ct, _callers) in rows:
        short = path.split("/mecsim/", 1)[-1] if "/mecsim/" in path else os.path.basename(path)
        print(f"{tt:7.3f} {ct:7.3f} {calls:8d}  {short}:{line}({func})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every run length")
    ap.add_argument("--memory", action="store_true", help="also measure peak RSS")
    ap.add_argument("--profile", choices=sorted(PROFILED), help="profile one run instead (top 10)")
    ap.add_argument("--child", type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        _child(args.child)
        return
    if args.profile:
        warnings.simplefilter("ignore")
        profile(args.profile, args.scale)
        return
    warnings.simplefilter("ignore")
    k = args.scale
    customers = int(100_000 * k)
    medium_s, mm1_s, qubo_s, scale_s = 5000 * k, 60_000 * k, 500 * k, 1500 * k
    ratios: dict[str, list[float]] = {"greedy": [], "mm1": [], "own": [], "qubo": [], "flat": []}
    # imports and caches out of the measurements (the hybrid's stack, dimod and dwave-samplers,
    # takes ~0.2 s CPU to import: a one-time cost, not throughput)
    mecsim_run("smoke-v1", "greedy", 10)
    mecsim_run("smoke-v1", "qubo-sa", 10)
    for rnd in range(args.rounds):
        bare = bare_simpy_mm1(customers)
        cpu, n = mecsim_run("paper-medium-v1", "greedy", medium_s)
        ratios["greedy"].append(n / cpu / bare)
        cpu_mm1, n_mm1 = mecsim_run("mm1-v1", None, mm1_s)
        ratios["mm1"].append(n_mm1 / cpu_mm1 / bare)
        cpu_own, n_own = mecsim_run("mm1-v1", _own_policy(), mm1_s)
        ratios["own"].append(n_own / cpu_own / bare)
        cpu_q, n_q = mecsim_run("paper-medium-v1", "qubo-sa", qubo_s)
        ratios["qubo"].append(n_q / cpu_q / bare)
        per_task = {}
        for n_dev in (10, 100, 1000, 10_000):
            gc.collect()
            c, m = mecsim_run("paper-medium-v1", "greedy", scale_s, **many_devices(n_dev))
            per_task[n_dev] = c / m
        ratios["flat"].append(max(per_task.values()) / min(per_task.values()))
        fixed = {sc: run_overhead(sc) for sc in ("paper-medium-v1", "azure-code-v1")}
        print(
            f"round {rnd + 1}: bare SimPy {bare:,.0f} customers/s; paper-medium greedy "
            f"{n / cpu:,.0f} tasks/s ({n} tasks); mm1-v1 {n_mm1 / cpu_mm1:,.0f} tasks/s "
            f"(with a policy of one's own {n_own / cpu_own:,.0f}); "
            f"qubo-sa {n_q / cpu_q:,.0f} tasks/s; us/task at 10/100/1k/10k devices: "
            + " / ".join(f"{v * 1e6:.0f}" for v in per_task.values())
            + "; fixed cost of a run: "
            + ", ".join(f"{sc} {v * 1e3:.1f} ms" for sc, v in fixed.items()),
            flush=True,
        )
    if args.memory:
        for d in (medium_s / 4, medium_s):
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(d)], capture_output=True, text=True, check=True
            )
            m = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"memory, {d:g} s simulated: {m['tasks']} tasks, peak RSS {m['peak_rss_mb']:.0f} "
                f"MB, trace buffers {m['buffer_bytes_per_task']:.0f} bytes/task"
            )
    med = {key: statistics.median(v) for key, v in ratios.items()}
    print(f"mm1-v1 with a policy of one's own (snapshot, decide, check) / bare SimPy = {med['own']:.3f}")
    print(
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; medians of "
        f"{args.rounds} rounds, CPU time"
    )
    print(f"ratio paper-medium-v1 greedy / bare SimPy M/M/1 = {med['greedy']:.3f} (target >= 0.25)")
    print(f"ratio mm1-v1 / bare SimPy M/M/1 = {med['mm1']:.3f} (target >= 0.5)")
    print(f"ratio paper-medium-v1 qubo-sa / bare SimPy M/M/1 = {med['qubo']:.4f} (target >= 0.03)")
    print(f"per-task time, max / min over 10..10,000 devices = {med['flat']:.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()
