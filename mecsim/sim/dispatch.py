"""Dispatch of an epoch's decision: bandwidth held for the uploads, upload times over the fading
channel, backhaul, the task records, and each task's arrival at its server (a SimPy timeout, or
at once over ideal links)."""

from __future__ import annotations

import heapq

import numpy as np

from mecsim.traces import DISPATCHED

#: epochs of at most this many tasks are dispatched on Python values, larger ones with arrays
_SCALAR_MAX = 3

#: the task columns :meth:`DispatchMixin._dispatch_few` reads and writes, in its order (the
#: simulation keeps them as ``_few_cols``, bound again whenever the buffers are replaced)
FEW_COLS = (
    "device",
    "input_bits",
    "model",
    "steps",
    "service_factor",
    "server",
    "bandwidth_hz",
    "t_decision",
    "t_upload_start",
    "t_upload_end",
    "t_server_arrival",
    "energy_tx_j",
    "state",
)


class DispatchMixin:
    """Dispatch of a decision; part of :class:`~mecsim.sim.core.Simulation`."""

    def _dispatch(self, tids: np.ndarray, srv: np.ndarray, bw: np.ndarray, t: float) -> None:
        if self.uplink is None and len(tids) <= _SCALAR_MAX:
            self._dispatch_few(tids.tolist(), srv.tolist(), bw.tolist(), t)
            return
        c = self.tasks.cols
        gids = tids  # global ids (for the events); tids: buffer rows
        if self._base:
            tids = tids - self._base
        dev = c["device"][tids]
        bits = c["input_bits"][tids]
        if self.uplink is not None:  # reallocated: the uplink manager ends the uploads
            self._dispatch_reallocated(gids, tids, dev.astype(np.int64), bits, srv, t)
            return
        up = None if self.sc.radio.ideal else self.channel.upload_durations(dev, bits, bw, t)
        arrive, expected = self._record_dispatch_arrays(tids, dev, bits, srv, bw, up, t)
        self._send(gids.tolist(), srv.tolist(), arrive, expected, t)

    def _dispatch_lists(self, gids: list[int], srv: list[int], bw: list[float], t: float) -> None:
        """:meth:`_dispatch` of tasks given as Python lists (the heuristics' lane)."""
        if self.uplink is None and len(gids) <= _SCALAR_MAX:
            self._dispatch_few(gids, srv, bw, t)
        else:
            self._dispatch(np.array(gids, dtype=np.int64), np.array(srv, dtype=np.int64), np.array(bw), t)

    def _send(
        self, gids: list[int], srv: list[int], arrive: list[float], expected: list[float], t: float
    ) -> None:
        """The tasks leave for their servers: in transit until they arrive (a SimPy timeout, or
        at once over ideal links); the servers' rows are logged."""
        env = self.env
        servers = self.servers
        t_end = self.t_end
        now_arrivals = []
        for tid, j, ta, ex in zip(gids, srv, arrive, expected, strict=True):
            s = servers[j]
            s.transit += 1
            s.transit_work += ex
            if ta > t_end:
                continue  # arrives after the run: stays in transit (in flight)
            if ta == t:  # no upload, no backhaul (ideal links): no event needed
                now_arrivals.append((s, tid))
                continue
            ev = env.timeout(ta - t)
            ev.callbacks.append(lambda _ev, s=s, tid=tid: s.arrive(tid))
        for j in srv if len(srv) == 1 else sorted(set(srv)):
            self.monitor(servers[j])
        for s, tid in now_arrivals:
            s.arrive(tid)

    def _record_dispatch_arrays(
        self,
        rows: np.ndarray,
        dev: np.ndarray,
        bits: np.ndarray,
        srv: np.ndarray,
        bw: np.ndarray,
        up: np.ndarray | None,
        t: float,
    ) -> tuple[list[float], list[float]]:
        """Write the dispatch records of the tasks at buffer ``rows`` (arrays, for larger epochs);
        return their server-arrival times and expected service times."""
        c = self.tasks.cols
        if up is None:
            up = np.zeros(len(rows))
        else:
            for end, b in zip((t + up).tolist(), bw.tolist(), strict=True):
                heapq.heappush(self.held, (end, b))
                self.held_bw += b
        mod = c["model"][rows].astype(np.int64)
        expected = c["steps"][rows] * self.t_step[srv, mod]
        self.expected_service[rows] = expected
        self.actual_service[rows] = expected * c["service_factor"][rows]
        arrive = t + up + self.bh_lat[srv] + bits * self.inv_bh_rate[srv]
        c["server"][rows] = srv
        c["bandwidth_hz"][rows] = bw
        c["t_decision"][rows] = t
        c["t_upload_start"][rows] = t
        c["t_upload_end"][rows] = t + up
        c["t_server_arrival"][rows] = arrive
        c["energy_tx_j"][rows] += self.tx_power_w[dev] * up
        c["state"][rows] = DISPATCHED
        return arrive.tolist(), expected.tolist()

    def _dispatch_few(self, gids: list[int], srv: list[int], bw: list[float], t: float) -> None:
        """:meth:`_dispatch` of a few tasks, task by task with Python values (cheaper for the
        one to three tasks of most epochs; the same IEEE operations in the same order as
        :meth:`_record_dispatch_arrays`, so the same records, and the same events)."""
        base = self._base
        rows = [g - base for g in gids] if base else gids
        (dev_c, bits_c, model, steps, factor, c_srv, c_bw, c_dec, c_up0, c_up1, c_arr, c_etx, c_state) = (
            self._few_cols
        )
        if self.sc.radio.ideal:
            up_l = None
        else:
            ridx = np.array(rows, dtype=np.int64)
            up_l = self.channel.upload_durations(dev_c[ridx], bits_c[ridx], np.array(bw), t).tolist()
        t_step, bh_lat, inv_bh, ptx = self.t_step, self.bh_lat, self.inv_bh_rate, self.tx_power_w
        exp_s, act_s = self.expected_service, self.actual_service
        held = self.held
        arrive_l, exp_l = [], []
        for r, j, b, u in zip(rows, srv, bw, up_l or [0.0] * len(rows), strict=True):
            if up_l is not None:
                heapq.heappush(held, (t + u, b))
                self.held_bw += b
            ex = int(steps[r]) * float(t_step[j, model[r]])
            exp_s[r] = ex
            act_s[r] = ex * float(factor[r])
            ta = t + u + float(bh_lat[j]) + float(bits_c[r]) * float(inv_bh[j])
            c_srv[r] = j
            c_bw[r] = b
            c_dec[r] = t
            c_up0[r] = t
            c_up1[r] = t + u
            c_arr[r] = ta
            c_etx[r] += float(ptx[dev_c[r]]) * u
            c_state[r] = DISPATCHED
            arrive_l.append(ta)
            exp_l.append(ex)
        self._send(gids, srv, arrive_l, exp_l, t)

    def _dispatch_reallocated(
        self, gids: np.ndarray, rows: np.ndarray, dev: np.ndarray, bits: np.ndarray, srv: np.ndarray, t: float
    ) -> None:
        """Dispatch in ``reallocated`` mode: the uploads join the running ones (new shares for
        all); each arrives at its server when :mod:`mecsim.sim.uplink` ends its upload."""
        c = self.tasks.cols
        mod = c["model"][rows].astype(np.int64)
        expected = c["steps"][rows] * self.t_step[srv, mod]
        self.expected_service[rows] = expected
        self.actual_service[rows] = expected * c["service_factor"][rows]
        c["server"][rows] = srv
        c["t_decision"][rows] = t
        c["t_upload_start"][rows] = t
        c["state"][rows] = DISPATCHED
        servers = self.servers
        for j, ex in zip(srv.tolist(), expected.tolist(), strict=True):
            servers[j].transit += 1
            servers[j].transit_work += ex
        self.uplink.add(t, gids, dev, bits, srv)
        for j in sorted(set(srv.tolist())):
            self.monitor(servers[j])
