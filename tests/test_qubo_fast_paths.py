"""The hybrid's fast paths give exactly what the plain paths give.

* :class:`~mecsim.decision.solvers.FastSimulatedAnnealingSampler` calls dwave-samplers' annealer
  directly (``sample_arrays``): its samples and energies must be those of the library's
  ``SimulatedAnnealingSampler().sample`` for the same seed, parameters and temperature range.
* :func:`~mecsim.decision.qubo.build_selection_qubo` builds its pairs with index arithmetic: the
  model must equal one written term by term from the formulation (plain loops over tasks and
  servers), and its energy must equal the penalised objective on every state of small models.
* :meth:`~mecsim.decision.qubo.SelectionQUBO.decode_arrays` must decode as the sample-set path
  with numpy's row ``unique`` did.

Each equality has a negative control: a changed seed, a changed bias, a changed tie order.
"""

from __future__ import annotations

import dataclasses
import itertools

import dimod
import numpy as np
import pytest
from dwave.samplers import SimulatedAnnealingSampler
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mecsim.decision import qubo as qubo_module
from mecsim.decision.qubo import DEFER, _unique_rows, build_selection_qubo
from mecsim.decision.solvers import FastSimulatedAnnealingSampler, fast_beta_range, get_sampler
from mecsim.testing import random_epoch_state

FAST = FastSimulatedAnnealingSampler()
LIBRARY = SimulatedAnnealingSampler()


