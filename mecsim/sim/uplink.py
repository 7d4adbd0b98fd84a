"""The ``reallocated`` uplink mode: shares of the running uploads recomputed at every event.

With ``radio.uplink_mode: reallocated`` a share is not held until the upload ends (the
``preallocated`` default): whenever an upload ends or an epoch dispatches new uploads, the whole
budget ``B`` is split again among the uploads still running by the policy's bandwidth rule
(its ``bandwidth`` attribute, a rule of :data:`mecsim.decision.bandwidth.BANDWIDTH_RULES`;
``equal`` for a policy without one), on their *remaining* bits and current channels, as an
OFDMA scheduler reassigns resource blocks every slot. A rule that gives an upload no share
(``srpt-<k>``, ``completion``) pauses it until a later event. The policy's own shares for the new
tasks are its proposal at the epoch; the engine's split replaces them at once.

Upload times stay exact: between two events the shares are constant, and the bits sent are the
rate integrated over every fading block (:meth:`mecsim.radio.Channel.bits_sent`); the next end is
:meth:`mecsim.radio.Channel.upload_durations` of the remaining bits from the event. ``segments``
records every interval of constant shares (start, end, total Hz in use, uploads running), which
is what the budget property is checked on (``tests/test_reallocated.py``). A task's
``bandwidth_hz`` in the traces is the share it got first and ``bandwidth_mean_hz`` its share
averaged over the upload (Hz-seconds it held over the upload's duration; the shares of every
segment add up to the segments' total, which the tests check); ``energy_tx_j`` is the power times
the time it transmitted (held a positive share). The held-bandwidth measures of
:mod:`mecsim.decision.bandwidth_metrics` (bandwidth-seconds, idle band) read ``bandwidth_hz`` as
held for the whole upload, so they describe the preallocated mode only; latency, upload time and
queueing for bandwidth hold in both.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mecsim.decision.bandwidth import allocate_rule, check_rule


class ReallocatedUplink:
    """The running uploads of a :class:`~mecsim.sim.core.Simulation` in ``reallocated`` mode."""

    def __init__(self, sim: Any) -> None:
        self.sim = sim
        rule = getattr(sim.policy, "bandwidth", "equal")
        try:
            check_rule(rule)
        except Exception:  # a policy whose `bandwidth` is not a rule name: equal shares
            rule = "equal"
        self.rule = str(rule)
        radio = sim.sc.radio
        self.budget = float(radio.bandwidth_hz)
        self.min_hz = float(radio.min_bandwidth_hz)
        self.gid = np.zeros(0, dtype=np.int64)  # global task ids
        self.dev = np.zeros(0, dtype=np.int64)
        self.left = np.zeros(0)  # bits still to send
        self.share = np.zeros(0)
        self.hz_s = np.zeros(0)  # share x time held so far (Hz s), for bandwidth_mean_hz
        self.srv = np.zeros(0, dtype=np.int64)
        self.t_last = 0.0
        self.version = 0
        #: (start, end, total Hz in use, uploads running) of every interval of constant shares
        self.segments: list[tuple[float, float, float, int]] = []

    @property
    def n_running(self) -> int:
        return int(self.gid.size)

    def _advance(self, t: float) -> None:
        """Send bits over ``[t_last, t]`` at the current shares."""
        t0 = self.t_last
        if self.gid.size and t > t0:
            self.segments.append((t0, t, float(self.share.sum()), int(self.gid.size)))
            self.hz_s += self.share * (t - t0)
            on = self.share > 0
            if on.any():
                sent = self.sim.channel.bits_sent(self.dev[on], self.share[on], t0, t)
                self.left[on] = np.maximum(self.left[on] - sent, 0.0)
                c = self.sim.tasks.cols
                rows = self.gid[on] - self.sim._base
                c["energy_tx_j"][rows] += self.sim.tx_power_w[self.dev[on]] * (t - t0)
        self.t_last = max(t, t0)

    def _reshare(self, t: float) -> None:
        """Split the budget among the running uploads by the rule; schedule the next end."""
        self.version += 1
        n = self.gid.size
        if n == 0:
            return
        sim = self.sim
        snr = sim.tx_power_w[self.dev] * sim.channel.gain_now(self.dev, t) / sim.channel.n0
        # an upload in a deep fade (or an outage) still gets a share; the rules need snr > 0
        snr = np.maximum(snr, 1e-300)
        self.share = np.asarray(
            allocate_rule(self.rule, self.left, snr, self.budget, self.min_hz), dtype=float
        )
        on = np.flatnonzero(self.share > 0)
        if on.size == 0:
            return
        dur = sim.channel.upload_durations(self.dev[on], self.left[on], self.share[on], t)
        k = int(np.argmin(dur))
        t_end = t + float(dur[k])
        if t_end > sim.t_end:
            return  # ends after the run: stays in flight
        version = self.version
        ev = sim.env.timeout(t_end - t)
        ev.callbacks.append(lambda _ev: self._on_end(version, on, dur, t))

    def tick(self, t: float) -> None:
        """An epoch starts at ``t``: send what was sent until now, then split the band again."""
        self._advance(t)
        self._reshare(t)

    def add(self, t: float, gids: np.ndarray, dev: np.ndarray, bits: np.ndarray, srv: np.ndarray) -> None:
        """New uploads from an epoch at ``t`` (their first shares are set here)."""
        self._advance(t)
        first = self.gid.size
        self.gid = np.concatenate([self.gid, gids])
        self.dev = np.concatenate([self.dev, dev])
        self.left = np.concatenate([self.left, np.asarray(bits, dtype=float)])
        self.share = np.concatenate([self.share, np.zeros(len(gids))])
        self.hz_s = np.concatenate([self.hz_s, np.zeros(len(gids))])
        self.srv = np.concatenate([self.srv, srv])
        self._reshare(t)
        c = self.sim.tasks.cols
        c["bandwidth_hz"][gids - self.sim._base] = self.share[first:]
        self._finish_zero(t)

    def _finish_zero(self, t: float) -> None:
        """Uploads with nothing left to send (0 bits) end at once."""
        done = self.left <= 0
        if done.any():
            self._complete(np.flatnonzero(done), t)

    def _on_end(self, version: int, on: np.ndarray, dur: np.ndarray, t0: float) -> None:
        if version != self.version:
            return  # the shares changed since this end was scheduled
        t = self.sim.env.now
        self._advance(t)
        # The uploads that end now (to rounding) are done, whatever float dust is left.
        ends = t0 + dur
        done = on[ends <= t + 1e-9 * max(1.0, t)]
        self.left[done] = 0.0
        self._complete(np.flatnonzero(self.left <= 0), t)

    def _complete(self, idx: np.ndarray, t: float) -> None:
        sim = self.sim
        c = sim.tasks.cols
        gids = self.gid[idx]
        rows = gids - sim._base
        srv = self.srv[idx]
        bits = c["input_bits"][rows]
        arrive = t + sim.bh_lat[srv] + bits * sim.inv_bh_rate[srv]
        c["t_upload_end"][rows] = t
        c["t_server_arrival"][rows] = arrive
        dur = t - c["t_upload_start"][rows]
        pos = dur > 0  # an upload of 0 bits ends at once: its mean share is the one it got
        c["bandwidth_mean_hz"][rows] = np.where(
            pos, self.hz_s[idx] / np.where(pos, dur, 1.0), c["bandwidth_hz"][rows]
        )
        keep = np.ones(self.gid.size, dtype=bool)
        keep[idx] = False
        self.gid, self.dev, self.left = self.gid[keep], self.dev[keep], self.left[keep]
        self.share, self.srv, self.hz_s = self.share[keep], self.srv[keep], self.hz_s[keep]
        for tid, j, ta in zip(gids.tolist(), srv.tolist(), arrive.tolist(), strict=True):
            s = sim.servers[j]
            if ta > sim.t_end:
                continue  # arrives after the run: stays in transit (in flight)
            if ta == t:
                s.arrive(tid)
                continue
            ev = sim.env.timeout(ta - t)
            ev.callbacks.append(lambda _ev, s=s, tid=tid: s.arrive(tid))
        self._reshare(t)
        sim._wake_at(t)  # bandwidth freed: with zero-length epochs, waiting tasks may go
