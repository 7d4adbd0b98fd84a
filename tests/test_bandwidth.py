"""Tests of :mod:`mecsim.decision.bandwidth` (exact uplink bandwidth preallocation).

Where the reference values come from:

* ``_reference_sum``: an independent general-purpose solver, scipy's SLSQP, on the same convex
  program (equality budget constraint, bounds, analytic gradient, started from the equal split).
* ``_marginal``: the KKT multipliers, from the textbook derivative of ``T(b) = D / r(b)`` written
  out directly in numpy (``r'(b) = log2(1 + x) - x / ((1 + x) ln 2)``, ``x = a / b``).
* closed forms: identical tasks must split equally (symmetry plus strict convexity); one task
  with the whole budget uploads in ``D / (B log2(1 + a / B))`` (Shannon), computed with ``math``.
* the realistic radio follows the scenarios' default: 3GPP TR 36.814 path loss
  ``128.1 + 37.6 log10(d_km)`` at 50-300 m, 23 dBm, N0 = -174 dBm/Hz + 7 dB noise figure,
  Rayleigh fading, inputs 8 kbit - 4 Mbit, B = 20 MHz.
"""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

import mecsim.decision.bandwidth as bandwidth_module
from mecsim.decision.bandwidth import (
    OBJECTIVES,
    InfeasibleBandwidthError,
    allocate_bandwidth,
    upload_times,
)
from mecsim.errors import MecsimError

B = 20e6  # Hz, the scenarios' default uplink budget
B_MIN = 1e5  # Hz, the scenarios' default floor
LN2 = math.log(2.0)


def _radio(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Input sizes (bits) and SNR per Hz of n tasks under the default radio (module docstring)."""
    d_km = rng.uniform(0.05, 0.3, n)
    path_loss_db = 128.1 + 37.6 * np.log10(d_km)
    gain = 10 ** (-path_loss_db / 10) * rng.exponential(1.0, n)  # Rayleigh: |h|^2 ~ Exp(1)
    tx_power_w = 10 ** ((23 - 30) / 10)
    n0_w_per_hz = 10 ** ((-174 + 7 - 30) / 10)
    return rng.uniform(8e3, 4e6, n), tx_power_w * gain / n0_w_per_hz


def _instance(seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Instance ``seed``: n in 1..60 (both ends included), every third one with a 100 kHz floor."""
    rng = np.random.default_rng(seed)
    n = {0: 1, 1: 60, 2: 2}.get(seed, int(rng.integers(1, 61)))
    bits, snr = _radio(n, rng)
    return bits, snr, (B_MIN if seed % 3 == 0 else 0.0)


def _reference_sum(bits: np.ndarray, snr: np.ndarray, floor: float) -> np.ndarray:
    """Minimise sum_i T_i(b_i) with scipy's SLSQP (shares s = b / B as variables)."""
    n = bits.size

    def rate(s: np.ndarray) -> np.ndarray:
        b = s * B
        return b * np.log1p(snr / b) / LN2

    def total(s: np.ndarray) -> float:
        return float(np.sum(bits / rate(s)))

    def gradient(s: np.ndarray) -> np.ndarray:
        x = snr / (s * B)
        d_rate = (np.log1p(x) - x / (1.0 + x)) / LN2  # dr/db
        return -bits * d_rate / rate(s) ** 2 * B

    # The lower bound keeps SLSQP off b = 0 when there is no floor; 1e-9 * B = 0.02 Hz is far
    # below any optimal share here (the smallest are ~1 kHz), so it does not change the optimum.
    lower = max(floor / B, 1e-9)
    result = minimize(
        total,
        np.full(n, 1.0 / n),
        jac=gradient,
        method="SLSQP",
        bounds=[(lower, 1.0)] * n,
        constraints=[{"type": "eq", "fun": lambda s: s.sum() - 1.0, "jac": lambda s: np.ones(n)}],
        options={"ftol": 1e-15, "maxiter": 1000},
    )
    assert abs(result.x.sum() - 1.0) < 1e-8, result.message  # the reference itself is feasible
    return result.x * B


def _marginal(bits: np.ndarray, snr: np.ndarray, b: np.ndarray) -> np.ndarray:
    """-dT_i/db_i = D r'(b) / r(b)^2, straight from the formula."""
    x = snr / b
    r = b * np.log2(1.0 + x)
    d_rate = np.log2(1.0 + x) - x / ((1.0 + x) * LN2)
    return bits * d_rate / r**2


def _assert_budget(b: np.ndarray, budget: float, floor: float) -> None:
    assert np.all(np.isfinite(b))
    assert np.all(b >= floor)
    assert b.sum() <= budget * (1 + 1e-12)
    assert b.sum() >= budget * (1 - 1e-9)


# --------------------------------------------------------------------------------------------
# "sum": exact KKT solution
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(54))
def test_sum_matches_general_solver(seed: int) -> None:
    bits, snr, floor = _instance(seed)
    b = allocate_bandwidth(bits, snr, B, floor)
    _assert_budget(b, B, floor)
    ours = upload_times(bits, snr, b).sum()
    ref = upload_times(bits, snr, _reference_sum(bits, snr, floor)).sum()
    assert ours <= ref * (1 + 1e-6)  # never worse than the general solver
    assert ours == pytest.approx(ref, rel=1e-6)


