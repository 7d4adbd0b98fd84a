"""The hybrid qubo-* policies: optimality on small epochs, reproducibility, recorded fallbacks."""

from __future__ import annotations

import dataclasses
import itertools
import subprocess
import sys

import dimod
import numpy as np
import pytest

import mecsim.policies.qubo  # noqa: F401  (registers the qubo-* policies)
from mecsim.decision.bandwidth import allocate_bandwidth
from mecsim.decision.qubo import build_selection_qubo
from mecsim.errors import MecsimError, PolicyError
from mecsim.policies.base import make_policy
from mecsim.policies.qubo import INFO_KEYS, QuboPolicy
from mecsim.registry import POLICIES
from mecsim.state import DEFER, Decision
from mecsim.testing import random_epoch_state
from tests.conftest import uniform_random_sampler

PRESETS = ["qubo-sa", "qubo-tabu", "qubo-exact", "qubo-milp"]

#: These tests are about the selection stage: every task gets a share (the default rule,
#: ``completion``, may defer some; tests/test_hybrid_bandwidth.py covers that).
SUM = {"bandwidth": "sum"}


def decide(policy, state, seed=0) -> Decision:
    policy.reset(np.random.default_rng(seed))
    return policy.decide(state)


def enumeration_optimum(state, bw) -> float:
    q = build_selection_qubo(state, bw)
    options = [np.flatnonzero(np.isfinite(q.linear_cost[i])) for i in range(state.n_tasks)]
    return min(q.objective(np.array(a)) for a in itertools.product(*options))


def test_presets_are_registered():
    assert set(PRESETS) <= set(POLICIES.names())
    for name in PRESETS:
        assert make_policy(name).name == name


SMALL_EPOCHS = [
    random_epoch_state(5 if k % 2 else 6, 3, seed=100 + k, host_probability=0.7) for k in range(20)
]


def null_qubo_policy(**params) -> QuboPolicy:
    """The negative control: the hybrid policy with a useless sampler (uniform random reads,
    as many as SA's default, seeded) in place of simulated annealing."""
    return QuboPolicy(
        solver=uniform_random_sampler(), solver_params={"num_reads": 8}, name="qubo-null", **params
    )


def assert_reads_reach_the_optimum(make_policy_, at_least: int = 14) -> None:
    """The solver alone: with local search off and only the lowest-energy read decoded, that read
    must be one-hot feasible (no repair) and optimal in at least ``at_least`` of the 20 epochs.

    Measured (seeds as here): SA with its defaults (8 reads x 200 sweeps) 15/20; uniform random
    reads (8, seeded) 0/20. Repair and local search, which the end-to-end check measures, make
    even random reads optimal in 20/20 epochs.
    """
    hits = []
    for k, state in enumerate(SMALL_EPOCHS):
        d = decide(make_policy_(), state, seed=k)
        raw = d.info["feasible_before_repair"] and d.info["repairs"] == 0
        hits.append(
            bool(raw)
            and d.info["objective"] == pytest.approx(enumeration_optimum(state, d.bandwidth_hz), rel=1e-9)
        )
    assert sum(hits) >= at_least, f"the raw reads are optimal in {sum(hits)}/20 epochs: {hits}"


def test_qubo_sa_finds_the_enumeration_optimum_on_small_epochs():
    """20 small epochs with infeasible pairs: 100% optimal end to end (SA + repair + local
    search), and the annealer's own reads optimal in most epochs, which random reads never are."""
    policy = make_policy("qubo-sa", **SUM)
    for k, state in enumerate(SMALL_EPOCHS):
        d = decide(policy, state, seed=k)
        best = enumeration_optimum(state, d.bandwidth_hz)
        assert d.info["objective"] == pytest.approx(best, rel=1e-9), f"epoch {k}"
        assert d.info["fallback"] is None
    solver_only = {"local_search": False, "candidates": 1, **SUM}
    assert_reads_reach_the_optimum(lambda: make_policy("qubo-sa", **solver_only))
    with pytest.raises(AssertionError, match="raw reads are optimal in"):  # negative control
        assert_reads_reach_the_optimum(lambda: null_qubo_policy(**solver_only))


