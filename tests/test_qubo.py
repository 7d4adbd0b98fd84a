"""The selection QUBO: exactness on feasible points, the safe penalty, decoding and local search."""

from __future__ import annotations

import dataclasses
import itertools

import dimod
import numpy as np
import pytest

from mecsim.decision.qubo import (
    SelectionQUBO,
    build_selection_qubo,
    local_search,
    penalty_bound,
)
from mecsim.errors import SolverError
from mecsim.state import DEFER, EpochState
from mecsim.testing import random_epoch_state


def tiny_states() -> list[EpochState]:
    """3 tasks x 2-3 one-slot servers, with infeasible pairs, a down server and a tie in s."""
    out = []
    for seed in range(12):
        s = random_epoch_state(3, 2 + seed % 2, seed=seed, host_probability=0.6, slots=1)
        out.append(s)
    # A server that is down takes no variables even where the model is hosted.
    s = random_epoch_state(3, 3, seed=99, slots=1)
    out.append(dataclasses.replace(s, server_up=np.array([True, False, True])))
    # Equal service times on a server (ties in shortest-first order).
    s = random_epoch_state(3, 2, seed=5, slots=1)
    svc = s.service_s.copy()
    svc[1, 0] = svc[0, 0]
    out.append(dataclasses.replace(s, service_s=svc))
    assert any((~st.feasible).any() for st in out)  # the set really has infeasible pairs
    return out


def feasible_assignments(q: SelectionQUBO):
    """Every assignment of the placeable tasks to usable servers."""
    options = [
        np.flatnonzero(np.isfinite(q.linear_cost[i])) if q.placeable[i] else [DEFER] for i in range(q.n_tasks)
    ]
    for combo in itertools.product(*options):
        yield np.array(combo, dtype=np.int64)


def as_sample(q: SelectionQUBO, server: np.ndarray) -> dict:
    return {v: int(server[v[0]] == v[1]) for v in q.bqm.variables}


def spt_latency(state: EpochState, bw: np.ndarray, server: np.ndarray) -> float:
    """Independent reference: one-slot servers, everybody there at W_j, shortest served first."""
    up = state.upload_s(bw)
    total = 0.0
    for j in range(state.n_servers):
        tasks = [i for i in range(state.n_tasks) if server[i] == j]
        tasks.sort(key=lambda i: state.service_s[i, j])
        clock = state.backlog_s[j]  # the server frees up at W_j
        for i in tasks:
            clock += state.service_s[i, j]  # waits for the shorter ones, then its own service
            total += up[i] + state.backhaul_s[i, j] + clock + state.return_s[i, j]
    return total


@pytest.mark.parametrize("scale", [0.0, 0.3, 1.0, 7.5])
def test_energy_equals_objective_on_every_feasible_assignment(scale):
    for state in tiny_states():
        bw = state.equal_share()
        q = build_selection_qubo(state, bw, penalty=scale * 10.0)
        count = 0
        for server in feasible_assignments(q):
            obj = q.objective(server)
            energy = q.bqm.energy(as_sample(q, server))
            assert energy == pytest.approx(obj, rel=1e-9, abs=1e-12)
            assert obj == pytest.approx(spt_latency(state, bw, server), rel=1e-12)
            count += 1
        assert count >= 1


def test_down_server_and_unusable_pairs_have_no_variables():
    state = tiny_states()[-2]
    q = build_selection_qubo(state, state.equal_share())
    assert all(v[1] != 1 for v in q.bqm.variables)
    for i, group in enumerate(q.one_hot):
        assert list(group) == [
            (i, j) for j in range(state.n_servers) if state.feasible[i, j] and state.server_up[j]
        ]


def test_multi_slot_congestion_is_scaled_and_still_exact_on_feasible_points():
    state = random_epoch_state(4, 2, seed=3, slots=2)
    q = build_selection_qubo(state, state.equal_share())
    j, (a, b) = 0, (0, 1)
    expected = min(state.service_s[a, j], state.service_s[b, j]) / 2
    assert q.bqm.quadratic[(a, j), (b, j)] == pytest.approx(expected)
    for server in feasible_assignments(q):
        assert q.bqm.energy(as_sample(q, server)) == pytest.approx(q.objective(server), rel=1e-9)


