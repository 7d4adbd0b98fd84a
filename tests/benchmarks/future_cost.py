"""Benchmark: the hybrid's bandwidth rule in the radio-limited regime, and the future-priced QUBO.

Run it as a script (pytest does not collect it)::

    python tests/benchmarks/future_cost.py                       # both parts, 8 seeds, full length
    python tests/benchmarks/future_cost.py --quick               # 8 seeds, shorter runs
    python tests/benchmarks/future_cost.py --part bandwidth --rules equal sum completion srpt-2
    python tests/benchmarks/future_cost.py --part future --weights 0.5 1 2 --loads 0.11 0.14
    python tests/benchmarks/future_cost.py --part medium         # paper-medium-v1: hybrid vs greedy
    python tests/benchmarks/future_cost.py --jobs 2              # runs in 2 processes

Part ``bandwidth`` (issue 15, item 4): ``qubo-sa`` with each bandwidth rule (default: every rule
of :data:`~mecsim.decision.bandwidth.BANDWIDTH_RULES`), in each uplink mode (``--modes``:
``preallocated`` and ``reallocated``, ``radio.uplink_mode``) on the radio-limited regime
(``radio-limited-v1``: the registered name, or ``--regime PATH`` to its YAML file) and on issue
15's inline variant (``ISSUE15`` of ``tests/benchmarks/bandwidth_rules.py``, 0.05 requests/s per
device), 8 paired seeds, 1200 s (600 s with ``--quick``); per rule the mean and p99 latency,
mean upload, deferrals by the rule per task, and the paired difference of the mean latency to
``equal`` with its 95% t-interval.

Part ``future`` (issue 15, item 5): on paper-small-v1 at 0.11 and 0.14 requests/s per device
(``devices.0.arrivals.rate_per_s``), 1200 s (600 s with ``--quick``), 8 paired seeds: least-loaded,
greedy, and ``qubo-sa`` with the myopic objective (``future_weight=0``) and future-priced at a
few weights; per objective the mean and p99 latency and the paired differences of the mean
latency "policy minus least-loaded" and "policy minus greedy" (s, 95% t-interval). Part ``medium``
does the same on paper-medium-v1 at its own load (the "no worse than greedy where it is better
today" check). Every ``qubo-sa`` run uses the policy's default bandwidth rule unless ``--bandwidth``
says otherwise.

Measured figures: see the README section "The hybrid's bandwidth default and the future-priced
objective" (the tables there are this script's output, with the command that made them).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "benchmarks"))

import mecsim  # noqa: E402
from mecsim.decision.bandwidth import BANDWIDTH_RULES  # noqa: E402
from mecsim.decision.bandwidth_metrics import bandwidth_metrics  # noqa: E402
from mecsim.scenario import load_scenario, registered_scenarios  # noqa: E402

#: Where the regime's YAML lives when it is not registered in this checkout (read only).
REGIME_FALLBACK = Path("/work/wt/regimes/scenarios/radio-limited.yaml")


def t_interval(x: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided t-interval of the mean."""
    from scipy import stats

    x = np.asarray(x, dtype=float)
    m = float(x.mean())
    if x.size < 2:
        return m, float("nan"), float("nan")
    h = float(stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return m, m - h, m + h


def run_one(job: tuple) -> dict[str, Any]:
    """One run: ``(label, source, policy, params, seed, overrides)`` -> a row of measures."""
    label, source, policy, params, seed, over = job
    sc = load_scenario(copy.deepcopy(source) if isinstance(source, dict) else source, **over)
    t0 = time.perf_counter()
    r = mecsim.simulate(sc, policy=policy, seed=seed, policy_params=dict(params))
    row = bandwidth_metrics(
        r.tasks, sc.radio.bandwidth_hz, r.epochs, t_start=sc.warmup_s, t_end=sc.duration_s
    )
    ep = r.epochs
    row["deferred_by_rule_per_task"] = (
        float(ep["n_deferred_by_rule"].sum()) / max(len(r.tasks), 1) if "n_deferred_by_rule" in ep else 0.0
    )
    row["fallbacks"] = int(ep["fallback"].notna().sum()) if "fallback" in ep else 0
    row.update(label=label, seed=seed, wall_s=time.perf_counter() - t0)
    return row


def run_all(jobs: list[tuple], n_jobs: int) -> pd.DataFrame:
    if n_jobs > 1:
        with ProcessPoolExecutor(n_jobs) as ex:
            rows = list(ex.map(run_one, jobs))
    else:
        rows = [run_one(j) for j in jobs]
    return pd.DataFrame(rows)


def paired(
    df: pd.DataFrame, label: str, base: str, key: str = "mean_latency_s", relative: bool = False
) -> str:
    a = df[df.label == label].set_index("seed")[key]
    b = df[df.label == base].set_index("seed")[key].loc[a.index]
    d = (a / b - 1.0).to_numpy() if relative else (a - b).to_numpy()
    mu, lo, hi = t_interval(d)
    return f"{mu:+.1%} [{lo:+.1%}, {hi:+.1%}]" if relative else f"{mu:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def bandwidth_part(
    title: str,
    source: Any,
    rules: list[str],
    seeds: list[int],
    duration: float | None,
    n_jobs: int,
    extra: dict[str, Any] | None = None,
) -> pd.DataFrame:
    over = {"duration_s": duration} if duration else {}
    over.update(extra or {})
    jobs = [(rule, source, "qubo-sa", {"bandwidth": rule}, s, over) for rule in rules for s in seeds]
    t0 = time.perf_counter()
    df = run_all(jobs, n_jobs)
    means = df.groupby("label", sort=False).mean(numeric_only=True)
    print(
        f"\n## {title}: qubo-sa per bandwidth rule, {len(seeds)} seeds (paired), "
        f"{duration or 'scenario'} s each; {len(jobs)} runs in {time.perf_counter() - t0:.0f} s\n"
    )
    print("| rule | mean lat s | p99 lat s | upload s | queue s | defer by rule/task | vs equal (95% CI) |")
    print("|---|---|---|---|---|---|---|")
    for rule in rules:
        m = means.loc[rule]
        vs = paired(df, rule, "equal", relative=True) if rule != "equal" and "equal" in rules else ""
        print(
            f"| {rule} | {m.mean_latency_s:.3f} | {m.p99_latency_s:.2f} | {m.mean_upload_s:.3f} | "
            f"{m.mean_queue_s:.3f} | {m.deferred_by_rule_per_task:.2f} | {vs} |"
        )
    return df