@pytest.mark.parametrize("seed", range(30))
def test_sum_satisfies_kkt_conditions(seed: int) -> None:
    bits, snr, floor = _instance(seed)
    b = allocate_bandwidth(bits, snr, B, floor)
    if bits.size == 1:
        assert b.tolist() == [B]
        return
    marginal = _marginal(bits, snr, b)
    free = b > floor
    assert free.any()
    lam = np.median(marginal[free])
    # Every task above the floor has the same marginal value of bandwidth ...
    np.testing.assert_allclose(marginal[free], lam, rtol=1e-9)
    # ... and a floored task would not gain more than that from its first extra hertz.
    assert np.all(marginal[~free] <= lam * (1 + 1e-9))


def test_sum_never_worse_than_minmax_or_equal_on_realistic_instances() -> None:
    for seed in range(20):
        bits, snr, floor = _instance(seed)
        totals = {
            obj: upload_times(bits, snr, allocate_bandwidth(bits, snr, B, floor, obj)).sum()
            for obj in OBJECTIVES
        }
        assert totals["sum"] <= totals["minmax"] * (1 + 1e-12)
        assert totals["sum"] <= totals["equal"] * (1 + 1e-12)


# --------------------------------------------------------------------------------------------
# Closed forms
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("floor", [0.0, B_MIN])
@pytest.mark.parametrize("n", [2, 7, 60])
def test_identical_tasks_split_exactly_equally(objective: str, floor: float, n: int) -> None:
    # Symmetry + strict convexity: the unique optimum of identical tasks is B / n each.
    b = allocate_bandwidth(np.full(n, 1.5e6), np.full(n, 3e9), B, floor, objective)
    np.testing.assert_allclose(b, np.full(n, B / n), rtol=1e-12)


@pytest.mark.parametrize("snr", [1e2, 1e5, 1e8, 1e11, 1e14])
def test_single_task_upload_time_closed_form(snr: float) -> None:
    bits = 2.5e6
    # Shannon with the whole budget, D / (B log2(1 + a / B)); log2(1 + z) is evaluated as
    # log1p(z) / ln 2 because 1 + z itself rounds away ~1e-11 of z at the lowest SNR.
    expected = bits / (B * math.log1p(snr / B) / LN2)
    t = upload_times(np.array([bits]), np.array([snr]), np.array([B]))
    np.testing.assert_allclose(t, [expected], rtol=1e-12)


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_single_task_gets_the_whole_budget(objective: str) -> None:
    for floor in (0.0, B_MIN, B):
        b = allocate_bandwidth([1e6], [1e9], B, floor, objective)
        assert b.tolist() == [B]


def test_equal_objective_is_equal_share() -> None:
    bits, snr = _radio(13, np.random.default_rng(3))
    b = allocate_bandwidth(bits, snr, B, B_MIN, "equal")
    np.testing.assert_allclose(b, np.full(13, B / 13), rtol=1e-15)


