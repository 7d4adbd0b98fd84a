"""The hybrid's ablations (mecsim.policies.ablations): conformance and what each one keeps.

greedy-ls's defining property is checked against greedy on the QUBO objective, on random epoch
states of batch-v1's size and on epochs recorded from a batch-v1 run; a negative control shows
that the same comparison catches a policy that is worse than greedy.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mecsim
from mecsim.decision.qubo import build_selection_qubo
from mecsim.policies import check_policy, make_policy
from mecsim.policies.ablations import NULL_SOLVER
from mecsim.registry import SOLVERS
from mecsim.state import Decision
from mecsim.testing import random_epoch_state

needs_null = pytest.mark.skipif(
    NULL_SOLVER not in SOLVERS.names(), reason=f"solver {NULL_SOLVER!r} not registered on this branch"
)


def _objective_gap(policy: str, state, rng_seed: int = 0, **params) -> float:
    """greedy's QUBO objective minus ``policy``'s, both judged with ``policy``'s bandwidth shares."""
    pol = make_policy(policy, **params)
    pol.reset(np.random.default_rng(rng_seed))
    d = pol.decide(state)
    greedy = make_policy("greedy", bandwidth=params.get("bandwidth", "equal"))
    g = greedy.decide(state)
    q = build_selection_qubo(state, d.bandwidth_hz, penalty=0.0)
    assert np.allclose(g.bandwidth_hz, d.bandwidth_hz)  # same rule, same shares
    return q.objective(g.server) - q.objective(d.server)


def test_greedy_ls_passes_check_policy():
    assert check_policy("greedy-ls")["ok"]


def test_presets_pass_check_policy():
    assert check_policy("qubo-sa-nols")["ok"]


@needs_null
@pytest.mark.parametrize("name", ["qubo-random", "qubo-random-nols"])
def test_null_presets_pass_check_policy(name):
    assert check_policy(name)["ok"]


def test_presets_keep_the_hybrid_but_the_ablated_stage():
    nols = make_policy("qubo-sa-nols")
    assert (nols.solver_label, nols.local_search, nols.candidates) == ("sa", False, 1)
    sa = make_policy("qubo-sa")
    assert nols.bandwidth == sa.bandwidth and nols.penalty_scale == sa.penalty_scale
    ls = make_policy("greedy-ls")
    assert (ls.solver_label, ls.local_search, ls.bandwidth) == ("greedy-ls", True, sa.bandwidth)
    assert make_policy("greedy-ls", bandwidth="equal").bandwidth == "equal"
    with pytest.raises(mecsim.errors.PolicyError, match="no 'solver'"):
        make_policy("greedy-ls", solver="sa")


@needs_null
def test_null_preset_uses_the_sa_reads():
    from mecsim.decision.solvers import SA_DEFAULTS

    pol = make_policy("qubo-random")
    assert pol.solver_label == NULL_SOLVER and pol.local_search
    assert pol.candidates == make_policy("qubo-sa").candidates
    assert pol.solver_params["num_reads"] == SA_DEFAULTS["num_reads"]


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(8, 16), m=st.integers(3, 7), seed=st.integers(0, 10**6), hosts=st.sampled_from([1.0, 0.6])
)
def test_greedy_ls_never_worse_than_greedy_on_random_batch_states(n, m, seed, hosts):
    # batch-v1's median epoch: about 12 tasks on 7 servers (tests/test_regimes.py)
    state = random_epoch_state(n, m, seed, host_probability=hosts)
    assert _objective_gap("greedy-ls", state, bandwidth="equal") >= -1e-9 * n


class _Recorder:
    """Decides like greedy and keeps every epoch state it sees."""

    name = "recorder"

    def __init__(self) -> None:
        self.inner = make_policy("greedy")
        self.states: list = []

    def reset(self, rng: np.random.Generator) -> None:
        self.inner.reset(rng)

    def decide(self, state) -> Decision:
        self.states.append(state)
        return self.inner.decide(state)


@pytest.fixture(scope="module")
def batch_states():
    rec = _Recorder()
    mecsim.simulate("batch-v1", policy=rec, seed=1, duration_s=300)
    return [s for s in rec.states if s.n_tasks >= 8]


def test_greedy_ls_never_worse_than_greedy_on_batch_epochs(batch_states):
    assert len(batch_states) >= 30
    gaps = np.array([_objective_gap("greedy-ls", s, bandwidth="equal") for s in batch_states])
    assert (gaps >= -1e-9).all()
    # ... and the local search does something: strictly better on a good share of real epochs.
    assert (gaps > 1e-6).mean() >= 0.2


def test_negative_control_random_is_worse_than_greedy_on_batch_epochs(batch_states):
    # The same comparison fails for a policy that is not at least as good as greedy.
    gaps = np.array([_objective_gap("random", s, bandwidth="equal") for s in batch_states[:30]])
    assert (gaps < -1e-6).any()
