"""The regime scenarios: each one's stated property, checked on seed 1 with short runs.

A regime is a ready scenario calibrated so that one decision matters (scenarios/*.yaml headers say
which and why). These tests check the property of the regime itself, not any policy's ranking, and
each has a negative control: the compute-dominated paper scenarios (or a regime pushed out of its
range) fail the same check, so the check can tell a regime from a non-regime. Margins over seeds
and longer runs: ``tests/benchmarks/regimes.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

import mecsim
from mecsim.scenario import registered_scenarios

REGIMES = ("radio-limited-v1", "hetero-load-v1", "deadline-v1", "batch-v1")


def _run(scenario: str, policy: str = "greedy", duration: float = 600.0, **params: object) -> mecsim.Result:
    return mecsim.simulate(
        scenario, policy=policy, seed=1, duration_s=duration, warmup_s=60, policy_params=params or None
    )


def upload_share(res: mecsim.Result) -> float:
    """Mean upload time over mean latency, completed tasks after the warm-up."""
    t = res.tasks
    done = t[(t.status == "completed") & (t.t_arrival >= res.summary["warmup_s"])]
    return float((done.t_upload_end - done.t_upload_start).mean() / done.latency.mean())


def grows(
    scenario: str, policy: str, short: float = 1200.0, long: float = 2400.0, **overrides: object
) -> tuple[float, float]:
    """Mean latency of the short run, and that of the long run over it (same seed, same first tasks).

    A stable queue's mean settles, so the ratio stays near 1; an unstable queue's backlog grows
    linearly, so its mean latency roughly doubles when the run does.
    """
    a = mecsim.simulate(scenario, policy=policy, seed=1, duration_s=short, warmup_s=60, **overrides)
    b = mecsim.simulate(scenario, policy=policy, seed=1, duration_s=long, warmup_s=60, **overrides)
    return a.summary["latency_mean_s"], b.summary["latency_mean_s"] / a.summary["latency_mean_s"]


#: Above this ratio of mean latencies (2,400 s over 1,200 s) a queue counts as growing. Measured on
#: hetero-load-v1, seeds 1-4: greedy 1.01-1.05, random 0.91-1.16, round-robin 0.95-1.06; the
#: overloaded control (109% of capacity, under random) 1.4-2.0. (At 600 s over 300 s a
#: heavy-tailed stable queue gave up to 1.5: too noisy to tell.)
GROWTH_LIMIT = 1.3


def test_regimes_are_registered_and_say_what_they_stress():
    reg = registered_scenarios()
    for name in REGIMES:
        assert name in reg
        head = reg[name].read_text(encoding="utf-8").splitlines()[0]
        assert head.startswith("# Regime:"), f"{name}: header comment must say what it stresses"


def test_radio_limited_uploads_dominate_and_the_bandwidth_rule_matters():
    # greedy takes the bandwidth rule as a parameter (mecsim.policies.heuristics.allocate).
    runs = {rule: _run("radio-limited-v1", bandwidth=rule) for rule in ("equal", "sum", "minmax")}
    assert upload_share(runs["equal"]) >= 0.30
    means = [r.summary["latency_mean_s"] for r in runs.values()]
    assert max(means) / min(means) - 1 >= 0.10
    # Negative control: paper-small-v1 is compute-dominated (uploads of milliseconds).
    assert upload_share(_run("paper-small-v1")) < 0.05


def test_hetero_load_random_and_round_robin_stable_and_worse_than_greedy():
    greedy, _ = grows("hetero-load-v1", "greedy")
    rand, rand_growth = grows("hetero-load-v1", "random")
    rr, rr_growth = grows("hetero-load-v1", "round-robin")
    assert rand_growth < GROWTH_LIMIT and rr_growth < GROWTH_LIMIT
    assert rand >= 1.2 * greedy
    # The property, on seed 1 as it asks: round-robin is 1.27x greedy here (7.71 s against
    # 9.77 s, 1,200 s). Over seeds 1-4 it is 1.12-1.27x (the scenario's header says why it is not
    # 1.2x on every seed).
    assert rr >= 1.2 * greedy
    # Negative control: the same servers offered 109% of their capacity, under random, grow.
    _, growth = grows("hetero-load-v1", "random", **{"devices.0.arrivals.rate_per_s": 0.075})
    assert growth > GROWTH_LIMIT


def test_deadline_greedy_misses_between_5_and_40_percent():
    miss = _run("deadline-v1").summary["deadline_miss_rate"]
    assert 0.05 <= miss <= 0.40
    # Negative control: paper-small-v1's deadlines do not bind.
    assert _run("paper-small-v1").summary["deadline_miss_rate"] < 0.05


def test_batch_median_epoch_decides_8_tasks_and_30_variables():
    ep = _run("batch-v1", "qubo-sa", duration=300.0).epochs
    assert np.median(ep.n_decided) >= 8
    assert np.median(ep.variables) >= 30
    # Negative control: paper-medium-v1's 0.5 s epochs decide one or two tasks.
    assert np.median(_run("paper-medium-v1", duration=300.0).epochs.n_decided) < 8


@pytest.mark.parametrize("name", REGIMES)
def test_regime_accounts_for_every_task(name):
    res = _run(name, duration=120.0)
    s = res.summary
    assert s["tasks_completed"] + s["tasks_dropped"] + s["tasks_in_flight"] == s["tasks_generated"]