def test_module_docstring_example_runs() -> None:
    result = doctest.testmod(bandwidth_module, verbose=False)
    assert result.attempted > 0
    assert result.failed == 0


# --------------------------------------------------------------------------------------------
# "minmax"
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(20))
def test_minmax_equalises_times_and_beats_other_objectives(seed: int) -> None:
    bits, snr, floor = _instance(seed)
    b = allocate_bandwidth(bits, snr, B, floor, "minmax")
    _assert_budget(b, B, floor)
    t = upload_times(bits, snr, b)
    free = b > floor
    if free.sum() > 1:
        np.testing.assert_allclose(t[free], t[free].max(), rtol=1e-9)
    # Floored tasks finish no later than the common time.
    assert np.all(t[~free] <= t.max() * (1 + 1e-9))
    for other in ("sum", "equal"):
        t_other = upload_times(bits, snr, allocate_bandwidth(bits, snr, B, floor, other))
        assert t.max() <= t_other.max() * (1 + 1e-12)


def test_minmax_with_binding_floors() -> None:
    # Tiny uploads finish within the common time on the floor alone and must keep it.
    rng = np.random.default_rng(11)
    bits, snr = _radio(30, rng)
    bits[:10] = 10.0
    b = allocate_bandwidth(bits, snr, B, B_MIN, "minmax")
    _assert_budget(b, B, B_MIN)
    assert np.all(b[:10] == B_MIN)
    t = upload_times(bits, snr, b)
    free = b > B_MIN
    assert free.sum() > 10
    np.testing.assert_allclose(t[free], t.max(), rtol=1e-9)
    assert np.all(t[~free] <= t.max() * (1 + 1e-9))


# --------------------------------------------------------------------------------------------
# Property test
# --------------------------------------------------------------------------------------------


@st.composite
def _problems(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, float, float]:
    n = draw(st.integers(0, 25))
    bits = draw(st.lists(st.one_of(st.just(0.0), st.floats(1.0, 1e10)), min_size=n, max_size=n))
    snr = draw(st.lists(st.one_of(st.just(0.0), st.floats(1e-3, 1e16)), min_size=n, max_size=n))
    budget = draw(st.floats(1e3, 1e10))
    fraction = draw(st.one_of(st.just(0.0), st.floats(0.0, 1.0)))
    floor = fraction * budget / n if n else 0.0
    return np.array(bits), np.array(snr), budget, floor


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_problems())
def test_property_valid_inputs_give_valid_shares(
    problem: tuple[np.ndarray, np.ndarray, float, float],
) -> None:
    bits, snr, budget, floor = problem
    shares = {obj: allocate_bandwidth(bits, snr, budget, floor, obj) for obj in OBJECTIVES}
    for b in shares.values():
        assert b.shape == bits.shape
        if bits.size:
            _assert_budget(b, budget, floor)
    times = {obj: upload_times(bits, snr, b) for obj, b in shares.items()}
    if bits.size:
        assert times["sum"].sum() <= times["equal"].sum() * (1 + 1e-12)
        assert times["minmax"].max() <= times["equal"].max() * (1 + 1e-12)


# --------------------------------------------------------------------------------------------
# Edge cases
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_no_tasks_gives_empty_array(objective: str) -> None:
    b = allocate_bandwidth([], [], B, B_MIN, objective)
    assert b.shape == (0,)
    assert b.dtype == np.float64


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("floor", [0.0, B_MIN])
def test_very_poor_channel_breaks_nothing(objective: str, floor: float) -> None:
    bits, snr = _radio(20, np.random.default_rng(5))
    snr[3] = 1e-3 * np.min(np.delete(snr, 3))
    b = allocate_bandwidth(bits, snr, B, floor, objective)
    _assert_budget(b, B, floor)
    t = upload_times(bits, snr, b)
    assert np.all(np.isfinite(t))
    t_equal = upload_times(bits, snr, np.full(20, B / 20))
    if objective == "sum":
        assert t.sum() <= t_equal.sum()
        marginal = _marginal(bits, snr, b)
        free = b > floor
        np.testing.assert_allclose(marginal[free], np.median(marginal[free]), rtol=1e-9)
    if objective == "minmax":
        assert t.max() <= t_equal.max()
        free = b > floor
        np.testing.assert_allclose(t[free], t.max(), rtol=1e-9)


