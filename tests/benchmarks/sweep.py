"""Sweep benchmark: 16 runs serially in one process vs on a 2-worker Dask local cluster.

Run: ``python tests/benchmarks/sweep.py [--duration 12000] [--workers 2]``.

The runs: ``paper-small-v1``, policies random, round-robin, least-loaded and greedy, seeds 0-3,
``--duration`` simulated seconds each (about 1-3 s of wall time per run on one core).

1. Serial: every run executed in this process exactly as a worker would (simulate, write the
   run folder), one after the other: ``T_serial``.
2. Parallel, warm: the same sweep through ``run_sweep`` on an already running 2-worker
   ``LocalCluster`` whose workers have imported mecsim: ``T_parallel``.
3. Parallel, cold: ``run_sweep`` with its embedded cluster (start and shutdown included), as
   ``mecsim sweep`` does it.

Parallel efficiency = T_serial / (workers * T_parallel), for the warm and the cold case; the goal
is >= 0.8 with 2 workers on a 2-core machine. The machine's load average is printed before and
after: other jobs on a shared machine depress the parallel figure (the serial run uses one core,
the parallel one needs both). The results of the three are checked to be identical.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

POLICIES = ["random", "round-robin", "least-loaded", "greedy"]


def _summaries(out: Path) -> dict[str, dict]:
    keep = ("tasks_generated", "latency_mean_s", "latency_p99_s", "scenario_digest")
    return {
        p.parent.name: {k: json.loads(p.read_text())[k] for k in keep}
        for p in sorted((out / "runs").glob("*/summary.json"))
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=12000.0, help="simulated seconds per run")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=4)
    args = ap.parse_args()

    from distributed import Client, LocalCluster

    from mecsim.sweep import execute_run, plan_runs, run_sweep

    spec = {
        "name": "bench",
        "scenario": "paper-small-v1",
        "overrides": {"duration_s": args.duration},
        "policies": POLICIES,
        "seeds": {"count": args.seeds},
    }
    runs = plan_runs(spec)
    tmp = Path(tempfile.mkdtemp(prefix="mecsim-sweep-bench-"))
    try:
        load0 = os.getloadavg()
        print(
            f"{len(runs)} runs: paper-small-v1, {len(POLICIES)} policies x {args.seeds} seeds, "
            f"duration {args.duration:g} s; {os.cpu_count()} cores; load average {load0[0]:.2f}"
        )

        t = time.perf_counter()
        walls = []
        for run in runs:
            row = execute_run(run, str(tmp / "serial"))
            assert row["status"] == "done", row["error"]
            walls.append(row["wall_s"])
        t_serial = time.perf_counter() - t
        print(
            f"serial:          {t_serial:7.2f} s  (per run {min(walls):.2f}-{max(walls):.2f} s, "
            f"mean {sum(walls) / len(walls):.2f} s)"
        )

        with (
            LocalCluster(
                n_workers=args.workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            ) as cluster,
            Client(cluster) as client,
        ):
            client.run(lambda: __import__("mecsim.api"))  # workers import mecsim before the clock
            t = time.perf_counter()
            cat = run_sweep(spec, tmp / "warm", scheduler=client, progress=False)
            t_warm = time.perf_counter() - t
        assert (cat["status"] == "done").all()
        walls_warm = cat["wall_s"].to_numpy()

        t = time.perf_counter()
        cat = run_sweep(spec, tmp / "cold", workers=args.workers, progress=False)
        t_cold = time.perf_counter() - t
        assert (cat["status"] == "done").all()

        ref = _summaries(tmp / "serial")
        assert ref == _summaries(tmp / "warm") == _summaries(tmp / "cold"), "results differ"
        load1 = os.getloadavg()
        w = args.workers
        print(f"parallel (warm): {t_warm:7.2f} s  efficiency {t_serial / (w * t_warm):.2f}")
        # Two causes of a low efficiency, told apart: the workers idle (scheduling overhead), or
        # each run is slower than in the serial loop (the cores are shared with other jobs).
        print(
            f"  workers busy {walls_warm.sum() / (w * t_warm):.0%} of the time; a run took "
            f"{walls_warm.mean() / (sum(walls) / len(walls)):.2f}x its serial wall time"
        )
        print(
            f"parallel (cold): {t_cold:7.2f} s  efficiency {t_serial / (w * t_cold):.2f}  "
            f"(cluster start and shutdown included)"
        )
        busy = (
            " (other jobs compete for the cores: the parallel figures read low)"
            if max(load0[0], load1[0]) > (os.cpu_count() or 1)
            else ""
        )
        print(f"results identical: yes; load average before {load0[0]:.2f}, after {load1[0]:.2f}{busy}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":  # the local cluster spawns workers that re-import this module
    main()