@pytest.mark.parametrize("name", ["qubo-tabu", "qubo-exact", "qubo-milp"])
def test_other_presets_are_optimal_on_tiny_epochs(name):
    policy = make_policy(name, **SUM)
    for k in range(4):
        state = random_epoch_state(4, 3, seed=200 + k, host_probability=0.6)
        d = decide(policy, state, seed=k)
        assert d.info["fallback"] is None, d.info["solver_error"]
        assert d.info["objective"] == pytest.approx(enumeration_optimum(state, d.bandwidth_hz), rel=1e-9)


def test_info_keys_and_reference_gap():
    state = random_epoch_state(10, 4, seed=1)
    d = decide(QuboPolicy(**SUM), state)
    assert tuple(d.info) == INFO_KEYS
    assert all(v is None or isinstance(v, (str, int, float, bool)) for v in d.info.values())
    d = decide(QuboPolicy(reference=True, **SUM), state)
    assert tuple(d.info) == INFO_KEYS + ("milp_objective", "gap")
    assert d.info["gap"] >= -1e-9
    assert d.info["objective"] == pytest.approx(d.info["milp_objective"] * (1 + d.info["gap"]))
    assert d.info["variables"] == 40 and d.info["interactions"] > 0
    assert d.info["solve_wall_s"] > 0


def test_same_seed_same_decision():
    state = random_epoch_state(15, 4, seed=7, host_probability=0.8)
    for name in ("qubo-sa", "qubo-tabu"):
        a = decide(make_policy(name), state, seed=3)
        b = decide(make_policy(name), state, seed=3)
        assert (a.server == b.server).all() and (a.bandwidth_hz == b.bandwidth_hz).all()
        strip = {k: v for k, v in a.info.items() if k != "solve_wall_s"}
        assert strip == {k: v for k, v in b.info.items() if k != "solve_wall_s"}


def test_bandwidth_step():
    state = random_epoch_state(8, 3, seed=2)
    d = decide(QuboPolicy(bandwidth="sum"), state)
    expected = allocate_bandwidth(
        state.input_bits, state.snr_per_hz, state.bandwidth_budget_hz, state.min_bandwidth_hz, "sum"
    )
    np.testing.assert_allclose(d.bandwidth_hz, expected)
    ideal = dataclasses.replace(state, ideal_radio=True)
    np.testing.assert_allclose(decide(QuboPolicy(), ideal).bandwidth_hz, state.equal_share())
    # A task with no usable server is deferred and gets no bandwidth; the others share the budget.
    feas = state.feasible.copy()
    feas[4] = False
    d = decide(QuboPolicy(**SUM), dataclasses.replace(state, feasible=feas))
    assert d.server[4] == DEFER and d.bandwidth_hz[4] == 0
    assert d.bandwidth_hz.sum() == pytest.approx(state.bandwidth_budget_hz)
    assert (np.delete(d.bandwidth_hz, 4) >= state.min_bandwidth_hz).all()


def test_empty_and_unplaceable_epochs():
    d = decide(QuboPolicy(), random_epoch_state(0, 3, seed=0))
    assert d.server.shape == (0,) and d.bandwidth_hz.shape == (0,)
    assert d.info["fallback"] is None
    state = random_epoch_state(3, 2, seed=0)
    down = dataclasses.replace(state, server_up=np.array([False, False]))
    d = decide(QuboPolicy(), down)
    assert (d.server == DEFER).all() and d.info["variables"] == 0


class Raises(dimod.Sampler):
    parameters: dict = {}
    properties: dict = {}

    def sample(self, bqm, **kwargs):
        raise RuntimeError("quantum device on fire\nsecond line")


class Empty(dimod.Sampler):
    parameters: dict = {}
    properties: dict = {}

    def sample(self, bqm, **kwargs):
        return dimod.SampleSet.from_samples(([], list(bqm.variables)), bqm.vartype, energy=[])


