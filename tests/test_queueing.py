"""Classic queues as special cases of the engine, checked against queueing theory.

With an ideal radio and backhaul, one server, Poisson arrivals, exponential or deterministic
service and a decision at every arrival, the model is exactly M/M/c or M/D/1. References:
M/M/1 mean sojourn 1/(mu - lambda) and mean number in system rho/(1 - rho) (Kleinrock, Queueing
Systems I, 1975, sec. 3.2); M/D/1 waiting time rho d / (2 (1 - rho)) (Pollaczek-Khinchine);
M/M/c via Erlang C (Kleinrock sec. 3.5); Little's law L = lambda W.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import mecsim

LAM, MU = 0.5, 1.0
SEEDS = range(16)


def _time_avg_in_system(servers, t0, t1):
    """Time-weighted mean of queue + busy from the servers event log over [t0, t1]."""
    t = servers["t"].to_numpy()
    n = servers["in_system"].to_numpy() + servers["in_transit"].to_numpy()
    # the level holds from each event to the next
    t_next = np.append(t[1:], t1)
    lo, hi = np.clip(t, t0, t1), np.clip(t_next, t0, t1)
    return float(np.sum(n * (hi - lo)) / (t1 - t0))


def _ci(x, level=0.99):
    x = np.asarray(x)
    h = stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return x.mean() - h, x.mean() + h


@pytest.fixture(scope="module")
def mm1_runs():
    return [mecsim.simulate("mm1-v1", seed=s) for s in SEEDS]


def test_mm1_mean_sojourn_matches_theory(mm1_runs):
    w = [r.summary["latency_mean_s"] for r in mm1_runs]
    lo, hi = _ci(w)
    assert lo <= 1.0 / (MU - LAM) <= hi, (lo, hi)


def test_mm1_mean_number_in_system_matches_theory(mm1_runs):
    rho = LAM / MU
    sc = mm1_runs[0].scenario
    l_vals = [_time_avg_in_system(r.servers, sc.warmup_s, sc.duration_s) for r in mm1_runs]
    lo, hi = _ci(l_vals)
    assert lo <= rho / (1 - rho) <= hi, (lo, hi)


def test_littles_law_on_traces(mm1_runs):
    """L (from the servers log) = lambda W (from the tasks table), per run, within 3%."""
    for r in mm1_runs:
        sc = r.scenario
        t0, t1 = sc.warmup_s, sc.duration_s
        tasks = r.tasks
        inside = tasks[(tasks.t_arrival >= t0) & (tasks.t_arrival < t1)]
        lam_hat = len(inside) / (t1 - t0)
        w_hat = float((inside.t_service_end - inside.t_server_arrival).mean())
        L = _time_avg_in_system(r.servers, t0, t1)
        assert L == pytest.approx(lam_hat * w_hat, rel=0.03)


def test_md1_waiting_time_pollaczek_khinchine():
    """M/D/1, rho = 0.5, d = 1 s: W = d + rho d / (2 (1 - rho)) = 1.5 s."""
    w = [mecsim.simulate("mm1-v1", seed=s, **{"service.jitter.distribution": "deterministic"})
         .summary["latency_mean_s"] for s in SEEDS]
    lo, hi = _ci(w)
    assert lo <= 1.5 <= hi, (lo, hi)


def test_mmc_erlang_c():
    """M/M/2 with lambda = 1.5, mu = 1: W = 1/mu + C(c, a) / (c mu - lambda), a = lambda/mu."""
    lam, c = 1.5, 2
    a = lam / MU
    rho = a / c
    p0_terms = sum(a**k / math.factorial(k) for k in range(c))
    erlang_c = (a**c / math.factorial(c)) / ((1 - rho) * p0_terms + a**c / math.factorial(c))
    w_theory = 1 / MU + erlang_c / (c * MU - lam)
    w = [mecsim.simulate("mm1-v1", seed=s, duration_s=8000, warmup_s=500,
                         **{"servers.0.slots": c, "devices.0.arrivals.rate_per_s": lam})
         .summary["latency_mean_s"] for s in SEEDS]
    lo, hi = _ci(w)
    assert lo <= w_theory <= hi, (lo, hi, w_theory)
