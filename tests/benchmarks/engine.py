"""Engine benchmark: bare SimPy M/M/1 vs mecsim's full pipeline, in one process.

Run: ``python tests/benchmarks/engine.py [--customers 200000] [--duration 20000]``.

1. A bare SimPy M/M/1 (lambda 0.9, mu 1; one process per customer, a Resource for the server,
   200,000 customers): customers per second.
2. mecsim on ``paper-medium-v1`` with the ``greedy`` policy for ``--duration`` simulated seconds
   (arrivals, epochs, decisions, fading uploads, backhaul, GPU queues, return, all records):
   tasks per second (tasks generated / wall time of simulate(), tables included).
3. Memory: peak RSS of a fresh process running mecsim for duration D and 4 D, and the bytes per
   task of the trace buffers, to show that memory grows only with the (columnar) records.

The last line is the ratio of 2 to 1. The machine is shared: compare ratios from one run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings

import numpy as np
import simpy


def bare_simpy_mm1(n: int, lam: float = 0.9, mu: float = 1.0, seed: int = 1) -> float:
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
    t = time.perf_counter()
    env.run()
    return n / (time.perf_counter() - t)


def mecsim_rate(duration: float, epoch_s: float | None = None) -> tuple[float, int, float, float]:
    import mecsim

    over = {} if epoch_s is None else {"epoch.length_s": epoch_s}
    t = time.perf_counter()
    res = mecsim.simulate("paper-medium-v1", policy="greedy", seed=1, duration_s=duration, **over)
    dt = time.perf_counter() - t
    per_epoch = len(res.tasks) / max(len(res.epochs), 1)
    return len(res.tasks) / dt, len(res.tasks), res.summary["latency_mean_s"], per_epoch


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
    print(json.dumps({"tasks": n, "peak_rss_mb": rss_mb, "buffer_bytes_per_task": buf / n,
                      "version": mecsim.__version__}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=200_000)
    ap.add_argument("--duration", type=float, default=20_000.0)
    ap.add_argument("--child", type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        _child(args.child)
        return
    warnings.simplefilter("ignore")
    bare = bare_simpy_mm1(args.customers)
    print(f"bare SimPy M/M/1: {args.customers} customers, {bare:,.0f} customers/s")
    rate, n, lat, per = mecsim_rate(args.duration)
    print(f"mecsim paper-medium-v1 greedy: {n} tasks over {args.duration:g} s simulated, "
          f"{rate:,.0f} tasks/s (mean latency {lat:.3f} s, {per:.2f} tasks per epoch)")
    # the per-epoch decision (snapshot, policy, checks) is the fixed cost; longer epochs
    # amortise it over more tasks
    r5, n5, lat5, per5 = mecsim_rate(args.duration, epoch_s=5.0)
    print(f"  same with 5 s epochs: {r5:,.0f} tasks/s ({per5:.2f} tasks per epoch, "
          f"mean latency {lat5:.3f} s), ratio {r5 / bare:.3f}")
    for d in (args.duration / 4, args.duration):
        out = subprocess.run([sys.executable, __file__, "--child", str(d)], capture_output=True,
                             text=True, check=True)
        m = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"memory, {d:g} s simulated: {m['tasks']} tasks, peak RSS {m['peak_rss_mb']:.0f} MB, "
              f"trace buffers {m['buffer_bytes_per_task']:.0f} bytes/task")
    print(f"ratio mecsim tasks/s / bare SimPy customers/s = {rate / bare:.3f}")


if __name__ == "__main__":
    main()
