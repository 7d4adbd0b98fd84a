"""A plain driver of the GPU-server model over a list of arrivals, with a heap of timers (tests,
and the decision estimate's replay); the engine drives the model with SimPy timeouts instead."""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mecsim.sim.gpu.events import Event, Timer

if TYPE_CHECKING:
    from mecsim.sim.gpu.model import GPUServerModel


@dataclass(frozen=True)
class Arrival:
    t: float
    tid: int
    key: str
    steps: float = 1.0
    factor: float = 1.0
    priority: tuple[Any, Any] | None = None  # None: FIFO, (arrival time, 0)
    deadline: float = math.inf


def replay(
    model: GPUServerModel,
    arrivals: Sequence[Arrival] | Iterable[Arrival],
    on_event: Any = None,
    on_arrival: Any = None,
) -> list[Event]:
    """Drive ``model`` over ``arrivals`` with a heap of timers; returns every notice in order.

    Arrivals are processed before timers due at the same time (as the engine's arrival events,
    scheduled earlier, fire first). ``on_event(model, event)`` is called after each notice,
    ``on_arrival(model, arrival)`` after each submission has been handled.
    """
    arr = sorted(arrivals, key=lambda a: (a.t, a.tid))
    heap: list[tuple[float, int, int, Timer]] = []
    seq = 0
    notices: list[Event] = []

    def take(events: list[Event]) -> None:
        nonlocal seq
        for ev in events:
            if isinstance(ev, Timer):
                heapq.heappush(heap, (ev.t, 1, seq, ev))
                seq += 1
            else:
                notices.append(ev)
                if on_event is not None:
                    on_event(model, ev)

    i = 0
    while i < len(arr) or heap:
        if i < len(arr) and (not heap or arr[i].t <= heap[0][0]):
            a = arr[i]
            i += 1
            pr = a.priority if a.priority is not None else (a.t, 0.0)
            take(model.submit(a.tid, a.key, a.steps, a.t, a.factor, pr, a.deadline))
            if on_arrival is not None:
                on_arrival(model, a)
        else:
            t, _, _, tm = heapq.heappop(heap)
            take(model.fire(tm, t))
    return notices
