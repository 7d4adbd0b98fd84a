"""The future-priced selection objective (issue 15, item 5): the cost model, the estimator, the BQM.

* :func:`future_cost` is the expected extra waiting of an M/G/1 queue's future arrivals caused by
  extra work ``w`` on top of a backlog ``W``; checked against a Monte Carlo of the workload
  process (Lindley recursion with common random numbers), with the drift-only price
  ``lam w (W + w / 2)`` (no ``1 / (1 - rho)``) as the negative control that the same check rejects.
* :func:`build_selection_qubo` with ``future_cost``: on every one-hot assignment the BQM energy
  is ``L(x) + sum x_ij F_ij`` (enumeration against an independent evaluation of ``L``), its
  minimiser is the brute-force optimum of ``L + F``, and ``objective`` returns ``L + F``.
* :class:`ArrivalEstimator`: hand-computed rates from a known dispatch record.
* :class:`QuboPolicy` with ``future_weight``: prices nothing before it has seen anything, uses
  only its own dispatches, and its decisions are the optimum of ``L + V F``.
"""

from __future__ import annotations

import itertools

import dimod
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mecsim.decision.future import ArrivalEstimator, future_cost
from mecsim.decision.qubo import build_selection_qubo
from mecsim.errors import PolicyError
from mecsim.policies.qubo import QuboPolicy
from mecsim.testing import random_epoch_state


def extra_waiting_mc(
    lam: float, mean_s: float, backlog: float, w: float, reps: int = 20000, arrivals: int = 300, seed: int = 3
) -> tuple[float, float]:
    """Monte Carlo of the total extra waiting of future Poisson arrivals (exponential services)
    when work ``w`` is added to an M/M/1 workload ``backlog`` now: mean and standard error."""
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0 / lam, (reps, arrivals))
    service = rng.exponential(mean_s, (reps, arrivals))
    v0 = np.full(reps, float(backlog))
    v1 = v0 + w
    extra = np.zeros(reps)
    for k in range(arrivals):
        v0 = np.maximum(v0 - gaps[:, k], 0.0)
        v1 = np.maximum(v1 - gaps[:, k], 0.0)
        extra += v1 - v0
        v0 = v0 + service[:, k]
        v1 = v1 + service[:, k]
    # Horizon check: what is left of the perturbation after the last arrival is negligible.
    assert float((v1 - v0).mean()) < 1e-4 * w, "horizon too short: the perturbation has not died out"
    return float(extra.mean()), float(extra.std(ddof=1) / np.sqrt(reps))


@pytest.mark.parametrize(
    "lam, mean_s, backlog, w", [(1.0, 0.5, 2.0, 1.0), (0.5, 1.4, 0.0, 3.0), (2.0, 0.2, 1.0, 0.5)]
)
def test_future_cost_is_the_mg1_marginal_delay(lam, mean_s, backlog, w):
    rho = lam * mean_s
    mc, se = extra_waiting_mc(lam, mean_s, backlog, w)
    f = future_cost(
        np.array([[w]]), np.array([1]), np.array([backlog]), np.array([lam]), np.array([rho]), rho_max=0.99
    )[0, 0]
    assert abs(f - mc) < 4 * se + 1e-3 * mc, (f, mc, se)
    # Negative control: the drift-only price (no busy-period factor) is rejected by the same check.
    drift = lam * w * (backlog + w / 2)
    assert abs(drift - mc) > 4 * se + 1e-3 * mc


def test_future_cost_shape_slots_and_caps():
    service = np.array([[4.0, np.inf, 6.0], [2.0, 3.0, 8.0]])
    f = future_cost(
        service,
        np.array([2, 1, 1]),
        np.array([1.0, 2.0, 0.0]),
        lam=np.array([0.5, 0.2, 0.0]),
        rho=np.array([0.5, 1.3, 0.4]),
        rho_max=0.9,
    )
    # task 0 on server 0: w = 4 / 2 = 2, 0.5 * 2 * (1 + 1) / 0.5 = 4
    assert f[0, 0] == pytest.approx(4.0)
    assert f[0, 1] == np.inf  # no variable
    assert f[1, 1] == pytest.approx(0.2 * 3 * (2 + 1.5) / (1 - 0.9))  # rho capped at 0.9
    assert f[0, 2] == 0.0 and f[1, 2] == 0.0  # no arrivals measured at server 2
    with pytest.raises(ValueError, match="rho_max"):
        future_cost(service, np.ones(3), np.zeros(3), np.zeros(3), np.zeros(3), rho_max=1.0)


