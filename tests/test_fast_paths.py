"""The engine's fast paths give exactly what the general code gives.

Each fast path (one-task decision checks, dispatch records written with Python floats, the
engine's EpochState constructor, greedy's and least-loaded's choice for small epochs and their lane
that decides them without a snapshot, a trajectory's one-time distance) is compared with the
general path on the same input: the traces of whole runs, the choices and the values must be
identical, not merely close.
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


# -- small epochs' server choice: Python floats against arrays ----------------------------------


def _small_epoch(seed: int, n: int, m: int, tie: bool) -> EpochState:
    """An epoch of n tasks; with ``tie`` every server is idle with nothing queued and the links
    are equal, so that the rules meet exact ties (first minimum wins)."""
    s = random_epoch_state(n, m, seed=seed, host_probability=0.6)
    if tie:
        s = dataclasses.replace(
            s,
            backlog_s=np.zeros(m),
            queued=np.zeros(m, dtype=np.int64),
            service_s=np.where(s.feasible, s.service_s[:, :1], np.inf),
            backhaul_s=np.full((n, m), 0.01),
            return_s=np.full((n, m), 0.02),
        )
    return s


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(1, 8), m=st.integers(1, 12), tie=st.booleans())
def test_small_epoch_choice_on_floats_is_the_array_choice(seed, n, m, tie):
    # greedy and least-loaded place epochs of <= FLOATS_MAX tasks on Python floats, and the
    # engine's lane places epochs of <= LANE_MAX tasks with the same float functions; they must
    # pick what the array code picks, first minimum on ties and the bookkeeping between the
    # tasks included
    from mecsim.policies.heuristics import FLOATS_MAX, LANE_MAX

    assert FLOATS_MAX <= LANE_MAX == 8
    state = _small_epoch(seed, n, m, tie)
    for name in ("greedy", "least-loaded"):
        pol = mecsim.make_policy(name)
        bw = state.equal_share()
        floats = pol._choose_floats(state, bw) if name == "greedy" else pol._choose_floats(state)
        arrays = pol._choose_arrays(state, bw) if name == "greedy" else pol._choose_arrays(state)
        assert floats.dtype == arrays.dtype == np.int64
        assert floats.tolist() == arrays.tolist()
        if n <= FLOATS_MAX:
            assert pol.choose(state, bw).tolist() == floats.tolist()  # the path choose() takes


def test_small_epoch_choice_test_catches_a_wrong_tie_break():
    # negative control: taking the last minimum instead of the first differs from the array
    # code on a tie, and the comparison above sees such a difference
    state = _small_epoch(7, 1, 6, tie=True)
    pol = mecsim.make_policy("least-loaded")
    key = np.where(state.feasible[0], state.backlog_s, np.inf)
    assert int((key == key.min()).sum()) > 1
    last_min = int(np.flatnonzero(key == key.min())[-1])
    assert last_min != int(pol._choose_floats(state)[0]) == int(pol._choose_arrays(state)[0])


def test_small_epoch_choice_books_a_task_without_a_feasible_server_as_the_arrays_do():
    # the array code books server 0 for a task no server can run (decide() then defers it);
    # the float path must do the same, or the next task would see another availability
    from mecsim.policies.heuristics import _rows

    s = random_epoch_state(3, 4, seed=6, host_probability=1.0)
    feas = s.feasible.copy()
    feas[0] = False
    s = dataclasses.replace(s, feasible=feas, service_s=np.where(feas, s.service_s, np.inf))
    later = _rows(s, np.array([1, 2]))  # the same epoch without the unplaceable task
    for name in ("greedy", "least-loaded"):
        pol = mecsim.make_policy(name)
        bw = s.equal_share()
        args = (s, bw) if name == "greedy" else (s,)
        got = pol._choose_floats(*args).tolist()
        assert got == pol._choose_arrays(*args).tolist()
        # the booking matters here (seed 6): without it the other two tasks would go elsewhere
        args_later = (later, bw[1:]) if name == "greedy" else (later,)
        assert got[1:] != pol._choose_arrays(*args_later).tolist()


# -- one-time trajectory distance: distance_at against distance ---------------------------------


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10**6),
    pause=st.sampled_from([0.0, 5.0]),
    times=st.lists(st.floats(0.0, 600.0), min_size=1, max_size=20),
)
def test_distance_at_is_distance(seed, pause, times):
    from mecsim.mobility import Trajectory
    from mecsim.scenario import Mobility

    mob = Mobility(model="random-waypoint", speed_mps=(1.0, 20.0), pause_s=pause, radius_m=300.0)
    a = Trajectory(mob, np.array([120.0, -40.0]), np.random.default_rng(seed))
    b = Trajectory(mob, np.array([120.0, -40.0]), np.random.default_rng(seed))
    a._extend(100.0)  # waypoint times are asked exactly too
    b._extend(100.0)
    ts = sorted(times) + a.t[1:4] + a.t[1:2]  # a repeat, and points on waypoints
    for t in ts:
        assert a.distance_at(t) == float(b.distance(np.array([t]))[0])  # exactly, not close
        assert a.distance_at(t) == float(a.distance(np.array([t]))[0])  # its memo, both ways


# -- the one-task state: _build_state_one against the general build_state -----------------------


@pytest.mark.parametrize("scenario", ["paper-medium-v1", "mm1-v1", "radio-limited-v1"])
def test_one_task_state_is_the_general_state(scenario):
    # the same fields, values, dtypes and shapes as the general path (reached here by marking a
    # server down: with every server in fact up that path computes the same feasibility)
    from mecsim.engine import Simulation
    from mecsim.policies import make_policy
    from mecsim.scenario import load_scenario

    sc = load_scenario(scenario, duration_s=120, warmup_s=0)
    sim = Simulation(sc, make_policy("greedy"), 2).run()
    now = float(sim.env.now)
    assert sim.all_up and sim.tasks.n > 20
    for tid in range(0, sim.tasks.n, max(sim.tasks.n // 12, 1)):
        fast = sim.build_state([tid], now, 7e6)
        sim.all_up = False
        try:
            general = sim.build_state([tid], now, 7e6)
        finally:
            sim.all_up = True
        assert fast.__dict__.keys() == general.__dict__.keys()
        for name, a in general.__dict__.items():
            b = fast.__dict__[name]
            if isinstance(a, np.ndarray):
                assert b.dtype == a.dtype and b.shape == a.shape, name
                np.testing.assert_array_equal(b, a, err_msg=name)
            else:
                assert b == a, name


# -- the small-epoch lane: greedy and least-loaded decide without a snapshot ----------------------

_FAULTS = {
    "faults": {
        "servers": [{"server": "a100-1", "mtbf_s": 60, "mttr_s": 20}],
        "channels": [{"device": 3, "start_s": 50, "end_s": 90}],
        "backhaul": [{"server": "a100-2", "start_s": 30, "end_s": 120, "extra_latency_s": 0.05}],
    }
}


def _lane_run(scenario, policy, duration, lane: bool, **over):
    from mecsim.policies.heuristics import GreedyPolicy, LeastLoadedPolicy

    cls = {"greedy": GreedyPolicy, "least-loaded": LeastLoadedPolicy}[policy]
    # a subclass that changes nothing has no lane: the engine builds the snapshot and calls decide
    pol = cls() if lane else type("NoLane", (cls,), {})()
    return mecsim.simulate(scenario, policy=pol, seed=4, duration_s=duration, warmup_s=0, **over)


@pytest.mark.parametrize(
    "scenario, policy, duration, over",
    [
        ("mm1-v1", "least-loaded", 3000, {}),  # ideal radio, one task per epoch
        ("paper-medium-v1", "greedy", 600, {}),  # fading, mobile devices, 1-3 tasks per epoch
        ("paper-medium-v1", "least-loaded", 600, {}),
        ("paper-medium-v1", "greedy", 300, _FAULTS),  # servers down, a channel out, slow backhaul
        ("paper-medium-v1", "greedy", 300, {"epoch.length_s": 0}),
        ("deadline-v1", "greedy", 300, {}),  # late tasks dropped
        ("hetero-load-v1", "greedy", 300, {}),
    ],
)
def test_small_epoch_lane_gives_the_tables_decide_gives(monkeypatch, scenario, policy, duration, over):
    from mecsim.policies.heuristics import SmallEpochLane

    sizes: list[int] = []
    servers = SmallEpochLane.servers

    def counted(self, x):
        sizes.append(len(x.feasible))
        return servers(self, x)

    monkeypatch.setattr(SmallEpochLane, "servers", counted)
    fast = _lane_run(scenario, policy, duration, True, **over)
    assert sizes, "the lane was not used"
    n_lane = len(sizes)
    slow = _lane_run(scenario, policy, duration, False, **over)
    assert len(sizes) == n_lane  # the subclass went through decide
    assert len(fast.tasks) > 100
    _same_tables(fast, slow)
    if scenario == "paper-medium-v1" and not over:
        assert {1, 2, 3, 4} <= set(sizes)  # small epochs of several sizes went through the lane


@pytest.mark.parametrize("scenario", ["paper-medium-v1", "mm1-v1", "radio-limited-v1"])
def test_small_epoch_lane_inputs_are_the_snapshot_values(scenario):
    # every value the lane sees is the snapshot's, exactly: the tables alone would miss a wrong
    # value that rarely changes a choice (an upload time is common to all servers of a task)
    from mecsim.engine import Simulation
    from mecsim.policies import make_policy
    from mecsim.scenario import load_scenario

    sc = load_scenario(scenario, duration_s=120, warmup_s=0)
    sim = Simulation(sc, make_policy("greedy"), 2).run()
    now = float(sim.env.now)
    n = sim.tasks.n
    assert sim.all_up and n > 20
    for k, tid in enumerate(range(0, n - 8, max(n // 16, 1))):
        ids = list(range(tid, tid + 1 + k % 8))  # 1 to LANE_MAX tasks
        x = sim._lane_inputs(ids, now, 7e6)
        sim.all_up = False  # the general path (every server is in fact up)
        try:
            state = sim.build_state(ids, now, 7e6)
        finally:
            sim.all_up = True
        bw = state.equal_share()
        assert x.share == bw[0] and len(x.feasible) == len(ids)
        assert x.feasible == state.feasible.tolist()
        assert x.service == state.service_s.tolist()
        assert x.backhaul == state.backhaul_s.tolist()
        assert x.ret == state.return_s.tolist()
        assert x.backlog == state.backlog_s.tolist()
        assert x.queued == state.queued.tolist()
        assert x.slots == state.slots.tolist()
        assert x.upload_s() == state.upload_s(bw).tolist()


def test_small_epoch_lane_test_catches_a_lane_that_ignores_the_backlog(monkeypatch):
    # negative control: a lane fed an empty backlog decides otherwise, and the tables show it
    from mecsim.sim.snapshot import SnapshotMixin

    inputs = SnapshotMixin._lane_inputs

    def no_backlog(self, ids, now, budget):
        x = inputs(self, ids, now, budget)
        x.backlog = [0.0] * len(x.backlog)
        return x

    slow = _lane_run("paper-medium-v1", "greedy", 600, False)
    monkeypatch.setattr(SnapshotMixin, "_lane_inputs", no_backlog)
    broken = _lane_run("paper-medium-v1", "greedy", 600, True)
    with pytest.raises(AssertionError):
        _same_tables(broken, slow)


@pytest.mark.parametrize(
    "scenario, policy, over, has_lane",
    [
        ("paper-medium-v1", "greedy", {}, True),
        ("paper-medium-v1", "least-loaded", {}, True),
        ("paper-medium-v1", "greedy-ls", {}, False),  # another policy
        ("paper-medium-v1", "round-robin", {}, False),
        ("paper-medium-v1", "greedy", {"radio.uplink_mode": "reallocated"}, False),
        ("residency-v1", "greedy", {}, False),  # the GPU-server model
    ],
)
def test_small_epoch_lane_only_where_it_is_exact(scenario, policy, over, has_lane):
    from mecsim.engine import Simulation
    from mecsim.policies import make_policy
    from mecsim.scenario import load_scenario

    sc = load_scenario(scenario, duration_s=5, warmup_s=0, **over)
    assert (Simulation(sc, make_policy(policy), 1).run()._lane is not None) == has_lane
    # another bandwidth rule, or a run driven step by step, goes through decide
    assert Simulation(sc, make_policy(policy), 1).start()._lane is None
    if has_lane:
        assert Simulation(sc, make_policy(policy, bandwidth="sum"), 1).run()._lane is None


# -- the epochs table built by columns -------------------------------------------------------------

_NUMBER = st.one_of(
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
)
_INFO_VALUE = st.one_of(
    st.integers(-5, 5), st.floats(allow_nan=True), st.none(), st.booleans(), st.text(max_size=3)
)
# info keys a policy may add; "t" and "n_dropped" collide with engine columns (info wins)
_INFO_KEY = st.sampled_from(["solver", "energy", "fallback", "t", "n_dropped"])


def _same_kind(v):
    """Values like v (now and then anything), for info columns of one kind."""
    if isinstance(v, bool):
        like = st.booleans()
    elif isinstance(v, int | float):
        like = _NUMBER
    elif isinstance(v, str):
        like = st.text(max_size=2)
    else:
        like = st.none()
    return st.one_of(like, like, like, _INFO_VALUE)


def _rows_frame(log) -> pd.DataFrame:
    """The oracle: the epochs table as the engine built it before, one dict per epoch."""
    from mecsim.traces import EPOCH_FIXED

    rows = []
    for fixed, info in zip(log.fixed, log.info, strict=True):
        row = dict(zip(EPOCH_FIXED, fixed, strict=True))
        row.update(info)
        rows.append(row)
    return pd.DataFrame(rows)


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(0, 12),
    int_cols=st.lists(st.booleans(), min_size=11, max_size=11),
    data=st.data(),
)
def test_epoch_log_frame_is_the_frame_of_its_rows(n, int_cols, data):
    """EpochLog.frame() equals pandas.DataFrame of the dict rows (dtypes and values), whatever
    mix of ints and floats the engine columns hold and whatever info the policy adds: missing
    in some epochs, one dict shared by many epochs, a key that overrides an engine column, or an
    engine column holding something other than a number."""
    from mecsim.traces import EpochLog

    log = EpochLog()
    shared = data.draw(st.dictionaries(_INFO_KEY, _INFO_VALUE, max_size=2))
    odd = data.draw(st.booleans())  # sometimes an engine column holds None or a bool
    for _ in range(n):
        fixed = [data.draw(st.integers(0, 10**6) if is_int else _NUMBER) for is_int in int_cols]
        if odd and data.draw(st.booleans()):
            fixed[data.draw(st.integers(0, 10))] = data.draw(st.sampled_from([None, True]))
        how = data.draw(st.sampled_from(["shared", "same keys", "any"]))
        if how == "shared":
            info = shared
        elif how == "same keys":  # the shared dict's keys, each with values of one kind (mostly)
            info = {k: data.draw(_same_kind(v)) for k, v in shared.items()}
        else:
            info = data.draw(st.dictionaries(_INFO_KEY, _INFO_VALUE, max_size=3))
        log.append(tuple(fixed), info)
    assert len(log) == n
    pd.testing.assert_frame_equal(log.frame(), _rows_frame(log), check_exact=True)


def test_epoch_log_test_catches_a_frame_that_types_columns_its_own_way():
    """Negative control: a frame that makes every engine column float64 (wrong for the integer
    counts) fails the comparison above."""
    from mecsim.traces import EPOCH_FIXED, EpochLog

    log = EpochLog()
    for k in range(3):
        log.append((k, 1.5 * k, 1.5 * k, 1, 1, 1, 0, 0, 1e6, 1e-6, 0.0), {"solver": "greedy"})
    good = log.frame()
    pd.testing.assert_frame_equal(good, _rows_frame(log), check_exact=True)
    bad = good.astype({k: "float64" for k in EPOCH_FIXED})
    with pytest.raises(AssertionError):
        pd.testing.assert_frame_equal(bad, _rows_frame(log), check_exact=True)


class _CountingPolicy:
    """least-loaded's choice, with one info dict that it updates and returns at every epoch."""

    name = "counting"

    def __init__(self) -> None:
        from mecsim.policies.heuristics import LeastLoadedPolicy

        self.inner = LeastLoadedPolicy()
        self.info = {"calls": 0}

    def decide(self, state):
        dec = self.inner.decide(state)
        self.info["calls"] += 1
        return Decision(dec.bandwidth_hz, dec.server, self.info)


def test_epochs_table_keeps_each_epochs_info_when_a_policy_reuses_its_dict():
    """The epochs table records info as it was at each epoch (as the rows of dicts did), not
    the last value of a dict the policy keeps updating."""
    res = mecsim.simulate("mm1-v1", policy=_CountingPolicy(), seed=1, duration_s=200, warmup_s=0)
    calls = res.epochs["calls"].to_numpy()
    assert len(calls) > 10
    assert np.array_equal(calls, np.arange(1, len(calls) + 1))
