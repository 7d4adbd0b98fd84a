"""The radio: path loss, shadowing, Rayleigh block fading and the Shannon upload (the devices'
motion is :mod:`mecsim.mobility`, the fading blocks' draws :mod:`mecsim.fading`).

Each device's uplink gain is piecewise constant on a global grid of coherence blocks
``[k Tc, (k+1) Tc)``: ``g = 10^(-PL(d)/10) * shadowing * |h_k|^2`` with ``|h_k|^2 ~ Exp(1)``
(Rayleigh). The fading of block k of device d is the k-th draw of a stream keyed by (seed,
device), generated on demand (the stream jumps to any block), so every policy sees the same
channel realisation on the same seed (common random numbers) and memory stays flat however long
the run. Each device keeps one window of drawn blocks, extended as an upload goes on and drawn
anew (at least 64 blocks, 0.64 s at Tc = 10 ms) when asked elsewhere: a device that uploads once
in a while draws few blocks it never uses, and a long upload draws its blocks a batch at a time.

Large groups: the devices of a group of more than :data:`~mecsim.streams.PER_DEVICE_MAX` (64)
devices share one fading stream per group, keyed by :func:`~mecsim.streams.group_key`
(``2_000_000 + g``), interleaved by turns of 512 blocks: block ``512 s + j`` of the group's
device i is draw ``(s n + i) 512 + j`` of that stream (n devices). PCG64 jumps to any position
in a few operations, so a device costs nothing until it first uploads, and a new device costs no
new generator (a per-device generator costs about 20 us to seed, which at 10,000 devices was
most of a task's cost). The law is the same (i.i.d. Exp(1) blocks); the realisation differs from
per-device streams. Groups of at most 64 devices keep their per-device streams exactly.
Shadowing is one normal draw per device from the run's ``shadowing`` stream, drawn for all
devices at once (a vectorised O(devices) set-up of a few ns per device). Mobile devices'
waypoints are drawn lazily from per-device ``mobility`` streams created on first use, and only
the trajectories asked since the last clean-up are trimmed, so per-epoch work grows with the
devices in the epoch, not with all devices.

An upload of D bits with share b that starts at t0 sends ``b log2(1 + p g_k / (N0 b))`` bits per
second during block k and ends when the D bits are through; on a static channel that is exactly
``D / (b log2(1 + p g / (N0 b)))``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from mecsim.fading import BlockFading
from mecsim.mobility import Trajectory  # re-exported: mecsim.radio.Trajectory
from mecsim.scenario import Radio
from mecsim.streams import Streams


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


class Channel:
    """Uplink channels of all devices: gains per coherence block and upload times.

    Args:
        radio: the scenario's radio section.
        distance_m: initial distance of each device (m).
        tx_power_w: transmit power of each device (W).
        mobility: per device, a :class:`~mecsim.mobility.Trajectory` or None (static).
        streams: the run's random streams.
        groups: the sizes of the device groups in device order (summing to the number of
            devices): the devices of a group of more than
            :data:`~mecsim.streams.PER_DEVICE_MAX` share one fading stream (see the module
            docstring). None: every device has its own fading stream.
    """

    def __init__(
        self,
        radio: Radio,
        distance_m: np.ndarray,
        tx_power_w: np.ndarray,
        mobility: list[Trajectory | None],
        streams: Streams,
        groups: Sequence[int] | None = None,
    ) -> None:
        self.radio = radio
        self.tx_power_w = np.asarray(tx_power_w, dtype=float)
        self.n0 = float(dbm_to_w(radio.noise_dbm_per_hz + radio.noise_figure_db))
        self.distance0 = np.asarray(distance_m, dtype=float)
        self.mobility = mobility
        self.any_mobile = mobility.count(None) < len(mobility)  # a C loop, not a Python one
        n_dev = len(distance_m)
        sh_std = radio.path_loss.shadowing_std_db
        sh_db = streams.get("shadowing").normal(0.0, sh_std, n_dev) if sh_std > 0 else np.zeros(n_dev)
        self.static_gain = 10.0 ** (-(path_loss_db(self.distance0, radio) + sh_db) / 10.0)
        self.shadow = 10.0 ** (-sh_db / 10.0)
        self.fading = radio.fading.model == "rayleigh"
        self.tc = radio.fading.coherence_time_s
        #: the |h|^2 of every device's coherence blocks (drawn on demand)
        self.fades = BlockFading(streams, n_dev, groups, self.tc)
        #: mobile devices whose trajectory was asked since the last :meth:`forget_before`
        self._moved: set[int] = set()
        #: (t, {mobile device: large-scale gain at t}) of the last :meth:`gain_now`
        self._ls_now: tuple[float, dict[int, float]] = (math.nan, {})
        #: channel outages per device: (start, end) pairs; the gain is 0 inside them, applied
        #: per coherence block (by the block's start; 10 ms blocks when there is no fading)
        self.outages: dict[int, list[tuple[float, float]]] = {}
        #: uploads are integrated block by block only up to this time; beyond it (the run has
        #: ended) the rest is extrapolated at the mean rate so far, which bounds the work.
        self.horizon = math.inf

    # -- gains --------------------------------------------------------------------------------
    def forget_before(self, t: float) -> None:
        """Drop fading windows and waypoints that lie wholly before time t (keeps memory flat).
        Only the trajectories asked since the last call can have grown: only they are trimmed."""
        if self._moved:
            mob = self.mobility
            for d in self._moved:
                mob[d].forget_before(t)  # type: ignore[union-attr]
            self._moved.clear()
        if self.fading:
            self.fades.forget_before(t)

    def large_scale_gain(self, device: int, times: np.ndarray) -> np.ndarray:
        """Path loss and shadowing (linear) of a device at the given times."""
        traj = self.mobility[device]
        if traj is None:
            return self.static_gain[device] * np.ones(np.shape(times))
        self._moved.add(device)
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
        g = self.static_gain[devices]
        devs = devices.tolist()
        if self.any_mobile:
            mob = self.mobility
            rows = [i for i, d in enumerate(devs) if mob[d] is not None]
            if rows:
                self._moved.update(devs[i] for i in rows)
                dist = np.array([mob[devs[i]].distance_at(t) for i in rows])  # type: ignore[union-attr]
                g[rows] = ls = 10.0 ** (-path_loss_db(dist, self.radio) / 10.0) * self.shadow[devices[rows]]
                # the epoch's uploads start now: they reuse these (numpy's elementwise results do
                # not depend on the array's length, so these are large_scale_gain's values)
                self._ls_now = (t, dict(zip([devs[i] for i in rows], ls.tolist(), strict=True)))
        if self.fading:
            k = int(t // self.tc)
            block = self.fades.block
            g *= np.array([block(d, k) for d in devs])
        if self.outages:
            g *= np.array([0.0 if self.in_outage(d, t) else 1.0 for d in devs])
        return g

    # -- uploads ------------------------------------------------------------------------------
    def upload_durations(
        self, devices: np.ndarray, bits: np.ndarray, bandwidth: np.ndarray, t0: float
    ) -> np.ndarray:
        """Real upload time of each task starting at t0 with the given shares (s).

        An upload done within its first coherence block is one division. The others start at
        t0, so they share the grid of blocks: their rates over a batch of blocks form one
        (tasks x blocks) array, integrated with one cumsum; batches grow (x4) until every upload
        is through.
        """
        devices = np.asarray(devices, dtype=np.int64)
        bits = np.asarray(bits, dtype=float)
        bw = np.asarray(bandwidth, dtype=float)
        snr0 = self.tx_power_w[devices] / self.n0
        if not self.fading and not self.any_mobile and not self.outages:
            r = shannon_rate(bw, snr0 * self.static_gain[devices])
            with np.errstate(divide="ignore"):
                return np.where(bits > 0, bits / r, 0.0)
        # Without fading, a moving device's path loss is refreshed every 10 s.
        tc = self.tc if self.fading else (0.01 if self.outages else 10.0 if self.any_mobile else math.inf)
        k0 = int(t0 // tc)
        first = (k0 + 1) * tc - t0  # time left in the first block
        # Fast path (most uploads): done within the first block; plain floats, no arrays.
        rest = []
        t_out = k0 * tc if math.isfinite(tc) else t0
        mobility, fading, outages, block = self.mobility, self.fading, self.outages, self.fades.block
        dev_l = devices.tolist()
        sg = self.static_gain[devices].tolist()
        ls_now = self._ls_now[1] if self._ls_now[0] == t0 else None
        times: list[float] = []
        for i, (d, n_bits, b, a) in enumerate(
            zip(dev_l, bits.tolist(), bw.tolist(), snr0.tolist(), strict=True)
        ):
            if n_bits <= 0:
                times.append(0.0)
                continue
            if mobility[d] is None:
                g0 = sg[i]
            else:
                g0 = ls_now.get(d) if ls_now is not None else None
                if g0 is None:
                    g0 = float(self.large_scale_gain(d, np.array([t0]))[0])
                else:
                    self._moved.add(d)
            if fading:
                g0 *= float(block(d, k0))
            if outages and d in outages and self.in_outage(d, t_out):
                g0 = 0.0
            r0 = b * math.log2(1.0 + a * g0 / b) if b > 0 else 0.0
            if r0 > 0 and r0 * first >= n_bits:
                times.append(n_bits / r0)
                continue
            if fading and d not in outages and b > 0:
                # over a few blocks: walk them with floats
                dt = self._walk_blocks(d, n_bits, b, a, k0, r0 * first, t0)
                if dt is not None:
                    times.append(dt)
                    continue
            times.append(0.0)
            rest.append(i)
        out = np.array(times)
        if not rest:
            return out
        # uploads still going: (tasks x blocks) arrays; a dead channel gives rate 0 and a task with
        # no share inf, both handled below, so their warnings are silenced once here
        with np.errstate(divide="ignore", invalid="ignore"):
            rows = np.array(rest, dtype=np.int64)
            sent = np.zeros(len(rows))
            k = k0
            n_blocks = 8
            if math.isfinite(tc):
                # first batch: enough blocks for most uploads at the large-scale rate, so that one
                # batch usually does
                b0 = bw[rows]
                r_ls = b0 * np.log2(1.0 + snr0[rows] * self.static_gain[devices[rows]] / b0)
                est = float(np.max(bits[rows] / r_ls)) / tc
                if est < 32:
                    n_blocks = max(8, 1 << math.ceil(math.log2(2 * est + 8)))
                else:
                    n_blocks = 128  # a long upload (or a deep fade): grow from here
            while len(rows):
                d = devices[rows]
                ks = np.arange(k, k + n_blocks)
                starts = np.maximum(ks * tc, t0)
                g = self._block_gains(d, ks, starts)
                b = bw[rows, None]
                r = b * np.log2(1.0 + snr0[rows, None] * g / b)
                dur = np.full(n_blocks, tc)
                if k == k0:
                    dur[0] = first
                cum = sent[:, None] + np.cumsum(r * dur, axis=1)
                need = bits[rows]
                done = cum[:, -1] >= need
                if done.any():
                    i = np.flatnonzero(done)
                    idx = np.argmax(cum[i] >= need[i, None], axis=1)  # first block that completes
                    prev = np.where(idx > 0, cum[i, np.maximum(idx - 1, 0)], sent[i])
                    out[rows[i]] = starts[idx] + (need[i] - prev) / r[i, idx] - t0
                sent = cum[:, -1]
                elapsed = float(starts[-1] + dur[-1] - t0)
                keep = ~done
                if t0 + elapsed > self.horizon:  # beyond the run: extrapolate at the mean rate so far
                    i = np.flatnonzero(keep)
                    out[rows[i]] = np.where(sent[i] > 0, elapsed * need[i] / sent[i], math.inf)
                    break
                rows, sent = rows[keep], sent[keep]
                k += n_blocks
                n_blocks = min(n_blocks * 4, 65536)
        return out

    def _walk_blocks(
        self, d: int, n_bits: float, b: float, a: float, k0: int, sent: float, t0: float
    ) -> float | None:
        """Upload time of a device (fading, no outage) that needs more than its first block,
        walking up to 16 blocks with plain floats; None if it needs more."""
        tc = self.tc
        k1 = k0 + 1
        if self.mobility[d] is None:
            ls = [float(self.static_gain[d])] * 16
        else:  # path loss at each block's start, in one call
            ls = self.large_scale_gain(d, np.arange(k1, k1 + 16) * tc).tolist()
        h = self.fades.blocks(d, k1, k1 + 15).tolist()  # |h|^2 of the 16 blocks, as floats
        for n in range(16):
            k = k1 + n
            rate = b * math.log2(1.0 + a * ls[n] * h[n] / b)
            got = sent + rate * tc
            if got >= n_bits:
                return k * tc + (n_bits - sent) / rate - t0
            sent = got
            if k * tc + tc > self.horizon:
                return None
        return None

    def bits_sent(self, devices: np.ndarray, bandwidth: np.ndarray, t0: float, t1: float) -> np.ndarray:
        """Bits each listed device sends over ``[t0, t1]`` with constant shares (``reallocated``
        uplink mode): the Shannon rate integrated block by block, with the same block gains as
        :meth:`upload_durations` (so an upload split at share changes ends when one unsplit
        upload would, to rounding)."""
        devices = np.asarray(devices, dtype=np.int64)
        bw = np.asarray(bandwidth, dtype=float)
        if t1 <= t0 or devices.size == 0:
            return np.zeros(devices.size)
        snr0 = self.tx_power_w[devices] / self.n0
        if not self.fading and not self.any_mobile and not self.outages:
            return shannon_rate(bw, snr0 * self.static_gain[devices]) * (t1 - t0)
        tc = self.tc if self.fading else (0.01 if self.outages else 10.0 if self.any_mobile else math.inf)
        ks = np.arange(int(t0 // tc), int(t1 // tc) + 1)
        starts = np.maximum(ks * tc, t0)
        dur = np.maximum(np.minimum((ks + 1) * tc, t1) - starts, 0.0)
        g = self._block_gains(devices, ks, starts)
        b = bw[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(b > 0, b * np.log2(1.0 + snr0[:, None] * g / b), 0.0)
        return (r * dur[None, :]).sum(axis=1)

    def _block_gains(self, devices: np.ndarray, ks: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """Gains (tasks x blocks) of the listed devices over the run of consecutive coherence
        blocks ``ks`` starting at ``starts``; an outage zeroes a block by its start."""
        tc = self.tc if self.fading else (0.01 if self.outages else 10.0 if self.any_mobile else math.inf)
        n = len(devices)
        if self.any_mobile:
            g = np.empty((n, len(ks)))
            for i, d in enumerate(devices.tolist()):
                g[i] = self.large_scale_gain(d, starts)
        else:
            g = np.repeat(self.static_gain[devices][:, None], len(ks), axis=1)
        if self.fading:  # ks is a run of blocks: slices of the devices' windows
            lo, hi = int(ks[0]), int(ks[-1])
            g *= np.stack([self.fades.blocks(d, lo, hi) for d in devices.tolist()])
        if self.outages:
            for i, d in enumerate(devices.tolist()):
                if d in self.outages:
                    g[i, self._outage_mask(d, ks * tc)] = 0.0
        return g
