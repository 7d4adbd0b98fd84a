"""Benchmark: the bandwidth rules in a radio-limited regime, and why the per-epoch optimum loses.

Run it as a script (pytest does not collect it)::

    python tests/benchmarks/bandwidth_rules.py            # 8 seeds x 600 s per rule (~2-3 min)
    python tests/benchmarks/bandwidth_rules.py --quick    # 8 seeds x 300 s
    python tests/benchmarks/bandwidth_rules.py --seeds 12 --rules equal sum srpt completion
    python tests/benchmarks/bandwidth_rules.py --scenario path/to/other.yaml   # one more scenario
    python tests/benchmarks/bandwidth_rules.py --set radio.fading.model=none   # static channels

Scenario ``issue15``: the radio-limited variant of paper-small-v1 measured in issue 15 (16
devices at 100-500 m, 5 MHz uplink, 0.05 requests/s each, half image-to-image with 10-30 Mbit
inputs, every GPU an A100, 0.5 s epochs), built inline; ``radio-limited-v1`` (the study's
regime, 0.08 requests/s) is run too when that name is registered. Server choice is ``greedy``
with the rule as its ``bandwidth`` parameter; every rule sees the same seeds (paired).

Per rule (means over seeds): mean and p99 latency, the paired difference of the mean latency to
``equal`` with its 95% t-interval, the mean upload time, bandwidth-seconds per uploaded bit
(Hz s/bit), idle bandwidth while tasks wait (share of B x T and Hz s per task), uplink
utilisation, queueing for bandwidth (arrival to upload start: mean and p99), the share of uploads
stuck with less than a quarter of the band, and deferrals by the rule per task. The measures are
:func:`mecsim.decision.bandwidth_metrics.bandwidth_metrics` over the window [warm-up, duration] on
the traces.

Measured on the project machine (full run, 8 seeds x 600 s, 64 runs in 42 s), mean latency
against ``equal`` (2.87 s, p99 12.9 s), paired, 95% t-interval: completion -3.7% [-5.1, -2.3]
(p99 10.6 s), srpt-2 -2.2% [-4.5, +0.0], srpt-4 -0.6% [-1.7, +0.5], pf +0.8% [-1.2, +2.8], sum
+9.9% [+6.7, +13.1] (p99 21.8 s), minmax +21.5% [+13.3, +29.6], srpt +76% [+14, +138]. The
README section "Why the per-epoch bandwidth optimum loses" has the full table.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import mecsim  # noqa: E402
from mecsim.decision.bandwidth import BANDWIDTH_RULES  # noqa: E402
from mecsim.decision.bandwidth_metrics import bandwidth_metrics  # noqa: E402
from mecsim.scenario import load_scenario, registered_scenarios  # noqa: E402

#: Issue 15's radio-limited variant of paper-small-v1.
ISSUE15: dict[str, Any] = {
    "name": "issue15-radio-limited",
    "description": "paper-small-v1, radio-limited: 16 devices at 100-500 m, 5 MHz, A100s",
    "seed": 1,
    "duration_s": 600,
    "warmup_s": 60,
    "radio": {
        "bandwidth_hz": 5.0e6,
        "min_bandwidth_hz": 1.0e5,
        "noise_dbm_per_hz": -174,
        "noise_figure_db": 7,
        "path_loss": {"pl0_db": 128.1, "slope_db_per_decade": 37.6, "shadowing_std_db": 6},
        "fading": {"model": "rayleigh", "coherence_time_s": 0.01},
        "downlink": {"rate_bps": 50.0e6, "latency_s": 0.002},
    },
    "devices": [
        {
            "name": "iot",
            "count": 16,
            "tx_power_dbm": 23,
            "placement": {"distance_m": [100, 500]},
            "arrivals": {"process": "poisson", "rate_per_s": 0.05},
            "workload": [
                {"model": "sd15", "weight": 0.5, "steps": [20, 40], "deadline_s": 30},
                {
                    "model": "sd15-img2img",
                    "weight": 0.5,
                    "input_bits": [1.0e7, 3.0e7],
                    "steps": [20, 40],
                    "deadline_s": 30,
                },
            ],
        }
    ],
    "servers": [
        {
            "name": "a100-1",
            "gpu": "a100",
            "slots": 1,
            "models": ["sd15", "sdxl", "sd15-img2img"],
            "backhaul": {"latency_s": 0.010, "rate_bps": 1.0e9},
        },
        {
            "name": "a100-2",
            "gpu": "a100",
            "slots": 2,
            "models": ["sd15", "sd15-img2img"],
            "backhaul": {"latency_s": 0.002, "rate_bps": 1.0e9},
        },
        {
            "name": "a100-3",
            "gpu": "a100",
            "slots": 1,
            "models": ["sd15", "sdxl"],
            "backhaul": {"latency_s": 0.002, "rate_bps": 1.0e9},
        },
        {
            "name": "a100-4",
            "gpu": "a100",
            "slots": 1,
            "models": ["sd15", "sd15-img2img"],
            "backhaul": {"latency_s": 0.001, "rate_bps": 1.0e9},
        },
    ],
    "service": {"jitter": {"distribution": "lognormal", "cv": 0.1}},
    "epoch": {"length_s": 0.5},
    "policy": {"name": "greedy"},
}

COLUMNS = [
    ("mean_latency_s", "mean lat s", "{:.3f}"),
    ("p99_latency_s", "p99 lat s", "{:.2f}"),
    ("mean_upload_s", "upload s", "{:.3f}"),
    ("bw_s_per_bit", "Hz.s/bit", "{:.4f}"),
    ("idle_fraction", "idle %BT", "{:.1%}"),
    ("idle_per_task_hz_s", "idle MHz.s/task", "{:.3f}"),
    ("utilisation", "util", "{:.1%}"),
    ("mean_queue_s", "queue s", "{:.3f}"),
    ("p99_queue_s", "p99 queue s", "{:.2f}"),
    ("small_share_fraction", "share<B/4", "{:.1%}"),
    ("deferred_per_task", "defer/task", "{:.2f}"),
]


def t_interval(x: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided t-interval of the mean."""
    from scipy import stats

    x = np.asarray(x, dtype=float)
    m = float(x.mean())
    if x.size < 2:
        return m, float("nan"), float("nan")
    h = float(stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return m, m - h, m + h


#: Dotted scenario overrides from --set, applied to every run.
OVERRIDES: dict[str, Any] = {}


def run_one(source: Any, rule: str, seed: int, duration: float | None) -> dict[str, Any]:
    over = {"duration_s": duration} if duration else {}
    over.update(OVERRIDES)
    sc = load_scenario(copy.deepcopy(source) if isinstance(source, dict) else source, **over)
    r = mecsim.simulate(sc, policy="greedy", seed=seed, policy_params={"bandwidth": rule})
    row = bandwidth_metrics(
        r.tasks, sc.radio.bandwidth_hz, r.epochs, t_start=sc.warmup_s, t_end=sc.duration_s
    )
    row["idle_per_task_hz_s"] /= 1e6  # MHz s
    row.update(rule=rule, seed=seed)
    return row


def bench(
    label: str, source: Any, rules: list[str], seeds: list[int], duration: float | None
) -> pd.DataFrame:
    rows = []
    t0 = time.perf_counter()
    for rule in rules:
        for seed in seeds:
            rows.append(run_one(source, rule, seed, duration))
    wall = time.perf_counter() - t0
    df = pd.DataFrame(rows)
    means = df.groupby("rule", sort=False).mean(numeric_only=True)
    base = df[df.rule == "equal"].set_index("seed")["mean_latency_s"] if "equal" in rules else None
    print(
        f"\n## {label}{' ' + str(OVERRIDES) if OVERRIDES else ''}: greedy, {len(seeds)} seeds "
        f"(paired), {duration or 'scenario'} s each; {len(rules) * len(seeds)} runs in {wall:.0f} s\n"
    )
    head = ["rule", *[c[1] for c in COLUMNS], "vs equal (95% CI)"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for rule in rules:
        m = means.loc[rule]
        cells = [rule] + [
            fmt.format(m[key]) if key in m and np.isfinite(m[key]) else "-" for key, _, fmt in COLUMNS
        ]
        if base is not None and rule != "equal":
            lat = df[df.rule == rule].set_index("seed")["mean_latency_s"]
            rel = (lat / base.loc[lat.index] - 1.0).to_numpy()
            mu, lo, hi = t_interval(rel)
            cells.append(f"{mu:+.1%} [{lo:+.1%}, {hi:+.1%}]")
        else:
            cells.append("")
        print("| " + " | ".join(cells) + " |")
    return df


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="300 s per run instead of 600 s")
    ap.add_argument("--seeds", type=int, default=8, help="number of seeds (1..N), at least 8 for the claims")
    ap.add_argument("--rules", nargs="+", default=list(BANDWIDTH_RULES))
    ap.add_argument("--no-regime", action="store_true", help="skip radio-limited-v1 even if registered")
    ap.add_argument(
        "--scenario",
        action="append",
        default=[],
        help="also run this scenario (registered name or YAML path); repeatable",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dotted scenario override for every run, e.g. radio.fading.model=none",
    )
    args = ap.parse_args(argv)
    import yaml

    for item in args.set:
        key, _, value = item.partition("=")
        OVERRIDES[key] = yaml.safe_load(value)
    seeds = list(range(1, args.seeds + 1))
    rules = args.rules if "equal" in args.rules else ["equal", *args.rules]
    duration = 300.0 if args.quick else None
    bench("issue15 (0.05 req/s per device)", ISSUE15, rules, seeds, duration)
    if not args.no_regime and "radio-limited-v1" in registered_scenarios():
        bench("radio-limited-v1", "radio-limited-v1", rules, seeds, duration)
    elif not args.no_regime:
        print("\n(radio-limited-v1 is not registered in this checkout: skipped)")
    for extra in args.scenario:
        bench(extra, extra, rules, seeds, duration)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
