"""The engine's fast paths give exactly what the general code gives.

Each fast path (one-task decision checks, dispatch records written with Python floats, the
engine's EpochState constructor) is compared with the general path on the same input: the
traces of whole runs must be identical, not merely close.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mecsim
import mecsim.sim.dispatch as dispatch_mod
from mecsim.errors import PolicyError
from mecsim.state import _OPTIONAL, DEFER, DROP, Decision, EpochState, validate_decision
from mecsim.testing import random_epoch_state


def _run(scenario: str, policy: str, duration: float) -> mecsim.Result:
    return mecsim.simulate(scenario, policy=policy, seed=3, duration_s=duration, warmup_s=0)


def _same_tables(a: mecsim.Result, b: mecsim.Result) -> None:
    pd.testing.assert_frame_equal(a.tasks, b.tasks, check_exact=True)
    pd.testing.assert_frame_equal(a.servers, b.servers, check_exact=True)
    cols = [c for c in a.epochs.columns if not c.endswith("wall_s")]
    pd.testing.assert_frame_equal(a.epochs[cols], b.epochs[cols], check_exact=True)


@pytest.mark.parametrize(
    "scenario, policy, duration",
    [
        ("paper-medium-v1", "greedy", 400),
        ("batch-v1", "greedy", 200),
        ("radio-limited-v1", "least-loaded", 300),
    ],
)
def test_scalar_and_array_dispatch_write_the_same_records(monkeypatch, scenario, policy, duration):
    # batch-v1 epochs decide ~11 tasks, paper-medium-v1 mostly 1-2: every path is exercised
    monkeypatch.setattr(dispatch_mod, "_SCALAR_MAX", 0)  # arrays for every epoch
    arrays = _run(scenario, policy, duration)
    monkeypatch.setattr(dispatch_mod, "_SCALAR_MAX", 10**9)  # Python floats for every epoch
    scalars = _run(scenario, policy, duration)
    assert len(arrays.tasks) > 100
    _same_tables(arrays, scalars)


def test_engine_constructor_builds_the_same_state():
    ref = random_epoch_state(3, 4, seed=5)
    fields = {f.name: getattr(ref, f.name) for f in dataclasses.fields(EpochState)}
    # every optional field is known to the fast constructor, with the dataclass's default
    defaults = {
        f.name: f.default for f in dataclasses.fields(EpochState) if f.default is not dataclasses.MISSING
    }
    assert defaults == _OPTIONAL
    required = {k: v for k, v in fields.items() if k not in _OPTIONAL and k != "extra"}
    fast = EpochState._build(**required)
    slow = EpochState(**required)
    for f in dataclasses.fields(EpochState):
        a, b = getattr(fast, f.name), getattr(slow, f.name)
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)
        else:
            assert a == b, f.name
    assert fast.extra == {} and fast.extra is not EpochState._build(**required).extra
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.now = 1.0


def _verdict(dec: Decision, state: EpochState) -> str:
    try:
        validate_decision(dec, state)
    except PolicyError as e:
        return e.check
    return "ok"


@settings(max_examples=300, deadline=None)
@given(
    server=st.integers(-4, 5),
    bw=st.sampled_from([0.0, 1.0, 5e4, 1e5, 1e6, 2e7, float("nan"), float("inf"), -1.0]),
    ideal=st.booleans(),
    seed=st.integers(0, 50),
)
def test_one_task_check_agrees_with_the_general_rules(server, bw, ideal, seed):
    # The one-task shortcut against the general path on a two-task epoch whose second task is
    # deferred (a deferred task is never checked further, so the verdicts must match).
    two = random_epoch_state(2, 4, seed=seed, host_probability=0.6)
    two = dataclasses.replace(two, ideal_radio=ideal, bandwidth_budget_hz=1e6, min_bandwidth_hz=1e5)
    one = dataclasses.replace(
        two,
        **{
            k: getattr(two, k)[:1]
            for k in ("task_id", "device", "input_bits", "output_bits", "steps", "t_arrival", "deadline")
            + ("tx_power_w", "gain", "feasible", "service_s", "backhaul_s", "return_s")
        },
        model=two.model[:1],
    )
    fast = _verdict(Decision(np.array([bw]), np.array([server])), one)
    general = _verdict(Decision(np.array([bw, 0.0]), np.array([server, DEFER])), two)
    assert fast == general
    # and the rules as the docs state them
    ok_server = server in (DROP, DEFER) or (0 <= server < 4 and bool(one.feasible[0, server]))
    ok_bw = server < 0 or ideal or (np.isfinite(bw) and 1e5 * (1 - 1e-9) <= bw <= 1e6 * (1 + 1e-9))
    assert (fast == "ok") == (ok_server and ok_bw)
