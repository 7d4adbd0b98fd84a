"""The radio: path loss, shadowing, Rayleigh block fading, mobility and the Shannon upload.

Each device's uplink gain is piecewise constant on a global grid of coherence blocks
``[k Tc, (k+1) Tc)``: ``g = 10^(-PL(d)/10) * shadowing * |h_k|^2`` with ``|h_k|^2 ~ Exp(1)``
(Rayleigh). The fading of block k of device d is drawn from a stream keyed by (seed, device,
chunk of blocks), so every policy sees the same channel realisation on the same seed (common
random numbers) and memory stays flat however long the run.

An upload of D bits with share b that starts at t0 sends ``b log2(1 + p g_k / (N0 b))`` bits per
second during block k and ends when the D bits are through; on a static channel that is exactly
``D / (b log2(1 + p g / (N0 b)))``.
"""

from __future__ import annotations

import math

import numpy as np

from mecsim.scenario import Mobility, Radio
from mecsim.streams import Streams

_CHUNK = 4096  # coherence blocks per fading chunk


def dbm_to_w(dbm: float | np.ndarray) -> float | np.ndarray:
    """Convert dBm to watts."""
    return 10.0 ** ((np.asarray(dbm, dtype=float) - 30.0) / 10.0)


def path_loss_db(distance_m: np.ndarray, radio: Radio) -> np.ndarray:
    """Log-distance path loss in dB (3GPP TR 36.814 macro by default)."""
    pl = radio.path_loss
    d = np.maximum(np.asarray(distance_m, dtype=float), pl.min_distance_m)
    return pl.pl0_db + pl.slope_db_per_decade * np.log10(d / pl.ref_distance_m)


