"""The time-domain engine: one SimPy Environment per run.

Flow of a task: it arrives at its device and waits for the next scheduling epoch; the epoch's
policy gives it an uplink share and a server (or drops or defers it); it uploads over its fading
channel, crosses the backhaul, queues at the server, is served by one GPU slot
(steps x seconds-per-step x jitter), and its result travels back over the backhaul and downlink.

Lean by design: arrivals are generated in vectorised windows and picked up at epochs (no event
per arrival unless the epoch length is 0), uploads are computed in closed form over the coherence
blocks at decision time, and a task costs two SimPy events (arrival at the server and end of
service). Records are numpy columns (see :mod:`mecsim.traces`).

Streaming (``stream_to``): task ids are global and never change, but the task buffers may hold
only the ids ``[_base, _base + tasks.n)``: task ``tid`` is buffer row ``tid - _base``. A row is
final once its task is DROPPED, or SERVED with ``t_complete`` in the past (a task that is still
WAITING or DISPATCHED may yet be redispatched by a server failure); at epochs, the engine writes
the longest prefix of final rows to ``tasks.parquet`` when it holds at least ``chunk_rows`` of them
and drops them from memory (see :meth:`Simulation._stream_tick`). Without streaming ``_base`` stays 0.
"""

from __future__ import annotations

import bisect
import contextlib
import heapq
import math
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import simpy

from mecsim.arrivals import TaskSource
from mecsim.errors import PolicyError
from mecsim.radio import Channel, Trajectory, dbm_to_w
from mecsim.scenario import Scenario, merged_profiles
from mecsim.state import DEFER, DROP, Decision, EpochState, validate_decision
from mecsim.streams import Streams
from mecsim.traces import (
    DISPATCHED,
    DROPPED,
    FAULT_COLUMNS,
    FAULT_EVENTS,
    SERVED,
    SERVER_COLUMNS,
    TASK_COLUMNS,
    WAITING,
    Columns,
    TraceWriter,
    faults_frame,
    servers_frame,
    tasks_frame,
)

@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold a Ctrl-C back until the block is done (writing rows out and dropping them from the
    buffers must not be cut in the middle); it is raised right after. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    try:
        old = signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
    except ValueError:  # not the main interpreter
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        if got:
            signal.raise_signal(signal.SIGINT)


