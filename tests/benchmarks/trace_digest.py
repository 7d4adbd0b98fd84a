"""Digests of the trace tables of a fixed set of seeded runs: a speed change must not alter them.

Run: ``python tests/benchmarks/trace_digest.py --save base.json`` before a change and
``python tests/benchmarks/trace_digest.py --check base.json`` after it. Each case is a ready
scenario, a policy and seed 1 over a short run; the digest is SHA-256 over the tasks, epochs
(decision wall time left out: it is measured, not simulated) and servers tables, rounded to 12
significant digits so that a change in the order of a floating-point sum shows as a difference
only if it moves a value beyond that. ``--check`` prints each case and exits 1 if any differ.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time

import numpy as np
import pandas as pd

CASES = [
    ("smoke-v1", "greedy", 200),
    ("mm1-v1", None, 2000),
    ("paper-small-v1", "greedy", 300),
    ("paper-small-v1", "qubo-sa", 200),
    ("paper-medium-v1", "greedy", 300),
    ("paper-medium-v1", "least-loaded", 300),
    ("paper-medium-v1", "round-robin", 300),
    ("paper-medium-v1", "random", 300),
    ("paper-medium-v1", "qubo-sa", 150),
    ("paper-medium-v1", "central-queue", 300),
    ("radio-limited-v1", "greedy", 300),
    ("radio-limited-v1", "qubo-sa", 150),
    ("hetero-load-v1", "greedy", 300),
    ("hetero-load-v1", "greedy-ls", 200),
    ("deadline-v1", "greedy", 300),
    ("deadline-v1", "qubo-sa", 150),
    ("batch-v1", "qubo-sa", 120),
    ("batch-v1", "greedy", 300),
    ("azure-code-v1", "greedy", 300),
    ("residency-v1", "greedy", 300),
    ("paper-medium-v1", "greedy", 300, "faults"),
    ("paper-medium-v1", "qubo-sa", 150, "faults"),
    ("radio-limited-v1", "greedy", 300, "reallocated"),
    ("paper-medium-v1", "greedy", 300, "epoch0"),
    ("paper-medium-v1", "greedy", 300, "devices1000"),
]

#: scenario overrides of the cases that name one
OVERRIDES = {
    "faults": {
        "faults": {
            "servers": [{"server": "a100-1", "mtbf_s": 60, "mttr_s": 20}],
            "channels": [{"device": 3, "start_s": 50, "end_s": 90}],
            "backhaul": [{"server": "a100-2", "start_s": 30, "end_s": 120, "extra_latency_s": 0.05}],
        }
    },
    "reallocated": {"radio.uplink_mode": "reallocated"},
    "epoch0": {"epoch.length_s": 0},
    "devices1000": {
        "devices": [
            {
                "name": "iot",
                "count": 1000,
                "placement": {"distance_m": [50, 400]},
                "arrivals": {"process": "poisson", "rate_per_s": 0.00286},
                "workload": [{"model": "sd15", "steps": [20, 40], "deadline_s": 30}],
            }
        ]
    },
}

#: measured, not simulated: left out of the digest
MEASURED = {"decision_wall_s", "wall_s", "solver_wall_s", "sampler_wall_s"}


def _digest(df: pd.DataFrame) -> str:
    h = hashlib.sha256()
    for col in sorted(c for c in df.columns if c not in MEASURED and not c.endswith("_wall_s")):
        s = df[col]
        if pd.api.types.is_float_dtype(s):
            v = np.asarray(s, dtype=float)
            h.update(col.encode() + np.char.encode(np.char.mod("%.12g", v)).tobytes())
        else:
            h.update(col.encode() + s.astype(str).str.cat(sep="|").encode())
    return h.hexdigest()[:16]


def run_case(scenario: str, policy: str | None, duration: float, variant: str = "") -> dict[str, str]:
    import mecsim

    over = {k.replace(".", "__"): v for k, v in OVERRIDES.get(variant, {}).items()}
    res = mecsim.simulate(scenario, policy=policy, seed=1, duration_s=duration, **over)
    return {
        "tasks": _digest(res.tasks),
        "epochs": _digest(res.epochs),
        "servers": _digest(res.servers),
        "n_tasks": str(len(res.tasks)),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--save", help="write the digests to this JSON file")
    g.add_argument("--check", help="compare with the digests in this JSON file")
    ap.add_argument("--only", help="substring: run only the cases whose 'scenario/policy' contains it")
    args = ap.parse_args()
    ref = json.load(open(args.check)) if args.check else {}
    out, bad = {}, 0
    for scenario, policy, dur, *variant in CASES:
        key = f"{scenario}/{policy or 'default'}" + (f"/{variant[0]}" if variant else "")
        if args.only and args.only not in key:
            continue
        t = time.perf_counter()
        d = run_case(scenario, policy, dur, *variant)
        out[key] = d
        wall = time.perf_counter() - t
        if args.check:
            want = ref.get(key)
            diff = [k for k in d if want is None or want.get(k) != d[k]]
            bad += bool(diff)
            print(f"{key:36s} {'same' if not diff else 'DIFFERS: ' + ', '.join(diff)}  ({wall:.1f} s)")
        else:
            print(f"{key:36s} {d['n_tasks']:>6s} tasks  ({wall:.1f} s)")
    if args.save:
        with open(args.save, "w") as f:
            json.dump(out, f, indent=1)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