def shannon_rate(bandwidth_hz: np.ndarray, snr_per_hz: np.ndarray) -> np.ndarray:
    """``b log2(1 + a / b)`` with ``a = p g / N0``; 0 where b = 0."""
    b = np.asarray(bandwidth_hz, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = b * np.log2(1.0 + np.asarray(snr_per_hz) / b)
    return np.where(b > 0, r, 0.0)


class Trajectory:
    """Random-waypoint motion of one device inside a disc; waypoints are generated lazily."""

    def __init__(self, mob: Mobility, start_xy: np.ndarray, rng: np.random.Generator) -> None:
        self.mob = mob
        self.rng = rng
        self.t = [0.0]
        self.x = [float(start_xy[0])]
        self.y = [float(start_xy[1])]
        self._arr: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def _extend(self, until: float) -> None:
        mob = self.mob
        while self.t[-1] <= until:
            r = mob.radius_m * math.sqrt(self.rng.random())
            a = 2 * math.pi * self.rng.random()
            nx, ny = r * math.cos(a), r * math.sin(a)
            sp = mob.speed_mps
            v = self.rng.uniform(sp[0], sp[1]) if isinstance(sp, tuple) else float(sp)
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
        if times.size:
            hi = float(times.max())
            if hi >= self.t[-1]:
                self._extend(hi)
                self._arr = None
            if float(times.min()) < self.t[0]:
                raise ValueError(f"position asked at t={float(times.min())!r} s, before the "
                                 f"trajectory's kept history (from t={self.t[0]!r} s)")
        if self._arr is None:
            self._arr = (np.asarray(self.t), np.asarray(self.x), np.asarray(self.y))
        t, x, y = self._arr
        return np.hypot(np.interp(times, t, x), np.interp(times, t, y))

    def forget_before(self, t: float) -> None:
        """Drop the waypoints wholly before time t (keeps memory and lookups flat)."""
        k = 0
        while k + 1 < len(self.t) and self.t[k + 1] <= t:
            k += 1
        if k:
            del self.t[:k], self.x[:k], self.y[:k]
            self._arr = None


class Channel:
    """Uplink channels of all devices: gains per coherence block and upload times.

    Args:
        radio: the scenario's radio section.
        distance_m: initial distance of each device (m).
        tx_power_w: transmit power of each device (W).
        mobility: per device, a :class:`Trajectory` or None (static).
        streams: the run's random streams.
    """

    def __init__(self, radio: Radio, distance_m: np.ndarray, tx_power_w: np.ndarray,
                 mobility: list[Trajectory | None], streams: Streams) -> None:
        self.radio = radio
        self.tx_power_w = np.asarray(tx_power_w, dtype=float)
        self.n0 = float(dbm_to_w(radio.noise_dbm_per_hz + radio.noise_figure_db))
        self.distance0 = np.asarray(distance_m, dtype=float)
        self.mobility = mobility
        self.any_mobile = any(m is not None for m in mobility)
        n_dev = len(distance_m)
        sh_std = radio.path_loss.shadowing_std_db
        sh_db = streams.get("shadowing").normal(0.0, sh_std, n_dev) if sh_std > 0 else np.zeros(n_dev)
        self.static_gain = 10.0 ** (-(path_loss_db(self.distance0, radio) + sh_db) / 10.0)
        self.shadow = 10.0 ** (-sh_db / 10.0)
        self.fading = radio.fading.model == "rayleigh"
        self.tc = radio.fading.coherence_time_s
        self.streams = streams
        self._chunks: dict[tuple[int, int], np.ndarray] = {}
        self._last: dict[int, tuple[int, np.ndarray]] = {}
        #: channel outages per device: (start, end) pairs; the gain is 0 inside them, applied
        #: per coherence block (by the block's start; 10 ms blocks when there is no fading)
        self.outages: dict[int, list[tuple[float, float]]] = {}
        #: uploads are integrated block by block only up to this time; beyond it (the run has
        #: ended) the rest is extrapolated at the mean rate so far, which bounds the work.
        self.horizon = math.inf
        self._chunk_floor = 0

    # -- gains --------------------------------------------------------------------------------
    def _fade(self, device: int, blocks: np.ndarray) -> np.ndarray:
        """|h|^2 of device for the given block indices (all within a few chunks)."""
        chunk_ids = blocks // _CHUNK
        lo, hi = int(chunk_ids.min()), int(chunk_ids.max())
        if lo == hi:
            return self._chunk(device, lo)[blocks - lo * _CHUNK]
        parts = np.concatenate([self._chunk(device, c) for c in range(lo, hi + 1)])
        return parts[blocks - lo * _CHUNK]

    def _chunk(self, device: int, c: int) -> np.ndarray:
        last = self._last.get(device)
        if last is not None and last[0] == c:  # the common case: the device's current chunk
            return last[1]
        key = (device, c)
        arr = self._chunks.get(key)
        if arr is None:
            arr = self.streams.keyed("fading", device, c).exponential(1.0, _CHUNK)
            self._chunks[key] = arr
        self._last[device] = (c, arr)
        return arr

    def forget_before(self, t: float) -> None:
        """Drop fading chunks and waypoints that lie wholly before time t (keeps memory flat)."""
        if self.any_mobile:
            for traj in self.mobility:
                if traj is not None:
                    traj.forget_before(t)
        if not self.fading:
            return
        floor = int(t / self.tc) // _CHUNK
        if floor > self._chunk_floor:
            self._chunk_floor = floor
            for key in [k for k in self._chunks if k[1] < floor]:
                del self._chunks[key]

    def large_scale_gain(self, device: int, times: np.ndarray) -> np.ndarray:
        """Path loss and shadowing (linear) of a device at the given times."""
        traj = self.mobility[device]
        if traj is None:
            return self.static_gain[device] * np.ones(np.shape(times))
        pl = path_loss_db(traj.distance(times), self.radio)
        return 10.0 ** (-pl / 10.0) * self.shadow[device]

    def add_outage(self, device: int, start: float, end: float) -> None:
        """Register an outage of a device's uplink from start to end (s)."""
        self.outages.setdefault(device, []).append((start, end))

    def in_outage(self, device: int, t: float) -> bool:
        """Whether the device's uplink is out at time t."""
        return any(a <= t < b for a, b in self.outages.get(device, ()))

    def _outage_mask(self, device: int, times: np.ndarray) -> np.ndarray:
        out = np.zeros(times.shape, dtype=bool)
        for a, b in self.outages.get(device, ()):
            out |= (times >= a) & (times < b)
        return out

    def gain_now(self, devices: np.ndarray, t: float) -> np.ndarray:
        """Current channel gain of each listed device at time t."""
        devices = np.asarray(devices, dtype=np.int64)
        if self.any_mobile:
            g = np.array([self.large_scale_gain(int(d), np.array([t]))[0] for d in devices])
        else:
            g = self.static_gain[devices]
        if self.fading:
            k = int(t // self.tc)
            c, r = divmod(k, _CHUNK)
            g = g * np.array([self._chunk(d, c)[r] for d in devices.tolist()])
        if self.outages:
            g = g * np.array([0.0 if self.in_outage(int(d), t) else 1.0 for d in devices])
        return g

    # -- uploads ------------------------------------------------------------------------------
    def upload_durations(self, devices: np.ndarray, bits: np.ndarray, bandwidth: np.ndarray,
                         t0: float) -> np.ndarray:
        """Real upload time of each task starting at t0 with the given shares (s)."""
        devices = np.asarray(devices, dtype=np.int64)
        bits = np.asarray(bits, dtype=float)
        bw = np.asarray(bandwidth, dtype=float)
        out = np.zeros(len(devices))
        snr0 = self.tx_power_w[devices] / self.n0
        if not self.fading and not self.any_mobile and not self.outages:
            r = shannon_rate(bw, snr0 * self.static_gain[devices])
            with np.errstate(divide="ignore"):
                return np.where(bits > 0, bits / r, 0.0)
        for i in range(len(devices)):
            if bits[i] <= 0:
                continue
            out[i] = self._upload_one(int(devices[i]), bits[i], bw[i], snr0[i], t0)
        return out

    def _upload_one(self, d: int, bits: float, b: float, snr0: float, t0: float) -> float:
        # Without fading, a moving device's path loss is refreshed every 10 s.
        tc = self.tc if self.fading else (0.01 if self.outages else 10.0 if self.any_mobile else math.inf)
        k0 = int(t0 // tc)
        first = (k0 + 1) * tc - t0  # time left in the first block
        # Fast path (most uploads): done within the first block; plain floats, no arrays.
        traj = self.mobility[d]
        g0 = (self.static_gain[d] if traj is None
              else float(self.large_scale_gain(d, np.array([t0]))[0]))
        if self.fading:
            c, r = divmod(k0, _CHUNK)
            g0 *= self._chunk(d, c)[r]
        if d in self.outages and self.in_outage(d, k0 * tc if math.isfinite(tc) else t0):
            g0 = 0.0
        r0 = b * math.log2(1.0 + snr0 * g0 / b)
        if r0 > 0 and r0 * first >= bits:
            return bits / r0
        sent = 0.0
        n_blocks = 8
        k = k0
        # Walk the blocks in growing batches until the bits are through.
        while True:
            ks = np.arange(k, k + n_blocks)
            starts = np.maximum(ks * tc, t0)
            g = self.large_scale_gain(d, starts)
            if self.fading:
                g = g * self._fade(d, ks)
            if d in self.outages:
                g = np.where(self._outage_mask(d, ks * tc), 0.0, g)
            r = b * np.log2(1.0 + snr0 * g / b)
            dur = np.full(n_blocks, tc)
            if k == k0:
                dur[0] = first
            cum = sent + np.cumsum(r * dur)
            idx = int(np.searchsorted(cum, bits))
            if idx < n_blocks:
                before = cum[idx - 1] if idx > 0 else sent
                t_start_block = starts[idx]
                return float(t_start_block + (bits - before) / r[idx] - t0)
            sent = float(cum[-1])
            elapsed = float(starts[-1] + dur[-1] - t0)
            if t0 + elapsed > self.horizon:
                return elapsed * bits / sent if sent > 0 else math.inf
            k += n_blocks
            n_blocks = min(n_blocks * 4, 65536)
