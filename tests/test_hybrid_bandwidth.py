"""The hybrid's bandwidth stage takes every bandwidth rule (issue 15, item 4).

* Every rule of :data:`BANDWIDTH_RULES` (and ``srpt-<k>``) is accepted; the shares the policy
  hands out are :func:`allocate_rule`'s on the tasks that have a server.
* A rule that leaves tasks waiting (``srpt-<k>``, ``completion``) defers them (server DEFER,
  share 0); the QUBO places the admitted tasks only, optimally among them (enumeration).
* The choice and its effect are in the epochs table (``bandwidth_rule``, ``n_deferred_by_rule``),
  every task is accounted for, the run is reproducible, and ``completion`` sees the shares the
  policy handed out earlier (its :class:`HeldBandwidth` record).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import mecsim
from mecsim.decision.bandwidth import BANDWIDTH_RULES, allocate_rule
from mecsim.decision.qubo import build_selection_qubo
from mecsim.errors import PolicyError
from mecsim.policies.heuristics import _rows
from mecsim.policies.qubo import AUTO_BANDWIDTH, DEFAULT_BANDWIDTH, QuboPolicy
from mecsim.state import DEFER, validate_decision
from mecsim.testing import random_epoch_state

RULES = [*BANDWIDTH_RULES, "srpt-3"]


def decide(policy, state, seed=0):
    policy.reset(np.random.default_rng(seed))
    return policy.decide(state)


@pytest.mark.parametrize("rule", RULES)
def test_every_rule_gives_allocate_rules_shares(rule):
    # Large inputs on a narrow band so that the rules differ; task 2 can use no server.
    state = random_epoch_state(6, 3, seed=11, bandwidth_hz=2e6, host_probability=0.8)
    import dataclasses

    feas = np.array(state.feasible)
    feas[2] = False
    state = dataclasses.replace(state, feasible=feas, input_bits=np.array(state.input_bits) * 5)
    d = decide(QuboPolicy(solver="exact", bandwidth=rule), state)
    validate_decision(d, state)
    ok = feas.any(axis=1)
    expected = np.zeros(6)
    expected[ok] = allocate_rule(
        rule, state.input_bits[ok], state.snr_per_hz[ok], state.bandwidth_budget_hz, state.min_bandwidth_hz
    )
    np.testing.assert_allclose(d.bandwidth_hz, expected, rtol=1e-12)
    waiting = ok & (expected == 0)
    assert d.info["bandwidth_rule"] == rule
    assert d.info["n_deferred_by_rule"] == int(waiting.sum())
    assert (d.server[waiting] == DEFER).all() and d.server[2] == DEFER
    assert (d.server[ok & ~waiting] >= 0).all()
    if rule.startswith("srpt"):  # deferring rules do defer here (else the test proves little)
        assert waiting.any()
    # The admitted tasks are placed optimally among themselves (enumeration on their sub-epoch).
    idx = np.flatnonzero(ok & ~waiting)
    sub = _rows(state, idx)
    q = build_selection_qubo(sub, d.bandwidth_hz[idx])
    options = [np.flatnonzero(np.isfinite(q.linear_cost[i])) for i in range(idx.size)]
    best = min(q.objective(np.array(a)) for a in itertools.product(*options))
    assert q.objective(d.server[idx]) == pytest.approx(best, rel=1e-9)
    assert d.info["objective"] == pytest.approx(best, rel=1e-9)


def test_unknown_rule_is_a_policy_error():
    with pytest.raises(PolicyError, match="bandwidth: unknown rule 'fair'"):
        QuboPolicy(bandwidth="fair")
    with pytest.raises(PolicyError, match="srpt-0"):
        QuboPolicy(bandwidth="srpt-0")


def test_default_rule_is_the_measured_one_per_uplink_mode():
    assert DEFAULT_BANDWIDTH == "auto" and set(AUTO_BANDWIDTH.values()) <= set(BANDWIDTH_RULES)
    assert QuboPolicy().bandwidth == AUTO_BANDWIDTH["preallocated"]  # no scenario bound
    for mode in ("preallocated", "reallocated"):
        sc = mecsim.load_scenario({**RADIO_LIMITED, "radio": {**RADIO_LIMITED["radio"], "uplink_mode": mode}})
        r = mecsim.simulate(sc, policy="qubo-sa", seed=1, duration_s=30)
        assert (r.epochs["bandwidth_rule"] == AUTO_BANDWIDTH[mode]).all()
    assert QuboPolicy(bandwidth="equal").bandwidth == "equal"  # an explicit rule stays


RADIO_LIMITED = {  # a small radio-limited run: 5 MHz, MB-scale inputs at the cell edge
    "name": "radio-limited-test",
    "seed": 1,
    "duration_s": 120,
    "warmup_s": 0,
    "radio": {
        "bandwidth_hz": 5.0e6,
        "min_bandwidth_hz": 1.0e5,
        "noise_dbm_per_hz": -174,
        "noise_figure_db": 7,
        "path_loss": {"pl0_db": 128.1, "slope_db_per_decade": 37.6, "shadowing_std_db": 6},
        "fading": {"model": "rayleigh", "coherence_time_s": 0.01},
    },
    "devices": [
        {
            "name": "iot",
            "count": 12,
            "tx_power_dbm": 23,
            "placement": {"distance_m": [100, 500]},
            "arrivals": {"process": "poisson", "rate_per_s": 0.08},
            "workload": [{"model": "sd15-img2img", "input_bits": [1.0e7, 3.0e7], "steps": [20, 40]}],
        }
    ],
    "servers": [
        {"name": "a", "gpu": "a100", "slots": 1, "models": ["sd15-img2img"]},
        {"name": "b", "gpu": "a100", "slots": 2, "models": ["sd15-img2img"]},
    ],
    "epoch": {"length_s": 0.5},
}


@pytest.mark.parametrize("rule", ["completion", "srpt-2"])
def test_deferring_rules_in_a_run(rule):
    r = mecsim.simulate(RADIO_LIMITED, policy="qubo-sa", seed=3, policy_params={"bandwidth": rule})
    ep = r.epochs
    assert (ep["bandwidth_rule"] == rule).all()
    assert ep["n_deferred_by_rule"].sum() > 0  # the rule did leave tasks waiting
    assert (ep["n_deferred_by_rule"] <= ep["n_deferred"]).all()
    assert r.summary["tasks_generated"] == len(r.tasks)
    again = mecsim.simulate(RADIO_LIMITED, policy="qubo-sa", seed=3, policy_params={"bandwidth": rule})
    assert r.tasks.equals(again.tasks)


def test_completion_sees_the_shares_it_handed_out():
    """With the scenario bound, the completion rule keeps a held-share record; it is what the
    rule is given at the next epoch (reconciled with the free budget)."""
    sc = mecsim.load_scenario(RADIO_LIMITED)
    policy = QuboPolicy(solver="sa", bandwidth="completion")
    policy.bind({"scenario": sc})
    policy.reset(np.random.default_rng(0))
    assert policy.held is not None and policy.epoch_s == 0.5
    state = random_epoch_state(3, 2, seed=4, bandwidth_hz=5e6)
    d = policy.decide(state)
    sent = d.server >= 0
    np.testing.assert_allclose(np.sort(policy.held.hz), np.sort(d.bandwidth_hz[sent]))
    ends, _ = policy.held.lanes(state.now, 0.0)  # nothing free: every recorded share still held
    np.testing.assert_allclose(np.sort(ends), np.sort(state.upload_s(d.bandwidth_hz)[sent]))
    # Without a scenario there is no record (the rule then sees only the epoch's tasks).
    bare = QuboPolicy(bandwidth="completion")
    bare.reset(np.random.default_rng(0))
    assert bare.held is None
