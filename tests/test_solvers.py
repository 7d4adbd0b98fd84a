"""Solvers behind dimod's Sampler interface: registry, conformance check, exact references."""

from __future__ import annotations

import itertools
import warnings

import dimod
import numpy as np
import pytest
from dwave.samplers.sa.sampler import default_beta_range

from mecsim.decision.milp import (
    MILPSampler,
    selection_one_hot,
    solve_selection_assignment,
    solve_selection_milp,
)
from mecsim.decision.qubo import build_selection_qubo
from mecsim.decision.solvers import (
    BoundedExactSolver,
    check_sampler,
    fast_beta_range,
    get_sampler,
)
from mecsim.errors import SolverError
from mecsim.registry import SOLVERS
from mecsim.testing import random_epoch_state


@pytest.mark.parametrize("name", ["sa", "tabu", "exact", "milp"])
def test_registered_solvers_pass_check_sampler(name):
    assert name in SOLVERS.names()
    sampler = get_sampler(name)
    assert isinstance(sampler, dimod.Sampler)
    check_sampler(sampler, name=name)


class WrongEnergies(dimod.Sampler):
    """Returns ExactSolver's samples with energies shifted by one."""

    parameters: dict = {}
    properties: dict = {}

    def sample(self, bqm, **kwargs):
        ss = dimod.ExactSolver().sample(bqm)
        return dimod.SampleSet.from_samples(
            (ss.record.sample, list(ss.variables)), bqm.vartype, energy=ss.record.energy + 1.0
        )


class IgnoresSeed(dimod.Sampler):
    """Declares a seed but draws fresh randomness every call."""

    parameters = {"seed": []}
    properties: dict = {}

    def __init__(self):
        self._rng = np.random.default_rng()

    def sample(self, bqm, seed=None, **kwargs):
        labels = list(bqm.variables)
        values = bqm.vartype.value
        x = self._rng.choice(sorted(values), size=(20, len(labels)))
        return dimod.SampleSet.from_samples_bqm((x, labels), bqm)


class DropsAVariable(dimod.Sampler):
    parameters: dict = {}
    properties: dict = {}

    def sample(self, bqm, **kwargs):
        labels = list(bqm.variables)[1:]
        sub = bqm.copy()
        if bqm.num_variables:
            sub.remove_variable(list(bqm.variables)[0])
        return dimod.SampleSet.from_samples_bqm((np.zeros((1, len(labels)), np.int8), labels), sub)


class NotASampler:
    def sample(self, bqm):  # pragma: no cover - never called
        return None


@pytest.mark.parametrize(
    "sampler, check",
    [
        (WrongEnergies(), "energies"),
        (IgnoresSeed(), "seed"),
        (DropsAVariable(), "energies"),
        (NotASampler(), "api"),
    ],
)
def test_check_sampler_names_the_failing_check(sampler, check):
    with pytest.raises(SolverError, match=f"'{check}' check"):
        check_sampler(sampler)


def test_exact_refuses_more_than_twenty_variables():
    bqm = dimod.BinaryQuadraticModel({v: 1.0 for v in range(21)}, {}, 0.0, "BINARY")
    with pytest.raises(SolverError, match=r"21 variables.*limit is 20"):
        get_sampler("exact").sample(bqm)
    small = dimod.BinaryQuadraticModel({v: 1.0 for v in range(20)}, {}, 0.0, "BINARY")
    assert BoundedExactSolver().properties["max_variables"] == 20
    assert get_sampler("exact").sample(small).first.energy == 0.0


def test_get_sampler_specs_and_parameter_errors():
    assert isinstance(get_sampler("dimod:ExactSolver"), dimod.ExactSolver)  # a class: instantiated
    inst = dimod.RandomSampler()
    assert get_sampler(inst) is inst
    configured = get_sampler("sa", num_reads=3)
    bqm = dimod.BinaryQuadraticModel({"a": 1.0, "b": -1.0}, {("a", "b"): 0.5}, 0.0, "BINARY")
    assert len(configured.sample(bqm, seed=1)) == 3
    with pytest.raises(SolverError, match="num_sweep"):
        get_sampler("sa", num_sweep=10)
    with pytest.raises(SolverError, match="unknown solver"):
        get_sampler("no-such-solver")
    with pytest.raises(SolverError, match="not a dimod.Sampler"):
        get_sampler(NotASampler())
    with pytest.raises(SolverError, match="cannot import"):
        get_sampler("no_such_pkg.mod:Sampler")


