"""Faults: servers down and up, backhaul degradation, channel outages, and the tasks a failed
server held (redispatched or dropped)."""

from __future__ import annotations

import bisect
from typing import Any

import numpy as np

from mecsim.traces import FAULT_EVENTS, TASK_TIME_COLUMNS, WAITING


class FaultsMixin:
    """The fault processes and their effects; part of :class:`~mecsim.sim.core.Simulation`."""

    def log_fault(self, event: str, server: int = -1, device: int = -1, task: int = -1) -> None:
        self.fault_log.append_many(
            t=np.array([self.env.now]),
            event=np.array([FAULT_EVENTS.index(event)]),
            server=np.array([server]),
            device=np.array([device]),
            task_id=np.array([task]),
        )

    def server_failed_task(self, tid: int, j: int) -> None:
        """A task held by (or arriving at) a failed server: redispatch or drop it."""
        now = self.env.now
        c = self.tasks.cols
        if self.sc.faults.on_server_failure == "drop":
            self.drop(tid, 4, now)
            self.log_fault("task_dropped", server=j, task=tid)
            return
        i = tid - self._base
        for k in (*TASK_TIME_COLUMNS, "bandwidth_hz"):
            c[k][i] = np.nan
        c["server"][i] = -1
        c["epoch"][i] = -1
        c["state"][i] = WAITING
        c["attempts"][i] += 1
        bisect.insort(self.waiting, tid)  # oldest first
        self.log_fault("task_redispatched", server=j, task=tid)
        self._wake_at(now)

    def _server_down(self, j: int) -> None:
        srv = self.servers[j]
        if not srv.up:
            return
        up = self.server_up.copy()
        up[j] = False
        up.setflags(write=False)
        self.server_up = up
        self.all_up = False
        self.log_fault("server_down", server=j)
        for tid in srv.fail():
            self.server_failed_task(tid, j)
        self.monitor(srv)

    def _server_up(self, j: int) -> None:
        srv = self.servers[j]
        if srv.up:
            return
        srv.up = True
        up = self.server_up.copy()
        up[j] = True
        up.setflags(write=False)
        self.server_up = up
        self.all_up = bool(self.server_up.all())
        self.log_fault("server_up", server=j)
        self.monitor(srv)
        self._wake_at(self.env.now)

    def _server_fault_process(self, k: int, f: Any) -> Any:
        env = self.env
        j = self.server_names.index(f.server)
        if f.mtbf_s is not None:
            rng = self.streams.keyed("faults", k)
            while True:
                yield env.timeout(rng.exponential(f.mtbf_s))
                self._server_down(j)
                yield env.timeout(rng.exponential(f.mttr_s))
                self._server_up(j)
        for k2, t_down in enumerate(f.down_s):
            yield env.timeout(max(t_down - env.now, 0.0))
            self._server_down(j)
            if k2 < len(f.up_s):
                yield env.timeout(max(f.up_s[k2] - env.now, 0.0))
                self._server_up(j)

    def _backhaul_fault_process(self, f: Any) -> Any:
        env = self.env
        j = self.server_names.index(f.server)
        yield env.timeout(f.start_s)
        self._degraded.append(f)
        self._apply_backhaul()
        self.log_fault("backhaul_degraded", server=j)
        yield env.timeout(max(f.end_s - env.now, 0.0))
        self._degraded.remove(f)
        self._apply_backhaul()
        self.log_fault("backhaul_restored", server=j)

    def _apply_backhaul(self) -> None:
        lat = self.bh_lat0.copy()
        inv = self.inv_bh_rate0.copy()
        for f in self._degraded:
            j = self.server_names.index(f.server)
            lat[j] += f.extra_latency_s
            inv[j] /= f.rate_factor
        lat.setflags(write=False)
        inv.setflags(write=False)
        self.bh_lat, self.inv_bh_rate = lat, inv

    def _channel_fault_process(self, f: Any) -> Any:
        env = self.env
        yield env.timeout(f.start_s)
        self.log_fault("channel_down", device=f.device)
        yield env.timeout(max(f.end_s - env.now, 0.0))
        self.log_fault("channel_up", device=f.device)
        self._wake_at(env.now)

    def _wake_at(self, t: float) -> None:
        """Ask the scheduler to look at the waiting list at time t (epoch length 0 only)."""
        if self.sc.epoch.length_s == 0:
            if self._wake is None:
                self._wake_missed = True  # the scheduler is inside an epoch: look again after it
            elif not self._wake.triggered:
                self._wake.succeed()
