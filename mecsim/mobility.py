"""Mobility: random-waypoint motion of a device inside a disc around the access point, with
waypoints drawn lazily from the device's ``mobility`` stream (created on first use) and trimmed
as the run goes on (see :mod:`mecsim.radio`, whose path loss reads the distance)."""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable

import numpy as np

from mecsim.scenario import Mobility


class Trajectory:
    """Random-waypoint motion of one device inside a disc; waypoints are generated lazily.

    Args:
        mob: the group's mobility section.
        start_xy: the start position (m).
        rng: the device's generator, or a function that makes it (called when the first waypoint
            is drawn, so that a device never asked for its position costs no generator).
    """

    def __init__(
        self,
        mob: Mobility,
        start_xy: np.ndarray,
        rng: np.random.Generator | Callable[[], np.random.Generator],
    ) -> None:
        self.mob = mob
        self._rng = rng
        self.t = [0.0]
        self.x = [float(start_xy[0])]
        self.y = [float(start_xy[1])]
        self._arr: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._last: tuple[float, float] = (math.nan, math.nan)  # last one-time query (t, distance)

    @property
    def rng(self) -> np.random.Generator:
        """The device's mobility generator (made on first use)."""
        if not isinstance(self._rng, np.random.Generator):
            self._rng = self._rng()
        return self._rng

    def _extend(self, until: float) -> None:
        mob = self.mob
        rng = self.rng
        while self.t[-1] <= until:
            r = mob.radius_m * math.sqrt(rng.random())
            a = 2 * math.pi * rng.random()
            nx, ny = r * math.cos(a), r * math.sin(a)
            sp = mob.speed_mps
            v = rng.uniform(sp[0], sp[1]) if isinstance(sp, tuple) else float(sp)
            dist = math.hypot(nx - self.x[-1], ny - self.y[-1])
            t_arr = self.t[-1] + dist / v
            self.t.append(t_arr)
            self.x.append(nx)
            self.y.append(ny)
            if mob.pause_s > 0:
                self.t.append(t_arr + mob.pause_s)
                self.x.append(nx)
                self.y.append(ny)

    def distance(self, times: np.ndarray) -> np.ndarray:
        """Distance from the access point at the given times (m)."""
        times = np.asarray(times, dtype=float)
        if times.shape == (1,) and times[0] == self._last[0]:
            # asked again at the same instant (an epoch's gains, then its uploads)
            return np.array([self._last[1]])
        if times.size:
            hi = float(times.max())
            if hi >= self.t[-1]:
                self._extend(hi)
                self._arr = None
            if float(times.min()) < self.t[0]:
                raise ValueError(
                    f"position asked at t={float(times.min())!r} s, before the "
                    f"trajectory's kept history (from t={self.t[0]!r} s)"
                )
        if self._arr is None:
            self._arr = (np.asarray(self.t), np.asarray(self.x), np.asarray(self.y))
        t, x, y = self._arr
        dist = np.hypot(np.interp(times, t, x), np.interp(times, t, y))
        if times.shape == (1,):
            self._last = (float(times[0]), float(dist[0]))
        return dist

    def distance_at(self, t: float) -> float:
        """``distance(np.array([t]))[0]`` as a Python float, without array calls (an epoch asks
        this for every mobile device): the same value, as it is numpy's interpolation formula
        (``np.interp``: the left waypoint's value at a waypoint, else
        ``slope * (t - t_j) + x_j``) on the same two waypoints, then ``np.hypot``."""
        if t == self._last[0]:
            return self._last[1]
        if t >= self.t[-1]:
            self._extend(t)
            self._arr = None
        ts = self.t
        if t < ts[0]:
            return float(self.distance(np.array([t]))[0])  # raises: before the kept history
        j = bisect.bisect_right(ts, t) - 1  # ts[j] <= t < ts[j + 1] (t < ts[-1] after _extend)
        if ts[j] == t:
            x, y = self.x[j], self.y[j]
        else:
            dt = ts[j + 1] - ts[j]
            x = (self.x[j + 1] - self.x[j]) / dt * (t - ts[j]) + self.x[j]
            y = (self.y[j + 1] - self.y[j]) / dt * (t - ts[j]) + self.y[j]
        d = float(np.hypot(x, y))
        self._last = (t, d)
        return d

    def forget_before(self, t: float) -> None:
        """Drop the waypoints wholly before time t (keeps memory and lookups flat)."""
        k = 0
        while k + 1 < len(self.t) and self.t[k + 1] <= t:
            k += 1
        if k:
            del self.t[:k], self.x[:k], self.y[:k]
            self._arr = None
