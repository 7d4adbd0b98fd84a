"""Bandwidth rules that account for time (issue 15): hand-computed schedules, gaps to an exact
reference, the deferral semantics in the engine, and the trace measures of bandwidth use.

Notation: ``B`` budget (Hz), ``a = p g / N0`` (SNR with 1 Hz), a share ``b`` uploads at
``r(b) = b log2(1 + a / b)``, so ``D`` bits take ``D / r(b)``. In the hand-computed cases every
task has ``a = 6 MHz`` and ``B = 2 MHz``, chosen so that the logarithms are short:

* whole band, ``b = 2 MHz``: ``a / b = 3``, ``log2 4 = 2``, ``r = 4 Mbit/s``;
* half, ``b = 1 MHz``: ``a / b = 6``, ``r = 1e6 log2 7 = 2.807 Mbit/s``;
* a third, ``b = 2/3 MHz``: ``a / b = 9``, ``r = (2e6 / 3) log2 10 = 2.215 Mbit/s``.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import brentq, minimize, minimize_scalar

from mecsim.decision.bandwidth import (
    BANDWIDTH_RULES,
    InfeasibleBandwidthError,
    allocate_bandwidth,
    allocate_rule,
    check_rule,
    completion_lower_bound,
    lane_completion_times,
    rule_defers,
    simulate_preallocated,
    spt_order,
    upload_times,
)
from mecsim.decision.bandwidth_metrics import (
    bandwidth_metrics,
    bandwidth_queueing,
    bandwidth_seconds_per_bit,
    bandwidth_usage,
)

B = 2e6
A = 6e6
LOG2_7 = math.log2(7.0)
LOG2_10 = math.log2(10.0)


def _rate(b: float, a: float = A) -> float:
    return b * math.log2(1.0 + a / b)


def _ends(rule: str, bits: list[float], snr: float | list[float] = A) -> np.ndarray:
    snr_arr = np.broadcast_to(np.asarray(snr, dtype=float), (len(bits),)).copy()
    return simulate_preallocated(rule, np.array(bits), snr_arr, B)[1]


# --------------------------------------------------------------------------------------------
# Hand-computed completion times, preallocated shares, static channel, decisions at every
# upload end (epoch length 0)
# --------------------------------------------------------------------------------------------


def test_two_uploads_equal_pf_and_groups_of_two() -> None:
    # D = 2 and 6 Mbit, B / 2 = 1 MHz each: T = D / (1e6 log2 7).
    expected = [2.0 / LOG2_7, 6.0 / LOG2_7]  # 0.712414 s, 2.137243 s
    for rule in ("equal", "srpt-2", "srpt-4"):
        np.testing.assert_allclose(_ends(rule, [2e6, 6e6]), expected, rtol=1e-12)
    # pf: the KKT condition e(x_1) / b_1 = e(x_2) / b_2 with the same a on both is solved by
    # b_1 = b_2 (and only by it: e(a / b) / b is decreasing in b), so pf is the equal split.
    np.testing.assert_allclose(_ends("pf", [2e6, 6e6]), expected, rtol=1e-9)


def test_two_uploads_sequential_srpt() -> None:
    # Whole band to the 2 Mbit upload: 2e6 / 4e6 = 0.5 s; the 6 Mbit one waits (deferred),
    # then gets the whole band at 0.5 s: 6e6 / 4e6 = 1.5 s, ending at 2.0 s. Total 2.5 s.
    np.testing.assert_allclose(_ends("srpt", [2e6, 6e6]), [0.5, 2.0], rtol=1e-12)
    # Order by size, not by position: the same with the tasks swapped.
    np.testing.assert_allclose(_ends("srpt", [6e6, 2e6]), [2.0, 0.5], rtol=1e-12)


def test_two_uploads_sum_and_minmax_against_one_dimensional_solvers() -> None:
    # sum: minimise T_1(b) + T_2(B - b) over b, by scipy's bounded scalar minimiser (an
    # independent solver: no KKT, no Newton).
    def t(d: float, b: float) -> float:
        return d / _rate(b)

    best = minimize_scalar(
        lambda b: t(2e6, b) + t(6e6, B - b), bounds=(1.0, B - 1.0), method="bounded", options={"xatol": 1e-6}
    )
    b1 = best.x
    np.testing.assert_allclose(_ends("sum", [2e6, 6e6]), [t(2e6, b1), t(6e6, B - b1)], rtol=1e-8)
    # minmax: the common time solves T_1(b) = T_2(B - b) (brentq on the difference).
    b1 = brentq(lambda b: t(2e6, b) - t(6e6, B - b), 1.0, B - 1.0, xtol=1e-9)
    np.testing.assert_allclose(_ends("minmax", [2e6, 6e6]), [t(2e6, b1)] * 2, rtol=1e-9)
    # The per-epoch optimum of the sum of upload times (2.7308 s) is beaten by sending the
    # uploads one after the other (2.5 s): the myopic objective ignores that the second task
    # could reuse the whole band.
    assert _ends("sum", [2e6, 6e6]).sum() > 2.5 + 0.2


def test_two_uploads_completion_rule_picks_the_best_lane_schedule() -> None:
    # Candidates: both admitted with the sum shares (2.7308 s, above), both with equal shares
    # (8 / log2 7 = 2.8497 s), or only the shorter (sequential: 0.5 + 2.0 = 2.5 s): the least.
    np.testing.assert_allclose(_ends("completion", [2e6, 6e6]), [0.5, 2.0], rtol=1e-12)


def test_three_uploads_each_rule() -> None:
    bits = [2e6, 4e6, 6e6]
    # equal: B / 3 each, T = D / ((2e6 / 3) log2 10) = 3 D / (2e6 log2 10).
    eq = [3.0 / LOG2_10, 6.0 / LOG2_10, 9.0 / LOG2_10]  # 0.903, 1.806, 2.709 s
    np.testing.assert_allclose(_ends("equal", bits), eq, rtol=1e-12)
    np.testing.assert_allclose(_ends("srpt-4", bits), eq, rtol=1e-12)  # group capped at n = 3
    np.testing.assert_allclose(_ends("pf", bits), eq, rtol=1e-9)  # same channel: equal split
    # srpt: 2e6/4e6 = 0.5, then 4e6/4e6 = 1.0 (ends 1.5), then 6e6/4e6 = 1.5 (ends 3.0).
    np.testing.assert_allclose(_ends("srpt", bits), [0.5, 1.5, 3.0], rtol=1e-12)
    # srpt-2: the two smallest at 1 MHz: 2 / log2 7 = 0.7124 s and 4 / log2 7 = 1.4248 s. At
    # 0.7124 s the first releases 1 MHz, which the rule gives whole to the 6 Mbit upload:
    # 6 / log2 7 = 2.1372 s more, ending at 8 / log2 7 = 2.8497 s. Total 14 / log2 7 = 4.9869 s.
    srpt2 = [2.0 / LOG2_7, 4.0 / LOG2_7, 8.0 / LOG2_7]
    np.testing.assert_allclose(_ends("srpt-2", bits), srpt2, rtol=1e-12)
    # completion: of its candidates (k = 1: sequential, 5.0 s; k = 2, equal shares: the srpt-2
    # schedule, 4.9869 s; k = 2 with the sum shares; k = 3 with sum or equal shares) the lane
    # model's least is k = 2 with equal shares; replayed, it is the srpt-2 schedule.
    np.testing.assert_allclose(_ends("completion", bits), srpt2, rtol=1e-12)


def test_three_uploads_sum_and_minmax_against_slsqp() -> None:
    bits = np.array([2e6, 4e6, 6e6])

    def times(s: np.ndarray) -> np.ndarray:
        return bits / (s * B * np.log2(1.0 + A / (s * B)))

    # sum: scipy SLSQP on the shares (fractions of B), independent of the KKT solver.
    res = minimize(
        lambda s: times(s).sum(),
        np.full(3, 1 / 3),
        method="SLSQP",
        bounds=[(1e-6, 1)] * 3,
        constraints=[{"type": "eq", "fun": lambda s: s.sum() - 1}],
        options={"ftol": 1e-14},
    )
    np.testing.assert_allclose(_ends("sum", list(bits)).sum(), times(res.x).sum(), rtol=1e-7)

    # minmax: all three end together; the common time t solves sum_i b_i(t) = B.
    # (b_i(t) solves D_i / r(b) = t; below D_i ln 2 / a no share is enough.)
    def share(d: float, t: float) -> float:
        return brentq(lambda b: d / _rate(b) - t, 1e-3, 1e15, xtol=1e-6, rtol=1e-15)

    t_min = bits.max() * math.log(2) / A * 1.0001
    t_star = brentq(lambda t: sum(share(d, t) for d in bits) - B, t_min, 10.0, xtol=1e-13)
    np.testing.assert_allclose(_ends("minmax", list(bits)), [t_star] * 3, rtol=1e-9)


def test_pf_on_different_channels_solves_its_kkt_condition() -> None:
    # pf maximises ln r_1(b) + ln r_2(B - b): by an independent bounded scalar search.
    a = np.array([2e6, 4e7])
    best = minimize_scalar(
        lambda b: -(math.log(_rate(b, a[0])) + math.log(_rate(B - b, a[1]))),
        bounds=(1.0, B - 1.0),
        method="bounded",
        options={"xatol": 1e-4},
    )
    shares = allocate_bandwidth([1e6, 1e6], a, B, objective="pf")
    np.testing.assert_allclose(shares, [best.x, B - best.x], rtol=1e-6)
    # The weaker (power-limited) channel gains less from bandwidth, so it gets less of it.
    assert shares[0] < shares[1]


def test_pf_matches_slsqp_on_random_instances() -> None:
    rng = np.random.default_rng(4)
    for _ in range(10):
        n = int(rng.integers(2, 7))
        a = B * 10 ** rng.uniform(-1, 3, n)

        def neg(s: np.ndarray, a: np.ndarray = a) -> float:
            return -float(np.sum(np.log(s * B * np.log2(1 + a / (s * B)))))

        res = minimize(
            neg,
            np.full(n, 1 / n),
            method="SLSQP",
            bounds=[(1e-9, 1)] * n,
            constraints=[{"type": "eq", "fun": lambda s: s.sum() - 1}],
            options={"ftol": 1e-15, "maxiter": 500},
        )
        shares = allocate_bandwidth(np.ones(n), a, B, objective="pf") / B
        assert neg(shares) <= neg(res.x) + 1e-9  # never worse than SLSQP ...
        np.testing.assert_allclose(shares, res.x, atol=1e-4)  # ... and the same point


# --------------------------------------------------------------------------------------------
# The exact reference and each rule's gap to it
# --------------------------------------------------------------------------------------------


def _radio_instance(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """2-4 uploads of 10-30 Mbit from 100-500 m over 5 MHz (issue 15's radio-limited regime):
    23 dBm, 3GPP TR 36.814 path loss, N0 = -174 dBm/Hz + 7 dB."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 5))
    dist = rng.uniform(100, 500, n)
    gain = 10 ** (-(128.1 + 37.6 * np.log10(dist / 1000)) / 10)
    snr = 10 ** (23 / 10) * 1e-3 * gain / (10 ** ((-174 + 7) / 10) * 1e-3)
    return rng.uniform(1e7, 3e7, n), snr


BAND = 5e6
SEEDS = range(16)
#: Largest gap (total completion / lower bound - 1) of each rule over SEEDS, as measured with
#: this test and rounded up (measured mean / max: srpt 3.3 / 9.2%, completion 3.2 / 8.5%, sum
#: 33.5 / 46.0%, srpt-2 32.9 / 53.4%, equal = srpt-4 36.5 / 52.5%, pf 38.8 / 56.5%, minmax
#: 43.5 / 64.6%): sending the uploads one after the other is within 10% of the exact reallocated
#: optimum on these bandwidth-limited channels; sharing the band at once loses a third.
GAP_BOUNDS = {
    "srpt": 0.10,
    "completion": 0.10,
    "srpt-2": 0.55,
    "srpt-4": 0.55,
    "equal": 0.55,
    "sum": 0.50,
    "minmax": 0.70,
    "pf": 0.60,
}


@pytest.fixture(scope="module")
def references() -> dict[int, float]:
    out = {}
    for seed in SEEDS:
        bits, snr = _radio_instance(seed)
        out[seed] = completion_lower_bound(bits, snr, BAND)[0]
    return out


def _gaps(rule, references: dict[int, float]) -> np.ndarray:
    gaps = []
    for seed in SEEDS:
        bits, snr = _radio_instance(seed)
        total = simulate_preallocated(rule, bits, snr, BAND)[1].sum()
        gaps.append(total / references[seed] - 1.0)
    return np.array(gaps)


def test_lower_bound_two_tasks_matches_a_one_dimensional_search() -> None:
    # Two tasks, order (i first): phase 1 of length tau = D_i / r_i(s B) with share s for task i,
    # task j uploading at r_j((1 - s) B) meanwhile, then alone on B. Total = 2 tau + rest.
    bits, snr = np.array([1.5e7, 2.5e7]), np.array([4e8, 6e10])
    best = math.inf
    for i, j in ((0, 1), (1, 0)):

        def total(s: float, i: int = i, j: int = j) -> float:
            tau = bits[i] / _rate(s * BAND, snr[i])
            beside = tau * _rate((1 - s) * BAND, snr[j]) if s < 1 else 0.0
            left = bits[j] - beside
            return math.inf if left < 0 else 2 * tau + left / _rate(BAND, snr[j])

        grid = np.linspace(1e-4, 1.0, 20001)
        k = int(np.argmin([total(s) for s in grid]))
        res = minimize_scalar(
            total,
            bounds=(grid[max(k - 2, 0)], grid[min(k + 2, grid.size - 1)]),
            method="bounded",
            options={"xatol": 1e-12},
        )
        best = min(best, res.fun, total(1.0))
    lb, _ = completion_lower_bound(bits, snr, BAND)
    np.testing.assert_allclose(lb, best, rtol=1e-7)


def test_lower_bound_single_task_and_input_checks() -> None:
    assert completion_lower_bound([2e7], [1e9], BAND)[0] == pytest.approx(
        float(upload_times(2e7, 1e9, BAND)), rel=1e-12
    )
    with pytest.raises(InfeasibleBandwidthError, match="max_tasks"):
        completion_lower_bound(np.ones(6), np.ones(6), BAND)
    with pytest.raises(InfeasibleBandwidthError, match="must be > 0"):
        completion_lower_bound([1e6, 0.0], [1e9, 1e9], BAND)


@pytest.mark.parametrize("rule", sorted(GAP_BOUNDS))
def test_each_rule_gap_to_the_exact_reference(rule: str, references: dict[int, float]) -> None:
    gaps = _gaps(rule, references)
    # The reference is a lower bound (every preallocated schedule is a reallocated one).
    assert gaps.min() >= -1e-7, gaps
    assert gaps.max() <= GAP_BOUNDS[rule], (rule, gaps.max())


def test_negative_control_longest_first_breaks_the_sequential_bound(
    references: dict[int, float],
) -> None:
    # The whole band to the *largest* upload first: the same admission machinery, the order
    # reversed. It must fail the bound the sequential rules meet (measured: gap 10.2-82.4%,
    # above 10% on all 16 instances).
    def longest_first(bits, snr, budget, floor):
        out = np.zeros(bits.size)
        out[spt_order(bits, snr, budget)[-1]] = budget
        return out

    bad = _gaps(longest_first, references)
    assert bad.max() > GAP_BOUNDS["srpt"]
    assert np.mean(bad > GAP_BOUNDS["srpt"]) >= 0.75, bad


def test_completion_rule_is_never_worse_than_sum_or_srpt_in_its_model() -> None:
    rng = np.random.default_rng(9)
    for _ in range(30):
        n = int(rng.integers(1, 9))
        bits = rng.uniform(1e5, 3e7, n)
        snr = BAND * 10 ** rng.uniform(0, 3.5, n)
        epoch = float(rng.choice([0.0, 0.5]))
        order = spt_order(bits, snr, BAND)

        def modelled(shares: np.ndarray, epoch: float = epoch, order=order, bits=bits, snr=snr) -> float:
            adm = order[shares[order] > 0]
            wait = order[shares[order] == 0]
            return float(lane_completion_times(bits, snr, adm, shares[adm], wait, epoch).sum())

        best = modelled(allocate_rule("completion", bits, snr, BAND, 0.0, epoch))
        for other in ("sum", "srpt", "equal"):
            assert best <= modelled(allocate_rule(other, bits, snr, BAND)) * (1 + 1e-12)


def test_completion_rule_waits_for_a_large_share_rather_than_take_a_sliver() -> None:
    # One 6 Mbit task, a = 6 MHz; 0.5 MHz free now, 1.5 MHz held by an earlier upload.
    # Now on the sliver: a / b = 12, r = 0.5e6 log2 13 = 1.850 Mbit/s, T = 3.243 s.
    now = 6e6 / (0.5e6 * math.log2(13.0))
    # Deferred (0.5 s epochs): the held lane frees at 0.2 s, usable at the 0.5 s epoch:
    # a / b = 4, r = 1.5e6 log2 5 = 3.483 Mbit/s, done at 0.5 + 1.723 = 2.223 s < 3.243 s.
    later = 0.5 + 6e6 / (1.5e6 * math.log2(5.0))
    assert later < now
    b = allocate_rule("completion", [6e6], [A], 0.5e6, 0.0, 0.5, held_release_s=[0.2], held_hz=[1.5e6])
    assert b.tolist() == [0.0]
    # If the held share comes back only after 5 s (5.0 + 1.723 s > 3.243 s), take the sliver.
    b = allocate_rule("completion", [6e6], [A], 0.5e6, 0.0, 0.5, held_release_s=[5.0], held_hz=[1.5e6])
    assert b.tolist() == [0.5e6]
    # The lane model itself, on the deferred candidate: the free 0.5 MHz at 0.5 s would finish
    # at 0.5 + 3.243 s, the held lane at 2.223 s: the task takes the held lane.
    ends = lane_completion_times(
        np.array([6e6]),
        np.array([A]),
        np.zeros(0, int),
        np.zeros(0),
        np.array([0]),
        0.5,
        [0.5, 0.2],
        [0.5e6, 1.5e6],
    )
    np.testing.assert_allclose(ends, [later], rtol=1e-12)


def test_held_bandwidth_record_follows_the_engine_budget() -> None:
    from mecsim.decision.bandwidth import HeldBandwidth

    held = HeldBandwidth(5e6)
    held.add(0.0, np.array([1.0, 3.0, np.inf]), np.array([1e6, 2e6, 0.0]))  # 0 Hz: not held
    rel, hz = held.lanes(0.5, free_hz=2e6)  # 3 MHz held, as recorded
    np.testing.assert_allclose(rel, [0.5, 2.5])
    np.testing.assert_allclose(hz, [1e6, 2e6])
    rel, hz = held.lanes(1.5, free_hz=2e6)  # the 1 s upload runs late: expected back at once
    np.testing.assert_allclose(rel, [0.0, 1.5])
    rel, hz = held.lanes(2.0, free_hz=3e6)  # 2 MHz held: the earliest-ending share came back
    np.testing.assert_allclose(rel, [1.0])
    np.testing.assert_allclose(hz, [2e6])
    rel, hz = held.lanes(4.0, free_hz=5e6)
    assert rel.size == 0 and hz.size == 0


# --------------------------------------------------------------------------------------------
# Rule contract
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", [*BANDWIDTH_RULES, "srpt-3"])
def test_rule_shares_are_deferrals_or_valid_shares(rule: str) -> None:
    rng = np.random.default_rng(1)
    for n in (1, 2, 5, 40):
        bits = rng.uniform(1e5, 3e7, n)
        snr = BAND * 10 ** rng.uniform(-1, 3, n)
        for floor in (0.0, 1e5, 2e6):
            if not rule_defers(rule) and n * floor > BAND:
                continue  # the engine never offers more tasks than B / min_hz
            b = allocate_rule(rule, bits, snr, BAND, floor)
            go = b > 0
            assert go.any()
            assert np.all(b[go] >= floor * (1 - 1e-12))
            assert b.sum() <= BAND * (1 + 1e-12)
            assert b.sum() >= BAND * (1 - 1e-9)  # the whole budget is handed out
            if not rule_defers(rule):
                assert go.all()
            if rule.startswith("srpt"):
                k = check_rule(rule)[1]
                cap = n if floor == 0 else int(BAND / floor)
                assert go.sum() == min(k, n, cap)
                # The admitted are the shortest alone on the whole band.
                alone = upload_times(bits, snr, np.full(n, BAND))
                assert alone[go].max() <= alone[~go].min(initial=np.inf)


def test_unknown_rules_are_refused_with_the_field_name() -> None:
    for bad in ("fastest", "srpt-0", "srpt-x", 3):
        with pytest.raises(InfeasibleBandwidthError, match="bandwidth: unknown rule"):
            check_rule(bad)  # type: ignore[arg-type]


def test_greedy_policy_defers_what_the_rule_leaves_waiting() -> None:
    from mecsim.errors import PolicyError
    from mecsim.policies import make_policy
    from mecsim.policies.check import check_policy
    from mecsim.state import DEFER
    from mecsim.testing import random_epoch_state

    state = random_epoch_state(6, 3, seed=2, bandwidth_hz=5e6)
    for rule in ("srpt", "srpt-2", "completion"):
        pol = make_policy("greedy", bandwidth=rule)
        dec = pol.decide(state)
        admitted = dec.bandwidth_hz > 0
        assert np.all(dec.server[~admitted] == DEFER)
        assert np.all(dec.server[admitted] >= 0)
        if rule != "completion":
            assert admitted.sum() == check_rule(rule)[1]
        # The placement of the admitted tasks equals greedy's on the admitted tasks alone.
        ref = make_policy("greedy", bandwidth="equal")
        sub = _subset(state, np.flatnonzero(admitted))
        np.testing.assert_array_equal(ref.choose(sub, dec.bandwidth_hz[admitted]), dec.server[admitted])
    check_policy(make_policy("greedy", bandwidth="srpt"))
    with pytest.raises(PolicyError, match="bandwidth: unknown rule"):
        make_policy("greedy", bandwidth="fastest")


def _subset(state, idx):
    from mecsim.policies.heuristics import _rows

    return _rows(state, idx)


# --------------------------------------------------------------------------------------------
# The engine: deferral by the rule, hand-computed upload times, budget at every instant
# --------------------------------------------------------------------------------------------


def _two_task_scenario(tmp_path, epoch_s: float) -> dict:
    trace = tmp_path / "arrivals.csv"
    trace.write_text("time\n0.1\n0.2\n")
    return {
        "name": "two-uploads",
        "seed": 1,
        "duration_s": 30,
        "warmup_s": 0,
        "radio": {
            "bandwidth_hz": 2e6,
            "min_bandwidth_hz": 1e5,
            "path_loss": {"shadowing_std_db": 0},
            "fading": {"model": "none"},
        },
        "devices": [
            {
                "name": "d",
                "count": 2,
                "tx_power_dbm": 23,
                "placement": {"distance_m": 200},
                "arrivals": {"process": "trace", "path": str(trace)},
                "workload": [{"model": "sd15-img2img", "input_bits": 8e6, "steps": 20}],
            }
        ],
        "servers": [{"name": "s", "gpu": "a100", "slots": 2, "models": ["sd15-img2img"]}],
        "service": {"jitter": {"distribution": "deterministic"}},
        "epoch": {"length_s": epoch_s},
        "policy": {"name": "greedy"},
    }


def test_engine_two_uploads_hand_computed(tmp_path) -> None:
    import mecsim

    sc = _two_task_scenario(tmp_path, 0.5)
    # a = p g / N0 with p = 23 dBm, g = -(128.1 + 37.6 log10(0.2)) dB, N0 = -174 + 7 dBm/Hz.
    pl_db = 128.1 + 37.6 * math.log10(200 / 1000)
    a = 10 ** ((23 - pl_db - (-174 + 7)) / 10)
    D, Bw = 8e6, 2e6
    whole = D / (Bw * math.log2(1 + a / Bw))
    half = D / (Bw / 2 * math.log2(1 + a / (Bw / 2)))
    try:
        runs = {
            rule: mecsim.simulate(
                copy.deepcopy(sc), policy="greedy", seed=1, policy_params={"bandwidth": rule}
            ).tasks.sort_values("t_arrival")
            for rule in ("equal", "srpt")
        }
    except Exception as exc:  # pragma: no cover - a trace scenario the engine cannot read
        pytest.fail(f"two-upload scenario failed: {exc}")
    eq = runs["equal"]
    # equal: both decided at the 0.5 s epoch with 1 MHz each.
    np.testing.assert_allclose(eq["t_upload_start"], [0.5, 0.5])
    np.testing.assert_allclose(eq["t_upload_end"], [0.5 + half] * 2, rtol=1e-9)
    sr = runs["srpt"]
    # srpt: the first (ties by position) gets 2 MHz at 0.5 s; the second is deferred, and
    # decided at the first epoch boundary at or after the first upload ends.
    end1 = 0.5 + whole
    start2 = math.ceil(end1 / 0.5 - 1e-9) * 0.5
    np.testing.assert_allclose(sr["t_upload_start"], [0.5, start2])
    np.testing.assert_allclose(sr["t_upload_end"], [end1, start2 + whole], rtol=1e-9)
    np.testing.assert_allclose(sr["bandwidth_hz"], [Bw, Bw])
    # The same schedule from the fluid replay with 0.5 s epochs (times from the 0.5 s decision).
    _, ends, _ = simulate_preallocated("srpt", np.array([D, D]), np.array([a, a]), Bw, 1e5, 0.5)
    np.testing.assert_allclose(sr["t_upload_end"].to_numpy() - 0.5, ends, rtol=1e-9)


@pytest.mark.parametrize("rule", ["srpt", "srpt-2", "completion", "pf"])
def test_engine_runs_every_rule_within_budget_and_accounts_for_every_task(rule: str) -> None:
    import mecsim
    from mecsim.decision.bandwidth_metrics import _levels

    r = mecsim.simulate(
        "paper-small-v1", policy="greedy", seed=3, duration_s=200, policy_params={"bandwidth": rule}
    )
    t = r.tasks
    assert len(t) == t["status"].isin(["completed", "dropped", "in_flight"]).sum()
    up = t[np.isfinite(t["t_upload_start"])]
    # Bandwidth in use never exceeds the budget at any instant (checked at every upload start).
    held = _levels(
        np.concatenate([up.t_upload_start, up.t_upload_end]),
        np.concatenate([up.bandwidth_hz, -up.bandwidth_hz]),
        up.t_upload_start.to_numpy(),
    )
    assert held.max() <= 20e6 * (1 + 1e-9)
    if rule.startswith("srpt"):  # (completion seldom defers with paper-small's 20 MHz)
        assert r.epochs["n_deferred"].sum() > 0
    if rule == "completion":  # its record of held shares is reset per run: same seed, same traces
        again = mecsim.simulate(
            "paper-small-v1", policy="greedy", seed=3, duration_s=200, policy_params={"bandwidth": rule}
        )
        pd.testing.assert_frame_equal(t, again.tasks)


# --------------------------------------------------------------------------------------------
# Trace measures on a hand-made table
# --------------------------------------------------------------------------------------------


def _table() -> pd.DataFrame:
    # B = 10 Hz. Task 0: arrives 0, uploads 0.5-2.5 with 6 Hz; task 1: arrives 0.2, uploads
    # 0.5-1.5 with 4 Hz; task 2: arrives 1.6, uploads 2.0-3.0 with 4 Hz; task 3: arrives 2.8
    # and is dropped while waiting (never uploads).
    return pd.DataFrame(
        {
            "t_arrival": [0.0, 0.2, 1.6, 2.8],
            "t_upload_start": [0.5, 0.5, 2.0, np.nan],
            "t_upload_end": [2.5, 1.5, 3.0, np.nan],
            "bandwidth_hz": [6.0, 4.0, 4.0, 0.0],
            "input_bits": [12.0, 8.0, 4.0, 5.0],
            "status": ["completed", "completed", "completed", "dropped"],
            "latency": [3.0, 2.0, 1.5, np.nan],
        }
    )


def test_metrics_on_a_hand_made_table() -> None:
    t = _table()
    # Held bandwidth: 0 on [0, 0.5), 10 on [0.5, 1.5), 6 on [1.5, 2.0), 10 on [2.0, 2.5),
    # 4 on [2.5, 3.0). Waiting: 1 on [0, 0.2), 2 on [0.2, 0.5), 0 on [0.5, 1.6), 1 on
    # [1.6, 2.0), 0 on [2.0, 2.8), 1 from 2.8 (task 3 never starts).
    u = bandwidth_usage(t, 10.0, t_start=0.0, t_end=3.0)
    assert u["busy_bw_s"] == pytest.approx(0 + 10 + 3 + 5 + 2)  # 20 Hz s
    # Free while someone waits: 10 x 0.5 + (10 - 6) x 0.4 + (10 - 4) x 0.2 = 5 + 1.6 + 1.2.
    assert u["idle_bw_s"] == pytest.approx(7.8)
    assert u["waiting_s"] == pytest.approx(0.5 + 0.4 + 0.2)
    assert u["utilisation"] == pytest.approx(20 / 30)
    assert u["idle_fraction"] == pytest.approx(7.8 / 30)
    # Bandwidth-seconds per uploaded bit: (6 x 2 + 4 x 1 + 4 x 1) / (12 + 8 + 4) = 20 / 24.
    assert bandwidth_seconds_per_bit(t) == pytest.approx(20 / 24)
    np.testing.assert_allclose(bandwidth_queueing(t), [0.5, 0.3, 0.4])
    m = bandwidth_metrics(t, 10.0, t_start=0.0, t_end=3.0, epochs=pd.DataFrame({"n_deferred": [1, 0, 2]}))
    assert m["mean_latency_s"] == pytest.approx(6.5 / 3)
    assert m["mean_upload_s"] == pytest.approx((2 + 1 + 1) / 3)
    assert m["mean_queue_s"] == pytest.approx(1.2 / 3)
    assert m["idle_per_task_hz_s"] == pytest.approx(7.8 / 3)
    assert m["deferred_per_task"] == pytest.approx(1.0)
    assert (m["n_tasks"], m["n_uploaded"]) == (4, 3)
    assert m["small_share_fraction"] == 0.0  # 4 Hz is not below 10 / 4
    assert bandwidth_metrics(t, 20.0)["small_share_fraction"] == pytest.approx(2 / 3)  # 4 < 5
    # A window starting at 1.0 keeps the per-task statistics of tasks arriving from 1.0 on.
    late = bandwidth_metrics(t, 10.0, t_start=1.0, t_end=3.0)
    assert late["n_tasks"] == 2 and late["mean_queue_s"] == pytest.approx(0.4)
    # Held bandwidth over [1, 3]: 10 x 0.5 + 6 x 0.5 + 10 x 0.5 + 4 x 0.5 = 15 of 20.
    assert late["utilisation"] == pytest.approx(15 / 20)