def test_sa_and_tabu_are_reproducible_with_a_seed():
    state = random_epoch_state(8, 3, seed=3)
    q = build_selection_qubo(state, state.equal_share())
    for name in ("sa", "tabu"):
        s = get_sampler(name)
        a, b = s.sample(q.bqm, seed=42), s.sample(q.bqm, seed=42)
        order = list(q.bqm.variables)
        ra = a.record.sample[:, [a.variables.index(v) for v in order]]
        rb = b.record.sample[:, [b.variables.index(v) for v in order]]
        assert (ra == rb).all()


def test_fast_beta_range_matches_dwave_default():
    models = [
        dimod.generators.gnp_random_bqm(15, 0.4, vt, random_state=k)
        for k, vt in enumerate(["SPIN", "BINARY", "SPIN"])
    ]
    state = random_epoch_state(6, 3, seed=1)
    models.append(build_selection_qubo(state, state.equal_share()).bqm)
    for bqm in models:
        assert fast_beta_range(bqm) == pytest.approx(default_beta_range(bqm), rel=1e-12)


def test_milp_and_exact_solver_agree_on_the_selection_optimum():
    for seed in range(10):
        state = random_epoch_state(4 if seed % 2 else 5, 3, seed=seed, host_probability=0.6)
        q = build_selection_qubo(state, state.equal_share(), penalty_scale=1.0)
        assert q.bqm.num_variables <= 15
        exact = dimod.ExactSolver().sample(q.bqm).first
        server, best = solve_selection_milp(q)
        assert best == pytest.approx(exact.energy, rel=1e-9)
        assert solve_selection_assignment(q)[1] == pytest.approx(best, rel=1e-9)
        brute = min(
            q.objective(np.array(a))
            for a in itertools.product(range(3), repeat=state.n_tasks)
            if all(np.isfinite(q.linear_cost[i, a[i]]) for i in range(state.n_tasks))
        )
        assert best == pytest.approx(brute, rel=1e-12)
        # The linearised MILP with one-hot constraints finds the same optimum.
        ss = MILPSampler().sample(q.bqm, one_hot=selection_one_hot(q))
        assert ss.info["optimal"]
        assert ss.first.energy == pytest.approx(best, rel=1e-7)


def test_positional_milp_matches_assignment_solver_at_larger_sizes():
    for seed, (n, m) in enumerate([(12, 3), (20, 4)]):
        state = random_epoch_state(n, m, seed=seed, host_probability=0.7)
        q = build_selection_qubo(state, state.equal_share())
        assert solve_selection_milp(q)[1] == pytest.approx(solve_selection_assignment(q)[1], rel=1e-9)


@pytest.mark.parametrize("vartype", ["BINARY", "SPIN"])
def test_milp_sampler_finds_the_ground_energy_of_general_bqms(vartype):
    for k in range(6):
        rng = np.random.default_rng(k)
        bqm = dimod.generators.gnp_random_bqm(
            10, 0.5, vartype, random_state=k, bias_generator=lambda size, rng=rng: rng.normal(size=size)
        )
        bqm.offset = 0.7
        ground = dimod.ExactSolver().sample(bqm).first.energy
        ss = MILPSampler().sample(bqm)
        assert ss.vartype is bqm.vartype
        assert ss.first.energy == pytest.approx(ground, abs=1e-7)
        dimod.testing.assert_sampleset_energies(ss, bqm)
        assert set(ss.info) >= {"status", "mip_gap", "wall_s", "optimal"}


def test_milp_sampler_errors_and_limits():
    bqm = dimod.BinaryQuadraticModel({"a": 1.0, "b": 1.0}, {}, 0.0, "BINARY")
    with pytest.raises(SolverError, match="not a variable"):
        MILPSampler().sample(bqm, one_hot=[["a", "zz"]])
    with pytest.raises(SolverError, match="no solution"):
        MILPSampler().sample(bqm, one_hot=[["a"], ["a", "b"], ["b"]])  # a = 1, b = 1, a + b = 1
    with pytest.raises(SolverError, match="time_limit"):
        MILPSampler(time_limit=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # known parameters raise no "unknown kwarg" warning
        ss = MILPSampler(time_limit=5).sample(bqm, one_hot=[["a", "b"]], time_limit=2.0)
    assert ss.first.energy == 1.0