def independent_latency(state, bw, server) -> float:
    """L(x) written out from the epoch arrays (not from the QUBO's cost arrays)."""
    up = state.upload_s(bw)
    total = 0.0
    for i, j in enumerate(server):
        total += (
            up[i] + state.backhaul_s[i, j] + state.backlog_s[j] + state.service_s[i, j] + state.return_s[i, j]
        )
    for i, k in itertools.combinations(range(state.n_tasks), 2):
        if server[i] == server[k]:
            j = server[i]
            total += min(state.service_s[i, j], state.service_s[k, j]) / state.slots[j]
    return float(total)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bqm_equals_latency_plus_future_cost_by_enumeration(seed):
    state = random_epoch_state(4, 3, seed=seed, host_probability=0.7)
    bw = state.equal_share()
    rng = np.random.default_rng(seed)
    fut = rng.uniform(0.0, 20.0, (4, 3))  # large enough to move the optimum (checked below)
    q = build_selection_qubo(state, bw, future_cost=fut)
    q0 = build_selection_qubo(state, bw)
    options = [np.flatnonzero(np.isfinite(q.linear_cost[i])) for i in range(4)]
    best, best_x = np.inf, None
    for a in itertools.product(*options):
        x = np.array(a)
        expected = independent_latency(state, bw, x) + float(fut[np.arange(4), x].sum())
        sample = {v: int(x[v[0]] == v[1]) for v in q.bqm.variables}
        assert q.bqm.energy(sample) == pytest.approx(expected, rel=1e-9, abs=1e-9)
        assert q.objective(x) == pytest.approx(expected, rel=1e-9, abs=1e-9)
        if expected < best:
            best, best_x = expected, x
    # The BQM's ground state (safe penalty) is the brute-force optimum of L + F.
    ground = dimod.ExactSolver().sample(q.bqm).first
    server, info = q.decode(dimod.SampleSet.from_samples(ground.sample, dimod.BINARY, ground.energy))
    assert info["feasible_before_repair"]
    assert q.objective(server) == pytest.approx(best, rel=1e-9)
    # Negative control: the myopic BQM's energy misses F (so the check above can fail).
    sample = {v: int(best_x[v[0]] == v[1]) for v in q0.bqm.variables}
    assert q0.bqm.energy(sample) < best - 1e-6


def test_future_cost_must_be_finite_and_non_negative():
    state = random_epoch_state(3, 2, seed=1)
    with pytest.raises(ValueError, match="future_cost of task 0 on server 1"):
        build_selection_qubo(state, state.equal_share(), future_cost=np.array([[0, -1.0], [0, 0], [0, 0]]))
    with pytest.raises(ValueError, match="shape"):
        build_selection_qubo(state, state.equal_share(), future_cost=np.zeros((2, 2)))


def test_arrival_estimator_rates_by_hand():
    est = ArrivalEstimator(3, window_s=10.0)
    assert [a.tolist() for a in est.rates(5.0)] == [[0, 0, 0], [0, 0, 0]]
    est.record(0.0, np.array([0, 1, -2]), np.array([2.0, 1.0, 9.0]))  # the deferred task is no load
    est.record(2.0, np.array([0]), np.array([4.0]))
    lam, rho = est.rates(4.0)  # span 4 s: server 0 got 2 tasks, 6 s of work; server 1 one, 1 s
    np.testing.assert_allclose(lam, [0.5, 0.25, 0.0])
    np.testing.assert_allclose(rho, [1.5, 0.25, 0.0])
    est.record(11.0, np.array([2]), np.array([1.0]))  # the tasks of t = 0 leave the window
    lam, rho = est.rates(11.0)
    np.testing.assert_allclose(lam, [0.1, 0.0, 0.1])
    np.testing.assert_allclose(rho, [0.4, 0.0, 0.1])
    assert [a.tolist() for a in ArrivalEstimator(2).rates(0.5)] == [[0, 0], [0, 0]]