def random_bqm(seed: int, n: int, vartype: str, labels: str) -> dimod.BinaryQuadraticModel:
    rng = np.random.default_rng(seed)
    names = {
        "tuples": [(i // 3, i % 3) for i in range(n)],
        "shuffled": [f"v{k}" for k in rng.permutation(n)],  # not in sorted order
        "ints": list(range(n)),
    }[labels]
    lin = {v: float(rng.normal()) for v in names}
    quad = {(u, v): float(rng.normal()) for u, v in itertools.combinations(names, 2) if rng.random() < 0.5}
    return dimod.BinaryQuadraticModel(lin, quad, float(rng.normal()), vartype)


def assert_same_sampleset(a: dimod.SampleSet, b: dimod.SampleSet) -> None:
    assert a.vartype is b.vartype
    assert list(a.variables) == list(b.variables)
    assert a.record.dtype == b.record.dtype
    assert np.array_equal(a.record.sample, b.record.sample)
    assert np.array_equal(a.record.energy, b.record.energy)


PARAMS = [
    {"num_reads": 8, "num_sweeps": 200},  # the "sa" preset
    {"num_reads": 3, "num_sweeps": 12, "beta_schedule_type": "linear"},
    {"num_reads": 2, "num_sweeps": 1},
    {"num_sweeps": 20, "num_sweeps_per_beta": 4, "randomize_order": True},
    {"num_reads": 4, "num_sweeps": 30, "proposal_acceptance_criteria": "Gibbs"},
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(1, 14),
    vartype=st.sampled_from(["BINARY", "SPIN"]),
    labels=st.sampled_from(["tuples", "shuffled", "ints"]),
    params=st.sampled_from(PARAMS),
)
def test_fast_sa_returns_exactly_the_library_samples(seed, n, vartype, labels, params):
    bqm = random_bqm(seed % 10_000, n, vartype, labels)
    want = LIBRARY.sample(bqm, seed=seed, beta_range=fast_beta_range(bqm), **params)
    assert_same_sampleset(FAST.sample(bqm, seed=seed, **params), want)
    samples, energies, info = FAST.sample_arrays(bqm, seed=seed, **params)
    cols = [want.variables.index(v) for v in bqm.variables]
    assert np.array_equal(samples, want.record.sample[:, cols])  # in the model's variable order
    assert np.array_equal(energies, want.record.energy)
    assert info["beta_schedule_type"] == params.get("beta_schedule_type", "geometric")


def test_fast_sa_on_selection_qubos_and_negative_control():
    s = random_epoch_state(4, 5, seed=3)
    bqm = build_selection_qubo(s, s.equal_share()).bqm
    want = LIBRARY.sample(bqm, seed=77, beta_range=fast_beta_range(bqm), num_reads=8, num_sweeps=200)
    assert_same_sampleset(FAST.sample(bqm, seed=77, num_reads=8, num_sweeps=200), want)
    # Negative control: another seed gives other samples, so the equality above says something.
    other = FAST.sample(bqm, seed=78, num_reads=8, num_sweeps=200)
    assert not np.array_equal(other.record.sample, want.record.sample)


def test_fast_sa_hands_other_calls_to_the_library():
    bqm = random_bqm(5, 6, "BINARY", "ints")
    init = np.ones((2, 6), dtype=np.int8)
    # Initial states, no seed, a custom schedule: not the array path, still the library's answer.
    assert FAST.sample_arrays(bqm, seed=1, initial_states=(init, list(bqm.variables))) is None
    assert FAST.sample_arrays(bqm, num_reads=2) is None
    got = FAST.sample(bqm, seed=1, num_sweeps=10, initial_states=(init, list(bqm.variables)))
    want = LIBRARY.sample(
        bqm,
        seed=1,
        num_sweeps=10,
        beta_range=fast_beta_range(bqm),
        initial_states=(init, list(bqm.variables)),
    )
    assert_same_sampleset(got, want)
    sched = [0.1, 0.5, 1.0]
    got = FAST.sample(bqm, seed=2, beta_schedule_type="custom", beta_schedule=sched)
    want = LIBRARY.sample(bqm, seed=2, beta_schedule_type="custom", beta_schedule=sched)
    assert_same_sampleset(got, want)
    with pytest.raises(ValueError):  # the library's own error for a bad value
        FAST.sample(bqm, seed=1, num_reads=0)
    empty = FAST.sample(dimod.BinaryQuadraticModel({}, {}, 1.5, "BINARY"), seed=1)
    assert len(empty.variables) == 0
    # The registered preset goes through the array path with its defaults.
    arrays = get_sampler("sa").sample_arrays(bqm, seed=3)
    assert arrays is not None and arrays[0].shape == (8, 6)


# ---------------------------------------------------------------------------------------------
# build_selection_qubo against a term-by-term reference


def reference_bqm(q, state) -> dimod.BinaryQuadraticModel:
    """The selection BQM written from its definition with plain loops (module docstring of
    mecsim.decision.qubo): linear l_ij - A, 2A on pairs of one task, the congestion on pairs of
    one server, offset A per placeable task."""
    a = q.penalty
    bqm = dimod.BinaryQuadraticModel(dimod.BINARY)
    var = [
        (i, j)
        for i in range(state.n_tasks)
        for j in range(state.n_servers)
        if state.feasible[i, j] and state.server_up[j]
    ]
    for v in var:
        bqm.add_variable(v, float(q.linear_cost[v]) - a)
    for u, v in itertools.combinations(var, 2):
        if u[0] == v[0]:
            bqm.add_interaction(u, v, 2.0 * a)
        elif u[1] == v[1]:
            w = min(state.service_s[u[0], u[1]], state.service_s[v[0], v[1]]) / max(state.slots[u[1]], 1)
            if w != 0:
                bqm.add_interaction(u, v, w)
    bqm.offset = a * len({v[0] for v in var})
    return bqm


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(0, 7),
    m=st.integers(1, 5),
    down=st.floats(0, 0.5),
    zero_service=st.booleans(),
    future=st.booleans(),
)
def test_vectorised_builder_equals_the_term_by_term_model(seed, n, m, down, zero_service, future):
    rng = np.random.default_rng(seed)
    s = random_epoch_state(n, m, seed=seed, host_probability=0.7, slots=int(rng.integers(1, 3)))
    s = dataclasses.replace(s, server_up=rng.random(m) >= down)
    if zero_service and n:
        svc = s.service_s.copy()
        svc[rng.random((n, m)) < 0.3] = 0.0  # zero-length services: no interaction stored
        s = dataclasses.replace(s, service_s=svc)
    fut = rng.random((n, m)) if future else None
    q = build_selection_qubo(s, s.equal_share(), future_cost=fut)
    ref = reference_bqm(q, s)
    assert q.bqm == ref
    assert list(q.bqm.variables) == list(ref.variables)
    assert q.one_hot == tuple(tuple(v for v in ref.variables if v[0] == i) for i in range(n))
    vi, vj = q._variable_cells
    assert [(int(i), int(j)) for i, j in zip(vi, vj, strict=True)] == list(q.bqm.variables)
    # Brute force: the energy of every state is L + penalties evaluated independently.
    if q.bqm.num_variables <= 10:
        labels = list(q.bqm.variables)
        for bits in itertools.product((0, 1), repeat=len(labels)):
            x = dict(zip(labels, bits, strict=True))
            lin = sum(q.linear_cost[v] * x[v] for v in labels)
            pairs = sum(
                min(s.service_s[u], s.service_s[v]) / max(s.slots[u[1]], 1) * x[u] * x[v]
                for u, v in itertools.combinations(labels, 2)
                if u[1] == v[1]
            )
            pen = sum((sum(x[v] for v in group) - 1) ** 2 for group in q.one_hot if group)
            assert q.bqm.energy(x) == pytest.approx(lin + pairs + q.penalty * pen, rel=1e-9, abs=1e-9)


def test_reference_model_catches_a_changed_bias():
    """Negative control: the comparison above sees a one-term difference."""
    s = random_epoch_state(3, 3, seed=4)
    q = build_selection_qubo(s, s.equal_share())
    ref = reference_bqm(q, s)
    assert q.bqm == ref
    u, v = next(iter(ref.quadratic))
    ref.add_interaction(u, v, 1e-9)
    assert q.bqm != ref


# ---------------------------------------------------------------------------------------------
# decode_arrays against the sample-set decoder with numpy's unique rows


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), reads=st.integers(1, 10), k=st.integers(1, 70))
def test_unique_rows_matches_numpy(seed, reads, k):
    rng = np.random.default_rng(seed)
    x = (rng.random((reads, k)) < 0.5).astype(np.int8)
    x[rng.integers(reads)] = x[0]  # a repeated row
    rows, first = _unique_rows(x)
    want_rows, want_first = np.unique(x, axis=0, return_index=True)
    assert np.array_equal(first, want_first) and np.array_equal(rows, want_rows)


