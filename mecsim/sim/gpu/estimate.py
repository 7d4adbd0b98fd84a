"""What the engine and the policies ask the GPU-server model ahead of time: the work in service,
the fluid backlog (the engine's ``backlog``) and the expected wait of a new task (a replay of a
copy of the server); part of :class:`~mecsim.sim.gpu.GPUServerModel`."""

from __future__ import annotations

import heapq
import math
from typing import TYPE_CHECKING, Any

from mecsim.sim.gpu.events import _LOADING, BatchStart, Timer, TimerKind, _Slot

if TYPE_CHECKING:
    from mecsim.sim.gpu.model import GPUServerModel


class EstimateMixin:
    """Backlog and expected wait of :class:`~mecsim.sim.gpu.GPUServerModel`."""

    def remaining_work(self, now: float) -> float:
        """Expected service still ahead of the batches in service (s), summed in start order."""
        rem = 0.0
        for end in self.in_service.values():
            if end > now:
                rem += end - now
        return rem

    def expected_wait(
        self,
        key: str,
        now: float,
        steps: float | None = None,
        priority: tuple[Any, Any] = (math.inf, math.inf),
    ) -> float:
        """Expected time before a task of ``key`` arriving now would start (s).

        Replays a copy of the server with expected service times (jitter of queued tasks not
        known in advance, in-service batches at their expected end), no further arrivals, and
        the new task queued behind tasks of equal priority. It therefore includes the load of the
        key's items if no GPU holds them and the chance to join a batch of the same key.
        """
        if key not in self.cfg.models:
            return math.inf
        if not self.up:
            return math.inf
        sim = self._clone()
        heap: list[tuple[float, int, Timer]] = []  # (time, sequence, timer): FIFO among ties
        seq = 0
        for s in sim.slots:
            if s.timer is not None:
                t = max(now, s.expected_end) if s.timer.kind == TimerKind.BATCH_END else s.timer.t
                heapq.heappush(heap, (t, seq, s.timer))
                seq += 1
        probe = -1
        steps_ = float(steps) if steps is not None else 1.0
        events = sim.submit(probe, key, steps_, now, priority=priority)
        t = now
        while True:
            for ev in events:
                if isinstance(ev, BatchStart) and probe in ev.tasks:
                    return t - now
                if isinstance(ev, Timer):
                    heapq.heappush(heap, (ev.t, seq, ev))
                    seq += 1
            if not heap:
                break
            t, _, tm = heapq.heappop(heap)
            events = sim.fire(tm, t)
        return math.inf  # the probe was dropped (cannot happen without deadlines)

    def fluid_backlog(self, now: float, transit: int = 0, transit_work: float = 0.0) -> float:
        """Today's engine backlog (work / slots), with the same float operations; loads in progress
        count with their remaining time (there are none without residency)."""
        if self.occupied + self._n_queued + transit < self.cfg.slots:
            return 0.0
        rem = self.remaining_work(now)
        if self._n_claiming:
            for s in self.slots:
                if s.state == _LOADING and s.timer is not None and s.timer.t > now:
                    rem += s.timer.t - now
        return (rem + self.queued_work + transit_work) / self.cfg.slots

    def _clone(self) -> GPUServerModel:
        """A copy of the live state only (no history), for :meth:`expected_wait`."""
        c = object.__new__(type(self))
        c.cfg = self.cfg
        c.slots = [
            _Slot(
                x.state,
                x.key,
                x.token,
                x.timer,
                x.expected_end,
                x.batch,
                x.batch_id,
                {i: list(r) for i, r in x.resident.items()},
                x.used_gib,
                x.load_start,
            )
            for x in self.slots
        ]
        c.queues = {k: list(q) for k, q in self.queues.items()}
        c.tasks = dict(self.tasks)  # shared task objects: the clone never changes them
        c._expected_only = True
        c.records = {}
        c.loads, c.evictions = [], []
        c.queued_work = self.queued_work
        c.in_service = dict(self.in_service)
        c.up = self.up
        c._tick, c._next_batch, c._n_queued = self._tick, self._next_batch, self._n_queued
        c._n_claiming, c._cap, c._always_warm = self._n_claiming, self._cap, self._always_warm
        return c