@pytest.mark.parametrize("objective", ["sum", "minmax"])
@pytest.mark.parametrize("floor", [0.0, B_MIN])
def test_empty_uploads_get_the_floor(objective: str, floor: float) -> None:
    bits, snr = _radio(10, np.random.default_rng(8))
    bits[[1, 4]] = 0.0
    b = allocate_bandwidth(bits, snr, B, floor, objective)
    _assert_budget(b, B, floor)
    assert b[1] == floor and b[4] == floor
    t = upload_times(bits, snr, b)
    assert t[1] == 0.0 and t[4] == 0.0
    assert np.all(np.isfinite(t))


def test_all_uploads_empty_split_equally() -> None:
    # Every allocation is optimal (all times are 0); the budget is still handed out in full.
    b = allocate_bandwidth(np.zeros(4), np.full(4, 1e9), B, B_MIN)
    np.testing.assert_allclose(b, np.full(4, B / 4), rtol=1e-15)


def test_task_without_channel_gets_the_floor() -> None:
    bits, snr = _radio(6, np.random.default_rng(2))
    snr[2] = 0.0  # can never upload: its time is inf whatever it is given
    b = allocate_bandwidth(bits, snr, B, B_MIN)
    _assert_budget(b, B, B_MIN)
    assert b[2] == B_MIN
    assert np.isinf(upload_times(bits, snr, b)[2])


def test_zero_budget_gives_zero_shares() -> None:
    b = allocate_bandwidth([1e6, 2e6], [1e9, 1e9], 0.0)
    assert b.tolist() == [0.0, 0.0]


def test_floors_that_use_the_whole_budget() -> None:
    b = allocate_bandwidth([1e6, 2e6, 3e6], [1e9, 1e8, 1e7], B, B / 3)
    _assert_budget(b, B, B / 3)


def test_infeasible_floor_is_rejected() -> None:
    with pytest.raises(InfeasibleBandwidthError) as info:
        allocate_bandwidth(np.full(3, 1e6), np.full(3, 1e9), B, 7e6)
    message = str(info.value)
    assert "min_hz" in message and "n=3" in message
    assert "budget" in message and str(B) in message
    assert info.value.field == "min_hz"


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("input_bits", {"input_bits": [1e6, -1.0]}),
        ("input_bits", {"input_bits": [np.nan, 1e6]}),
        ("snr_per_hz", {"snr_per_hz": [1e9, np.inf]}),
        ("snr_per_hz", {"snr_per_hz": [-1e9, 1e9]}),
        ("budget_hz", {"budget_hz": -1.0}),
        ("budget_hz", {"budget_hz": np.inf}),
        ("min_hz", {"min_hz": -1.0}),
        ("min_hz", {"min_hz": np.nan}),
    ],
)
def test_bad_inputs_name_the_argument(field: str, kwargs: dict) -> None:
    args = {"input_bits": [1e6, 2e6], "snr_per_hz": [1e9, 1e9], "budget_hz": B, "min_hz": 0.0}
    args.update(kwargs)
    with pytest.raises(InfeasibleBandwidthError, match=field) as info:
        allocate_bandwidth(**args)
    assert isinstance(info.value, ValueError) and isinstance(info.value, MecsimError)
    assert info.value.field == field


def test_mismatched_lengths_are_rejected() -> None:
    with pytest.raises(InfeasibleBandwidthError, match="snr_per_hz"):
        allocate_bandwidth([1e6, 2e6], [1e9], B)


def test_unknown_objective_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="objective") as info:
        allocate_bandwidth([1e6], [1e9], B, objective="fastest")
    assert all(name in str(info.value) for name in OBJECTIVES)


def test_upload_times_edges() -> None:
    t = upload_times([1e6, 0.0, 1e6, 0.0], [1e9, 1e9, 0.0, 0.0], [0.0, 0.0, 1e6, 1e6])
    assert t.tolist() == [math.inf, 0.0, math.inf, 0.0]
    with pytest.raises(InfeasibleBandwidthError, match="bandwidth_hz"):
        upload_times([1e6], [1e9], [-1.0])