def reference_decode(q, reads, energy, limit):
    """The decoder as it was written before the array path: numpy's unique rows, then one read
    at a time (argmax per task, broken one-hots re-placed by cheapest insertion)."""
    labels = list(q.bqm.variables)
    _, first = np.unique(reads, axis=0, return_index=True)
    order = first[np.argsort(energy[first], kind="stable")][: max(1, limit)]
    out = []
    for r in order:
        x = np.zeros((q.n_tasks, q.n_servers), dtype=np.int64)
        for c, (i, j) in enumerate(labels):
            x[i, j] = reads[r, c]
        server = np.where(q.placeable, np.argmax(x, axis=1), DEFER).astype(np.int64)
        broken = q.placeable & (x.sum(axis=1) != 1)
        server[broken] = -1
        q._insert_greedily(server, np.flatnonzero(broken))
        info = {
            "feasible_before_repair": not bool(broken.any()),
            "repairs": int(broken.sum()),
            "best_energy": float(energy[r]),
        }
        out.append((server, info))
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), tie=st.booleans())
def test_decode_arrays_matches_the_reference_decoder(seed, tie):
    rng = np.random.default_rng(seed)
    s = random_epoch_state(int(rng.integers(1, 6)), int(rng.integers(1, 5)), seed=seed)
    q = build_selection_qubo(s, s.equal_share())
    v = q.bqm.num_variables
    if v == 0:
        return
    reads = (rng.random((8, v)) < 0.3).astype(np.int8)
    reads[3] = reads[1]  # a repeated read
    energy = q.bqm.energies((reads, list(q.bqm.variables)))
    if tie:  # equal energies: the order of the distinct rows decides
        energy = np.round(energy, 0)
    want = reference_decode(q, reads, energy, 5)
    got = q.decode_arrays(reads, energy, limit=5)  # a few reads: decoded on Python lists
    with pytest.MonkeyPatch.context() as mp:  # the numpy decoder
        mp.setattr(qubo_module, "_FEW_READ_VALUES", 0)
        plain = q.decode_arrays(reads, energy, limit=5)
    ss = dimod.SampleSet.from_samples((reads, list(q.bqm.variables)), dimod.BINARY, energy)
    for result in (got, plain, q.decode_reads(ss, limit=5)):
        assert len(result) == len(want)
        for (sa, ia), (sb, ib) in zip(result, want, strict=True):
            assert np.array_equal(sa, sb) and ia == ib


