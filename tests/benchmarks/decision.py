"""Benchmark of the decision module: optimality gap and speed of the qubo-* pipeline.

Run it as a script (pytest does not collect it)::

    python tests/benchmarks/decision.py                 # 200 epochs at each size
    python tests/benchmarks/decision.py --quick         # 12 epochs, a minute or two
    python tests/benchmarks/decision.py --epochs 20     # quicker
    python tests/benchmarks/decision.py --penalty-scale 0.5 --num-reads 16 --num-sweeps 100

For each size (tasks x servers) it draws random epochs (:func:`mecsim.testing.random_epoch_state`)
and, with the same bandwidth shares ("sum" objective) for all rows, measures the gap to the exact
optimum of the selection problem (:func:`mecsim.decision.exact.solve_selection_exact`) of:

* ``qubo-sa``: the full policy pipeline (SA, decode with repair, local search);
* ``raw SA``: the same SA samples (same seeds), decoded and repaired but without local search;
* ``qubo-tabu``: the full pipeline with tabu search (``--no-tabu`` to skip);
* ``greedy+LS``: cheapest insertion followed by the same local search, no sampler at all (the
  classical baseline the annealer has to beat);
* ``greedy``: the ``greedy`` heuristic policy (earliest completion, same bandwidth).

First, two sections independent of the pipeline:

* *SA alone* (``sa_alone``): no repair, no local search: the gap of the lowest-energy *feasible*
  read (``none feas.`` counts epochs without any) for ``sa`` at its defaults, ``sa`` at 16 x
  1000, ``sa-standalone`` (per-task penalties with a penalty-method loop, see
  :mod:`mecsim.decision.penalty`) and the null sampler ``random-feasible`` with the same 16
  reads (the negative control), at full and 60% hosting.
* *exact reference times* (``exact_times``): ``linear_sum_assignment`` (the reference now), the
  same positional model as an LP by HiGHS, and the positional MILP by HiGHS (the old reference),
  all checked to agree.

Times: the SA call (``solve_wall_s``), the whole ``decide`` call, the MILP reference, the
bandwidth step. ``--linearised K`` also times :class:`~mecsim.decision.milp.MILPSampler` (the
product-linearised MILP behind ``qubo-milp``) on the first K epochs of each size.

Measured on the project machine (2 shared cores, load average about 4 during the run, so the
times are pessimistic), 200 epochs per size, defaults (penalty = 1.0 A_safe, SA 8 reads x 200
sweeps, 8 candidates polished by local search). Gap to the MILP optimum, median / p95 / max and
the share of epochs solved optimally:

=======================  ======================  ======================  ======================
pipeline                 10 x 4                  30 x 6                  60 x 8
=======================  ======================  ======================  ======================
qubo-sa                  0 / 0 / 0, 100%         0 / 0 / 0, 100%         0 / 0 / 0, 100%
raw SA (no LS)           0.86 / 3.1 / 5.4%, 8%   2.7 / 5.2 / 8.1%, 0%    4.4 / 7.1 / 10.5%, 0%
qubo-tabu                0 / 0 / 0.42%, 98.5%    0 / 0 / 0.046%, 96%     0 / 0.003 / 0.019%, 90.5%
greedy insertion + LS    0 / 0 / 0.23%, 98%      0 / 0 / 0.080%, 97%     0 / 0.001 / 0.019%, 94.5%
greedy policy            1.1 / 3.9 / 6.6%, 2%    1.8 / 3.6 / 5.0%, 0%    2.3 / 3.9 / 5.5%, 0%
=======================  ======================  ======================  ======================

Median times (ms) at 10x4 / 30x6 / 60x8: SA call 1.5 / 5.3 / 24; whole qubo-sa decide 3.8 /
11 / 47; tabu call 6.6 / 11 / 37; positional MILP reference 7.3 / 83 / 580; bandwidth step
0.26 / 0.28 / 0.34; QUBO build 0.5 / 1.3 / 3.1; greedy insertion + LS 0.17 / 0.53 / 1.4. The
linearised MILP behind ``qubo-milp`` took 1.9-2.8 s at 10x4 and did not prove optimality within
10 s at 30x6 or 60x8.

With ``--penalty-scale 0.3`` the raw SA reads are much better (median 0.4-0.9%), because the
annealer then works on an easier landscape, but the polished pipeline is not better and misses
the optimum on a few small epochs where the BQM's minimum is itself infeasible; see
:data:`mecsim.decision.qubo.DEFAULT_PENALTY_SCALE`.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mecsim.decision.bandwidth import allocate_bandwidth  # noqa: E402
from mecsim.decision.exact import solve_selection_exact  # noqa: E402
from mecsim.decision.milp import MILPSampler, solve_selection_milp  # noqa: E402
from mecsim.decision.qubo import (  # noqa: E402
    DEFAULT_PENALTY_SCALE,
    build_selection_qubo,
    local_search,
)
from mecsim.decision.solvers import SA_DEFAULTS, get_sampler  # noqa: E402
from mecsim.policies.base import make_policy  # noqa: E402
from mecsim.policies.qubo import DEFAULT_CANDIDATES, QuboPolicy  # noqa: E402
from mecsim.testing import random_epoch_state  # noqa: E402


def _pct(gaps: list[float]) -> str:
    g = 100.0 * np.asarray(gaps)
    return (
        f"{np.median(g):8.4f}% {np.percentile(g, 95):8.4f}% {g.max():8.4f}% {np.mean(g <= 1e-9) * 100:6.1f}%"
    )


def _ms(ts: list[float]) -> str:
    return f"{1e3 * np.median(ts):8.2f}" if ts else "     n/a"


def _best_feasible_gap(q, ss, opt: float) -> float:
    """Gap of the lowest-energy read that satisfies every one-hot group (inf if none does)."""
    labels = list(q.bqm.variables)
    x = ss.record.sample[:, [ss.variables.index(v) for v in labels]]
    if ss.vartype.name == "SPIN":
        x = (x + 1) // 2
    vi = np.array([v[0] for v in labels])
    ones = np.zeros((x.shape[0], q.n_tasks))
    np.add.at(ones.T, vi, x.T)
    ok = (ones[:, q.placeable] == 1).all(axis=1)
    if not ok.any():
        return float("inf")
    energy = q.bqm.energies((x, labels))
    return float(energy[ok].min()) / opt - 1.0


SA_ALONE = [
    ("sa (8 x 200)", "sa", {}),
    ("sa (16 x 1000)", "sa", {"num_reads": 16, "num_sweeps": 1000}),
    ("sa-standalone", "sa-standalone", {}),
    ("random-feasible (16)", "random-feasible", {"num_reads": 16}),
]


def sa_alone(sizes: list[tuple[int, int]], epochs: int, seed: int) -> None:
    """SA without repair or local search against the exact optimum (and the null sampler)."""
    print("\n== SA alone: gap of the best feasible read, no repair, no local search ==")
    print(
        f"{'size':>6} {'hosting':>7} {'sampler':<22} {'median':>8} {'p95':>8} {'max':>8} "
        f"{'none feas.':>10} {'ms':>7}"
    )
    samplers = {label: get_sampler(name, **params) for label, name, params in SA_ALONE}
    for n, m in sizes:
        for host in (1.0, 0.6):
            gaps: dict[str, list[float]] = {k: [] for k in samplers}
            times: dict[str, list[float]] = {k: [] for k in samplers}
            for e in range(epochs):
                state = random_epoch_state(n, m, seed=seed + 1000 * n + e, host_probability=host)
                bw = allocate_bandwidth(
                    state.input_bits,
                    state.snr_per_hz,
                    state.bandwidth_budget_hz,
                    state.min_bandwidth_hz,
                    "sum",
                )
                q = build_selection_qubo(state, bw)
                _, opt, _ = solve_selection_exact(q)
                groups = [g for g in q.one_hot if g]
                for label, sampler in samplers.items():
                    kw = {"seed": e}
                    if "one_hot" in sampler.parameters:
                        kw["one_hot"] = groups
                    t = time.perf_counter()
                    ss = sampler.sample(q.bqm, **kw)
                    times[label].append(time.perf_counter() - t)
                    gaps[label].append(_best_feasible_gap(q, ss, opt))
            for label in samplers:
                g = 100.0 * np.asarray(gaps[label])
                fin = g[np.isfinite(g)]
                none = int(np.sum(~np.isfinite(g)))
                # epochs without a feasible read count as +inf in the percentiles
                med = np.median(g) if fin.size else float("inf")
                p95 = np.percentile(np.where(np.isfinite(g), g, 1e9), 95)
                p95s = f"{p95:7.3f}%" if p95 < 1e8 else "     inf"
                mx = f"{fin.max():7.3f}%" if fin.size else "     n/a"
                print(
                    f"{n:>3}x{m:<2} {host:>7.0%} {label:<22} {med:7.3f}% {p95s} {mx} "
                    f"{none:>10} {_ms(times[label])}",
                    flush=True,
                )


def exact_times(sizes: list[tuple[int, int]], epochs: int, milp_epochs: int, seed: int) -> None:
    """Exact reference: linear_sum_assignment vs the positional LP and MILP (HiGHS)."""
    print("\n== exact reference: median / max ms (all methods agree to 1e-9) ==")
    print(f"{'size':>6} {'hosting':>7} {'LSA':>17} {'HiGHS LP':>17} {'old MILP':>17}")
    for n, m in sizes:
        for host in (1.0, 0.6):
            t_lsa, t_lp, t_milp = [], [], []
            for e in range(epochs):
                state = random_epoch_state(n, m, seed=seed + 1000 * n + e, host_probability=host)
                q = build_selection_qubo(state, state.equal_share())
                t = time.perf_counter()
                _, best, how = solve_selection_exact(q)
                t_lsa.append(time.perf_counter() - t)
                assert how == "linear_sum_assignment"
                t = time.perf_counter()
                _, best_lp, _ = solve_selection_exact(q, method="highs")
                t_lp.append(time.perf_counter() - t)
                assert abs(best_lp - best) <= 1e-9 * best
                if e < milp_epochs:
                    t = time.perf_counter()
                    _, best_milp = solve_selection_milp(q)
                    t_milp.append(time.perf_counter() - t)
                    assert abs(best_milp - best) <= 1e-9 * best
            cells = [f"{_ms(ts)} / {1e3 * max(ts):6.1f}" if ts else "n/a" for ts in (t_lsa, t_lp, t_milp)]
            print(f"{n:>3}x{m:<2} {host:>7.0%} " + " ".join(f"{c:>17}" for c in cells), flush=True)


def run_size(n: int, m: int, args: argparse.Namespace) -> None:
    sa_params = {"num_reads": args.num_reads, "num_sweeps": args.num_sweeps}
    common = dict(penalty_scale=args.penalty_scale, fallback="greedy", candidates=args.candidates)
    full = QuboPolicy(solver="sa", solver_params=sa_params, **common)
    raw = QuboPolicy(solver="sa", solver_params=sa_params, local_search=False, **{**common, "candidates": 1})
    tabu = QuboPolicy(solver="tabu", **common) if args.tabu else None
    greedy = make_policy("greedy", bandwidth="sum")
    rows: dict[str, list[float]] = {k: [] for k in ("full", "raw", "tabu", "gls", "greedy")}
    times: dict[str, list[float]] = {
        k: [] for k in ("sa", "decide", "tabu", "milp", "bw", "build", "gls", "lin")
    }
    feasible, repairs, moves, fallbacks, lin_status = [], [], [], 0, []
    for e in range(args.epochs):
        state = random_epoch_state(
            n, m, seed=args.seed + 1000 * n + e, host_probability=args.host_probability
        )
        t = time.perf_counter()
        bw = allocate_bandwidth(
            state.input_bits, state.snr_per_hz, state.bandwidth_budget_hz, state.min_bandwidth_hz, "sum"
        )
        times["bw"].append(time.perf_counter() - t)
        t = time.perf_counter()
        q = build_selection_qubo(state, bw, penalty_scale=args.penalty_scale)
        times["build"].append(time.perf_counter() - t)
        t = time.perf_counter()
        _, opt, _ = solve_selection_exact(q)
        times["milp"].append(time.perf_counter() - t)

        for pol, key in ((full, "full"), (raw, "raw"), (tabu, "tabu")):
            if pol is None:
                continue
            pol.reset(np.random.default_rng(e))  # same seed for full and raw: same SA samples
            t = time.perf_counter()
            d = pol.decide(state)
            dt = time.perf_counter() - t
            if d.info["fallback"] is not None:
                fallbacks += 1
            rows[key].append(d.info["objective"] / opt - 1.0)
            if key == "full":
                times["decide"].append(dt)
                times["sa"].append(d.info["solve_wall_s"])
                feasible.append(d.info["feasible_before_repair"])
                repairs.append(d.info["repairs"])
                moves.append(d.info["local_search_moves"])
            if key == "tabu":
                times["tabu"].append(d.info["solve_wall_s"])

        t = time.perf_counter()
        g_ls, _ = local_search(q, q.greedy_assignment())
        times["gls"].append(time.perf_counter() - t)
        rows["gls"].append(q.objective(g_ls) / opt - 1.0)
        greedy.reset(np.random.default_rng(e))
        rows["greedy"].append(q.objective(greedy.decide(state).server) / opt - 1.0)

        if e < args.linearised:
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ss = MILPSampler(time_limit=args.linearised_limit).sample(
                    q.bqm, one_hot=[g for g in q.one_hot if g]
                )
            times["lin"].append(time.perf_counter() - t)
            lin_status.append(bool(ss.info["optimal"]))

    print(
        f"\n== {n} tasks x {m} servers, {args.epochs} epochs "
        f"(QUBO: {q.bqm.num_variables} variables, {q.bqm.num_interactions} interactions) =="
    )
    print(f"{'pipeline':<28} {'median':>9} {'p95':>9} {'max':>9} {'optimal':>7}")
    labels = {
        "full": "qubo-sa (SA+repair+LS)",
        "raw": "raw SA (repair, no LS)",
        "tabu": "qubo-tabu (tabu+repair+LS)",
        "gls": "greedy insertion + LS",
        "greedy": "greedy policy (heuristic)",
    }
    for key, label in labels.items():
        if rows[key]:
            print(f"{label:<28} {_pct(rows[key])}")
    print(
        f"SA best read feasible before repair: {np.mean(feasible) * 100:.1f}% of epochs; "
        f"repairs mean {np.mean(repairs):.2f}; local-search moves mean {np.mean(moves):.2f}; "
        f"fallbacks {fallbacks}"
    )
    print(
        "median times (ms): "
        f"SA call {_ms(times['sa'])} | qubo-sa decide {_ms(times['decide'])} | "
        f"tabu call {_ms(times['tabu'])} | exact reference (LSA) {_ms(times['milp'])} | "
        f"bandwidth {_ms(times['bw'])} | QUBO build {_ms(times['build'])} | "
        f"greedy+LS {_ms(times['gls'])}"
    )
    if times["lin"]:
        print(
            f"linearised MILP (qubo-milp's sampler), {len(times['lin'])} epochs: median "
            f"{_ms(times['lin'])} ms, max {1e3 * max(times['lin']):.0f} ms, optimal within "
            f"{args.linearised_limit:g} s: {np.mean(lin_status) * 100:.0f}%"
        )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=200, help="epochs per size (default 200)")
    p.add_argument("--quick", action="store_true", help="12 epochs per size and section")
    p.add_argument("--sa-epochs", type=int, default=None, help="epochs of the SA-alone section (default 30)")
    p.add_argument(
        "--no-pipeline",
        dest="pipeline",
        action="store_false",
        help="only the SA-alone and exact-reference sections",
    )
    p.add_argument("--sizes", default="10x4,30x6,60x8", help="comma-separated NxM")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--host-probability", type=float, default=1.0)
    p.add_argument("--penalty-scale", type=float, default=DEFAULT_PENALTY_SCALE)
    p.add_argument("--num-reads", type=int, default=SA_DEFAULTS["num_reads"])
    p.add_argument("--num-sweeps", type=int, default=SA_DEFAULTS["num_sweeps"])
    p.add_argument("--candidates", type=int, default=DEFAULT_CANDIDATES)
    p.add_argument("--no-tabu", dest="tabu", action="store_false")
    p.add_argument(
        "--linearised",
        type=int,
        default=0,
        help="also time the linearised MILP sampler on the first K epochs per size",
    )
    p.add_argument("--linearised-limit", type=float, default=10.0)
    args = p.parse_args(argv)
    if args.quick:
        args.epochs = min(args.epochs, 12)
    sizes = [tuple(int(v) for v in size.lower().split("x")) for size in args.sizes.split(",")]
    sa_alone(sizes, args.sa_epochs or (12 if args.quick else 30), args.seed)
    exact_times(sizes, 12 if args.quick else 40, 3 if args.quick else 10, args.seed)
    if not args.pipeline:
        return
    print(
        f"penalty_scale={args.penalty_scale} candidates={args.candidates} num_reads={args.num_reads} "
        f"num_sweeps={args.num_sweeps} host_probability={args.host_probability}"
    )
    for size in args.sizes.split(","):
        n, m = (int(v) for v in size.lower().split("x"))
        run_size(n, m, args)


if __name__ == "__main__":
    main()
