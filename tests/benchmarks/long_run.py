"""Long-run benchmark: a streamed run's memory stays flat as the run grows.

Run: ``python tests/benchmarks/long_run.py [--tasks 1000000] [--small 100000] [--chunk-rows 50000]``.

Each run is ``paper-medium-v1`` with the ``greedy`` policy, seed 1, streamed to a temporary
folder (``simulate(..., stream_to=DIR)``: the tables are written to Parquet as the run goes, the
summary is computed from the files), in a fresh subprocess. Over long runs the scenario produces
about 2.86 tasks per simulated second (about 3.1 over its first minutes: the bursty devices), so
``--tasks N`` sets the duration to N / 2.86 s. For each run it prints the
wall time, tasks per second and the peak RSS of the process (``ru_maxrss``), then the ratio of the
two peaks. Goal: peak RSS under 1.5 GB for the large run and within 1.5x of the small run's.
``--in-memory`` also runs the small size without streaming, for reference.

The machine is shared: wall times vary with its load; the memory figures do not.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

TASKS_PER_S = 2.86  # paper-medium-v1 over long runs (about 3.1 over its first few minutes)


def _child(n_tasks: int, out: str | None, chunk_rows: int) -> None:
    import resource

    import mecsim

    warnings.simplefilter("ignore")
    duration = n_tasks / TASKS_PER_S
    t = time.perf_counter()
    res = mecsim.simulate(
        "paper-medium-v1", policy="greedy", seed=1, duration_s=duration, stream_to=out, chunk_rows=chunk_rows
    )
    wall = time.perf_counter() - t
    s = res.summary
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "tasks": s["tasks_generated"],
                "duration_s": duration,
                "wall_s": wall,
                "tasks_per_s": s["tasks_generated"] / wall,
                "peak_rss_mb": rss_mb,
                "epochs": s["epochs"],
                "latency_mean_s": s["latency_mean_s"],
                "version": mecsim.__version__,
            }
        )
    )


def _run(n_tasks: int, chunk_rows: int, stream: bool) -> dict:
    tmp = tempfile.mkdtemp(prefix="mecsim-long-run-")
    try:
        cmd = [sys.executable, __file__, "--child", str(n_tasks), "--chunk-rows", str(chunk_rows)]
        if stream:
            cmd += ["--out", tmp]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        m = json.loads(out.stdout.strip().splitlines()[-1])
        m["files_mb"] = sum(p.stat().st_size for p in Path(tmp).iterdir()) / 2**20
        return m
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _line(label: str, m: dict) -> str:
    return (
        f"{label}: {m['tasks']:,} tasks over {m['duration_s']:,.0f} s simulated, "
        f"{m['wall_s']:.1f} s wall, {m['tasks_per_s']:,.0f} tasks/s, "
        f"peak RSS {m['peak_rss_mb']:,.0f} MB, files {m['files_mb']:,.0f} MB"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=1_000_000, help="tasks of the large run")
    ap.add_argument("--small", type=int, default=100_000, help="tasks of the small run")
    ap.add_argument("--chunk-rows", type=int, default=50_000)
    ap.add_argument("--in-memory", action="store_true", help="also run the small size without streaming")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        _child(args.child, args.out, args.chunk_rows)
        return
    if args.in_memory:
        print(_line(f"in memory, {args.small:,} tasks", _run(args.small, args.chunk_rows, False)), flush=True)
    small = _run(args.small, args.chunk_rows, True)
    print(_line(f"streamed, {args.small:,} tasks", small), flush=True)
    large = _run(args.tasks, args.chunk_rows, True)
    print(_line(f"streamed, {args.tasks:,} tasks", large), flush=True)
    ratio = large["peak_rss_mb"] / small["peak_rss_mb"]
    ok = large["peak_rss_mb"] < 1536 and ratio <= 1.5
    print(
        f"peak RSS ratio large/small = {ratio:.2f} (goal: < 1.5 GB and <= 1.5x): {'met' if ok else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
