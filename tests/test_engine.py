"""The engine: radio physics, conservation, ordering, determinism, common random numbers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import exp1

import mecsim
from mecsim.radio import dbm_to_w, path_loss_db
from mecsim.scenario import load_scenario
from tests.conftest import tiny_scenario

T_COLS = [
    "t_arrival",
    "t_decision",
    "t_upload_start",
    "t_upload_end",
    "t_server_arrival",
    "t_service_start",
    "t_service_end",
    "t_complete",
]


def _static_radio_scenario(distance_m=200.0, bits=2e6, fading="none"):
    sc = tiny_scenario(
        duration_s=200.0,
        radio={
            "bandwidth_hz": 10e6,
            "fading": {"model": fading, "coherence_time_s": 0.01},
            "path_loss": {"shadowing_std_db": 0},
        },
    )
    sc["devices"] = [
        {
            "count": 1,
            "placement": {"distance_m": distance_m},
            "arrivals": {"process": "poisson", "rate_per_s": 0.05},
            "workload": [{"model": "sd15", "input_bits": bits}],
        }
    ]
    return sc


def test_upload_time_static_channel_is_shannon():
    """D / (b log2(1 + p g / (N0 b))) to 1e-9 relative (Shannon; 3GPP TR 36.814 path loss)."""
    res = mecsim.simulate(_static_radio_scenario(), policy="greedy", seed=4)
    t = res.tasks.dropna(subset=["t_upload_end"])
    assert len(t) > 3
    p = dbm_to_w(23.0)
    g = 10 ** (-path_loss_db(np.array([200.0]), res.scenario.radio)[0] / 10)
    n0 = dbm_to_w(-174.0 + 7.0)
    b = t.bandwidth_hz.to_numpy()
    expected = 2e6 / (b * np.log2(1 + p * g / (n0 * b)))
    np.testing.assert_allclose(t.t_upload_end - t.t_upload_start, expected, rtol=1e-9)
    # energy = power x upload time
    np.testing.assert_allclose(t.energy_tx_j, p * expected, rtol=1e-9)


def test_block_fading_long_upload_reaches_ergodic_rate():
    """An upload over ~1000 Rayleigh blocks runs at the ergodic rate
    b E[log2(1 + snr X)], X ~ Exp(1), which equals b e^{1/snr} E1(1/snr) / ln 2."""
    sc = _static_radio_scenario(distance_m=250.0, bits=2e8, fading="rayleigh")
    sc["devices"][0]["arrivals"]["rate_per_s"] = 0.002
    sc["duration_s"] = 3000.0
    sc["drain_s"] = 400.0
    res = mecsim.simulate(sc, policy="greedy", seed=2)
    t = res.tasks.dropna(subset=["t_upload_end"])
    assert len(t) >= 3
    radio = res.scenario.radio
    g = 10 ** (-path_loss_db(np.array([250.0]), radio)[0] / 10)
    snr = dbm_to_w(23.0) * g / (dbm_to_w(-174.0 + 7.0) * t.bandwidth_hz.to_numpy())
    ergodic = t.bandwidth_hz.to_numpy() * np.exp(1 / snr) * exp1(1 / snr) / math.log(2)
    measured = 2e8 / (t.t_upload_end - t.t_upload_start).to_numpy()
    blocks = (t.t_upload_end - t.t_upload_start).to_numpy() / 0.01
    assert blocks.min() > 300
    np.testing.assert_allclose(measured, ergodic, rtol=0.06)


def _channel(mobile=False, outage=None):
    from mecsim.radio import Channel, Trajectory
    from mecsim.streams import Streams

    sc = load_scenario(_static_radio_scenario(fading="rayleigh"))
    streams = Streams(9)
    n = 6
    dist = np.linspace(60.0, 450.0, n)
    mob = sc.devices[0].mobility.model_copy(
        update={"model": "random-waypoint", "speed_mps": 1.5, "radius_m": 400.0}
    )
    traj = [
        Trajectory(mob, np.array([d, 0.0]), streams.keyed("mobility", k)) if mobile and k % 2 else None
        for k, d in enumerate(dist)
    ]
    ch = Channel(sc.radio, dist, np.full(n, dbm_to_w(23.0)), traj, streams)
    if outage is not None:
        ch.add_outage(*outage)
    return ch


def test_fading_is_exp1_and_independent_of_the_order_blocks_are_asked():
    """|h|^2 of a block is fixed by (seed, device, block), whatever was asked before (common
    random numbers), and is Exp(1) (Rayleigh)."""
    a, b = _channel(), _channel()
    blocks = np.array([5, 700, 3, 100_000, 1500, 2])
    fa = np.array([a.fades.fade(1, np.array([k]))[0] for k in blocks])
    fb = np.array([b.fades.fade(1, np.array([k]))[0] for k in blocks[::-1]])[::-1]
    np.testing.assert_array_equal(fa, fb)
    b.forget_before(2000.0)  # forgotten chunks are drawn again, identically
    np.testing.assert_array_equal(b.fades.fade(1, np.array([3, 5])), fa[[2, 0]])
    x = a.fades.fade(2, np.arange(200_000))
    assert abs(x.mean() - 1) < 0.01 and abs(x.var() - 1) < 0.03  # Exp(1): mean 1, variance 1
    assert not np.array_equal(a.fades.fade(3, np.arange(100)), a.fades.fade(4, np.arange(100)))


def _reference_upload(ch, d, bits, b, t0):
    """Block by block with Python floats: gain at each block's start, rate b log2(1 + snr/b)."""
    tc = ch.tc
    k = int(t0 // tc)
    t, sent = t0, 0.0
    while True:
        end = (k + 1) * tc
        start = max(k * tc, t0)
        g = ch.large_scale_gain(d, np.array([start]))[0] * ch.fades.fade(d, np.array([k]))[0]
        if ch.in_outage(d, k * tc):
            g = 0.0
        r = b * math.log2(1 + ch.tx_power_w[d] / ch.n0 * g / b)
        if r > 0 and sent + r * (end - t) >= bits:
            return t + (bits - sent) / r - t0
        sent += r * (end - t)
        t, k = end, k + 1


@pytest.mark.parametrize("mobile,outage", [(False, None), (True, None), (True, (3, 1.0, 9.0))])
def test_batched_upload_times_equal_a_plain_block_walk(mobile, outage):
    """upload_durations (one call for an epoch's tasks: a float walk or (tasks x blocks)
    arrays) equals integrating each upload block by block, for uploads of one block to
    hundreds, static or moving, with an outage."""
    ch = _channel(mobile, outage)
    dev = np.array([0, 1, 2, 3, 4, 5, 3, 0])
    bits = np.array([1e3, 2e5, 4e6, 3e7, 5e5, 8e6, 1e6, 0.0])
    bw = np.full(len(dev), 2e6)
    for t0 in (0.5, 1.2345, 7.0):
        got = ch.upload_durations(dev, bits, bw, t0)
        want = [
            _reference_upload(ch, int(d), x, 2e6, t0) if x > 0 else 0.0
            for d, x in zip(dev, bits, strict=True)
        ]
        np.testing.assert_allclose(got, want, rtol=1e-9)
    assert max(want) / ch.tc > 100  # some uploads span hundreds of blocks


def _check_invariants(res):
    tasks = res.tasks
    s = res.summary
    # conservation: every generated task is completed, dropped (with a reason) or in flight
    assert s["tasks_generated"] == len(tasks)
    assert s["tasks_completed"] + s["tasks_dropped"] + s["tasks_in_flight"] == len(tasks)
    assert set(tasks.status.unique()) <= {"completed", "dropped", "in_flight"}
    dropped = tasks[tasks.status == "dropped"]
    assert (dropped.drop_reason != "").all()
    assert (tasks.loc[tasks.status != "dropped", "drop_reason"] == "").all()
    comp = tasks[tasks.status == "completed"]
    assert comp[T_COLS].notna().all().all()
    assert (comp.latency > 0).all()
    # ordered timestamps (where they happened), no negative durations
    arr = tasks[T_COLS].to_numpy()
    for k in range(len(T_COLS) - 1):
        a, b = arr[:, k], arr[:, k + 1]
        ok = np.isnan(a) | np.isnan(b) | (b >= a - 1e-9)
        assert ok.all(), (T_COLS[k], T_COLS[k + 1])
    assert (tasks.energy_tx_j >= 0).all() and (tasks.energy_server_j >= 0).all()
    # task ids are unique and arrivals within the run
    assert tasks.task_id.is_unique
    assert (tasks.t_arrival < res.scenario.duration_s).all()


scenario_strategy = st.fixed_dictionaries(
    {
        "n_dev": st.integers(1, 6),
        "rate": st.floats(0.01, 2.0),
        "epoch": st.sampled_from([0.0, 0.1, 0.5, 2.0]),
        "bw": st.floats(1e6, 50e6),
        "slots": st.integers(1, 3),
        "jitter": st.sampled_from(["deterministic", "exponential", "lognormal"]),
        "fading": st.sampled_from(["none", "rayleigh"]),
        "deadline_action": st.sampled_from(["serve", "drop"]),
        "deadline": st.floats(0.5, 30.0),
        "bursty": st.booleans(),
        "mobile": st.booleans(),
        "policy": st.sampled_from(["random", "round-robin", "nearest", "least-loaded", "greedy"]),
        "seed": st.integers(0, 10_000),
        "drain": st.sampled_from([0.0, 10.0]),
    }
)


@given(scenario_strategy)
@settings(max_examples=40)
def test_conservation_and_ordering_for_any_scenario(p):
    arrivals = (
        {"process": "mmpp", "rates_per_s": [p["rate"] * 3, p["rate"] / 5], "mean_sojourn_s": [5.0, 10.0]}
        if p["bursty"]
        else {"process": "poisson", "rate_per_s": p["rate"]}
    )
    sc = tiny_scenario(
        duration_s=40.0,
        drain_s=p["drain"],
        deadline_action=p["deadline_action"],
        radio={"bandwidth_hz": p["bw"], "fading": {"model": p["fading"]}},
        service={"jitter": {"distribution": p["jitter"]}},
        epoch={"length_s": p["epoch"]},
    )
    sc["devices"] = [
        {
            "count": p["n_dev"],
            "arrivals": arrivals,
            "mobility": {"model": "random-waypoint" if p["mobile"] else "none", "speed_mps": 2.0},
            "workload": [
                {"model": "sd15", "steps": [5, 30], "deadline_s": p["deadline"]},
                {"model": "sdxl", "weight": 0.3, "input_bits": [1e3, 4e6]},
            ],
        }
    ]
    sc["servers"][1]["slots"] = p["slots"]
    res = mecsim.simulate(sc, policy=p["policy"], seed=p["seed"])
    _check_invariants(res)
    # determinism: the same scenario and seed give identical traces
    again = mecsim.simulate(sc, policy=p["policy"], seed=p["seed"])
    pd.testing.assert_frame_equal(res.tasks, again.tasks)
    pd.testing.assert_frame_equal(res.servers, again.servers)


@pytest.mark.parametrize("name", ["smoke-v1", "paper-small-v1", "paper-medium-v1"])
def test_shipped_scenarios_run_and_conserve(name):
    res = mecsim.simulate(name, duration_s=120)
    _check_invariants(res)
    assert res.summary["tasks_completed"] > 0


def _frames_equal(a, b):
    pd.testing.assert_frame_equal(a.tasks, b.tasks)
    pd.testing.assert_frame_equal(a.servers, b.servers)
    wall = [c for c in a.epochs.columns if c.endswith("wall_s")]
    pd.testing.assert_frame_equal(a.epochs.drop(columns=wall), b.epochs.drop(columns=wall))


def test_same_seed_same_traces_different_seed_differs():
    a = mecsim.simulate("paper-small-v1", seed=11, duration_s=200)
    b = mecsim.simulate("paper-small-v1", seed=11, duration_s=200)
    _frames_equal(a, b)
    c = mecsim.simulate("paper-small-v1", seed=12, duration_s=200)
    assert not a.tasks.t_arrival.equals(c.tasks.t_arrival)


def test_random_policy_is_seeded():
    a = mecsim.simulate("paper-small-v1", policy="random", seed=5, duration_s=100)
    b = mecsim.simulate("paper-small-v1", policy="random", seed=5, duration_s=100)
    _frames_equal(a, b)


def test_common_random_numbers_across_policies():
    """Two policies on one seed see the same tasks: arrivals, devices, sizes, steps."""
    cols = [
        "task_id",
        "device",
        "model",
        "input_bits",
        "output_bits",
        "steps",
        "t_arrival",
        "deadline",
        "service_factor",
    ]
    a = mecsim.simulate("paper-medium-v1", policy="greedy", seed=3, duration_s=150)
    b = mecsim.simulate("paper-medium-v1", policy="random", seed=3, duration_s=150)
    pd.testing.assert_frame_equal(a.tasks[cols], b.tasks[cols])
    assert not a.tasks.server.equals(b.tasks.server)


def test_deadline_drop_records_reason():
    sc = tiny_scenario(deadline_action="drop", duration_s=120)
    sc["devices"][0]["arrivals"]["rate_per_s"] = 3.0  # overload: the deadline cannot hold
    sc["devices"][0]["workload"][0]["deadline_s"] = 3.0
    res = mecsim.simulate(sc, policy="round-robin", seed=1)
    _check_invariants(res)
    reasons = set(res.tasks.loc[res.tasks.status == "dropped", "drop_reason"])
    assert reasons & {"deadline_expired_waiting", "deadline_expired_queue"}
    assert res.summary["deadline_miss_rate"] > 0.3
    served = mecsim.simulate(dict(sc, deadline_action="serve"), policy="round-robin", seed=1)
    assert served.summary["tasks_dropped"] == 0
    assert served.summary["deadline_miss_rate"] > 0


def test_epoch_table_accounts_for_every_decision():
    res = mecsim.simulate("paper-small-v1", duration_s=200)
    ep = res.epochs
    assert (ep.n_decided == ep.n_dispatched + ep.n_dropped + ep.n_deferred).all()
    decided = res.tasks.t_decision.notna().sum()
    assert ep.n_dispatched.sum() + ep.n_dropped.sum() == decided


def test_bandwidth_budget_never_exceeded():
    """At any instant the uploads in progress hold at most B Hz."""
    res = mecsim.simulate("paper-medium-v1", duration_s=200)
    t = res.tasks.dropna(subset=["t_upload_end"])
    ev = np.concatenate([t.t_upload_start.to_numpy(), t.t_upload_end.to_numpy()])
    dbw = np.concatenate([t.bandwidth_hz.to_numpy(), -t.bandwidth_hz.to_numpy()])
    order = np.lexsort((dbw, ev))  # releases before grabs at equal times
    held = np.cumsum(dbw[order])
    assert held.max() <= res.scenario.radio.bandwidth_hz * (1 + 1e-9)


def test_azure_trace_replay(tmp_path):
    """The shipped trace (package data, read through importlib.resources) replays row for row."""
    import importlib.resources

    res = mecsim.simulate("azure-conv-v1", duration_s=120)
    _check_invariants(res)
    trace = importlib.resources.files("mecsim._data") / "scenarios/data/azure-llm-2023/conv.csv.gz"
    with importlib.resources.as_file(trace) as path:
        raw = pd.read_csv(path)
    ts = pd.to_datetime(raw.TIMESTAMP)
    rel = (ts - ts.min()).dt.total_seconds().to_numpy() * 4.0
    expected = np.sort(rel[rel < 120.0])
    np.testing.assert_allclose(np.sort(res.tasks.t_arrival.to_numpy()), expected, atol=1e-9)
    assert res.summary["trace_rows"] == len(raw)
    assert res.summary["trace_rows_replayed"] == len(expected)


def test_csv_trace_with_device_and_sizes(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("time,dev,tokens\n0.5,0,10\n1.0,1,20\n1.25,7,30\n50,2,5\n")
    sc = tiny_scenario(duration_s=20.0)
    sc["devices"] = [
        {
            "count": 3,
            "arrivals": {
                "process": "trace",
                "path": str(csv),
                "device_column": "dev",
                "input_bits_column": "tokens",
                "input_bits_per_unit": 100,
            },
            "workload": [{"model": "sd15"}],
        }
    ]
    res = mecsim.simulate(sc, seed=0)
    assert res.tasks.t_arrival.tolist() == [0.5, 1.0, 1.25]
    assert res.tasks.device.tolist() == [0, 1, 1]
    assert res.tasks.input_bits.tolist() == [1000.0, 2000.0, 3000.0]


def test_trace_file_read_again_when_it_changes(tmp_path):
    # a trace is parsed once per version of the file (mtime, size) and columns read: an edited
    # file is replayed as edited, a bad edit is refused (errors are not remembered), and a
    # repeated run replays the same rows from the kept arrays, which are read-only
    from mecsim.arrivals import _TRACE_CACHE
    from mecsim.errors import ScenarioError

    csv = tmp_path / "t.csv"
    sc = tiny_scenario(duration_s=20.0)
    sc["devices"] = [
        {
            "count": 2,
            "arrivals": {"process": "trace", "path": str(csv), "device_column": "dev"},
            "workload": [{"model": "sd15"}],
        }
    ]
    csv.write_text("time,dev\n0.5,0\n1.0,1\n")
    first = mecsim.simulate(sc, seed=0)
    assert first.tasks.t_arrival.tolist() == [0.5, 1.0]
    kept = [tr for key, tr in _TRACE_CACHE.items() if key[0] == str(csv.resolve())]
    assert len(kept) == 1 and not kept[0].t.flags.writeable
    again = mecsim.simulate(sc, seed=0)
    pd.testing.assert_frame_equal(first.tasks, again.tasks)
    csv.write_text("time,dev\n0.5,0\n1.0,1\n2.5,0\n")
    assert mecsim.simulate(sc, seed=0).tasks.t_arrival.tolist() == [0.5, 1.0, 2.5]
    csv.write_text("time,dev\n0.5,0\nsoon,1\n2.5,0\n")
    with pytest.raises(ScenarioError, match="bad time value 'soon'"):
        mecsim.simulate(sc, seed=0)
    csv.write_text("time,dev\n0.25,1\n")
    assert mecsim.simulate(sc, seed=0).tasks.t_arrival.tolist() == [0.25]


def test_load_scenario_overrides_and_digest():
    a = load_scenario("smoke-v1")
    b = load_scenario("smoke-v1", radio__bandwidth_hz=5e6)
    assert b.radio.bandwidth_hz == 5e6
    assert a.digest() != b.digest()
    assert load_scenario("smoke-v1", seed=9).digest() == a.digest()


def test_stepped_run_equals_run():
    """start / next_decision / apply with greedy's decisions gives greedy's run, row for row;
    the snapshot waits until a decision is applied, and a run cannot be started twice."""
    from mecsim.engine import Simulation
    from mecsim.policies import make_policy
    from mecsim.results import collect
    from mecsim.scenario import load_scenario

    sc = load_scenario("paper-small-v1", duration_s=120)
    ref = collect(Simulation(sc, make_policy("greedy"), 5).run()).tasks
    greedy = make_policy("greedy")
    sim = Simulation(sc, make_policy("greedy"), 5).start()
    with pytest.raises(RuntimeError, match="next_decision"):
        sim.apply(None)
    n = 0
    while (state := sim.next_decision()) is not None:
        assert sim.next_decision() is state  # asking again does not move the run
        sim.apply(greedy.decide(state))
        n += 1
    assert n > 10 and sim.complete
    got = collect(sim).tasks
    pd.testing.assert_frame_equal(got, ref)
    with pytest.raises(RuntimeError, match="once"):
        sim.start()