def assert_fell_back(d: Decision, state, match: str, fallback: str = "greedy"):
    assert d.info["fallback"] == fallback
    assert match in d.info["solver_error"] and "\n" not in d.info["solver_error"]
    assert d.info["feasible_before_repair"] is None
    assert d.server.shape == (state.n_tasks,)
    assert all(state.feasible[i, j] for i, j in enumerate(d.server) if j >= 0)
    assert np.isfinite(d.info["objective"])


def test_fallback_is_recorded_when_the_sampler_raises_or_returns_nothing():
    state = random_epoch_state(6, 3, seed=5)
    assert_fell_back(decide(QuboPolicy(solver=Raises()), state), state, "device on fire")
    assert_fell_back(decide(QuboPolicy(solver=Empty()), state), state, "empty sample set")


def test_fallback_on_time_out_size_limit_and_exact_refusal():
    state = random_epoch_state(10, 4, seed=5)
    assert_fell_back(decide(QuboPolicy(time_budget_s=0, **SUM), state), state, "TimeoutError")
    assert_fell_back(decide(QuboPolicy(max_variables=10, **SUM), state), state, "max_variables=10")
    d = decide(make_policy("qubo-exact", reference=True, **SUM), state)
    assert_fell_back(d, state, "limit is 20")
    assert d.info["gap"] >= -1e-9  # the fallback's answer is still measured against the optimum


def test_fallback_to_a_user_policy_and_when_the_fallback_fails_too():
    state = random_epoch_state(6, 3, seed=9)

    def first_feasible(s):
        return Decision(s.equal_share(), np.argmax(s.feasible, axis=1))

    d = decide(QuboPolicy(solver=Raises(), fallback=first_feasible, **SUM), state)
    assert_fell_back(d, state, "device on fire", fallback="first_feasible")
    assert (d.server == np.argmax(state.feasible, axis=1)).all()
    d = decide(QuboPolicy(solver=Raises(), fallback="no_such_module:policy", **SUM), state)
    assert_fell_back(d, state, "no_such_module", fallback="cheapest-insertion")


def test_bad_parameters_are_named():
    for kwargs, match in [
        ({"bandwidth": "fair"}, "bandwidth"),
        ({"penalty": "huge"}, "penalty"),
        ({"penalty_scale": 0}, "penalty_scale"),
        ({"candidates": 0}, "candidates"),
        ({"time_budget_s": -1}, "time_budget_s"),
        ({"max_variables": 2.5}, "max_variables"),
    ]:
        with pytest.raises(PolicyError, match=match):
            QuboPolicy(**kwargs)
    # a preset's solver can be swapped by parameter (the README's `--param solver=tabu`)
    assert make_policy("qubo-sa", solver="tabu").name == "qubo-tabu"
    with pytest.raises(MecsimError, match="no-such-solver"):
        make_policy("qubo-sa", solver="no-such-solver")


# check_policy runs over every registered policy, the presets included, in tests/test_conformance.py.


def test_qubo_sa_runs_without_importing_scipy_optimize():
    """The exact references (exact.py, milp.py) import scipy.optimize (~0.2 s) only when used,
    so a qubo-sa run does without it; negative control: the assignment reference imports it."""
    code = (
        "import sys, warnings\n"
        "warnings.simplefilter('ignore')\n"
        "import mecsim\n"
        "mecsim.simulate('paper-small-v1', policy='qubo-sa', seed=1, duration_s=20, warmup_s=0)\n"
        "print('scipy.optimize' in sys.modules)\n"
        "from mecsim.decision.milp import solve_selection_assignment\n"
        "from mecsim.decision.qubo import build_selection_qubo\n"
        "from mecsim.testing import random_epoch_state\n"
        "s = random_epoch_state(3, 2, seed=1)\n"
        "solve_selection_assignment(build_selection_qubo(s, s.equal_share()))\n"
        "print('scipy.optimize' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "True"]
