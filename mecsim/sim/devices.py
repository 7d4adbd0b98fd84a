"""Device placement: where each device starts (distance and angle from the access point), its
transmit power, and its random-waypoint trajectory if it moves."""

from __future__ import annotations

import functools
import math

import numpy as np

from mecsim.mobility import Trajectory
from mecsim.radio import dbm_to_w
from mecsim.scenario import Scenario
from mecsim.streams import Streams


def place_devices(sc: Scenario, streams: Streams) -> tuple[np.ndarray, np.ndarray, list[Trajectory | None]]:
    """Distances (m), transmit powers (W) and trajectories (None for a static device) of every
    device, in scenario order, drawn from the run's ``placement`` stream (and each moving
    device's own ``mobility`` stream, made when its first waypoint is drawn)."""
    pl_rng = streams.get("placement")
    dist: list[np.ndarray] = []
    power: list[np.ndarray] = []
    traj: list[Trajectory | None] = []
    d_idx = 0
    for grp in sc.devices:
        # one draw per device and coordinate, in the order a per-device loop would make them:
        # (distance, angle) pairs, or angles alone at a fixed distance
        # (uniform(a, b) is a + (b - a) u, so the same values)
        n = grp.count
        dm = grp.placement.distance_m
        if isinstance(dm, tuple):
            u = pl_rng.random((n, 2))
            d_arr = dm[0] + (dm[1] - dm[0]) * u[:, 0]
            ang_arr = 2 * math.pi * u[:, 1]
        else:
            d_arr = np.full(n, float(dm))
            ang_arr = 2 * math.pi * pl_rng.random(n)
        dist.append(d_arr)
        power.append(np.full(n, float(dbm_to_w(grp.tx_power_dbm))))
        if grp.mobility.model == "random-waypoint":
            for k, (d, ang) in enumerate(zip(d_arr.tolist(), ang_arr.tolist(), strict=True)):
                xy = np.array([d * math.cos(ang), d * math.sin(ang)])
                rng = functools.partial(streams.keyed, "mobility", d_idx + k)
                traj.append(Trajectory(grp.mobility, xy, rng))
        else:
            traj.extend([None] * n)
        d_idx += n
    distance = np.concatenate(dist) if dist else np.zeros(0)
    tx_power = np.concatenate(power) if power else np.zeros(0)
    return distance, tx_power, traj