def test_decode_breaks_energy_ties_by_row_order_not_read_order():
    """Ties between distinct reads go to the lexicographically smaller row (as numpy's unique
    rows gave them), whatever order the sampler returned them in. Negative control: a decoder
    that kept the sampler's order would pick the other read when they come reversed."""
    s = random_epoch_state(2, 2, seed=1)
    q = build_selection_qubo(s, s.equal_share())
    assert q.bqm.num_variables == 4
    reads = np.array([[0, 1, 1, 0], [1, 0, 0, 1]], dtype=np.int8)  # (0->1, 1->0) and (0->0, 1->1)
    energy = np.array([5.0, 5.0])
    for order in ([0, 1], [1, 0]):
        first = q.decode_arrays(reads[order], energy)[0][0]
        assert first.tolist() == [1, 0]
    sampler_order_first = reads[[1, 0]][0]  # what a read-order decoder would start from
    assert sampler_order_first.tolist() != [0, 1, 1, 0]


@settings(max_examples=200, deadline=None)
@given(
    lo=st.floats(1e-9, 1e3),
    ratio=st.floats(1.0, 1e6),
    num=st.integers(2, 1500),
)
def test_geomspace_replica_equals_numpy(lo, ratio, num):
    from mecsim.decision.solvers import _geomspace

    hi = lo * ratio
    assert np.array_equal(_geomspace(lo, hi, num), np.geomspace(lo, hi, num=num))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 12),
    m=st.integers(1, 7),
    penalty=st.sampled_from(["auto", 0.0, 0.4, 7.5]),
    future=st.booleans(),
)
def test_ising_form_equals_dimods_conversion_bit_for_bit(seed, n, m, penalty, future):
    rng = np.random.default_rng(seed)
    s = random_epoch_state(n, m, seed=seed, host_probability=0.8)
    s = dataclasses.replace(s, server_up=rng.random(m) < 0.9)
    q = build_selection_qubo(
        s, s.equal_share(), penalty=penalty, future_cost=rng.random((n, m)) if future else None
    )
    if q.n_variables == 0:
        return
    assert (q.n_variables, q.n_interactions) == (q.bqm.num_variables, q.bqm.num_interactions)
    h, (row, col, j), off = q.ising()
    want_h, (want_row, want_col, want_j), want_off = q.bqm.change_vartype(
        "SPIN", inplace=False
    ).to_numpy_vectors()
    assert np.array_equal(h, want_h) and off == want_off  # exact, not approximately
    assert np.array_equal(row, want_row) and np.array_equal(col, want_col) and np.array_equal(j, want_j)
    # The annealer on these arrays gives the library's samples of the BQM.
    spins, energies, _ = FAST.sample_ising_arrays(q.ising(), seed=seed, num_reads=8, num_sweeps=50)
    want = LIBRARY.sample(q.bqm, seed=seed, beta_range=fast_beta_range(q.bqm), num_reads=8, num_sweeps=50)
    assert np.array_equal((spins + 1) // 2, want.record.sample)
    assert np.array_equal(energies, want.record.energy)


def test_ising_form_negative_control():
    """A plain sum of the neighbour terms (not dimod's sequence) differs in the last bits on some
    model, so the bit-for-bit comparison above can fail."""
    differs = False
    for seed in range(200):
        s = random_epoch_state(8, 4, seed=seed)
        q = build_selection_qubo(s, s.equal_share())
        lin, (r, c, b), off = q.terms
        naive = lin * 0.5 + 0.25 * (np.bincount(r, b, lin.size) + np.bincount(c, b, lin.size))
        differs |= not np.array_equal(naive, q.ising()[0])
    assert differs


def test_fast_sampler_and_policy_still_pickle():
    """The array path keeps no unpicklable state (sweeps may ship policies to workers)."""
    import pickle

    from mecsim.policies.base import make_policy

    sampler = pickle.loads(pickle.dumps(get_sampler("sa")))
    bqm = random_bqm(1, 5, "BINARY", "ints")
    a, b = sampler.sample(bqm, seed=4), get_sampler("sa").sample(bqm, seed=4)
    assert_same_sampleset(a, b)
    pickle.loads(pickle.dumps(make_policy("qubo-sa")))


def _descent_case(seed: int, n: int, m: int, coarse: bool, negative: bool):
    """A selection problem and a valid start: ties made likely with ``coarse`` (services on a
    1 s grid, so costs repeat), negative pair terms (batching rewards) with ``negative``."""
    rng = np.random.default_rng(seed)
    s = random_epoch_state(n, m, seed=seed, host_probability=0.6, slots=int(rng.integers(1, 3)))
    s = dataclasses.replace(s, server_up=rng.random(m) >= 0.2)
    if coarse:
        s = dataclasses.replace(s, service_s=np.round(s.service_s), backlog_s=np.round(s.backlog_s))
    q = build_selection_qubo(s, s.equal_share())
    if negative:
        cong = q.congestion - 0.6 * q.congestion.transpose(0, 2, 1) * (rng.random(q.congestion.shape) < 0.5)
        cong = 0.5 * (cong + cong.transpose(0, 2, 1))
        q = dataclasses.replace(q, congestion=cong)
    usable = np.isfinite(q.linear_cost)
    start = np.full(n, DEFER, dtype=np.int64)
    for i in np.flatnonzero(q.placeable):
        start[i] = rng.choice(np.flatnonzero(usable[i]))
    return q, start


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 100_000),
    n=st.integers(1, 9),
    m=st.integers(1, 5),
    coarse=st.booleans(),
    negative=st.booleans(),
    swaps=st.booleans(),
    max_moves=st.sampled_from([None, 0, 1, 2]),
)
def test_few_task_descent_is_the_numpy_descent(seed, n, m, coarse, negative, swaps, max_moves):
    """_descend_few (few placeable tasks, Python floats) returns what the numpy descent returns:
    the same assignment and the same number of moves (up to 9 tasks: both sides of the limit)."""
    q, start = _descent_case(seed, n, m, coarse, negative)
    fast = qubo_module._descend(q, start.copy(), swaps, max_moves)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(qubo_module, "_few", lambda p, m: False)
        plain = qubo_module._descend(q, start.copy(), swaps, max_moves)
    assert np.array_equal(fast[0], plain[0]) and fast[1] == plain[1]