def test_policy_prices_the_future_only_from_its_own_history():
    policy = QuboPolicy(solver="exact", future_weight=1.0, bandwidth="equal")
    policy.reset(np.random.default_rng(0))
    first = random_epoch_state(4, 3, seed=5)
    d = policy.decide(first)
    assert d.info["future_cost"] == 0.0  # nothing seen yet: the myopic QUBO
    assert policy.future_costs(first) is None  # t = now: a span under 1 s is not trusted
    later = random_epoch_state(4, 3, seed=6)
    import dataclasses

    later = dataclasses.replace(later, now=first.now + 10.0)
    lam, rho = policy.arrivals.rates(later.now)
    sent = d.server
    np.testing.assert_allclose(lam, np.bincount(sent, minlength=3) / 10.0)
    work = first.service_s[np.arange(4), sent] / first.slots[sent]
    np.testing.assert_allclose(rho, np.bincount(sent, weights=work, minlength=3) / 10.0)
    fut = policy.future_costs(later)
    expected = future_cost(later.service_s, later.slots, later.backlog_s, lam, rho, policy.future_rho_max)
    np.testing.assert_allclose(fut, expected)
    d2 = policy.decide(later)
    # The decision is the enumeration optimum of L + V F, and records V F of its assignment.
    q = build_selection_qubo(later, d2.bandwidth_hz, future_cost=fut)
    options = [np.flatnonzero(np.isfinite(q.linear_cost[i])) for i in range(4)]
    best = min(q.objective(np.array(a)) for a in itertools.product(*options))
    assert d2.info["objective"] == pytest.approx(best, rel=1e-9)
    assert d2.info["future_cost"] == pytest.approx(float(fut[np.arange(4), d2.server].sum()))
    assert d2.info["future_cost"] > 0


def test_policy_future_parameters_are_checked():
    for bad in (
        {"future_weight": -1.0},
        {"future_weight": float("nan")},
        {"future_window_s": 0.0},
        {"future_rho_max": 1.0},
    ):
        with pytest.raises(PolicyError, match=next(iter(bad))):
            QuboPolicy(**bad)


def test_default_policy_prices_the_future_in_a_run():
    import mecsim
    from mecsim.policies.qubo import DEFAULT_FUTURE_WEIGHT

    assert QuboPolicy().future_weight == DEFAULT_FUTURE_WEIGHT > 0
    r = mecsim.simulate("paper-small-v1", policy="qubo-sa", seed=2, duration_s=120)
    ep = r.epochs
    assert r.summary["tasks_generated"] == len(r.tasks)
    assert (ep.loc[ep.t < 1.0, "future_cost"] == 0).all()  # no history: the myopic QUBO
    assert (ep["future_cost"] > 0).mean() > 0.5
    assert (ep["future_cost"] <= ep["objective"] + 1e-9).all()  # V F is part of the objective
    myopic = mecsim.simulate(
        "paper-small-v1", policy="qubo-sa", seed=2, duration_s=120, policy_params={"future_weight": 0.0}
    )
    assert (myopic.epochs["future_cost"] == 0).all()
    again = mecsim.simulate("paper-small-v1", policy="qubo-sa", seed=2, duration_s=120)
    assert r.tasks.equals(again.tasks)


@settings(max_examples=300, deadline=None)
@given(st.data(), st.integers(1, 8), st.integers(1, 8))
def test_future_cost_on_floats_is_the_numpy_formula(data, n, m):
    """future_cost of a few cells (Python floats) equals the numpy formula bit for bit, unusable
    pairs (inf), idle servers (lam 0), loads beyond rho_max and below 0, zero slots included."""
    from mecsim.decision import future

    cell = st.one_of(st.just(np.inf), st.floats(0.0, 50.0))
    service = np.array(data.draw(st.lists(cell, min_size=n * m, max_size=n * m))).reshape(n, m)
    slots = np.array(data.draw(st.lists(st.integers(0, 3), min_size=m, max_size=m)))
    backlog = np.array(data.draw(st.lists(st.floats(0.0, 100.0), min_size=m, max_size=m)))
    lam = np.array(data.draw(st.lists(st.just(0.0) | st.floats(0.0, 5.0), min_size=m, max_size=m)))
    rho = np.array(data.draw(st.lists(st.floats(-0.5, 2.0), min_size=m, max_size=m)))
    few = future.future_cost(service, slots, backlog, lam, rho, 0.95)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(future, "_FEW_CELLS", -1)
        plain = future.future_cost(service, slots, backlog, lam, rho, 0.95)
    assert few.shape == plain.shape and few.tobytes() == plain.tobytes()
