"""The epoch step: admit waiting tasks, have :mod:`mecsim.sim.snapshot` build the policy's
snapshot, get and check the decision, then hand it to :mod:`mecsim.sim.dispatch` (bandwidth,
upload, backhaul, arrival at the server).

Epochs of at most eight tasks under ``greedy`` or ``least-loaded`` (the exact built-in classes,
``equal`` rule, every server up) take a lane instead: the snapshot's values as Python lists
(:meth:`~mecsim.sim.snapshot.SnapshotMixin._lane_inputs`) go to the policy's list function, the
one its ``decide`` uses (:class:`mecsim.policies.heuristics.SmallEpochLane`); no snapshot is
built and no check is needed, and the decisions are the same (tests/test_fast_paths.py)."""

from __future__ import annotations

import heapq
import time
from typing import Any

import numpy as np

from mecsim.errors import ScenarioError
from mecsim.state import DEFER, DROP, Decision, EpochState, validate_decision


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

    def _carry_out(
        self, ids: list[int], idx: np.ndarray, srv: np.ndarray, bw: np.ndarray, t_dec: float
    ) -> tuple[list[int], Any, int]:
        """Dispatch, drop or defer the epoch's tasks as decided; return (deferred ids, dropped
        ids, number dispatched)."""
        c = self.tasks.cols
        if len(ids) == 1:
            lo = hi = int(srv[0])
        else:
            lo, hi = int(srv.min()), int(srv.max())
        if lo >= 0:  # the usual case: every task dispatched
            if len(ids) == 1:
                c["epoch"][ids[0] - self._base] = self.epoch_index
            else:
                c["epoch"][idx - self._base] = self.epoch_index
            self._dispatch(idx, srv, bw, t_dec)
            return [], (), len(idx)
        if hi == DEFER:  # every task waits (e.g. a central queue with no free slot)
            return list(ids), (), 0
        deferred = idx[srv == DEFER].tolist()
        drop_ids = idx[srv == DROP]
        for tid in drop_ids:
            self.drop(int(tid), 1, t_dec)
        c["epoch"][idx[srv != DEFER] - self._base] = self.epoch_index
        go = np.flatnonzero(srv >= 0)
        if len(go):
            self._dispatch(idx[go], srv[go], bw[go], t_dec)
        return deferred, drop_ids, len(go)

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
        lane = self._lane
        if lane is not None and len(ids) <= lane.max_tasks and self.all_up:
            # a built-in heuristic's small epoch: its choice without a snapshot (same values)
            x = self._lane_inputs(ids, now, budget)
            t0 = time.perf_counter()
            srv_l = lane.servers(x)
            wall = time.perf_counter() - t0
            info = lane.info
            if min(srv_l) >= 0:  # every task placed (the usual case): dispatched as lists below
                srv = None
            else:
                srv = np.array(srv_l, dtype=np.int64)
                bw = np.full(len(ids), x.share)
                idx = np.array(ids, dtype=np.int64)
        else:
            state = self.build_state(ids, now, budget)
            t0 = time.perf_counter()
            if self._stepping:  # pause here until apply() hands the decision in
                self._pending = state
                self._resume = self.env.event()
                dec = yield self._resume
            else:
                dec = self.policy.decide(state)
            wall = time.perf_counter() - t0
            dec = self._check(dec, state)
            # the epochs table keeps this epoch's info: a copy, since a policy may reuse its dict
            srv, bw, info = dec.server, dec.bandwidth_hz, dict(dec.info)
            idx = state.task_id
        self.decision_wall_total += wall
        delay = 0.0 if self._no_delay else self._decision_delay(info, len(ids))
        if delay > 0:
            yield self.env.timeout(delay)
        t_dec = self.env.now
        if srv is None:  # the lane placed every task
            deferred, drop_ids, n_go = [], (), len(ids)
            col, k, base = c["epoch"], self.epoch_index, self._base
            for tid in ids:
                col[tid - base] = k
            self._dispatch_lists(ids, srv_l, [x.share] * n_go, t_dec)
        else:
            deferred, drop_ids, n_go = self._carry_out(ids, idx, srv, bw, t_dec)
        if self.waiting[: len(ids)] == ids:  # the usual case: the oldest tasks were decided
            self.waiting = deferred + self.waiting[len(ids) :]
        else:  # some waiting tasks were skipped (channel outage)
            decided = set(ids)
            self.waiting = sorted(deferred + [t for t in self.waiting if t not in decided])
        self.epoch_log.append(
            (  # the columns of EPOCH_FIXED, in order
                self.epoch_index,
                now,
                t_dec,
                n_waiting,
                len(ids),
                n_go,
                len(drop_ids),
                len(deferred),
                budget,
                wall,
                delay,
            ),
            info,
        )
        self.epoch_index += 1


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
