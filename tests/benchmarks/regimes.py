"""Calibrate the regime scenarios: measure each one's stated property over seeds and run lengths.

Each regime scenario in scenarios/ (radio-limited-v1, hetero-load-v1, deadline-v1, batch-v1)
states in its header the property that makes it a regime; ``tests/test_regimes.py`` checks that
property on seed 1 with short runs. This script measures the same figures over several seeds and
longer runs, so the margins of the test are known. Ratios and shares are computed per run, then
summarised (min, median, max over seeds).

Usage::

    python tests/benchmarks/regimes.py                       # every regime, seeds 1-4, 1,200 s
    python tests/benchmarks/regimes.py --regime deadline-v1 --seeds 8 --duration 1800
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import mecsim


def measured(res: mecsim.Result) -> dict[str, float]:
    """The regime figures of one run, over tasks that arrived after the warm-up."""
    t = res.tasks
    sc_warm = float(res.summary["warmup_s"])
    done = t[(t.status == "completed") & (t.t_arrival >= sc_warm)]
    upload = (done.t_upload_end - done.t_upload_start).mean()
    return {
        "mean_s": float(res.summary["latency_mean_s"]),
        "p95_s": float(res.summary["latency_p95_s"]),
        "upload_share": float(upload / done.latency.mean()) if len(done) else float("nan"),
        "miss": float(res.summary["deadline_miss_rate"]),
        "median_decided": float(np.median(res.epochs.n_decided)) if len(res.epochs) else 0.0,
        "median_variables": (
            float(np.median(res.epochs.variables)) if "variables" in res.epochs else float("nan")
        ),
        "in_flight": float(res.summary["tasks_in_flight"]),
    }


def _run(scenario: str, policy: str, seed: int, duration: float, **params: object) -> dict[str, float]:
    res = mecsim.simulate(scenario, policy=policy, seed=seed, duration_s=duration, policy_params=params)
    return measured(res)


def radio_limited(seeds: list[int], duration: float) -> None:
    for seed in seeds:
        r = {
            rule: _run("radio-limited-v1", "greedy", seed, duration, bandwidth=rule)
            for rule in ("equal", "sum", "minmax")
        }
        means = [r[k]["mean_s"] for k in r]
        spread = max(means) / min(means) - 1
        print(
            f"radio-limited-v1 seed {seed}: upload share (greedy, equal) {r['equal']['upload_share']:.2f}; "
            f"mean equal {means[0]:.2f} sum {means[1]:.2f} minmax {means[2]:.2f} s; "
            f"rule spread {spread:+.1%}"
        )


def hetero_load(seeds: list[int], duration: float) -> None:
    for seed in seeds:
        g = _run("hetero-load-v1", "greedy", seed, duration)
        row = [f"greedy {g['mean_s']:.2f}"]
        for p in ("random", "round-robin", "least-loaded"):
            a = _run("hetero-load-v1", p, seed, duration)
            b = _run("hetero-load-v1", p, seed, 2 * duration)
            ratio = a["mean_s"] / g["mean_s"]
            row.append(f"{p} {a['mean_s']:.2f} -> {b['mean_s']:.2f} (x{ratio:.2f} greedy)")
        print(
            f"hetero-load-v1 seed {seed} (mean over {duration:g} s -> {2 * duration:g} s): " + "; ".join(row)
        )


def deadline(seeds: list[int], duration: float) -> None:
    for seed in seeds:
        g = _run("deadline-v1", "greedy", seed, duration)
        print(f"deadline-v1 seed {seed}: greedy miss rate {g['miss']:.1%}, mean {g['mean_s']:.2f} s")


def batch(seeds: list[int], duration: float) -> None:
    for seed in seeds:
        q = _run("batch-v1", "qubo-sa", seed, duration)
        g = _run("batch-v1", "greedy", seed, duration)
        print(
            f"batch-v1 seed {seed}: median epoch decides {q['median_decided']:g} tasks, "
            f"{q['median_variables']:g} QUBO variables; mean qubo-sa {q['mean_s']:.2f} "
            f"greedy {g['mean_s']:.2f} s"
        )


REGIMES = {
    "radio-limited-v1": radio_limited,
    "hetero-load-v1": hetero_load,
    "deadline-v1": deadline,
    "batch-v1": batch,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--regime", choices=sorted(REGIMES), action="append")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--duration", type=float, default=1200.0)
    args = ap.parse_args()
    for name in args.regime or list(REGIMES):
        t0 = time.perf_counter()
        REGIMES[name](list(range(1, args.seeds + 1)), args.duration)
        print(f"  ({time.perf_counter() - t0:.0f} s wall)")


if __name__ == "__main__":
    main()
