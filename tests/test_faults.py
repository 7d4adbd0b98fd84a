"""Simulated faults: server outages, channel outages, degraded backhaul; nothing is lost."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mecsim
from tests.test_engine import _check_invariants

OUTAGE = {"servers": [{"server": "a100", "down_s": [100.0, 300.0], "up_s": [150.0]}]}


@pytest.mark.parametrize("action", ["redispatch", "drop"])
def test_server_outage_conserves_tasks(action):
    res = mecsim.simulate("paper-small-v1", faults=dict(OUTAGE, on_server_failure=action))
    _check_invariants(res)
    tasks, faults = res.tasks, res.faults
    ev = faults.event.astype(str)
    assert (ev == "server_down").sum() == 2 and (ev == "server_up").sum() == 1
    a100 = tasks[tasks.server == "a100"]
    # no task starts service on the a100 while it is down
    s = a100.t_service_start.dropna()
    assert not ((s > 100.0) & (s < 150.0)).any()
    assert not (s > 300.0).any()
    if action == "redispatch":
        moved = tasks[tasks.redispatches > 0]
        assert len(moved) > 0
        assert (ev == "task_redispatched").sum() == moved.redispatches.sum()
        assert (moved.server != "a100").all() or (moved.t_decision < 300).all()
        assert res.summary["tasks_dropped"] == 0
    else:
        dropped = tasks[tasks.drop_reason == "server_failure"]
        assert len(dropped) > 0
        assert (ev == "task_dropped").sum() == len(dropped)


def test_policies_only_see_servers_that_are_up():
    seen = []

    class Spy:
        def decide(self, state):
            seen.append((state.now, state.server_up.copy(), state.feasible.copy()))
            return mecsim.make_policy("greedy").decide(state)

    mecsim.simulate("paper-small-v1", policy=Spy(), duration_s=200, faults=OUTAGE)
    for now, up, feas in seen:
        assert up[0] == (not 100.0 <= now < 150.0)
        if not up[0]:
            assert not feas[:, 0].any()


def test_channel_outage_holds_the_device_tasks():
    f = {"channels": [{"device": 2, "start_s": 50.0, "end_s": 200.0}]}
    res = mecsim.simulate("paper-small-v1", faults=f)
    _check_invariants(res)
    dev2 = res.tasks[res.tasks.device == 2]
    d = dev2.t_decision
    assert not ((d >= 50.0) & (d < 200.0)).any()
    # tasks that arrived during the outage were decided once it ended
    held = dev2[(dev2.t_arrival > 60.0) & (dev2.t_arrival < 190.0)]
    assert len(held) > 0
    assert (held.t_decision >= 200.0).all()


def test_degraded_backhaul_delays_server_arrival():
    f = {
        "backhaul": [
            {
                "server": "rtx3060-a",
                "start_s": 0.0,
                "end_s": 300.0,
                "extra_latency_s": 0.5,
                "rate_factor": 0.01,
            }
        ]
    }
    res = mecsim.simulate("paper-small-v1", faults=f, policy="round-robin")
    t = res.tasks[(res.tasks.server == "rtx3060-a") & (res.tasks.t_decision < 300.0)]
    assert len(t) > 0
    expected = 0.002 + 0.5 + t.input_bits / (1e9 * 0.01)  # scenario: 2 ms, 1 Gbit/s
    np.testing.assert_allclose(t.t_server_arrival - t.t_upload_end, expected, rtol=1e-9)
    later = res.tasks[(res.tasks.server == "rtx3060-a") & (res.tasks.t_decision > 300.0)]
    np.testing.assert_allclose(
        later.t_server_arrival - later.t_upload_end, 0.002 + later.input_bits / 1e9, rtol=1e-9
    )


def test_random_failures_are_seeded():
    f = {"servers": [{"server": "eat", "mtbf_s": 60.0, "mttr_s": 10.0}]}
    a = mecsim.simulate("paper-small-v1", faults=f, seed=3, duration_s=300)
    b = mecsim.simulate("paper-small-v1", faults=f, seed=3, duration_s=300)
    assert a.faults.equals(b.faults) and a.tasks.equals(b.tasks)
    assert (a.faults.event.astype(str) == "server_down").sum() >= 2


@given(
    st.fixed_dictionaries(
        {
            "seed": st.integers(0, 1000),
            "epoch": st.sampled_from([0.0, 0.5]),
            "action": st.sampled_from(["redispatch", "drop"]),
            "mtbf": st.floats(5.0, 100.0),
            "mttr": st.floats(1.0, 30.0),
            "chan": st.floats(0.0, 50.0),
            "policy": st.sampled_from(["greedy", "random", "least-loaded"]),
        }
    )
)
@settings(max_examples=15)
def test_conservation_under_random_faults(p):
    faults = {
        "on_server_failure": p["action"],
        "servers": [
            {"server": "a100", "mtbf_s": p["mtbf"], "mttr_s": p["mttr"]},
            {"server": "rtx3060-b", "down_s": [20.0], "up_s": [60.0]},
        ],
        "channels": [{"device": 0, "start_s": p["chan"], "end_s": p["chan"] + 20.0}],
        "backhaul": [{"server": "eat", "start_s": 10.0, "end_s": 40.0, "extra_latency_s": 1.0}],
    }
    res = mecsim.simulate(
        "paper-small-v1",
        policy=p["policy"],
        seed=p["seed"],
        duration_s=120,
        warmup_s=0,
        faults=faults,
        **{"epoch.length_s": p["epoch"]},
    )
    _check_invariants(res)
    s = res.summary
    # latency statistics exclude nothing silently: the counts say what they are over
    assert s["latency_n"] == s["tasks_completed"]


def test_ctrl_c_leaves_consistent_incomplete_output(tmp_path):
    import json

    import pandas as pd

    out = tmp_path / "interrupted"
    from tests.conftest import interrupt_cli_run

    returncode, err = interrupt_cli_run(out)
    assert returncode == 130, err
    assert "Traceback" not in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is False and summary["stopped_at_s"] > 0
    tasks = pd.read_parquet(out / "tasks.parquet")
    assert len(tasks) == summary["tasks_generated"] > 0
    assert (tasks.t_arrival <= summary["stopped_at_s"]).all()
    counts = tasks.status.value_counts()
    assert counts.sum() == len(tasks)