def test_few_task_descent_negative_control():
    """Negative control (the test's power): the tie-prone problems above include first steps
    where the best move is tied between different moves, so a descent with another tie rule
    than argmin's first index would be told apart."""
    tied = 0
    for seed in range(300):
        q, start = _descent_case(seed, 3, 3, coarse=True, negative=False)
        idx = q._placed
        if idx.size < 2:
            continue
        s = start[idx]
        x = np.zeros((idx.size, q.n_servers))
        x[np.arange(idx.size), s] = 1.0
        m_cost = q.linear_cost[idx] + np.einsum("jik,kj->ij", q.congestion[:, idx][:, :, idx], x)
        delta = m_cost - m_cost[np.arange(idx.size), s][:, None]
        tied += delta.min() < -1e-9 and np.count_nonzero(delta == delta.min()) > 1
    assert tied > 0


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 100_000),
    n=st.integers(1, 9),
    m=st.integers(1, 5),
    coarse=st.booleans(),
    negative=st.booleans(),
    placed=st.integers(0, 6),
)
def test_few_placed_insertion_is_the_numpy_insertion(seed, n, m, coarse, negative, placed):
    """Cheapest insertion on Python floats (_insert_few: at most 2 tasks placed, or few tasks)
    puts every task where the numpy insertion puts it, ties included."""
    q, start = _descent_case(seed, n, m, coarse, negative)
    rng = np.random.default_rng(seed + 1)
    placeable = np.flatnonzero(q.placeable)
    keep = rng.permutation(placeable)[:placed]  # these stay placed
    server = np.where(q.placeable, -1, DEFER).astype(np.int64)
    server[keep] = start[keep]
    todo = np.setdiff1d(placeable, keep)
    fast = server.copy()
    q._insert_greedily(fast, todo)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(qubo_module, "_FEW_PLACED", -1)
        mp.setattr(qubo_module, "_few", lambda p, m: False)
        plain = server.copy()
        q._insert_greedily(plain, todo)
    assert np.array_equal(fast, plain)


