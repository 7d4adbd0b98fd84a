"""The small-task twin of the "completion" rule (mecsim.decision.bandwidth_small) against the numpy
original: the same bits on random and edge-case inputs, since a trace must not move by a rounding."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mecsim.decision import bandwidth as bw
from mecsim.decision import bandwidth_small as small


def _same(got, want) -> bool:
    """Bit for bit (nan equal to nan)."""
    return np.array_equal(np.asarray(got, dtype=float), np.asarray(want, dtype=float), equal_nan=True) and (
        np.asarray(got, dtype=float).tobytes() == np.asarray(want, dtype=float).tobytes()
    )


sizes = st.integers(1, small.SMALL_N - 1)
# upload sizes and SNRs spanning the scenarios' ranges, with zeros (no upload / no channel)
bits = st.one_of(st.just(0.0), st.floats(1e2, 1e9))
snr = st.one_of(st.just(0.0), st.floats(1e3, 1e14))
levels = st.floats(-60.0, 60.0)


@settings(max_examples=300, deadline=None)
@given(st.lists(levels, min_size=1, max_size=small.SMALL_N - 1))
def test_h_log_is_numpys(u):
    h, dh = bw._h_log(np.array(u))
    got_h, got_dh = small._h_log(u)
    assert _same(got_h, h) and _same(got_dh, dh)


@settings(max_examples=300, deadline=None)
@given(st.data(), sizes)
def test_upload_times_are_numpys(data, n):
    d = data.draw(st.lists(bits, min_size=n, max_size=n))
    a = data.draw(st.lists(snr, min_size=n, max_size=n))
    b = data.draw(
        st.lists(
            st.one_of(st.just(0.0), st.floats(1e-300, 1e-290), st.floats(1.0, 1e8)), min_size=n, max_size=n
        )
    )
    want = bw._upload_times(np.array(d), np.array(a), np.array(b))
    assert _same(small._upload_times(d, a, b), want)


@settings(max_examples=300, deadline=None)
@given(st.data(), sizes, st.sampled_from(["sum", "equal"]))
def test_allocate_is_numpys(data, n, objective):
    d = data.draw(st.lists(bits, min_size=n, max_size=n))
    a = data.draw(st.lists(snr, min_size=n, max_size=n))
    budget = data.draw(st.floats(1e4, 1e8))
    floor = data.draw(st.one_of(st.just(0.0), st.floats(0.0, budget / n)))
    want = bw._allocate(np.array(d), np.array(a), budget, floor, objective)
    assert _same(small._allocate(d, a, budget, floor, objective), want)


def _numpy_completion(d, a, budget, floor, epoch, rel, held):
    """allocate_rule's "completion" by the numpy path only (bandwidth._completion)."""
    d, a = np.array(d, dtype=float), np.array(a, dtype=float)
    n = d.size
    cap = n if floor == 0.0 else max(1, min(n, int(budget / floor * (1.0 + bw._FLOOR_SLACK))))
    order = bw._spt_order(d, a, budget) if n > 1 else np.zeros(1, dtype=np.intp)
    return bw._completion(d, a, budget, floor, order, cap, epoch, np.array(rel, float), np.array(held, float))


@settings(max_examples=200, deadline=None)
@given(st.data(), sizes)
def test_completion_rule_is_numpys(data, n):
    d = data.draw(st.lists(bits, min_size=n, max_size=n))
    a = data.draw(st.lists(snr, min_size=n, max_size=n))
    budget = data.draw(st.floats(1e5, 5e7))
    floor = data.draw(st.one_of(st.just(0.0), st.floats(1.0, budget / 2)))
    epoch = data.draw(st.sampled_from([0.0, 0.1, 0.5]))
    lanes = data.draw(st.integers(0, 3))
    rel = data.draw(st.lists(st.floats(0.0, 5.0), min_size=lanes, max_size=lanes))
    held = data.draw(st.lists(st.floats(1e4, 1e7), min_size=lanes, max_size=lanes))
    want = _numpy_completion(d, a, budget, floor, epoch, rel, held)
    got = bw.allocate_rule("completion", d, a, budget, floor, epoch, rel, held)
    assert _same(got, want)


@settings(max_examples=200, deadline=None)
@given(st.data(), st.integers(0, 4), st.integers(0, 4), st.integers(0, 3))
def test_lane_model_is_numpys(data, n_adm, n_wait, n_held):
    n = n_adm + n_wait
    d = data.draw(st.lists(bits, min_size=n, max_size=n))
    a = data.draw(st.lists(snr, min_size=n, max_size=n))
    shares = data.draw(st.lists(st.floats(1e3, 1e7), min_size=n_adm, max_size=n_adm))
    rel = data.draw(st.lists(st.floats(0.0, 5.0), min_size=n_held, max_size=n_held))
    held = data.draw(st.lists(st.floats(1e4, 1e7), min_size=n_held, max_size=n_held))
    epoch = data.draw(st.sampled_from([0.0, 0.25]))
    perm = data.draw(st.permutations(list(range(n))))
    adm, wait = perm[:n_adm], perm[n_adm:]
    want = bw._lane_completion_times(
        np.array(d, float),
        np.array(a, float),
        np.array(adm, np.int64),
        np.array(shares, float),
        np.array(wait, np.int64),
        epoch,
        np.array(rel, float),
        np.array(held, float),
    )
    assert _same(small.lane_completion_times(d, a, adm, shares, wait, epoch, rel, held), want)


def test_the_comparison_sees_a_last_bit():
    """Negative control: the comparison above is bit-sensitive. Where numpy's exp is not the C
    library's (SIMD builds), an _h_log that used math.exp would fail it; this finds such an input
    and checks that _same tells the two apart."""
    x = np.linspace(-20.0, 20.0, 4001)
    differ = np.flatnonzero(np.exp(x) != np.array([math.exp(v) for v in x]))
    if differ.size == 0:  # this numpy's exp is the C library's: a 1-ulp nudge stands in for it
        v = float(np.exp(x[0]))
        assert not _same([v], [math.nextafter(v, math.inf)])
        return
    v = float(x[differ[0]])
    assert not _same([math.exp(v)], np.exp([v]))


@settings(max_examples=300, deadline=None)
@given(st.data(), st.integers(0, 15))
def test_held_lanes_on_lists_are_numpys(data, k):
    """HeldBandwidth.lanes of a few shares (Python lists) keeps and returns what the numpy path
    does, ties in the ends included."""
    ends = data.draw(st.lists(st.sampled_from([0.5, 1.0, 1.5]) | st.floats(0.0, 3.0), min_size=k, max_size=k))
    hz = data.draw(st.lists(st.floats(1e3, 1e7), min_size=k, max_size=k))
    total = 2e7
    free = data.draw(st.floats(0.0, total))
    now = data.draw(st.floats(0.0, 2.0))
    out = []
    for few in (True, False):
        held = bw.HeldBandwidth(total)
        held.end, held.hz = np.array(ends, dtype=float), np.array(hz, dtype=float)
        if not few:  # the numpy path (taken from 16 shares on)
            held._lanes_few = lambda now, held: None
        rel, width = held.lanes(now, free)
        out.append((rel.tobytes(), width.tobytes(), held.end.tobytes(), held.hz.tobytes()))
    assert out[0] == out[1]
