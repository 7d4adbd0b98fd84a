"""Policies: users' plug-ins work by spec, and check_policy catches broken ones."""

from __future__ import annotations

import numpy as np
import pytest

import mecsim
from mecsim.errors import PolicyError
from mecsim.policies import check_policy, make_policy
from mecsim.state import DROP, Decision
from mecsim.testing import random_epoch_state

# Every registered policy is checked with check_policy in tests/test_conformance.py.


def first_server(state):
    """A user's plain-function policy: everything to the first feasible server."""
    return Decision(state.equal_share(), np.argmax(state.feasible, axis=1))


class DropAll:
    name = "drop-all"

    def decide(self, state):
        return Decision(np.zeros(state.n_tasks), np.full(state.n_tasks, DROP))


def test_user_policy_by_spec_and_by_object():
    r = mecsim.simulate("smoke-v1", policy="tests.test_policies:first_server", duration_s=20)
    assert r.summary["tasks_completed"] > 0
    r = mecsim.simulate("smoke-v1", policy=DropAll(), duration_s=20)
    assert r.summary["tasks_dropped"] + r.summary["tasks_in_flight"] == r.summary["tasks_generated"]
    assert set(r.tasks.loc[r.tasks.status == "dropped", "drop_reason"]) == {"policy"}
    assert check_policy(first_server)["ok"]


class Infeasible:
    def decide(self, state):
        bad = np.argmin(state.feasible, axis=1)  # a server that cannot run the task, if any
        return Decision(state.equal_share(), bad)


class OverBudget:
    def decide(self, state):
        return Decision(np.full(state.n_tasks, state.bandwidth_budget_hz), np.argmax(state.feasible, axis=1))


class Unseeded:
    def decide(self, state):
        server = np.argmax(state.feasible * np.random.random(state.feasible.shape), axis=1)  # noqa: NPY002
        return Decision(state.equal_share(), server)


@pytest.mark.parametrize(
    "bad,check", [(Infeasible, "feasible"), (OverBudget, "bandwidth"), (Unseeded, "reproducible")]
)
def test_check_policy_catches_broken_policies(bad, check):
    with pytest.raises(PolicyError, match=check):
        check_policy(bad, scenario=None)


def test_engine_rejects_invalid_decisions_with_clear_error():
    with pytest.raises(PolicyError, match="budget"):
        mecsim.simulate("smoke-v1", policy=OverBudget(), duration_s=30)


def test_greedy_beats_random_on_paper_small():
    g = [
        mecsim.simulate("paper-small-v1", policy="greedy", seed=s).summary["latency_mean_s"] for s in range(3)
    ]
    r = [
        mecsim.simulate("paper-small-v1", policy="random", seed=s).summary["latency_mean_s"] for s in range(3)
    ]
    assert np.mean(g) < np.mean(r)


def test_greedy_places_single_task_on_earliest_completion():
    s = random_epoch_state(1, 4, seed=3)
    d = make_policy("greedy").decide(s)
    done = s.upload_s(d.bandwidth_hz)[:, None] + s.backhaul_s
    done = np.maximum(done, s.backlog_s) + s.service_s + s.return_s
    assert d.server[0] == int(np.argmin(np.where(s.feasible, done, np.inf)[0]))


class FailsLater:
    """A user's policy with a bug that shows only after a while."""

    name = "fails-later"

    def decide(self, state):
        if state.now > 15.0:
            raise ZeroDivisionError("bug in user code")
        return Decision(state.equal_share(), np.argmax(state.feasible, axis=1))


def test_exception_in_user_policy_keeps_partial_results(tmp_path):
    import json

    from click.testing import CliRunner

    from mecsim.cli import main
    from mecsim.errors import RunError

    with pytest.raises(RunError, match="ZeroDivisionError") as info:
        mecsim.simulate("smoke-v1", policy=FailsLater(), duration_s=60)
    part = info.value.result
    assert part is not None and not part.complete
    s = part.summary
    assert 15.0 < s["stopped_at_s"] < 30.0
    assert (part.tasks.t_arrival <= s["stopped_at_s"]).all()
    assert s["tasks_completed"] + s["tasks_dropped"] + s["tasks_in_flight"] == len(part.tasks)
    out = tmp_path / "partial"
    r = CliRunner().invoke(
        main, ["run", "smoke-v1", "--policy", "tests.test_policies:FailsLater", "--out", str(out)]
    )
    assert r.exit_code == 2
    assert "ZeroDivisionError" in r.output and "Traceback" not in r.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is False
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporaries
