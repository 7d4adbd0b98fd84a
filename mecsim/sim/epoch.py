"""The epoch step: admit waiting tasks, build the policy's snapshot, get and check the decision,
dispatch (bandwidth, upload, backhaul, arrival at the server)."""

from __future__ import annotations

import heapq
import time
from typing import Any

import numpy as np

from mecsim.errors import ScenarioError
from mecsim.sim.gpu.server import gpu_state_fields
from mecsim.state import DEFER, DROP, Decision, EpochState, validate_decision
from mecsim.traces import DISPATCHED

#: epochs of at most this many tasks record their dispatch with Python floats, larger ones with arrays
_SCALAR_MAX = 3


class EpochMixin:
    """One scheduling epoch; part of :class:`~mecsim.sim.core.Simulation`."""

    def _release_bandwidth(self, now: float) -> None:
        held = self.held
        while held and held[0][0] <= now:
            _, b = heapq.heappop(held)
            self.held_bw -= b
        if not held:
            self.held_bw = 0.0

    def _admit(self, now: float) -> tuple[list[int], float]:
        """The tasks decided now (oldest first) and the free bandwidth. Tasks of a device whose
        channel is out are not offered (they wait)."""
        radio = self.sc.radio
        cand = self.waiting
        if self.channel.outages:
            dev = self.tasks.cols["device"]
            base = self._base
            cand = [t for t in cand if not self.channel.in_outage(int(dev[t - base]), now)]
        k = len(cand)
        if self.sc.epoch.max_tasks is not None:
            k = min(k, self.sc.epoch.max_tasks)
        if radio.ideal:
            return cand[:k], radio.bandwidth_hz
        if self.uplink is not None:  # reallocated: the whole band is split again at dispatch
            cap = int(radio.bandwidth_hz / radio.min_bandwidth_hz * (1 + 1e-12)) - self.uplink.n_running
            return cand[: max(min(k, cap), 0)], radio.bandwidth_hz
        self._release_bandwidth(now)
        free = max(radio.bandwidth_hz - self.held_bw, 0.0)
        k = min(k, int(free / radio.min_bandwidth_hz * (1 + 1e-12)))
        return cand[:k], free

    def build_state(self, ids: list[int], now: float, budget: float) -> EpochState:
        """The read-only snapshot a policy sees for the given waiting tasks."""
        c = self.tasks.cols
        idx = np.array(ids, dtype=np.int64)  # global task ids
        loc = idx - self._base if self._base else idx  # buffer rows
        dev = c["device"][loc].astype(np.int64)
        mod = c["model"][loc]
        steps = c["steps"][loc].astype(float)
        bits = c["input_bits"][loc]
        out = c["output_bits"][loc]
        if len(ids) == 1 and self.all_up:
            # one task (the usual epoch): rows as views and scalars, the same values
            k = int(mod[0])
            feasible = self.host_T[k : k + 1]  # read-only
            service = float(steps[0]) * self.t_step_T[k : k + 1]  # inf where not hosted
            b, o = float(bits[0]), float(out[0])
            backhaul = (self.bh_lat + b * self.inv_bh_rate)[None, :]
            ret = (self.bh_lat + o * self.inv_bh_rate + (o / self.dl_rate + self.dl_lat))[None, :]
        else:
            if self.all_up:
                feasible = self.host_T[mod]
                service = steps[:, None] * self.t_step_T[mod]  # inf where not hosted
            else:
                feasible = self.host_T[mod] & self.server_up
                service = np.where(feasible, steps[:, None] * self.t_step_T[mod], np.inf)
            backhaul = self.bh_lat + bits[:, None] * self.inv_bh_rate
            ret = self.bh_lat + out[:, None] * self.inv_bh_rate + (out / self.dl_rate + self.dl_lat)[:, None]
        gain = self.channel.gain_now(dev, now) if not self.sc.radio.ideal else np.ones(len(idx))
        names = self.model_names
        servers = self.servers
        return EpochState._build(
            now=now,
            epoch=self.epoch_index,
            task_id=idx,
            device=dev,
            model=tuple([names[k] for k in mod.tolist()]),
            input_bits=bits,
            output_bits=out,
            steps=steps,
            t_arrival=c["t_arrival"][loc],
            deadline=c["deadline"][loc],
            tx_power_w=self.tx_power_w[dev],
            gain=gain,
            noise_psd_w_per_hz=self.channel.n0,
            bandwidth_budget_hz=budget,
            min_bandwidth_hz=self.sc.radio.min_bandwidth_hz,
            ideal_radio=self.sc.radio.ideal,
            server_names=self.server_names,
            slots=self.slots,
            server_up=self.server_up,
            backlog_s=np.array([s.backlog(now) for s in servers]),
            queued=np.array([s.busy + len(s.queue) + s.transit for s in servers], dtype=np.int64),
            feasible=feasible,
            service_s=service,
            backhaul_s=backhaul,
            return_s=ret,
            server_energy_w=self.server_power,
            **(gpu_state_fields(self, loc) if self.gpu_mode else {}),
        )

    def _check(self, dec: Any, state: EpochState) -> Decision:
        return validate_decision(dec, state, self._policy_name)

    def _decision_delay(self, info: dict[str, Any], n: int) -> float:
        dt = self.sc.epoch.decision_time
        if dt.mode == "zero":
            return 0.0
        if dt.mode == "measured":
            from mecsim.decision.timing import measured_delay

            return measured_delay(self.sc, info, n, self.policy)
        solver = str(info.get("solver", ""))
        if dt.mode == "fixed":
            return dt.by_solver[solver].base_s if solver in dt.by_solver else dt.fixed_s
        cost = dt.by_solver.get(solver, dt.cost)
        classical = (
            cost.base_s
            + cost.per_task_s * n
            + cost.per_variable_s * float(info.get("variables", 0) or 0)
            + cost.per_interaction_s * float(info.get("interactions", 0) or 0)
        )
        if dt.mode == "qpu":
            return classical + _qpu_time(info)
        return classical

    def _epoch(self, now: float) -> Any:
        """One scheduling epoch (a generator: the decision may take simulated time)."""
        c = self.tasks.cols
        if self.drop_expired and self.waiting:
            w = np.asarray(self.waiting)
            late = c["deadline"][w - self._base] < now
            if late.any():
                for tid in w[late]:
                    self.drop(int(tid), 2, now)
                self.waiting = w[~late].tolist()
        if self.uplink is not None and self.uplink.n_running:
            self.uplink.tick(now)  # an epoch starts: the running uploads' shares are recomputed
        ids, budget = self._admit(now)
        n_waiting = len(self.waiting)
        if not ids:
            return
        state = self.build_state(ids, now, budget)
        t0 = time.perf_counter()
        if self._stepping:  # pause here until apply() hands the decision in
            self._pending = state
            self._resume = self.env.event()
            dec = yield self._resume
        else:
            dec = self.policy.decide(state)
        wall = time.perf_counter() - t0
        self.decision_wall_total += wall
        dec = self._check(dec, state)
        delay = self._decision_delay(dec.info, len(ids))
        if delay > 0:
            yield self.env.timeout(delay)
        t_dec = self.env.now
        srv = dec.server
        idx = state.task_id
        if len(ids) == 1:
            lo = hi = int(srv[0])
        else:
            lo, hi = int(srv.min()), int(srv.max())
        if lo >= 0:  # the usual case: every task dispatched
            deferred: list[int] = []
            drop_ids: Any = ()
            n_go = len(idx)
            if len(ids) == 1:
                c["epoch"][ids[0] - self._base] = self.epoch_index
            else:
                c["epoch"][idx - self._base] = self.epoch_index
            self._dispatch(state, idx, srv, dec.bandwidth_hz, t_dec)
        elif hi == DEFER:  # every task waits (e.g. a central queue with no free slot)
            deferred = list(ids)
            drop_ids = ()
            n_go = 0
        else:
            deferred = idx[srv == DEFER].tolist()
            drop_ids = idx[srv == DROP]
            for tid in drop_ids:
                self.drop(int(tid), 1, t_dec)
            c["epoch"][idx[srv != DEFER] - self._base] = self.epoch_index
            go = np.flatnonzero(srv >= 0)
            n_go = len(go)
            if n_go:
                self._dispatch(state, idx[go], srv[go], dec.bandwidth_hz[go], t_dec)
        if self.waiting[: len(ids)] == ids:  # the usual case: the oldest tasks were decided
            self.waiting = deferred + self.waiting[len(ids) :]
        else:  # some waiting tasks were skipped (channel outage)
            decided = set(idx.tolist())
            self.waiting = sorted(deferred + [t for t in self.waiting if t not in decided])
        row = {
            "epoch": self.epoch_index,
            "t": now,
            "t_decision": t_dec,
            "n_waiting": n_waiting,
            "n_decided": len(ids),
            "n_dispatched": n_go,
            "n_dropped": len(drop_ids),
            "n_deferred": len(deferred),
            "bandwidth_budget_hz": budget,
            "decision_wall_s": wall,
            "decision_delay_s": delay,
        }
        row.update(dec.info)
        self.epoch_rows.append(row)
        self.epoch_index += 1

    def _dispatch(
        self, state: EpochState, tids: np.ndarray, srv: np.ndarray, bw: np.ndarray, t: float
    ) -> None:
        c = self.tasks.cols
        gids = tids  # global ids (for the events); tids: buffer rows
        if self._base:
            tids = tids - self._base
        dev = c["device"][tids]
        bits = c["input_bits"][tids]
        if self.uplink is not None:  # reallocated: the uplink manager ends the uploads
            self._dispatch_reallocated(gids, tids, dev.astype(np.int64), bits, srv, t)
            return
        ideal = self.sc.radio.ideal
        up = None if ideal else self.channel.upload_durations(dev, bits, bw, t)
        if len(tids) <= _SCALAR_MAX:
            arrivals = self._record_dispatch_scalar(tids, dev, bits, srv, bw, up, t)
        else:
            arrivals = self._record_dispatch_arrays(tids, dev, bits, srv, bw, up, t)
        env = self.env
        servers = self.servers
        t_end = self.t_end
        now_arrivals = []
        srv_l = srv.tolist()
        for tid, j, ta, ex in zip(gids.tolist(), srv_l, *arrivals, strict=True):
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
        for j in srv_l if len(srv_l) == 1 else sorted(set(srv_l)):
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

    def _record_dispatch_scalar(
        self,
        rows: np.ndarray,
        dev: np.ndarray,
        bits: np.ndarray,
        srv: np.ndarray,
        bw: np.ndarray,
        up: np.ndarray | None,
        t: float,
    ) -> tuple[list[float], list[float]]:
        """As :meth:`_record_dispatch_arrays`, task by task with Python floats (cheaper for the
        one or two tasks of most epochs; the same IEEE operations in the same order, so the
        same values)."""
        c = self.tasks.cols
        model, steps, factor = c["model"], c["steps"], c["service_factor"]
        c_srv, c_bw, c_dec, c_up0, c_up1 = (
            c["server"],
            c["bandwidth_hz"],
            c["t_decision"],
            c["t_upload_start"],
            c["t_upload_end"],
        )
        c_arr, c_etx, c_state = c["t_server_arrival"], c["energy_tx_j"], c["state"]
        t_step, bh_lat, inv_bh, ptx = self.t_step, self.bh_lat, self.inv_bh_rate, self.tx_power_w
        exp_s, act_s = self.expected_service, self.actual_service
        held = self.held
        up_l = [0.0] * len(rows) if up is None else up.tolist()
        arrive_l, exp_l = [], []
        for r, d, nb, j, b, u in zip(
            rows.tolist(), dev.tolist(), bits.tolist(), srv.tolist(), bw.tolist(), up_l, strict=True
        ):
            if up is not None:
                heapq.heappush(held, (t + u, b))
                self.held_bw += b
            ex = int(steps[r]) * float(t_step[j, model[r]])
            exp_s[r] = ex
            act_s[r] = ex * float(factor[r])
            ta = t + u + float(bh_lat[j]) + nb * float(inv_bh[j])
            c_srv[r] = j
            c_bw[r] = b
            c_dec[r] = t
            c_up0[r] = t
            c_up1[r] = t + u
            c_arr[r] = ta
            c_etx[r] += float(ptx[d]) * u
            c_state[r] = DISPATCHED
            arrive_l.append(ta)
            exp_l.append(ex)
        return arrive_l, exp_l

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


def _qpu_time(info: dict[str, Any]) -> float:
    """The QPU time a sampler reported for this decision (``sampler_qpu_time_s``: QAOA on a device
    target, summed over the groups of a decomposed epoch; see :mod:`mecsim.decision.hardware`).
    A decision that fell back to a heuristic (recorded in the epochs table) used no QPU; any other
    decision without the figure is an error, so that the mode never charges nothing silently."""
    q = info.get("sampler_qpu_time_s")
    if q is not None and np.isfinite(q):
        return float(q)
    if info.get("fallback"):
        return 0.0
    raise ScenarioError(
        f"mode qpu needs a sampler that reports its QPU time (QAOA with a device target, e.g. "
        f"params target='fake:FakeManilaV2'); the decision of policy solver {info.get('solver')!r} "
        f"reported none",
        "epoch.decision_time.mode",
    )
