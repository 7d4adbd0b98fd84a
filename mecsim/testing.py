"""Random but physically plausible epoch states, for tests, benchmarks and users' own checks.

Example:
    >>> from mecsim.testing import random_epoch_state
    >>> s = random_epoch_state(5, 3, seed=0)
    >>> s.n_tasks, s.n_servers
    (5, 3)
"""

from __future__ import annotations

import numpy as np

from mecsim.state import EpochState


def random_epoch_state(
    n_tasks: int,
    n_servers: int,
    seed: int | np.random.Generator = 0,
    *,
    bandwidth_hz: float = 20e6,
    min_bandwidth_hz: float = 1e5,
    host_probability: float = 1.0,
    slots: int | None = None,
) -> EpochState:
    """Draw an :class:`EpochState` with n tasks and m heterogeneous servers.

    Channels follow the default radio of the scenarios (3GPP TR 36.814 path loss at 50-300 m,
    Rayleigh fading, 23 dBm, N0 = -174 dBm/Hz + 7 dB noise figure); inputs 8 kbit to 4 Mbit;
    20-50 denoising steps at 0.03-0.3 s per step; backlogs 0-10 s.

    Args:
        n_tasks: number of tasks n.
        n_servers: number of servers m.
        seed: seed or generator.
        bandwidth_hz: uplink budget B.
        min_bandwidth_hz: b_min.
        host_probability: chance that a server hosts a task's model (every task keeps at least
            one feasible server).
        slots: GPU slots per server (default: random 1-2).
    """
    rng = np.random.default_rng(seed)
    n, m = n_tasks, n_servers
    d_km = rng.uniform(0.05, 0.3, n)
    pl_db = 128.1 + 37.6 * np.log10(d_km)
    gain = 10 ** (-pl_db / 10) * rng.exponential(1.0, n)
    n0 = 10 ** ((-174 + 7 - 30) / 10)
    steps = rng.integers(20, 51, n).astype(float)
    t_step = rng.uniform(0.03, 0.3, m)
    feasible = rng.random((n, m)) < host_probability
    feasible[np.arange(n), rng.integers(0, m, n)] = True
    service = np.where(feasible, steps[:, None] * t_step[None, :], np.inf)
    backhaul = np.broadcast_to(rng.uniform(0.001, 0.02, m), (n, m)).copy()
    ret = backhaul + 0.8e6 / 100e6
    return EpochState(
        now=0.0,
        epoch=0,
        task_id=np.arange(n, dtype=np.int64),
        device=np.arange(n, dtype=np.int64),
        model=tuple("sd15" for _ in range(n)),
        input_bits=rng.uniform(8e3, 4e6, n),
        output_bits=np.full(n, 0.8e6),
        steps=steps,
        t_arrival=np.zeros(n),
        deadline=np.full(n, np.inf),
        tx_power_w=np.full(n, 10 ** ((23 - 30) / 10)),
        gain=gain,
        noise_psd_w_per_hz=n0,
        bandwidth_budget_hz=bandwidth_hz,
        min_bandwidth_hz=min_bandwidth_hz,
        ideal_radio=False,
        server_names=tuple(f"s{j}" for j in range(m)),
        slots=(np.full(m, slots) if slots else rng.integers(1, 3, m)).astype(np.int64),
        server_up=np.ones(m, dtype=bool),
        backlog_s=rng.uniform(0.0, 10.0, m),
        queued=rng.integers(0, 5, m).astype(np.int64),
        feasible=feasible,
        service_s=service,
        backhaul_s=backhaul,
        return_s=ret,
        server_energy_w=rng.uniform(150, 400, m),
    )
