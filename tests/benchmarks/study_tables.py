"""Print the README's "What the study shows" tables from a `mecsim reproduce` output folder.

Reads the folder's overview.csv, verdicts.csv and study.json (nothing is recomputed) and prints,
as markdown: the header facts (comparisons, runs, wall time, RL training per regime), the mean
latency table (decision time free, 95% t-intervals, "unstable" where the backlog grew) and the
paired-difference table (RL and the best stable heuristic minus the hybrid, free and charged).

    PYTHONPATH=$PWD python tests/benchmarks/study_tables.py runs/regimes
    PYTHONPATH=$PWD python tests/benchmarks/study_tables.py runs/regimes --rl   # RL training only
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

#: The policies of the mean-latency table, in its column order.
POLICIES = ["qubo-sa", "rl", "greedy", "greedy-ls", "least-loaded", "round-robin", "random"]


def _short(regime: str) -> str:
    """'radio-limited-v1 (uploads matter)' -> 'radio-limited-v1'."""
    return str(regime).split(" (")[0]


def _ci(v: float, lo: float, hi: float, sign: bool = False) -> str:
    f = "{:+.3f}" if sign else "{:.2f}"
    return f"{f.format(v)} [{f.format(lo)}, {f.format(hi)}]"


def rl_rows(study: dict) -> list[dict]:
    """RL training per regime (the free mode trains; the charged mode reuses the model)."""
    rows = []
    for sc in study["scenarios"]:
        rl = sc.get("rl") or {}
        if sc.get("mode") != "free" or not rl:
            continue
        rows.append(
            {
                "regime": sc["scenario"],
                "budget": rl.get("steps"),
                "steps": rl.get("trained_steps"),
                "episodes": rl.get("episodes"),
                "wall_s": rl.get("wall_s"),
                "flat": rl.get("flat"),
                "best": rl.get("best_step"),
                "checks": rl.get("checks"),
            }
        )
    return rows


def header(study: dict, overview: pd.DataFrame) -> str:
    s = study["settings"]
    runs = sum(int(sc.get("runs", 0)) for sc in study["scenarios"])
    rl = rl_rows(study)
    flat = [r for r in rl if r["flat"]]
    steps = sorted(int(r["steps"]) for r in rl if r["steps"] is not None)
    wall = float(s["wall_s"])
    return (
        f"{len(study['scenarios'])} comparisons, {runs} runs ({s['seeds']} seeds per policy and regime); "
        f"RL trained per regime until flat, at most {s['rl_steps']:,} decisions: flat in {len(flat)} of "
        f"{len(rl)} regimes, {steps[0]:,}-{steps[-1]:,} decisions; wall {int(wall // 60)} min "
        f"{wall % 60:.0f} s ({s['executor']})"
    )


def rl_table(study: dict) -> str:
    out = [
        "| regime | decisions (budget) | training runs | checks | policy kept at | wall (s) | flat |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rl_rows(study):
        best = "" if r["best"] is None else f"{r['best']:,}"
        flat = {True: "yes", False: "no", None: "too few checks"}[r["flat"]]
        steps = f"{r['steps']:,} ({r['budget']:,})"
        wall = f"{r['wall_s']:.0f}"
        out.append(
            f"| {r['regime']} | {steps} | {r['episodes']} | {r['checks']} | {best} | {wall} | {flat} |"
        )
    return "\n".join(out)


def mean_table(overview: pd.DataFrame) -> str:
    free = overview[overview["mode"] == "free"]
    out = ["| regime | " + " | ".join(POLICIES) + " |", "|---" * (len(POLICIES) + 1) + "|"]
    for regime, g in free.groupby("regime", sort=False):
        cells = []
        for p in POLICIES:
            row = g[g["policy"] == p]
            if row.empty:
                cells.append("")
            elif bool(row["unstable"].iloc[0]):
                cells.append("unstable")
            else:
                r = row.iloc[0]
                cells.append(_ci(r["mean_s"], r["mean_s_lo"], r["mean_s_hi"]))
        out.append(f"| {_short(regime)} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def paired_table(verdicts: pd.DataFrame) -> str:
    out = [
        "| regime | decision time | RL minus qubo-sa (s) | best stable heuristic minus qubo-sa (s) |",
        "|---|---|---|---|",
    ]
    for _, r in verdicts.iterrows():
        rl = _ci(r["rl_minus_hybrid_s"], r["rl_lo"], r["rl_hi"], sign=True)
        h = _ci(r["heuristic_minus_hybrid_s"], r["heuristic_lo"], r["heuristic_hi"], sign=True)
        out.append(f"| {_short(r['regime'])} | {r['mode']} | {rl} | {r['heuristic']}: {h} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="a `mecsim reproduce --out` folder")
    ap.add_argument("--rl", action="store_true", help="print only the RL training table")
    a = ap.parse_args(argv)
    try:
        overview = pd.read_csv(a.folder / "overview.csv")
        verdicts = pd.read_csv(a.folder / "verdicts.csv")
        study = json.loads((a.folder / "study.json").read_text())
    except (OSError, ValueError) as exc:
        print(f"study_tables: cannot read {a.folder}: {exc}", file=sys.stderr)
        return 2
    if a.rl:
        print(rl_table(study))
        return 0
    print(header(study, overview), end="\n\n")
    print(mean_table(overview), end="\n\n")
    print(paired_table(verdicts), end="\n\n")
    print(rl_table(study))
    return 0


if __name__ == "__main__":
    sys.exit(main())