def selection_part(
    title: str,
    source: Any,
    loads: list[float | None],
    weights: list[float],
    seeds: list[int],
    duration: float | None,
    n_jobs: int,
    bandwidth: str | None,
    rho_max: float | None = None,
) -> pd.DataFrame:
    frames = []
    for load in loads:
        over: dict[str, Any] = {"duration_s": duration} if duration else {}
        if load is not None:
            over["devices.0.arrivals.rate_per_s"] = load
        qp = {"bandwidth": bandwidth} if bandwidth else {}
        cases: list[tuple[str, str, dict]] = [
            ("least-loaded", "least-loaded", {}),
            ("greedy", "greedy", {}),
            ("qubo-sa myopic", "qubo-sa", {**qp, "future_weight": 0.0}),
        ]
        fp = {"future_rho_max": rho_max} if rho_max is not None else {}
        tag = f" rho_max={rho_max:g}" if rho_max is not None else ""
        cases += [(f"qubo-sa V={w:g}{tag}", "qubo-sa", {**qp, **fp, "future_weight": w}) for w in weights]
        jobs = [(lab, source, pol, par, s, over) for lab, pol, par in cases for s in seeds]
        t0 = time.perf_counter()
        df = run_all(jobs, n_jobs)
        df["load"] = load
        means = df.groupby("label", sort=False).mean(numeric_only=True)
        print(
            f"\n## {title}, load {load if load is not None else 'as in the scenario'} requests/s per "
            f"device: {len(seeds)} seeds (paired), {duration or 'scenario'} s each; {len(jobs)} runs "
            f"in {time.perf_counter() - t0:.0f} s\n"
        )
        print(
            "| objective | mean lat s | p99 lat s | minus least-loaded s (95% CI) | minus greedy s (95% CI) |"
        )
        print("|---|---|---|---|---|")
        for lab, _, _ in cases:
            m = means.loc[lab]
            ll = paired(df, lab, "least-loaded") if lab != "least-loaded" else ""
            gr = paired(df, lab, "greedy") if lab != "greedy" else ""
            print(f"| {lab} | {m.mean_latency_s:.3f} | {m.p99_latency_s:.2f} | {ll} | {gr} |")
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="600 s runs instead of 1200 s")
    ap.add_argument("--seeds", type=int, default=8, help="number of seeds (1..N); the claims use 8")
    ap.add_argument("--part", choices=["all", "bandwidth", "future", "medium"], default="all")
    ap.add_argument("--rules", nargs="+", default=list(BANDWIDTH_RULES))
    ap.add_argument(
        "--regime",
        default=None,
        help=f"radio-limited-v1 YAML path (default: the registered name, else {REGIME_FALLBACK})",
    )
    ap.add_argument("--no-issue15", action="store_true", help="skip issue 15's inline variant")
    ap.add_argument("--weights", nargs="+", type=float, default=[0.5, 1.0, 2.0])
    ap.add_argument("--loads", nargs="+", type=float, default=[0.11, 0.14])
    ap.add_argument(
        "--bandwidth",
        default=None,
        help="bandwidth rule of every qubo-sa run of the future/medium parts (default: the policy's default)",
    )
    ap.add_argument(
        "--rho-max",
        type=float,
        default=None,
        help="future_rho_max of the future-priced runs (default: the policy's)",
    )
    ap.add_argument("--jobs", type=int, default=1, help="worker processes")
    ap.add_argument(
        "--modes",
        nargs="+",
        default=["preallocated", "reallocated"],
        choices=["preallocated", "reallocated"],
        help="radio.uplink_mode of the bandwidth part",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dotted scenario override for the bandwidth part, e.g. radio.fading.model=none",
    )
    args = ap.parse_args(argv)
    seeds = list(range(1, args.seeds + 1))
    import yaml

    extra = {k: yaml.safe_load(v) for k, _, v in (item.partition("=") for item in args.set)}
    duration = 600.0 if args.quick else 1200.0
    if args.part in ("all", "bandwidth"):
        rules = args.rules if "equal" in args.rules else ["equal", *args.rules]
        regime = args.regime or (
            "radio-limited-v1" if "radio-limited-v1" in registered_scenarios() else str(REGIME_FALLBACK)
        )
        for mode in args.modes:
            over = {**extra, "radio.uplink_mode": mode}
            tag = f" {extra}" if extra else ""
            bandwidth_part(f"{regime}{tag}, {mode}", regime, rules, seeds, duration, args.jobs, over)
            if not args.no_issue15:
                from bandwidth_rules import ISSUE15

                bandwidth_part(
                    f"issue 15's variant (0.05 req/s per device), {mode}",
                    ISSUE15,
                    rules,
                    seeds,
                    duration,
                    args.jobs,
                    over,
                )
    if args.part in ("all", "future"):
        selection_part(
            "paper-small-v1",
            "paper-small-v1",
            args.loads,
            args.weights,
            seeds,
            duration,
            args.jobs,
            args.bandwidth,
            args.rho_max,
        )
    if args.part in ("all", "medium"):
        selection_part(
            "paper-medium-v1",
            "paper-medium-v1",
            [None],
            args.weights,
            seeds,
            600.0 if args.quick else None,
            args.jobs,
            args.bandwidth,
            args.rho_max,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