def test_few_placed_insertion_negative_control():
    """Negative control: on identical servers (every cost ties across servers) an insertion that
    breaks ties by the last index is told apart from the numpy insertion, which the fast one
    matches."""

    def last_argmin(values):
        low = min(values)
        return max(k for k, v in enumerate(values) if v == low)

    s = random_epoch_state(3, 3, seed=5, slots=1)
    same = np.repeat(s.service_s[:, :1], 3, axis=1)
    zeros = np.zeros_like(same)
    s = dataclasses.replace(
        s, service_s=same, backhaul_s=zeros, return_s=zeros, backlog_s=np.zeros(3), feasible=same > 0
    )
    q = build_selection_qubo(s, s.equal_share())
    todo = np.flatnonzero(q.placeable)
    fresh = np.where(q.placeable, -1, DEFER).astype(np.int64)
    results = {}
    patches = {
        "fast": {},
        "last": {"_argmin": last_argmin},
        "plain": {"_FEW_PLACED": -1, "_few": lambda p, m: False},
    }
    for label, attrs in patches.items():
        with pytest.MonkeyPatch.context() as mp:
            for attr, value in attrs.items():
                mp.setattr(qubo_module, attr, value)
            results[label] = fresh.copy()
            q._insert_greedily(results[label], todo)
    assert np.array_equal(results["fast"], results["plain"])
    assert not np.array_equal(results["last"], results["plain"])


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 100_000),
    n=st.integers(1, 9),
    m=st.integers(1, 5),
    coarse=st.booleans(),
    negative=st.booleans(),
    descend=st.booleans(),
    n_reads=st.integers(1, 6),
)
def test_few_task_polish_is_the_numpy_polish(seed, n, m, coarse, negative, descend, n_reads):
    """polish_reads with few placeable tasks (check, descent and objective on Python floats)
    returns the numpy path's server, moves and objective, bit for bit."""
    q, start = _descent_case(seed, n, m, coarse, negative)
    rng = np.random.default_rng(seed + 2)
    usable = np.isfinite(q.linear_cost)
    reads = [start]
    for _ in range(n_reads - 1):
        r = start.copy()
        for i in np.flatnonzero(q.placeable):
            r[i] = rng.choice(np.flatnonzero(usable[i]))
        reads.append(r)
    reads.append(start.copy())  # a repeat
    fast = qubo_module.polish_reads(q, reads, descend)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(qubo_module, "_few", lambda p, m: False)
        plain = qubo_module.polish_reads(q, reads, descend)
    assert np.array_equal(fast[0], plain[0]) and fast[1] == plain[1]
    assert np.float64(fast[2]).tobytes() == np.float64(plain[2]).tobytes()


def test_polish_rejects_a_read_on_an_unusable_server():
    s = random_epoch_state(2, 3, seed=3, host_probability=0.5)
    q = build_selection_qubo(s, s.equal_share())
    bad = np.zeros(2, dtype=np.int64)
    bad[0] = (
        int(np.flatnonzero(~np.isfinite(q.linear_cost[0]))[0])
        if (~np.isfinite(q.linear_cost[0])).any()
        else 9
    )
    with pytest.raises(ValueError, match="task 0"):
        qubo_module.polish_reads(q, [bad])
    with pytest.raises(ValueError, match="at least one read"):
        qubo_module.polish_reads(q, [])


@settings(max_examples=300, deadline=None)
@given(st.data(), st.integers(1, 128), st.booleans())
def test_np_sum_replica_is_numpys_sum(data, n, square):
    """qubo._np_sum adds as numpy's pairwise sum does (1-D, and a square matrix summed whole)."""
    values = data.draw(st.lists(st.floats(-1e6, 1e6), min_size=n, max_size=n))
    arr = np.array(values)
    if square:
        k = int(np.sqrt(n))
        arr = arr[: k * k].reshape(k, k)
        values = values[: k * k]
    assert np.float64(qubo_module._np_sum(list(values))).tobytes() == np.float64(arr.sum()).tobytes()


def test_np_sum_replica_negative_control():
    """Negative control: from 8 values on, numpy does not add one after the other, and the
    comparison above would see a sequential sum."""
    rng = np.random.default_rng(0)
    for _ in range(1000):
        values = (rng.uniform(-1, 1, 9) * 10.0 ** rng.integers(-8, 8, 9)).tolist()
        sequential = 0.0
        for v in values:
            sequential += v
        if sequential != float(np.sum(values)):
            assert qubo_module._np_sum(values) == float(np.sum(values))
            return
    raise AssertionError("no 9-value sum told the two orders apart")