class GPUServer:
    """One AIGC server: ``slots`` GPU slots and a queue (epoch-SPT or FIFO)."""

    __slots__ = ("sim", "j", "slots", "busy", "queue", "in_service", "transit", "transit_work",
                 "queued_work", "fifo", "power_w", "up", "gen")

    def __init__(self, sim: Simulation, j: int, slots: int, power_w: float, fifo: bool) -> None:
        self.sim = sim
        self.j = j
        self.slots = slots
        self.busy = 0
        self.queue: list[tuple[float, float, int]] = []
        self.in_service: dict[int, float] = {}  # task -> expected end (for backlog estimates)
        self.transit = 0
        self.transit_work = 0.0
        self.queued_work = 0.0
        self.fifo = fifo
        self.power_w = power_w
        self.up = True
        self.gen = 0  # bumped at each failure: service ends scheduled before it are void

    def backlog(self, now: float) -> float:
        """Expected wait before a task arriving now could start (s); exact for one slot, the
        fluid approximation (total work / slots) for several."""
        if self.busy + len(self.queue) + self.transit < self.slots:
            return 0.0
        rem = 0.0
        for end in self.in_service.values():
            if end > now:
                rem += end - now
        return (rem + self.queued_work + self.transit_work) / self.slots

    def arrive(self, tid: int) -> None:
        sim = self.sim
        i = tid - sim._base
        exp = sim.expected_service[i]
        self.transit -= 1
        self.transit_work -= exp
        if not self.up:
            sim.server_failed_task(tid, self.j)
        elif self.busy < self.slots and not self.queue:
            self._start(tid)
        else:
            key1 = sim.env.now if self.fifo else float(sim.T_epoch[i])
            key2 = 0.0 if self.fifo else exp
            heapq.heappush(self.queue, (key1, key2, tid))
            self.queued_work += exp
        sim.monitor(self)

    def _start(self, tid: int) -> None:
        sim = self.sim
        now = sim.env.now
        i = tid - sim._base
        if sim.drop_expired and now > sim.T_deadline[i]:
            sim.drop(tid, 3, now)
            return
        self.busy += 1
        st = sim.actual_service[i]
        sim.T_service_start[i] = now
        self.in_service[tid] = now + sim.expected_service[i]
        ev = sim.env.timeout(st)
        ev.callbacks.append(lambda _ev, tid=tid, gen=self.gen: self._finish(tid, gen))

    def _finish(self, tid: int, gen: int) -> None:
        if gen != self.gen:
            return  # the server failed while this task was in service
        sim = self.sim
        now = sim.env.now
        self.busy -= 1
        del self.in_service[tid]
        sim.finish(tid, now, self)
        while self.queue and self.busy < self.slots:
            _, _, nxt = heapq.heappop(self.queue)
            self.queued_work -= sim.expected_service[nxt - sim._base]
            self._start(nxt)
        sim.monitor(self)
        if sim.waiting and self.busy < self.slots:
            sim._wake_at(now)  # work conservation: a waiting task may take the free slot


    def fail(self) -> list[int]:
        """Take the server down; return the tasks it held (in service first, then queued)."""
        sim = self.sim
        now = sim.env.now
        c = sim.tasks.cols
        base = sim._base
        held = list(self.in_service)
        for tid in held:  # energy of the partial service
            c["energy_server_j"][tid - base] += self.power_w * (now - c["t_service_start"][tid - base])
        held += [tid for _, _, tid in sorted(self.queue)]
        self.up = False
        self.gen += 1
        self.busy = 0
        self.in_service.clear()
        self.queue.clear()
        self.queued_work = 0.0
        return held


