"""Benchmark of the GPU-server model (mecsim.sim.gpu): replay speed and the cost of the
expected-wait estimate a decision would call per (server, model).

Run it as a script (pytest does not collect it)::

    python tests/benchmarks/gpu_model.py              # 100k arrivals, queues of 10/100/1000
    python tests/benchmarks/gpu_model.py --tasks 20000

Prints, measured in this run: arrivals replayed per second (batching off, as today's server; and
batching on with residency, 4 models on a small memory), and microseconds per expected_wait call
with a given number of queued tasks (the estimate replays a copy of the live state, so it grows
with the queue).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from mecsim.sim.gpu import Arrival, GPUServerModel, Item, ServedModel, ServerConfig, StepCurve, replay


def configs() -> dict[str, ServerConfig]:
    curve = StepCurve.from_table({1: 1.0, 2: 1.593, 4: 2.839, 8: 5.322})
    keys = ["m0", "m1", "m2", "m3"]
    items = {k: Item(k, 2.0, 5.0) for k in keys}
    models = {k: ServedModel(k, (k,), 0.03, curve) for k in keys}
    return {
        "batching off (today)": ServerConfig.simple(2, {k: 0.03 for k in keys}),
        "batch<=8 + residency": ServerConfig(
            slots=2,
            models=models,
            items=items,
            memory_gib=4.0,
            max_batch=8,
            batch_timeout_s=0.05,
            preload=("m0", "m1"),
        ),
    }


def arrivals(n: int, rate: float, seed: int) -> list[Arrival]:
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.exponential(1 / rate, n))
    k = rng.choice(4, size=n, p=[0.5, 0.25, 0.15, 0.1])
    return [Arrival(float(t[i]), i, f"m{k[i]}", 30.0) for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=100_000)
    args = ap.parse_args()
    for name, cfg in configs().items():
        arr = arrivals(args.tasks, rate=1.5, seed=1)
        m = GPUServerModel(cfg)
        t0 = time.perf_counter()
        replay(m, arr)
        dt = time.perf_counter() - t0
        sizes = [r.batch_size for r in m.records.values()]
        cold = sum(r.cold for r in m.records.values()) / len(sizes)
        print(
            f"{name:24s} {args.tasks / dt:10.0f} arrivals/s  mean batch {np.mean(sizes):.2f}  "
            f"cold-start rate {cold:.3f}  loads {len(m.loads)}"
        )
    cfg = configs()["batch<=8 + residency"]
    for q in (10, 100, 1000):
        m = GPUServerModel(cfg)
        for i, a in enumerate(arrivals(q, rate=1e6, seed=2)):
            m.submit(i, a.key, 30.0, 0.0)
        reps = max(3, 2000 // q)
        t0 = time.perf_counter()
        for _ in range(reps):
            m.expected_wait("m3", 0.0)
        print(f"expected_wait with {q:5d} queued: {(time.perf_counter() - t0) / reps * 1e6:9.0f} us/call")


if __name__ == "__main__":
    main()
