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

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import simpy

from mecsim.arrivals import TaskSource
from mecsim.radio import Channel
from mecsim.scenario import Scenario, merged_profiles
from mecsim.sim.devices import place_devices
from mecsim.sim.dispatch import FEW_COLS, DispatchMixin
from mecsim.sim.epoch import EpochMixin
from mecsim.sim.faults import FaultsMixin
from mecsim.sim.intake import IntakeMixin
from mecsim.sim.server import GPUServer, build_servers
from mecsim.sim.snapshot import SnapshotMixin
from mecsim.sim.stepping import SteppingMixin
from mecsim.sim.stream import StreamMixin
from mecsim.state import EpochState
from mecsim.streams import Streams
from mecsim.traces import (
    DROPPED,
    FAULT_COLUMNS,
    GPU_TASK_COLUMNS,
    SERVED,
    SERVER_COLUMNS,
    TASK_COLUMNS,
    UPLINK_TASK_COLUMNS,
    Columns,
    EpochLog,
    TraceWriter,
)


class Simulation(
    IntakeMixin, SnapshotMixin, EpochMixin, DispatchMixin, FaultsMixin, StreamMixin, SteppingMixin
):
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

    def __init__(
        self,
        scenario: Scenario,
        policy: Any,
        seed: int,
        progress: bool = False,
        stream_to: str | Path | None = None,
        chunk_rows: int = 50_000,
    ) -> None:
        self.sc = sc = scenario
        self.policy = policy
        self._policy_name = getattr(policy, "name", type(policy).__name__)
        self.seed = int(seed)
        self.progress = progress
        self.streams = Streams(self.seed)
        models, gpus = merged_profiles(sc.profiles)
        self.source = TaskSource(sc, models, self.streams)
        self.model_names = self.source.model_names
        self.adapter_names = self.source.adapter_names
        # the GPU-server model (mecsim.sim.gpu) drives the servers when batching or residency is
        # on or requests carry adapters; otherwise today's servers (and tables) exactly
        self.gpu_mode = bool(
            sc.service.batching.enabled or sc.service.residency.enabled or self.adapter_names
        )
        self.server_names = tuple(s.name for s in sc.servers)
        self.env = simpy.Environment()
        self.t_end = sc.duration_s + sc.drain_s
        self.drop_expired = sc.deadline_action == "drop"

        # devices ----------------------------------------------------------------------------
        self.device_distance_m, self.tx_power_w, traj = place_devices(sc, self.streams)
        self.channel = Channel(
            sc.radio,
            self.device_distance_m,
            self.tx_power_w,
            traj,
            self.streams,
            groups=[grp.count for grp in sc.devices],
        )
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
        self._t_step_rows = self.t_step.T.tolist()  # per model: seconds per step on each server
        self._host_rows = self.host.T.tolist()  # per model: which servers host it
        self._slots_list = [s.slots for s in sc.servers]
        # per-model rows (model x server) for fast snapshot building
        self.t_step_T = np.ascontiguousarray(self.t_step.T)
        self.host_T = np.ascontiguousarray(self.host.T)
        self.host_T.setflags(write=False)  # its rows are handed to policies as views
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
        self.servers = build_servers(self, gpus, fifo)
        self.dl_rate = sc.radio.downlink.rate_bps
        self.dl_lat = sc.radio.downlink.latency_s

        # records ----------------------------------------------------------------------------
        task_cols = {**TASK_COLUMNS, **GPU_TASK_COLUMNS} if self.gpu_mode else dict(TASK_COLUMNS)
        if sc.radio.uplink_mode == "reallocated" and not sc.radio.ideal:
            task_cols.update(UPLINK_TASK_COLUMNS)  # shares change during an upload: their mean
        self.tasks = Columns(task_cols, 4096)
        self.server_log = Columns(SERVER_COLUMNS, 4096)
        self.epoch_log = EpochLog()
        self.fault_log = Columns(FAULT_COLUMNS, 64)
        self.faulty = bool(sc.faults.servers or sc.faults.channels or sc.faults.backhaul)
        self._degraded: list[Any] = []
        self._wake: simpy.Event | None = None
        self._wake_missed = False
        self.waiting: list[int] = []
        self.n_arrived = 0  # tasks [0, n_arrived) have arrived
        self.held: list[tuple[float, float]] = []  # (upload end, bandwidth) of ongoing uploads
        self.held_bw = 0.0
        # reallocated uplink mode: the running uploads and their shares (mecsim/sim/uplink.py)
        self.uplink = None
        if sc.radio.uplink_mode == "reallocated" and not sc.radio.ideal:
            from mecsim.sim.uplink import ReallocatedUplink

            self.uplink = ReallocatedUplink(self)
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
        self._started = False
        self._stepping = False  # start(): decisions come from apply(), not policy.decide
        self._pending: EpochState | None = None
        self._resume: simpy.Event | None = None
        self._lane: Any = None  # set at launch
        self._no_delay = sc.epoch.decision_time.mode == "zero"  # decisions take no simulated time

    def _bind_views(self) -> None:
        c = self.tasks.cols
        self.T_epoch = c["epoch"]
        self.T_deadline = c["deadline"]
        self.T_service_start = c["t_service_start"]
        self._few_cols = tuple(c[k] for k in FEW_COLS)

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
        out = float(c["output_bits"][i])
        j = srv.j
        c["t_complete"][i] = (
            now + float(self.bh_lat[j]) + out * float(self.inv_bh_rate[j]) + out / self.dl_rate + self.dl_lat
        )
        c["state"][i] = SERVED

    def _scheduler(self) -> Any:
        env = self.env
        length = self.sc.epoch.length_s
        radio = not self.sc.radio.ideal  # an ideal radio never asks the channel
        k_epoch = 0
        while True:
            now = env.now
            self._ingest(now)
            if radio:
                self.channel.forget_before(now)
            if self.waiting:
                yield from self._epoch(now)
            now = env.now
            if self._bar is not None:
                self._tick(now)
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

    def _launch(self) -> None:
        if self._started:
            raise RuntimeError("a Simulation runs once: build a new one for another run")
        self._started = True
        if hasattr(self.policy, "reset"):
            self.policy.reset(self.streams.get("policy"))
        # a built-in heuristic may decide one-task epochs without a snapshot (mecsim/sim/epoch.py)
        lane = getattr(self.policy, "_small_epoch_lane", None)
        plain = not (self._stepping or self.gpu_mode or self.uplink is not None)
        self._lane = lane() if lane is not None and plain else None
        faults = self.sc.faults
        for k, f in enumerate(faults.servers):
            self.env.process(self._server_fault_process(k, f))
        for f in faults.backhaul:
            self.env.process(self._backhaul_fault_process(f))
        for f in faults.channels:
            self.env.process(self._channel_fault_process(f))
        self.env.process(self._scheduler())

    def _wrap_up(self) -> None:
        # every generated task must be in the table, also those that arrive after the last epoch
        self._generate_until(self.sc.duration_s)
        self.complete = True
        self.close_stream()

    def run(self) -> Simulation:
        """Run to ``duration_s + drain_s`` and return self (records are in ``self.tasks``)."""
        self._bar = None
        if self.progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=int(self.t_end), unit="s sim", desc=self.sc.name, leave=False, dynamic_ncols=True
            )
        self._launch()
        t0 = time.perf_counter()
        try:
            self.env.run(until=self.t_end)
        finally:
            if self._bar is not None:
                self._bar.close()
            self.wall_s = time.perf_counter() - t0
        self._wrap_up()
        return self
