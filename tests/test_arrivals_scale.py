"""Large device groups: superposed Poisson arrivals and shared fading streams (mecsim.arrivals,
mecsim.radio, mecsim.streams.PER_DEVICE_MAX).

A Poisson group of more than 64 devices draws one superposed process per group; the tests check
that it has the law of independent per-device Poisson processes (total count, uniform labels,
exponential gaps), each check paired with a wrong law that fails it; that groups of at most 64
devices give exactly the tasks of the per-device code (digests stored from it); determinism; and
that the fading of large groups is i.i.d. Exp(1), the same whatever order blocks are asked in,
while small groups keep their per-device streams bit for bit.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from scipy import stats

import mecsim
from mecsim.arrivals import TaskSource, _Group, superposed
from mecsim.fading import _CHUNK, _SPAN
from mecsim.radio import Channel, Trajectory, dbm_to_w
from mecsim.scenario import load_scenario, merged_profiles
from mecsim.streams import PER_DEVICE_MAX, Streams, group_key

FIELDS = ("t_arrival", "device", "model", "input_bits", "output_bits", "steps", "deadline_rel", "jitter")


def _group(count: int, rate: float, process: str = "poisson", **extra) -> dict:
    arr = (
        {"process": "poisson", "rate_per_s": rate}
        if process == "poisson"
        else {"process": "mmpp", "rates_per_s": [rate * 4, rate / 4], "mean_sojourn_s": [20, 80]}
    )
    return {
        "name": "iot",
        "count": count,
        "placement": {"distance_m": [50, 400]},
        "arrivals": arr,
        "workload": [
            {"model": "sd15", "weight": 0.6, "steps": [20, 40], "deadline_s": 30},
            {"model": "sd15-img2img", "weight": 0.4, "input_bits": [2.0e6, 5.0e6], "steps": [20, 40]},
        ],
        **extra,
    }


def _source(scenario, seed: int = 3) -> TaskSource:
    models, _ = merged_profiles(scenario.profiles)
    return TaskSource(scenario, models, Streams(seed))


def _all_tasks(src: TaskSource) -> dict[str, np.ndarray]:
    parts = []
    while (b := src.next_batch()) is not None:
        parts.append(b)
    return {f: np.concatenate([getattr(b, f) for b in parts]) for f in FIELDS + ("adapter",)}


def _digest(src: TaskSource) -> tuple[int, str]:
    """(tasks, SHA-256 prefix over every column of every window, window by window)."""
    h = hashlib.sha256()
    n = 0
    while (b := src.next_batch()) is not None:
        for f in FIELDS + ("adapter",):
            h.update(np.ascontiguousarray(getattr(b, f)).tobytes())
        n += len(b)
    return n, h.hexdigest()[:16]


# -- the law of a superposed group ---------------------------------------------------------------

COUNT, RATE, DURATION = 1000, 0.02, 1000.0  # 20,000 tasks expected, 20 per device


def _law_failures(
    t: np.ndarray, dev: np.ndarray, first: int, count: int, rate: float, dur: float
) -> list[str]:
    """The checks a superposition of ``count`` independent Poisson(rate) processes over
    ``[0, dur)`` passes (each at level 0.001); the names of those that fail."""
    bad = []
    lam = count * rate * dur
    lo, hi = stats.poisson.ppf(0.0005, lam), stats.poisson.ppf(0.9995, lam)
    if not lo <= len(t) <= hi:
        bad.append("count")
    per_dev = np.bincount(dev - first, minlength=count)
    if len(per_dev) != count or stats.chisquare(per_dev).pvalue < 1e-3:
        bad.append("uniform devices")
    gaps = np.diff(np.sort(t))
    if stats.kstest(gaps, "expon", args=(0, 1 / (count * rate))).pvalue < 1e-3:
        bad.append("exponential gaps")
    return bad


def _large_scenario(count=COUNT, rate=RATE, process="poisson", duration=DURATION):
    return load_scenario("paper-medium-v1", duration_s=duration, devices=[_group(count, rate, process)])


def test_superposed_group_has_the_law_of_independent_poisson_devices():
    sc = _large_scenario()
    src = _source(sc)
    assert len(src.groups) == 1 and not src.devices  # no per-device state at all
    tasks = _all_tasks(src)
    assert np.all(np.diff(tasks["t_arrival"]) >= 0)
    assert tasks["device"].min() >= 0 and tasks["device"].max() < COUNT
    assert _law_failures(tasks["t_arrival"], tasks["device"], 0, COUNT, RATE, DURATION) == []
    # the attributes are drawn per task as for a device: the workload mix and jitter law
    img = np.mean(tasks["input_bits"] > 1e6)  # the img2img share, weight 0.4: binomial bound
    assert abs(img - 0.4) < 4 * np.sqrt(0.4 * 0.6 / len(tasks["t_arrival"]))
    jit = tasks["jitter"]
    assert abs(jit.mean() - 1) < 0.005 and abs(jit.std() / jit.mean() - 0.1) < 0.005  # lognormal cv 0.1


@pytest.mark.parametrize("broken", ["one device", "rate +20%", "rate -20%"])
def test_a_wrong_law_fails_the_same_checks(monkeypatch, broken):
    """Negative controls: the checks above catch all arrivals on one device and a rate 20% off."""
    draw = _Group.draw

    def wrong(self, t0, t1):
        if broken == "one device":
            times, dev = draw(self, t0, t1)
            return times, np.full(len(times), self.first)
        saved = self.rate
        self.rate = saved * (1.2 if broken == "rate +20%" else 0.8)
        try:
            return draw(self, t0, t1)
        finally:
            self.rate = saved

    monkeypatch.setattr(_Group, "draw", wrong)
    tasks = _all_tasks(_source(_large_scenario()))
    failed = _law_failures(tasks["t_arrival"], tasks["device"], 0, COUNT, RATE, DURATION)
    expected = {"uniform devices"} if broken == "one device" else {"count", "exponential gaps"}
    assert expected <= set(failed)


def test_superposed_group_is_deterministic_and_keyed_by_the_group():
    sc = _large_scenario(duration=300.0)
    a, b, c = (_all_tasks(_source(sc, seed)) for seed in (5, 5, 6))
    for f in FIELDS:
        np.testing.assert_array_equal(a[f], b[f])
    assert not np.array_equal(a["t_arrival"][:10], c["t_arrival"][: len(a["t_arrival"][:10])])
    # the group streams are keyed by the group, not by a device
    g = _source(sc, 5).groups[0]
    ref = Streams(5).keyed("arrivals", group_key(0))
    assert g.arr_rng.bit_generator.state == ref.bit_generator.state


def test_group_of_many_devices_is_one_of_several_groups():
    """A large group next to small ones: devices numbered in group order, both kinds present."""
    sc = load_scenario(
        "paper-medium-v1", duration_s=400.0, devices=[_group(5, 0.05), _group(200, 0.01), _group(3, 0.05)]
    )
    src = _source(sc)
    assert [superposed(g) for g in sc.devices] == [False, True, False]
    assert len(src.devices) == 8 and src.groups[0].first == 5
    tasks = _all_tasks(src)
    dev = tasks["device"]
    big = (dev >= 5) & (dev < 205)
    assert big.sum() > 0.5 * len(dev) and (dev >= 205).any() and (dev < 5).any()
    assert dev.max() < 208


# -- groups of at most 64 devices: exactly the per-device tasks ---------------------------------

G64 = {
    "devices": [
        {
            "name": "edge",
            "count": PER_DEVICE_MAX,
            "placement": {"distance_m": [50, 400]},
            "arrivals": {"process": "poisson", "rate_per_s": 0.05},
            "workload": [
                {"model": "sd15", "weight": 0.6, "steps": [20, 40], "deadline_s": 30},
                {"model": "sd15-img2img", "weight": 0.4, "input_bits": [2.0e6, 5.0e6], "steps": [20, 40]},
            ],
        }
    ]
}

# (tasks, SHA-256 prefix of every task column) of TaskSource(seed 3) over 900 s, computed with the
# per-device code of commit 67fbda9 (before groups were superposed)
PER_DEVICE_DIGESTS = [
    ("paper-medium-v1", {}, (2655, "fb217764ee8ad7a5")),  # 30 Poisson + 10 MMPP devices
    ("paper-medium-v1", G64, (2814, "63dab4ff44f0a0ea")),  # 64 Poisson devices: the boundary
    ("azure-code-v1", {}, (968, "cbe0faf1b7261dae")),  # a trace group
    ("residency-v1", {}, (139, "4f91e89f260c950f")),  # adapters
]


@pytest.mark.parametrize("name,over,expected", PER_DEVICE_DIGESTS, ids=lambda x: str(x)[:20])
def test_small_groups_give_exactly_the_per_device_tasks(name, over, expected):
    sc = load_scenario(name, duration_s=900, **over)
    src = _source(sc)
    assert not src.groups
    assert _digest(src) == expected


def test_the_digest_check_sees_a_one_device_change():
    """Negative control of the digests above: 65 devices (superposed) differ from 64."""
    over = {"devices": [dict(G64["devices"][0], count=PER_DEVICE_MAX + 1)]}
    src = _source(load_scenario("paper-medium-v1", duration_s=900, **over))
    assert len(src.groups) == 1
    assert _digest(src)[1] != PER_DEVICE_DIGESTS[1][2][1]


# -- MMPP groups keep per-device streams ----------------------------------------------------------


def test_mmpp_group_of_100_devices_runs_with_per_device_streams():
    sc = _large_scenario(count=100, rate=0.01, process="mmpp", duration=2000.0)
    src = _source(sc)
    assert len(src.devices) == 100 and not src.groups
    tasks = _all_tasks(src)
    # mean rate per device: (0.04 x 20 + 0.0025 x 80) / 100 = 0.01
    mean = 100 * 0.01 * 2000.0
    assert abs(len(tasks["t_arrival"]) - mean) < 0.15 * mean  # MMPP counts are overdispersed
    assert len(np.unique(tasks["device"])) > 90
    res = mecsim.simulate(sc, policy="greedy", seed=2, duration_s=200.0, warmup_s=0)
    assert len(res.tasks) > 100 and set(res.tasks["device"]) <= set(range(100))


def test_large_group_runs_end_to_end_with_every_task_accounted_for():
    sc = _large_scenario(count=5000, rate=2.86 / 5000, duration=300.0)
    res = mecsim.simulate(sc, policy="greedy", seed=4, warmup_s=0)
    n = len(_all_tasks(_source(sc, 4))["t_arrival"])
    assert len(res.tasks) == n > 600
    assert res.tasks["status"].isin(["completed", "dropped", "in_flight"]).all()


# -- fading streams of large groups ---------------------------------------------------------------


def _blocks64(ch, device, c):
    """|h|^2 of blocks [64 c, 64 c + 64) of a device."""
    return ch.fades.fade(device, np.arange(c * _CHUNK, (c + 1) * _CHUNK))


def _channel(groups, seed=9):
    sc = load_scenario("paper-medium-v1")
    n = sum(groups)
    dist = np.linspace(60.0, 450.0, n)
    return Channel(sc.radio, dist, np.full(n, dbm_to_w(23.0)), [None] * n, Streams(seed), groups=groups)


def test_small_groups_keep_their_per_device_fading_streams():
    """Bit for bit the draws of keyed("fading", device), as without groups."""
    ch, plain = _channel([PER_DEVICE_MAX, 3]), _channel([PER_DEVICE_MAX + 3])
    ch0 = Channel(plain.radio, plain.distance0, plain.tx_power_w, [None] * (PER_DEVICE_MAX + 3), Streams(9))
    for d in (0, 63, 64, 66):
        ref = Streams(9).keyed("fading", d)
        ref.bit_generator.advance(3 * _CHUNK)
        np.testing.assert_array_equal(_blocks64(ch, d, 3), -np.log1p(-ref.random(_CHUNK)))
        np.testing.assert_array_equal(_blocks64(ch0, d, 3), _blocks64(ch, d, 3))
        # the same devices in one large group draw from the shared stream instead
        assert not np.array_equal(_blocks64(plain, d, 3), _blocks64(ch, d, 3))


def test_large_group_fading_is_fixed_by_device_and_block_whatever_the_order_asked():
    n = 1000
    a, b = _channel([4, n]), _channel([4, n])
    asks = [(4, 0), (900, 7), (4, 1), (5, 0), (1003, 3), (500, 2), (900, 0), (4, 0)]
    fa = [_blocks64(a, d, c).copy() for d, c in asks]
    fb = [_blocks64(b, d, c).copy() for d, c in reversed(asks)][::-1]
    for x, y in zip(fa, fb, strict=True):
        np.testing.assert_array_equal(x, y)
    # the layout: block s _SPAN + j of local device i is draw (s n + i) _SPAN + j of the group's
    # stream; chunk 7 of device 900 (local 896) starts at block 7 _CHUNK
    s, j = divmod(7 * _CHUNK, _SPAN)
    ref = Streams(9).keyed("fading", group_key(1))
    ref.bit_generator.advance((s * n + 896) * _SPAN + j)
    np.testing.assert_array_equal(fa[1], -np.log1p(-ref.random(_CHUNK)))
    b.forget_before(1e6)  # forgotten chunks are drawn again, identically
    np.testing.assert_array_equal(_blocks64(b, 900, 7), fa[1])


@pytest.mark.parametrize("groups,device", [([5], 3), ([3, 1000], 700)], ids=["own stream", "shared"])
def test_long_spans_drawn_at_once_equal_the_blocks_drawn_one_by_one(groups, device):
    """A long upload draws its blocks a batch at a time (crossing turns of the shared stream):
    the same values as block by block, in any order."""
    a, b = _channel(groups), _channel(groups)
    blocks = np.arange(100, 100 + 40 * _CHUNK)  # crosses several turns of _SPAN blocks
    _blocks64(b, device, 5)  # a window in the middle already drawn
    span = b.fades.fade(device, blocks)
    one = np.array([a.fades.fade(device, np.array([k]))[0] for k in blocks[::-1]])[::-1]
    np.testing.assert_array_equal(span, one)


def test_large_group_fading_is_iid_exp1_across_devices_and_blocks():
    n = 2000
    ch = _channel([n])
    x = np.concatenate([_blocks64(ch, d, c) for d in range(0, n, 7) for c in (0, 1, 50)])
    assert stats.kstest(x, "expon").pvalue > 1e-3
    # neighbours in the interleaved stream are independent: lag-1 correlation across devices
    first = np.array([_blocks64(ch, d, 2)[0] for d in range(n)])
    assert abs(np.corrcoef(first[:-1], first[1:])[0, 1]) < 4 / np.sqrt(n)
    # negative control: the KS check rejects Exp(1.25)
    assert stats.kstest(1.25 * x, "expon").pvalue < 1e-3


def test_channel_rejects_groups_that_do_not_cover_the_devices():
    sc = load_scenario("paper-medium-v1")
    with pytest.raises(ValueError, match="groups sum to 5 devices, not 6"):
        Channel(sc.radio, np.ones(6), np.ones(6), [None] * 6, Streams(1), groups=[2, 3])


def test_trajectory_makes_its_generator_on_first_use_with_the_same_path():
    mob = load_scenario("paper-medium-v1").devices[1].mobility
    made = []

    def factory():
        made.append(1)
        return Streams(4).keyed("mobility", 7)

    lazy = Trajectory(mob, np.array([100.0, 0.0]), factory)
    eager = Trajectory(mob, np.array([100.0, 0.0]), Streams(4).keyed("mobility", 7))
    assert made == []
    t = np.linspace(0, 3000, 50)
    np.testing.assert_array_equal(lazy.distance(t), eager.distance(t))
    assert made == [1]


def test_a_large_group_keeps_state_only_for_the_devices_that_had_tasks():
    """The set-up and per-epoch cost of 100,000 devices (a mobile group among them) does not
    grow with the devices: no per-device generators or trajectories' streams at set-up, fading
    windows and mobility streams only for the devices that uploaded."""
    from mecsim.engine import Simulation
    from mecsim.policies import make_policy

    mob = {"model": "random-waypoint", "speed_mps": [0.5, 1.5], "radius_m": 400}
    sc = load_scenario(
        "paper-medium-v1",
        duration_s=60.0,
        warmup_s=0,
        devices=[_group(90_000, 2.0 / 90_000), _group(10_000, 0.5 / 10_000, mobility=mob)],
    )
    sim = Simulation(sc, make_policy("greedy"), 1)
    ch = sim.channel
    assert not sim.source.devices and len(sim.source.groups) == 2
    assert not ch.fades._fade_gen and not ch.fades._group_gen and not ch.fades._win
    assert all(
        tr._rng is not None and not isinstance(tr._rng, np.random.Generator) for tr in ch.mobility[90_000:]
    )
    sim.run()
    used = set(sim.tasks.cols["device"][: sim.tasks.n].tolist())
    assert 80 < len(used) < 200
    assert not ch.fades._fade_gen and set(ch.fades._group_gen) == {0, 1}
    assert set(ch.fades._win) <= used
    made = {d for d in range(90_000, 100_000) if isinstance(ch.mobility[d]._rng, np.random.Generator)}
    assert made and made <= used
