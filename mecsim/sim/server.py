"""GPU servers: slots, a queue (epoch shortest-first or FIFO), service, failure; and the servers
of a run (:func:`build_servers`). Servers driven by the GPU-server model (batching, residency,
adapters) are in :mod:`mecsim.sim.gpu.server`."""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mecsim.sim.core import Simulation


class GPUServer:
    """One AIGC server: ``slots`` GPU slots and a queue (epoch-SPT or FIFO)."""

    __slots__ = (
        "sim",
        "j",
        "slots",
        "busy",
        "queue",
        "in_service",
        "transit",
        "transit_work",
        "queued_work",
        "fifo",
        "power_w",
        "up",
        "gen",
    )

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
        exp = float(sim.expected_service[i])  # Python floats: the same values, cheaper arithmetic
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
        st = float(sim.actual_service[i])  # a Python float keeps the clock a Python float
        sim.T_service_start[i] = now
        self.in_service[tid] = now + float(sim.expected_service[i])
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
            self.queued_work -= float(sim.expected_service[nxt - sim._base])
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


def build_servers(sim: Simulation, gpus: dict[str, Any], fifo: bool) -> list[Any]:
    """The servers of a run: :class:`GPUServer` (today's fast path) unless the scenario turns on
    batching or residency or its requests carry adapters; then
    :func:`~mecsim.sim.gpu.server.model_servers` (a :class:`~mecsim.sim.gpu.server.ModelServer`
    over a :class:`~mecsim.sim.gpu.GPUServerModel` per server)."""
    if not sim.gpu_mode:
        return [
            GPUServer(sim, j, int(sim.slots[j]), float(sim.server_power[j]), fifo)
            for j in range(len(sim.sc.servers))
        ]
    from mecsim.sim.gpu.server import model_servers

    return model_servers(sim, gpus, fifo)
