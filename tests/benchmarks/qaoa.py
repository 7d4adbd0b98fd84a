"""Benchmark of the QAOA sampler on one-hot assignment QUBOs.

Run ``python tests/benchmarks/qaoa.py`` (8, 12, 16, 20 qubits, p = 1..3, both mixers; a few
minutes) or ``--quick`` (8 and 12 qubits, p = 1..2). ``--scan-dt`` scans the linear-ramp step of
the fixed schedule; ``--aer-limits`` times Aer's statevector and matrix-product-state sampling at
20-40 qubits.

Instances come from ``assignment_bqm`` in tests/test_qaoa.py (service times 20-50 steps x
0.03-0.3 s per step, backlogs 0-10 s, congestion ``min(s_ij, s_kj)``, one-hot penalty 1.1 x the
safe bound).

Columns:

* ``fast ms`` / ``aer ms``: one expectation evaluation on the numpy fast path and on qiskit-aer's
  EstimatorV2 (statevector, one thread as in the sampler's default ``aer_threads=1``, transpile
  excluded), best of a few runs (a single run from 20 qubits on); ``x``: their ratio.
* ``opt s``: a decision (``sample``) with COBYLA, ``maxiter=100``, from the linear ramp;
  ``fix s``: ``mode="fixed"`` on the default schedule; ``warm s``: ``maxiter=30`` started from the
  angles optimised on another instance of the same shape (what a policy does epoch to epoch).
  Circuit metrics are off in these timings (``target=None``); ``2q``/``depth`` are reported
  separately (all-to-all target, basis rz/sx/x/cx, optimization_level 1).
* ``AR``: approximation ratio of the final state, ``(E_worst - <E>) / (E_worst - E_opt)``, where
  ``<E>`` is the exact expectation of the BQM energy (penalties included, so infeasible
  amplitude can pull it below 0) and ``E_worst``/``E_opt`` the worst and best *feasible*
  assignments (enumerated). 1 is perfect, 0 is no better than the worst assignment.
* ``P(opt)``: exact probability that one shot is an optimal assignment.
* ``feas``: probability mass on feasible assignments.

Timings are the best of repeated runs where cheap, wall clock otherwise; the machine has 2 shared
cores, so expect noise.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from test_qaoa import assignment_bqm  # noqa: E402

from mecsim.decision.qaoa import (  # noqa: E402
    QAOASampler,
    _aer_sample,
    _AerEstimatorPath,
    _build_problem,
    _FastSimulator,
    circuit_metrics,
    fixed_angle_schedule,
)

FULL_SHAPES = {8: [(4, 2)], 12: [(4, 3), (6, 2)], 16: [(4, 4), (8, 2)], 20: [(5, 4), (10, 2)]}
QUICK_SHAPES = {8: [(4, 2)], 12: [(4, 3), (6, 2)]}


def feasible_extremes(bqm: Any, n_tasks: int, n_servers: int) -> tuple[float, float]:
    """Best and worst energy over all one-hot assignments (enumerated)."""
    labels = list(bqm.variables)
    pos = {v: k for k, v in enumerate(labels)}
    rows = []
    for choice in itertools.product(range(n_servers), repeat=n_tasks):
        x = np.zeros(len(labels), dtype=np.int8)
        for i, j in enumerate(choice):
            x[pos[(i, j)]] = 1
        rows.append(x)
    e = bqm.energies((np.array(rows), labels))
    return float(e.min()), float(e.max())


def quality(
    bqm: Any, groups: Any, mixer: str, angles: dict[str, list[float]], e_opt: float, e_worst: float
) -> tuple[float, float, float]:
    """(approximation ratio, P(opt), feasible mass) of the exact final state."""
    prob = _build_problem(bqm, mixer, groups)
    fast = _FastSimulator(prob)
    pr = fast.probabilities(angles["gamma"], angles["beta"])
    expectation = float(pr @ fast.cost)
    p_opt = float(pr[fast.cost <= e_opt + 1e-9 * max(1.0, abs(e_opt))].sum())
    bits = fast.bits_of(np.arange(fast.dim)) if fast.dim <= 1 << 22 else None
    feas = float(pr[prob.is_feasible(bits)].sum()) if bits is not None else float("nan")
    return (e_worst - expectation) / (e_worst - e_opt), p_opt, feas


def best_time(fn: Any, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run_table(shapes: dict[int, list[tuple[int, int]]], ps: list[int], estimator_budget_s: float) -> None:
    """Print the table. From 20 qubits on, the estimator is timed once per shape and mixer at
    p = 1, and at higher p only while one evaluation stays under ``estimator_budget_s / 10``."""
    header = (
        f"{'n':>3} {'shape':>5} {'mix':>3} {'p':>2} {'dim':>7} {'fast ms':>8} {'aer ms':>8} "
        f"{'x':>6} {'opt s':>6} {'fix s':>6} {'warm s':>6} {'AR opt':>6} {'P(opt)':>6} "
        f"{'AR fix':>6} {'P fix':>6} {'P warm':>6} {'feas':>5} {'2q':>5} {'depth':>5}"
    )
    print(header)
    print("-" * len(header))
    for n, shape_list in shapes.items():
        for shape in shape_list:
            bqm, groups = assignment_bqm(*shape, seed=1)
            bqm2, _ = assignment_bqm(*shape, seed=2)
            e_opt, e_worst = feasible_extremes(bqm, *shape)
            e_opt2, e_worst2 = feasible_extremes(bqm2, *shape)
            for mixer in ("x", "xy"):
                aer_last = 0.0
                for p in ps:
                    prob = _build_problem(bqm, mixer, groups)
                    fast = _FastSimulator(prob)
                    rng = np.random.default_rng(p)
                    g, b = rng.uniform(0, 1, p), rng.uniform(0, 1, p)
                    fast.expectation(g, b)
                    t_fast = best_time(lambda fast=fast, g=g, b=b: fast.expectation(g, b), 5)
                    t_aer = float("nan")
                    big = n >= 20
                    if not big or p == 1 or aer_last * 10 < estimator_budget_s:
                        aer = _AerEstimatorPath(prob, p, seed=0, method="statevector")
                        t0 = time.perf_counter()
                        aer.expectation(g, b)
                        t_aer = time.perf_counter() - t0
                        aer_last = t_aer
                        if not big and t_aer * 3 < estimator_budget_s:
                            t_aer = min(t_aer, best_time(lambda aer=aer, g=g, b=b: aer.expectation(g, b), 2))
                    sampler = QAOASampler(p=p, shots=1024, maxiter=100, seed=7, target=None)
                    t0 = time.perf_counter()
                    opt = sampler.sample(bqm, one_hot=groups, mixer=mixer)
                    t_opt = time.perf_counter() - t0
                    t0 = time.perf_counter()
                    fix = sampler.sample(bqm, one_hot=groups, mixer=mixer, mode="fixed")
                    t_fix = time.perf_counter() - t0
                    t0 = time.perf_counter()
                    warm = sampler.sample(
                        bqm2, one_hot=groups, mixer=mixer, initial_angles=opt.info["angles"], maxiter=30
                    )
                    t_warm = time.perf_counter() - t0
                    ar_opt, p_opt, feas = quality(bqm, groups, mixer, opt.info["angles"], e_opt, e_worst)
                    ar_fix, p_fix, _ = quality(bqm, groups, mixer, fix.info["angles"], e_opt, e_worst)
                    _, p_warm, _ = quality(bqm2, groups, mixer, warm.info["angles"], e_opt2, e_worst2)
                    metrics = circuit_metrics(bqm, p, mixer, groups, "all-to-all")
                    print(
                        f"{n:>3} {shape[0]}x{shape[1]:<3} {mixer:>3} {p:>2} {fast.dim:>7} "
                        f"{t_fast * 1e3:>8.2f} {t_aer * 1e3:>8.1f} {t_aer / t_fast:>6.0f} "
                        f"{t_opt:>6.2f} {t_fix:>6.3f} {t_warm:>6.2f} {ar_opt:>6.3f} {p_opt:>6.3f} "
                        f"{ar_fix:>6.3f} {p_fix:>6.3f} {p_warm:>6.3f} {feas:>5.2f} "
                        f"{metrics['two_qubit_gates']:>5} {metrics['circuit_depth']:>5}",
                        flush=True,
                    )


def scan_dt(ps: list[int]) -> None:
    """Mean P(opt) and AR of the fixed linear ramp against dt, per mixer and p."""
    shapes = [(3, 2), (2, 3), (4, 2), (2, 4), (3, 3), (4, 3), (4, 4)]
    dts = np.round(np.arange(0.2, 3.01, 0.2), 2)
    for mixer in ("x", "xy"):
        table = np.zeros((len(ps), len(dts), 2))
        count = 0
        for shape in shapes:
            for seed in range(3):
                bqm, groups = assignment_bqm(*shape, seed=50 + seed)
                e_opt, e_worst = feasible_extremes(bqm, *shape)
                prob = _build_problem(bqm, mixer, groups)
                fast = _FastSimulator(prob)
                is_opt = fast.cost <= e_opt + 1e-9 * max(1.0, abs(e_opt))
                count += 1
                for a, p in enumerate(ps):
                    for k, dt in enumerate(dts):
                        s = fixed_angle_schedule(p, float(dt))
                        pr = fast.probabilities(s["gamma"], s["beta"])
                        table[a, k, 0] += pr[is_opt].sum()
                        table[a, k, 1] += (e_worst - pr @ fast.cost) / (e_worst - e_opt)
        table /= count
        print(f"\nmixer {mixer}: mean P(opt) / AR of the fixed ramp over {count} instances")
        print("  dt  " + " ".join(f"   p={p} P    AR" for p in ps) + "   mean P")
        for k, dt in enumerate(dts):
            cells = " ".join(f"{table[a, k, 0]:>8.3f} {table[a, k, 1]:>5.3f}" for a in range(len(ps)))
            print(f"{dt:>5.1f} {cells} {table[:, k, 0].mean():>8.3f}")
        best = dts[int(np.argmax(table[:, :, 0].mean(axis=0)))]
        per_p = [float(dts[int(np.argmax(table[a, :, 0]))]) for a in range(len(ps))]
        print(f"best dt for mean P(opt): {best}; per p: {per_p}")


def aer_limits() -> None:
    """Time Aer sampling (1024 shots, p = 1, X mixer, fixed angles) by method and size.

    Measured on this machine: statevector 0.7 s at 20 qubits, 5.4 s at 24, 43 s at 26 (130 s at
    28, not rerun here); exact MPS 1.5 s at 20 (49 s at 28, 340 s at 32); MPS with a bond cap of
    16 / 32: 0.2 / 0.7 s at 28 and 0.4 / 1.4 s at 40 qubits.
    """
    cases = [
        ("statevector", None, [(5, 4), (6, 4), (13, 2)]),  # 20, 24, 26 qubits
        ("matrix_product_state", None, [(5, 4)]),
        ("matrix_product_state", 16, [(7, 4), (8, 4), (10, 4)]),  # 28, 32, 40 qubits
        ("matrix_product_state", 32, [(7, 4), (8, 4), (10, 4)]),
    ]
    print(f"{'method':>22} {'bond':>5} {'qubits':>6} {'sample s':>9}")
    for method, bond, shapes in cases:
        for shape in shapes:
            bqm, groups = assignment_bqm(*shape, seed=1)
            prob = _build_problem(bqm, "x", groups)
            s = fixed_angle_schedule(1, mixer="x")
            t0 = time.perf_counter()
            _aer_sample(prob, 1, s["gamma"], s["beta"], 1024, 1, 1, method, None, bond)
            dt = time.perf_counter() - t0
            print(f"{method:>22} {bond or '-':>5} {prob.n:>6} {dt:>9.2f}", flush=True)
    # a 40-qubit XY instance still has a small feasible subspace: the fast path samples it
    bqm, groups = assignment_bqm(10, 4, seed=1)
    sampler = QAOASampler(p=2, shots=1024, mode="fixed", max_qubits=40, target=None)
    t0 = time.perf_counter()
    ss = sampler.sample(bqm, one_hot=groups)
    print(
        f"{'fast xy, 4^10 states':>22} {'-':>5} {40:>6} {time.perf_counter() - t0:>9.2f}"
        f"  ({ss.info['method']}, whole decision)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 and 12 qubits, p = 1..2")
    parser.add_argument("--scan-dt", action="store_true", help="scan the ramp step dt")
    parser.add_argument("--aer-limits", action="store_true", help="time Aer sampling methods")
    parser.add_argument("--sizes", type=int, nargs="+", choices=sorted(FULL_SHAPES), help="qubits")
    parser.add_argument(
        "--estimator-budget",
        type=float,
        default=20.0,
        help="from 20 qubits, time the estimator at p > 1 only while one evaluation < budget / 10 s",
    )
    args = parser.parse_args()
    if args.scan_dt:
        scan_dt([1, 2, 3])
        return
    if args.aer_limits:
        aer_limits()
        return
    shapes = QUICK_SHAPES if args.quick else FULL_SHAPES
    if args.sizes:
        shapes = {n: FULL_SHAPES[n] for n in args.sizes}
    ps = [1, 2] if args.quick else [1, 2, 3]
    print(f"QAOA benchmark ({'quick' if args.quick else 'full'}), load average {os.getloadavg()}")
    t0 = time.perf_counter()
    run_table(shapes, ps, args.estimator_budget)
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