def enumerate_energies(bqm: dimod.BinaryQuadraticModel) -> tuple[np.ndarray, list]:
    """All 2^N states and their energies, vectorised."""
    labels = list(bqm.variables)
    lin, (row, col, quad), offset = bqm.to_numpy_vectors(variable_order=labels)
    n = len(labels)
    states = ((np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1).astype(float)
    energy = offset + states @ lin + (states[:, row] * states[:, col]) @ quad
    return states, labels, energy


def is_one_hot(q: SelectionQUBO, states: np.ndarray, labels: list) -> np.ndarray:
    task = np.array([v[0] for v in labels])
    ok = np.ones(states.shape[0], dtype=bool)
    for i in np.flatnonzero(q.placeable):
        ok &= states[:, task == i].sum(axis=1) == 1
    return ok


def test_safe_penalty_makes_every_minimiser_feasible_by_full_enumeration():
    low_penalty_broke_something = False
    for seed in range(30):
        n, m = (3, 3) if seed % 2 else (4, 3)
        state = random_epoch_state(n, m, seed=seed, host_probability=0.7)
        q = build_selection_qubo(state, state.equal_share(), penalty="auto", penalty_scale=1.0)
        assert q.penalty == q.safe_penalty
        states, labels, energy = enumerate_energies(q.bqm)
        assert len(labels) <= 12
        feasible = is_one_hot(q, states, labels)
        lowest = energy.min()
        minimisers = np.flatnonzero(energy <= lowest + 1e-9 * abs(lowest))
        assert feasible[minimisers].all()
        best = min(q.objective(s) for s in feasible_assignments(q))
        assert lowest == pytest.approx(best, rel=1e-12)
        # The bound is not vacuous: far below it the minimum is often infeasible.
        q_low = build_selection_qubo(state, state.equal_share(), penalty=0.1 * q.safe_penalty)
        s2, l2, e2 = enumerate_energies(q_low.bqm)
        low_penalty_broke_something |= not is_one_hot(q_low, s2, l2)[np.argmin(e2)]
    assert low_penalty_broke_something


def test_penalty_bound_is_max_over_tasks_of_min_over_servers():
    state = random_epoch_state(5, 3, seed=11, host_probability=0.7)
    q = build_selection_qubo(state, state.equal_share())
    worst = q.linear_cost + q.congestion.sum(axis=2).T
    b = max(np.min(worst[i]) for i in range(5))
    assert q.safe_penalty > b
    assert q.safe_penalty == pytest.approx(b, rel=1e-5)
    assert penalty_bound(q.linear_cost, q.congestion) == q.safe_penalty
    # Textbook bound (max over servers too) is looser.
    assert q.safe_penalty < np.max(worst[np.isfinite(worst)])


def sampleset_from(q: SelectionQUBO, rows: list[dict]) -> dimod.SampleSet:
    return dimod.SampleSet.from_samples_bqm(rows, q.bqm)


def test_decode_repairs_zero_and_double_assignments_greedily():
    state = random_epoch_state(4, 3, seed=2)
    q = build_selection_qubo(state, state.equal_share())
    sample = {v: 0 for v in q.bqm.variables}
    sample[(0, 0)] = 1  # task 0 fine
    sample[(1, 0)] = sample[(1, 2)] = 1  # task 1 twice
    sample[(3, 1)] = 1  # task 3 fine; task 2 nowhere
    server, info = q.decode(sampleset_from(q, [sample]))
    assert info["repairs"] == 2
    assert info["feasible_before_repair"] is False
    assert info["best_energy"] == pytest.approx(q.bqm.energy(sample))
    assert server[0] == 0 and server[3] == 1
    # Cheapest insertion: the first task re-placed goes where it costs least given tasks 0 and 3.
    partial = np.array([0, -1, -1, 1])
    cost = q.marginal_cost(partial)
    first = min((1, 2), key=lambda i: cost[i].min())
    assert server[first] == np.argmin(cost[first])
    q.objective(server)  # a valid assignment


def test_decode_takes_lowest_energy_sample_and_checks_input():
    state = random_epoch_state(3, 2, seed=4)
    q = build_selection_qubo(state, state.equal_share())
    good = as_sample(q, np.array([0, 1, 0]))
    bad = as_sample(q, np.array([1, 1, 1]))
    if q.bqm.energy(good) > q.bqm.energy(bad):
        good, bad = bad, good
    server, info = q.decode(sampleset_from(q, [bad, good]))
    assert info["feasible_before_repair"] and info["repairs"] == 0
    assert as_sample(q, server) == good
    reads = q.decode_reads(sampleset_from(q, [bad, good, good]))
    assert len(reads) == 2  # duplicates collapse
    with pytest.raises(SolverError, match="empty"):
        q.decode(dimod.SampleSet.from_samples([], dimod.BINARY, energy=[]))
    partial = dimod.SampleSet.from_samples([{(0, 0): 1}], dimod.BINARY, energy=[0.0])
    with pytest.raises(SolverError, match="no value for variable"):
        q.decode(partial)


def test_local_search_reaches_a_local_optimum_and_never_worsens():
    for seed in range(8):
        state = random_epoch_state(12, 4, seed=seed, host_probability=0.7)
        q = build_selection_qubo(state, state.equal_share())
        start = np.array([np.flatnonzero(np.isfinite(q.linear_cost[i]))[-1] for i in range(12)])
        out, moves = local_search(q, start)
        assert q.objective(out) <= q.objective(start)
        assert moves > 0 or q.objective(out) == q.objective(start)
        best = q.objective(out)
        for i in range(12):  # no single reassignment improves
            for j in np.flatnonzero(np.isfinite(q.linear_cost[i])):
                trial = out.copy()
                trial[i] = j
                assert q.objective(trial) >= best - 1e-9 * best
        for i, k in itertools.combinations(range(12), 2):  # nor a swap
            if (
                out[i] != out[k]
                and np.isfinite(q.linear_cost[i, out[k]])
                and np.isfinite(q.linear_cost[k, out[i]])
            ):
                trial = out.copy()
                trial[i], trial[k] = out[k], out[i]
                assert q.objective(trial) >= best - 1e-9 * best
        no_swap, _ = local_search(q, start, swaps=False)
        assert q.objective(no_swap) <= q.objective(start)


def test_unplaceable_tasks_are_deferred_and_ignored():
    state = random_epoch_state(4, 2, seed=8)
    feas = state.feasible.copy()
    feas[2] = False
    state = dataclasses.replace(state, feasible=feas)
    q = build_selection_qubo(state, state.equal_share())
    assert not q.placeable[2] and q.one_hot[2] == ()
    server = q.greedy_assignment()
    assert server[2] == DEFER
    out, _ = local_search(q, server)
    assert out[2] == DEFER
    energy = q.bqm.energy(as_sample(q, out))
    assert energy == pytest.approx(q.objective(out), rel=1e-9)


def test_bad_inputs_are_named():
    state = random_epoch_state(3, 2, seed=1)
    bw = state.equal_share()
    bw[1] = 0.0
    with pytest.raises(ValueError, match="task 1"):
        build_selection_qubo(state, bw)
    with pytest.raises(ValueError, match="penalty"):
        build_selection_qubo(state, state.equal_share(), penalty="big")
    with pytest.raises(ValueError, match="shape"):
        build_selection_qubo(state, np.ones(5))
    q = build_selection_qubo(state, state.equal_share())
    with pytest.raises(ValueError, match="cannot use"):
        q.objective(np.array([0, 5, 0]))


def test_empty_epoch_builds_an_empty_model():
    state = random_epoch_state(0, 3, seed=1)
    q = build_selection_qubo(state, np.zeros(0))
    assert q.bqm.num_variables == 0 and q.bqm.offset == 0
    assert q.objective(np.zeros(0, dtype=np.int64)) == 0.0