class Simulation:
    """One run of a scenario with a policy and a seed.

    Args:
        scenario: a validated :class:`~mecsim.scenario.Scenario`.
        policy: an object with ``decide(state) -> Decision`` (see :mod:`mecsim.policies.base`).
        seed: the run seed; every random stream is spawned from it.
        progress: show a progress bar over simulated time.
        stream_to: a folder: write the tasks, servers and epochs tables there as the run goes
            (Parquet, see :mod:`mecsim.traces`) and keep only the rows that may still change in
            memory; :meth:`run` closes the files, :func:`mecsim.results.collect` adds
            summary.json and scenario.yaml. None: keep everything in memory.
        chunk_rows: with ``stream_to``, rows per flush of the tasks and servers tables.
    """

    def __init__(self, scenario: Scenario, policy: Any, seed: int, progress: bool = False,
                 stream_to: str | Path | None = None, chunk_rows: int = 50_000) -> None:
        self.sc = sc = scenario
        self.policy = policy
        self._policy_name = getattr(policy, "name", type(policy).__name__)
        self.seed = int(seed)
        self.progress = progress
        self.streams = Streams(self.seed)
        models, gpus = merged_profiles(sc.profiles)
        self.source = TaskSource(sc, models, self.streams)
        self.model_names = self.source.model_names
        self.server_names = tuple(s.name for s in sc.servers)
        self.env = simpy.Environment()
        self.t_end = sc.duration_s + sc.drain_s
        self.drop_expired = sc.deadline_action == "drop"

        # devices ----------------------------------------------------------------------------
        pl_rng = self.streams.get("placement")
        dist, power, traj = [], [], []
        d_idx = 0
        for grp in sc.devices:
            for _ in range(grp.count):
                dm = grp.placement.distance_m
                d = pl_rng.uniform(dm[0], dm[1]) if isinstance(dm, tuple) else float(dm)
                ang = pl_rng.uniform(0, 2 * math.pi)
                dist.append(d)
                power.append(float(dbm_to_w(grp.tx_power_dbm)))
                if grp.mobility.model == "random-waypoint":
                    xy = np.array([d * math.cos(ang), d * math.sin(ang)])
                    traj.append(Trajectory(grp.mobility, xy, self.streams.keyed("mobility", d_idx)))
                else:
                    traj.append(None)
                d_idx += 1
        self.tx_power_w = np.array(power)
        self.device_distance_m = np.array(dist)
        self.channel = Channel(sc.radio, self.device_distance_m, self.tx_power_w, traj,
                               self.streams)
        self.channel.horizon = sc.duration_s + sc.drain_s
        for f in sc.faults.channels:
            self.channel.add_outage(f.device, f.start_s, f.end_s)

        # servers ----------------------------------------------------------------------------
        m, nm = len(sc.servers), len(self.model_names)
        self.t_step = np.full((m, nm), np.inf)
        self.slots = np.array([s.slots for s in sc.servers], dtype=np.int64)
        self.server_power = np.array([gpus[s.gpu].power_w for s in sc.servers], dtype=float)
        for j, s in enumerate(sc.servers):
            for mname in s.models:
                self.t_step[j, self.source.model_code[mname]] = gpus[s.gpu].seconds_per_step[mname]
        self.host = np.isfinite(self.t_step)
        # per-model rows (model x server) for fast snapshot building
        self.t_step_T = np.ascontiguousarray(self.t_step.T)
        self.host_T = np.ascontiguousarray(self.host.T)
        self.all_up = True
        self.bh_lat = np.array([s.backhaul.latency_s for s in sc.servers], dtype=float)
        self.bh_rate = np.array([s.backhaul.rate_bps or np.inf for s in sc.servers], dtype=float)
        self.inv_bh_rate = 1.0 / self.bh_rate
        # nominal backhaul; faults replace bh_lat / inv_bh_rate by new arrays while degraded
        self.bh_lat0, self.inv_bh_rate0 = self.bh_lat, self.inv_bh_rate
        for arr in (self.slots, self.server_power, self.bh_lat, self.inv_bh_rate):
            arr.setflags(write=False)  # handed to policies: read-only
        self.server_up = np.ones(m, dtype=bool)
        self.server_up.setflags(write=False)  # handed to policies as is; replaced on a change
        fifo = sc.service.discipline == "fifo"
        self.servers = [GPUServer(self, j, int(self.slots[j]), float(self.server_power[j]), fifo)
                        for j in range(m)]
        self.dl_rate = sc.radio.downlink.rate_bps
        self.dl_lat = sc.radio.downlink.latency_s

        # records ----------------------------------------------------------------------------
        self.tasks = Columns(TASK_COLUMNS, 4096)
        self.server_log = Columns(SERVER_COLUMNS, 4096)
        self.epoch_rows: list[dict[str, Any]] = []
        self.fault_log = Columns(FAULT_COLUMNS, 64)
        self.faulty = bool(sc.faults.servers or sc.faults.channels or sc.faults.backhaul)
        self._degraded: list[Any] = []
        self._wake: simpy.Event | None = None
        self._wake_missed = False
        self.waiting: list[int] = []
        self.n_arrived = 0  # tasks [0, n_arrived) have arrived
        self.held: list[tuple[float, float]] = []  # (upload end, bandwidth) of ongoing uploads
        self.held_bw = 0.0
        self.epoch_index = 0
        self.decision_wall_total = 0.0
        self.expected_service = np.zeros(0)
        self.actual_service = np.zeros(0)
        self._base = 0  # global id of buffer row 0 (rows before it were streamed out)
        self._stream: TraceWriter | None = None
        if stream_to is not None:
            self._stream = TraceWriter(stream_to, chunk_rows)
            self._chunk = self._stream.chunk_rows
            self._flush_at = self._chunk  # look for final rows when n_arrived reaches this
            self._final_upto = 0  # buffer rows [0, _final_upto) are known to be final
        self._bind_views()
        self.complete = False

    # -- buffers -------------------------------------------------------------------------------
    def _bind_views(self) -> None:
        c = self.tasks.cols
        self.T_epoch = c["epoch"]
        self.T_deadline = c["deadline"]
        self.T_service_start = c["t_service_start"]

    def _generate_until(self, t: float) -> None:
        """Make sure every task arriving at or before t is in the task table."""
        src = self.source
        while src.t_next <= t and src.t_next < src.duration:
            b = src.next_batch()
            if b is None or len(b) == 0:
                continue
            a, z = self.tasks.append_many(
                device=b.device, model=b.model, input_bits=b.input_bits,
                output_bits=b.output_bits, steps=b.steps, deadline=b.t_arrival + b.deadline_rel,
                service_factor=b.jitter, t_arrival=b.t_arrival,
            )
            self._bind_views()
            # service times are known per (task, server) once the server is chosen; store the
            # server-independent parts now
            need = self.tasks.cap
            if len(self.expected_service) < need:
                self.expected_service = np.resize(self.expected_service, need)
                self.actual_service = np.resize(self.actual_service, need)

    def _ingest(self, now: float) -> None:
        self._generate_until(now)
        t_arr = self.tasks.cols["t_arrival"]
        n = self.tasks.n
        a = self.n_arrived - self._base
        k = self.n_arrived + int(np.searchsorted(t_arr[a:n], now, side="right"))
        if k > self.n_arrived:
            self.waiting.extend(range(self.n_arrived, k))
            self.n_arrived = k

    def _next_arrival_time(self) -> float:
        while self.n_arrived >= self._base + self.tasks.n:
            if self.source.t_next >= self.source.duration:
                return math.inf
            self._generate_until(self.source.t_next)
        return float(self.tasks.cols["t_arrival"][self.n_arrived - self._base])

    # -- records -------------------------------------------------------------------------------
    def monitor(self, srv: GPUServer) -> None:
        log = self.server_log
        if log.n >= log.cap:
            log.reserve(1)
        i = log.n
        c = log.cols
        c["t"][i] = self.env.now
        c["server"][i] = srv.j
        c["queue_len"][i] = len(srv.queue)
        c["busy_slots"][i] = srv.busy
        c["in_transit"][i] = srv.transit
        log.n = i + 1

    def drop(self, tid: int, reason: int, now: float) -> None:
        c = self.tasks.cols
        i = tid - self._base
        c["state"][i] = DROPPED
        c["drop_reason"][i] = reason
        if np.isnan(c["t_decision"][i]):
            c["t_decision"][i] = now

    def finish(self, tid: int, now: float, srv: GPUServer) -> None:
        c = self.tasks.cols
        i = tid - self._base
        c["t_service_end"][i] = now
        c["energy_server_j"][i] += srv.power_w * (now - c["t_service_start"][i])
        out = c["output_bits"][i]
        j = srv.j
        c["t_complete"][i] = (now + self.bh_lat[j] + out * self.inv_bh_rate[j] + out / self.dl_rate
                              + self.dl_lat)
        c["state"][i] = SERVED

    # -- faults --------------------------------------------------------------------------------
    def log_fault(self, event: str, server: int = -1, device: int = -1, task: int = -1) -> None:
        self.fault_log.append_many(t=np.array([self.env.now]),
                                   event=np.array([FAULT_EVENTS.index(event)]),
                                   server=np.array([server]), device=np.array([device]),
                                   task_id=np.array([task]))

    def server_failed_task(self, tid: int, j: int) -> None:
        """A task held by (or arriving at) a failed server: redispatch or drop it."""
        now = self.env.now
        c = self.tasks.cols
        if self.sc.faults.on_server_failure == "drop":
            self.drop(tid, 4, now)
            self.log_fault("task_dropped", server=j, task=tid)
            return
        i = tid - self._base
        for k in ("t_decision", "t_upload_start", "t_upload_end", "t_server_arrival",
                  "t_service_start", "t_service_end", "t_complete", "bandwidth_hz"):
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

    # -- the epoch -----------------------------------------------------------------------------
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
        return EpochState(
            now=now, epoch=self.epoch_index, task_id=idx, device=dev,
            model=tuple([names[k] for k in mod.tolist()]), input_bits=bits, output_bits=out,
            steps=steps, t_arrival=c["t_arrival"][loc], deadline=c["deadline"][loc],
            tx_power_w=self.tx_power_w[dev], gain=gain, noise_psd_w_per_hz=self.channel.n0,
            bandwidth_budget_hz=budget, min_bandwidth_hz=self.sc.radio.min_bandwidth_hz,
            ideal_radio=self.sc.radio.ideal, server_names=self.server_names, slots=self.slots,
            server_up=self.server_up,
            backlog_s=np.array([s.backlog(now) for s in servers]),
            queued=np.array([s.busy + len(s.queue) + s.transit for s in servers], dtype=np.int64),
            feasible=feasible, service_s=service, backhaul_s=backhaul, return_s=ret,
            server_energy_w=self.server_power,
        )

    def _check(self, dec: Any, state: EpochState) -> Decision:
        return validate_decision(dec, state, self._policy_name)

    def _decision_delay(self, info: dict[str, Any], n: int) -> float:
        dt = self.sc.epoch.decision_time
        if dt.mode == "zero":
            return 0.0
        solver = str(info.get("solver", ""))
        if dt.mode == "fixed":
            return dt.by_solver[solver].base_s if solver in dt.by_solver else dt.fixed_s
        cost = dt.by_solver.get(solver, dt.cost)
        return (cost.base_s + cost.per_task_s * n
                + cost.per_variable_s * float(info.get("variables", 0) or 0)
                + cost.per_interaction_s * float(info.get("interactions", 0) or 0))

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
        ids, budget = self._admit(now)
        n_waiting = len(self.waiting)
        if not ids:
            return
        state = self.build_state(ids, now, budget)
        t0 = time.perf_counter()
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
        if int(srv.min()) >= 0:  # the usual case: every task dispatched
            deferred: list[int] = []
            drop_ids: Any = ()
            n_go = len(idx)
            c["epoch"][idx - self._base] = self.epoch_index
            self._dispatch(state, idx, srv, dec.bandwidth_hz, t_dec)
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
        if self.waiting[:len(ids)] == ids:  # the usual case: the oldest tasks were decided
            self.waiting = deferred + self.waiting[len(ids):]
        else:  # some waiting tasks were skipped (channel outage)
            decided = set(idx.tolist())
            self.waiting = sorted(deferred + [t for t in self.waiting if t not in decided])
        row = {
            "epoch": self.epoch_index, "t": now, "t_decision": t_dec, "n_waiting": n_waiting,
            "n_decided": len(ids), "n_dispatched": n_go, "n_dropped": len(drop_ids),
            "n_deferred": len(deferred), "bandwidth_budget_hz": budget,
            "decision_wall_s": wall, "decision_delay_s": delay,
        }
        row.update(dec.info)
        self.epoch_rows.append(row)
        self.epoch_index += 1

    def _dispatch(self, state: EpochState, tids: np.ndarray, srv: np.ndarray, bw: np.ndarray,
                  t: float) -> None:
        c = self.tasks.cols
        gids = tids  # global ids (for the events); tids: buffer rows
        if self._base:
            tids = tids - self._base
        dev = c["device"][tids].astype(np.int64)
        bits = c["input_bits"][tids]
        if self.sc.radio.ideal:
            up = np.zeros(len(tids))
        else:
            up = self.channel.upload_durations(dev, bits, bw, t)
            for end, b in zip((t + up).tolist(), bw.tolist(), strict=True):
                heapq.heappush(self.held, (end, b))
                self.held_bw += b
        mod = c["model"][tids].astype(np.int64)
        expected = c["steps"][tids] * self.t_step[srv, mod]
        self.expected_service[tids] = expected
        self.actual_service[tids] = expected * c["service_factor"][tids]
        arrive = t + up + self.bh_lat[srv] + bits * self.inv_bh_rate[srv]
        c["server"][tids] = srv
        c["bandwidth_hz"][tids] = bw
        c["t_decision"][tids] = t
        c["t_upload_start"][tids] = t
        c["t_upload_end"][tids] = t + up
        c["t_server_arrival"][tids] = arrive
        c["energy_tx_j"][tids] += self.tx_power_w[dev] * up
        c["state"][tids] = DISPATCHED
        env = self.env
        servers = self.servers
        t_end = self.t_end
        now_arrivals = []
        srv_l = srv.tolist()
        for tid, j, ta, ex in zip(gids.tolist(), srv_l, arrive.tolist(), expected.tolist(),
                                  strict=True):
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
        for j in (srv_l if len(srv_l) == 1 else sorted(set(srv_l))):
            self.monitor(servers[j])
        for s, tid in now_arrivals:
            s.arrive(tid)

    # -- the scheduler process -----------------------------------------------------------------
    def _scheduler(self) -> Any:
        env = self.env
        length = self.sc.epoch.length_s
        k_epoch = 0
        while True:
            now = env.now
            self._ingest(now)
            self.channel.forget_before(now)
            if self.waiting:
                yield from self._epoch(now)
            self._tick(env.now)
            now = env.now
            if self._stream is not None:
                self._stream_tick(now)
            if length > 0:
                k_epoch = max(k_epoch + 1, math.ceil(now / length - 1e-9))
                if not self.waiting:
                    # skip empty epochs: go to the first boundary at or after the next arrival
                    t_arr = self._next_arrival_time()
                    if t_arr == math.inf and not self.faulty:
                        return
                    if t_arr < math.inf:
                        k_epoch = max(k_epoch, math.ceil(t_arr / length - 1e-9))
                    elif self.t_end < math.inf:  # faults may send tasks back: keep the beat
                        k_epoch = max(k_epoch, math.ceil(now / length - 1e-9))
                t_next = k_epoch * length
                if t_next >= self.t_end:
                    return
                yield env.timeout(max(t_next - now, 0.0))
            else:
                # decide at every arrival, and when something may let waiting tasks go:
                # an upload ends (bandwidth), a GPU slot frees, a server comes back, a channel
                # recovers
                if self._wake_missed and self.waiting:
                    # a slot freed (or a server came back) while the decision took time
                    self._wake_missed = False
                    continue
                self._wake_missed = False
                t_next = self._next_arrival_time()
                if self.waiting and self.held:
                    t_next = min(t_next, self.held[0][0])
                if not self.waiting and not self.faulty:
                    # nothing but an arrival can start an epoch: one plain timeout
                    if t_next >= self.t_end:
                        return
                    yield env.timeout(t_next - now)
                    continue
                self._wake = env.event()
                waits = [self._wake]
                if t_next < self.t_end:
                    waits.append(env.timeout(max(t_next - now, 0.0)))
                elif not self.faulty:
                    return
                yield env.any_of(waits)
                self._wake = None

    def _tick(self, now: float) -> None:
        bar = self._bar
        if bar is not None:
            pos = int(min(now, self.t_end))
            if pos > bar.n:
                bar.update(pos - bar.n)

    def run(self) -> Simulation:
        """Run to ``duration_s + drain_s`` and return self (records are in ``self.tasks``)."""
        self._bar = None
        if self.progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=int(self.t_end), unit="s sim", desc=self.sc.name,
                             leave=False, dynamic_ncols=True)
        if hasattr(self.policy, "reset"):
            self.policy.reset(self.streams.get("policy"))
        faults = self.sc.faults
        for k, f in enumerate(faults.servers):
            self.env.process(self._server_fault_process(k, f))
        for f in faults.backhaul:
            self.env.process(self._backhaul_fault_process(f))
        for f in faults.channels:
            self.env.process(self._channel_fault_process(f))
        self.env.process(self._scheduler())
        t0 = time.perf_counter()
        try:
            self.env.run(until=self.t_end)
        finally:
            if self._bar is not None:
                self._bar.close()
            self.wall_s = time.perf_counter() - t0
        # every generated task must be in the table, also those that arrive after the last epoch
        self._generate_until(self.sc.duration_s)
        self.complete = True
        self.close_stream()
        return self

    # -- streaming -----------------------------------------------------------------------------
    def _stream_tick(self, now: float) -> None:
        """At an epoch of a streamed run: write out what is final once there is enough of it."""
        st = self._stream
        assert st is not None
        if self.n_arrived >= self._flush_at:
            self._flush_tasks(now)
        if self.server_log.n >= self._chunk:
            with _sigint_deferred():
                st.write_servers(servers_frame(self.server_log.view(), self.server_names))
                self.server_log.n = 0  # monitor() writes every field of a row
        if len(self.epoch_rows) >= st.epoch_chunk:
            with _sigint_deferred():
                st.write_epochs(self.epoch_rows)
                self.epoch_rows = []

    def _flush_tasks(self, now: float) -> None:
        """Write the longest prefix of final task rows if it has ``chunk_rows`` rows, and drop it
        from the buffers; otherwise look again after ``chunk_rows / 4`` more arrivals."""
        c = self.tasks.cols
        lim = self.n_arrived - self._base  # tasks not arrived yet are WAITING
        p = self._final_upto
        if p < lim:
            st = c["state"][p:lim]
            fin = (st == DROPPED) | ((st == SERVED) & (c["t_complete"][p:lim] <= now))
            p = lim if fin.all() else p + int(np.argmin(fin))
            self._final_upto = p
        if p < self._chunk:  # a straggler holds the prefix back
            self._flush_at = self.n_arrived + max(self._chunk // 4, 1)
            return
        # final rows' times are all <= now, so the NaN-masking of tasks_frame changes nothing
        # and status/latency come out as they would at the end
        rows = {k: v[:p] for k, v in c.items()}
        df = tasks_frame(rows, self.model_names, self.server_names, now, first_id=self._base)
        with _sigint_deferred():  # written rows must be dropped, and the buffers stay whole
            self._stream.write_tasks(df)
            self._drop_rows(p)
        self._flush_at = self._base + self._chunk

    def _drop_rows(self, k: int) -> None:
        """Forget buffer rows [0, k): task ids [_base, _base + k)."""
        m = self.tasks.n - k
        self.tasks.drop_front(k, min_capacity=2 * self._chunk)
        cap = self.tasks.cap
        for name in ("expected_service", "actual_service"):
            a = getattr(self, name)
            if len(a) == cap:
                a[:m] = a[k:k + m]
            else:
                new = np.zeros(cap)
                new[:m] = a[k:k + m]
                setattr(self, name, new)
        self._base += k
        self._final_upto = max(self._final_upto - k, 0)
        self._bind_views()

    def close_stream(self) -> None:
        """Write every row still held and close the streamed files (tasks, servers, epochs,
        faults). A stopped run keeps the tasks that had arrived by ``env.now``, as
        :func:`~mecsim.results.collect` does. Does nothing without ``stream_to`` or when closed."""
        st = self._stream
        if st is None or st.closed:
            return
        with _sigint_deferred():
            self._close_stream(st)

    def _close_stream(self, st: TraceWriter) -> None:
        try:
            t_end = self.t_end if self.complete else float(self.env.now)
            c = self.tasks.cols
            n = self.tasks.n
            if not self.complete:  # tasks generated ahead of a stop had not arrived yet
                n = int(np.searchsorted(c["t_arrival"][:n], t_end, side="right"))
            st.write_tasks(tasks_frame({k: v[:n] for k, v in c.items()}, self.model_names,
                                       self.server_names, t_end, first_id=self._base))
            st.write_servers(servers_frame(self.server_log.view(), self.server_names))
            self.server_log.n = 0
            st.write_epochs(self.epoch_rows)
            self.epoch_rows = []
        finally:
            st.close(faults_frame(self.fault_log.view(), self.server_names))
