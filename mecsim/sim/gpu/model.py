"""The GPU-server model: one server's GPUs, queues, batches and resident sets, without SimPy.

The rules are in :mod:`mecsim.sim.gpu`. This module holds submission, timers, batching, dispatch,
failure and recovery; the resident sets (loads, eviction) are in :mod:`~mecsim.sim.gpu.residency`
and the estimates (backlog, expected wait) in :mod:`~mecsim.sim.gpu.estimate`.
"""

from __future__ import annotations

import heapq
import math
from typing import Any

from mecsim.sim.gpu.config import ServerConfig
from mecsim.sim.gpu.estimate import EstimateMixin
from mecsim.sim.gpu.events import (
    _BUSY,
    _IDLE,
    _LOADING,
    _WAITING,
    BatchEnd,
    BatchStart,
    Dropped,
    Event,
    LoadStart,
    TaskRecord,
    Timer,
    TimerKind,
    _Slot,
    _Task,
)
from mecsim.sim.gpu.residency import ResidencyMixin


class GPUServerModel(ResidencyMixin, EstimateMixin):
    """One server's GPUs, queues, batches and resident sets (the rules: :mod:`mecsim.sim.gpu`).

    Example:
        >>> m = GPUServerModel(ServerConfig.simple(1, {"sd15": 0.032}))
        >>> ev = m.submit(0, "sd15", steps=30, now=0.0)
        >>> [type(e).__name__ for e in ev]
        ['BatchStart', 'Timer']
        >>> round(ev[1].t, 3)
        0.96
    """

    def __init__(self, config: ServerConfig) -> None:
        self.cfg = config
        self.slots = [_Slot() for _ in range(config.slots)]
        self.queues: dict[str, list[tuple[Any, Any, int]]] = {k: [] for k in config.models}
        self.tasks: dict[int, _Task] = {}
        self.records: dict[int, TaskRecord] = {}
        self.loads: list[LoadStart] = []
        self.evictions: list[tuple[float, int, str]] = []  # (time, slot, item)
        self.queued_work = 0.0  # sum of expected batch-1 service of queued tasks (engine's backlog)
        self.in_service: dict[int, float] = {}  # batch id -> expected end, in start order
        self.up = True
        self._tick = 0  # orders uses and loads (ties in time)
        self._next_batch = 0
        self._n_queued = 0
        self._n_claiming = 0  # GPUs loading or waiting to fill a batch
        self._expected_only = False  # True in expected_wait's copy: no jitter (not known ahead)
        self._cap = {k: config.batch_cap(k) for k in config.models}
        # nothing to load ever (today's server): every GPU always holds every item
        self._always_warm = set(config.preload_items) == set(config.items) and config.memory_gib == math.inf
        self._reset_residency(0.0)

    # -- public API ---------------------------------------------------------------------------
    @property
    def busy(self) -> int:
        """GPUs serving a batch."""
        return sum(1 for s in self.slots if s.state == _BUSY)

    @property
    def occupied(self) -> int:
        """GPUs not idle (serving, loading or waiting to fill a batch)."""
        return sum(1 for s in self.slots if s.state != _IDLE)

    @property
    def queued(self) -> int:
        return self._n_queued

    def in_service_tasks(self) -> tuple[int, ...]:
        """Tasks in a running batch (GPU order), e.g. for the energy of a partial service."""
        return tuple(tid for s in self.slots for tid in s.batch)

    def submit(
        self,
        tid: int,
        key: str,
        steps: float,
        now: float,
        factor: float = 1.0,
        priority: tuple[Any, Any] = (0.0, 0.0),
        deadline: float = math.inf,
    ) -> list[Event]:
        """A task reaches the server at ``now``; returns the events to act on."""
        if key not in self.cfg.models:
            raise KeyError(f"server does not host {key!r}")
        if tid in self.tasks or tid in self.records:
            raise ValueError(f"task {tid} submitted twice")
        m = self.cfg.models[key]
        task = _Task(tid, key, float(steps), float(factor), float(deadline), now, steps * m.seconds_per_step)
        self.tasks[tid] = task
        out: list[Event] = []
        # today's engine: "a free slot and nothing queued: start at once" (same float operations)
        if self._n_queued == 0 and (self._cap[key] == 1 or self.cfg.batch_timeout_s == 0):
            j = self._warm_idle_slot(key)
            if j is not None:
                if self.cfg.drop_expired and now > task.deadline:
                    del self.tasks[tid]
                    out.append(Dropped(tid, now))
                else:
                    self._launch(j, key, [task], now, out, cold=False)
                return out
        q = self.queues[key]
        heapq.heappush(q, (priority[0], priority[1], tid))
        self._n_queued += 1
        self.queued_work += task.expected
        # a GPU waiting to fill a batch of this key starts as soon as the batch is full
        if self._n_claiming and len(q) >= self._cap[key]:
            for j, s in enumerate(self.slots):
                if s.state == _WAITING and s.key == key:
                    self._start_batch(j, key, now, out, cold=False)
                    break
        self._dispatch(now, out)
        return out

    def fire(self, timer: Timer, now: float) -> list[Event]:
        """A timer returned earlier is due; stale timers (after a failure) return nothing."""
        s = self.slots[timer.slot]
        if not self.up or timer.token != s.token:
            return []
        s.timer = None
        out: list[Event] = []
        if timer.kind == TimerKind.BATCH_END:
            tasks = s.batch
            del self.in_service[s.batch_id]
            out.append(BatchEnd(s.batch_id, timer.slot, tasks, now))
            for tid in tasks:
                del self.tasks[tid]
            s.state, s.batch, s.batch_id = _IDLE, (), -1
        elif timer.kind == TimerKind.LOAD_END:
            for it in s.resident.values():
                if math.isnan(it[2]):
                    it[2] = self._next_tick()
            self._start_batch(timer.slot, s.key, now, out, cold=True)
        else:  # FILL_TIMEOUT
            self._start_batch(timer.slot, s.key, now, out, cold=False)
        self._dispatch(now, out)
        return out

    def fail(self, now: float) -> list[int]:
        """The server goes down: returns the tasks it held (in service first, then queued in order).
        Their records are cleared (they may be resubmitted elsewhere) and every pending timer is
        void. Residency is reset by :meth:`recover`."""
        held: list[int] = []
        for s in self.slots:
            held.extend(s.batch)
        queued = sorted(e for q in self.queues.values() for e in q)
        held.extend(tid for _, _, tid in queued)
        for tid in held:
            self.tasks.pop(tid, None)
            self.records.pop(tid, None)
        for q in self.queues.values():
            q.clear()
        for s in self.slots:
            s.state, s.batch, s.batch_id, s.timer = _IDLE, (), -1, None
            s.token += 1
        self.in_service.clear()
        self._n_queued = 0
        self._n_claiming = 0
        self.queued_work = 0.0
        self.up = False
        return held

    def recover(self, now: float) -> None:
        """The server is back, with its preload set resident again (a warm restart: the preload
        costs no load time, as today's engine assumes every hosted model is resident)."""
        self.up = True
        self._reset_residency(now)

    def pop_record(self, tid: int) -> TaskRecord:
        """Hand a finished task's record over (the engine copies it into its columns)."""
        return self.records.pop(tid)

    # -- internals ----------------------------------------------------------------------------
    def _claims(self, key: str) -> int:
        if not self._n_claiming:
            return 0
        cap = self._cap[key]
        return sum(cap for s in self.slots if s.state in (_LOADING, _WAITING) and s.key == key)

    def _dispatch(self, now: float, out: list[Event]) -> None:
        cfg = self.cfg
        queues = self.queues
        while self._n_queued:
            idle = [j for j, s in enumerate(self.slots) if s.state == _IDLE]
            if not idle:
                return
            key = None
            if not self._n_claiming:  # every queued task is unclaimed: the best head
                best = None
                for k, q in queues.items():
                    if q and (best is None or q[0] < best):
                        best, key = q[0], k
            else:
                for _, k in sorted((q[0], k) for k, q in queues.items() if q):
                    if len(queues[k]) > self._claims(k):
                        key = k
                        break
            if key is None:
                return
            if self._always_warm:
                j = idle[0]
            else:
                j = min(idle, key=lambda i: (self._missing_load(self.slots[i], key), i))
            s = self.slots[j]
            if not self._always_warm and self._missing(s, key):
                self._start_load(j, key, now, out)
            elif len(queues[key]) >= self._cap[key] or cfg.batch_timeout_s == 0:
                self._start_batch(j, key, now, out, cold=False)
            else:
                s.state, s.key = _WAITING, key
                self._n_claiming += 1
                self._set_timer(j, TimerKind.FILL_TIMEOUT, now, cfg.batch_timeout_s, out)

    def _set_timer(self, j: int, kind: TimerKind, now: float, delay: float, out: list[Event]) -> None:
        s = self.slots[j]
        s.token += 1
        tm = Timer(now + delay, delay, kind, j, s.token)
        s.timer = tm
        out.append(tm)

    def _start_batch(self, j: int, key: str, now: float, out: list[Event], cold: bool) -> None:
        """Take up to a batch of the key's queue (dropping expired tasks) and start it on GPU j."""
        cfg = self.cfg
        s = self.slots[j]
        if s.state in (_LOADING, _WAITING):
            self._n_claiming -= 1
        q = self.queues[key]
        cap = self._cap[key]
        batch: list[_Task] = []
        while q and len(batch) < cap:
            _, _, tid = heapq.heappop(q)
            self._n_queued -= 1
            t = self.tasks[tid]
            self.queued_work -= t.expected
            if cfg.drop_expired and now > t.deadline:
                del self.tasks[tid]
                out.append(Dropped(tid, now))
                continue
            batch.append(t)
        if not batch:
            s.state, s.key = _IDLE, ""
            return
        self._launch(j, key, batch, now, out, cold)

    def _launch(self, j: int, key: str, batch: list[_Task], now: float, out: list[Event], cold: bool) -> None:
        s = self.slots[j]
        m = self.cfg.models[key]
        b = len(batch)
        if b == 1:
            head = batch[0]
            expected = head.steps * m.seconds_per_step
        else:
            head = batch[0]
            expected = max(t.steps for t in batch) * (m.seconds_per_step * m.curve.factor(b))
        st = expected if self._expected_only else expected * head.factor
        end = now + st
        bid = self._next_batch
        self._next_batch += 1
        self._tick += 1
        tick = float(self._tick)
        res = s.resident
        for name in m.items:
            r = res[name]
            r[0] = tick
            r[1] += b
        ids = tuple(t.tid for t in batch)
        recs = self.records
        for t in batch:
            rec = TaskRecord(bid, b, j, False, 0.0, now, end)
            if cold:
                rec.cold = True
                rec.load_wait = now - max(s.load_start, t.t_arrival)
            recs[t.tid] = rec
        s.state, s.key, s.batch, s.batch_id = _BUSY, key, ids, bid
        s.expected_end = now + expected
        self.in_service[bid] = now + expected
        out.append(BatchStart(bid, j, key, ids, now, end, cold))
        self._set_timer(j, TimerKind.BATCH_END, now, st, out)
