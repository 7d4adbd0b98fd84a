"""The GPU-server model's events and records: the timers it hands the caller to fire back, the
notices it returns (batch start and end, load start, drop), and its records per task and per GPU."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum

_IDLE, _LOADING, _WAITING, _BUSY = 0, 1, 2, 3  # states of a GPU (_Slot.state)


class TimerKind(IntEnum):
    BATCH_END = 0
    LOAD_END = 1
    FILL_TIMEOUT = 2


@dataclass(frozen=True, slots=True)
class Timer:
    """Fire back with ``model.fire(timer, now)`` at ``t``; schedule it as a delay of ``delay``
    from the time it was returned (``t = now + delay``; pass ``delay`` to a timeout so the event
    time is computed exactly as before)."""

    t: float
    delay: float
    kind: TimerKind
    slot: int
    token: int


@dataclass(frozen=True, slots=True)
class BatchStart:
    batch_id: int
    slot: int
    key: str
    tasks: tuple[int, ...]
    t: float
    t_end: float
    cold: bool


@dataclass(frozen=True, slots=True)
class BatchEnd:
    batch_id: int
    slot: int
    tasks: tuple[int, ...]
    t: float


@dataclass(frozen=True, slots=True)
class LoadStart:
    slot: int
    key: str
    items: tuple[str, ...]
    evicted: tuple[str, ...]
    t: float
    t_end: float


@dataclass(frozen=True, slots=True)
class Dropped:
    task: int
    t: float


Event = Timer | BatchStart | BatchEnd | LoadStart | Dropped


@dataclass(slots=True)
class TaskRecord:
    """Per task: its batch, whether it waited for a load (cold start) and how long."""

    batch_id: int = -1
    batch_size: int = 0
    slot: int = -1
    cold: bool = False
    load_wait: float = 0.0
    t_start: float = math.nan
    t_end: float = math.nan


@dataclass(slots=True)
class _Task:
    tid: int
    key: str
    steps: float
    factor: float
    deadline: float
    t_arrival: float
    expected: float  # batch-1 expected service (steps * seconds_per_step)


@dataclass(slots=True)
class _Slot:
    state: int = _IDLE
    key: str = ""
    token: int = 0
    timer: Timer | None = None
    expected_end: float = 0.0
    batch: tuple[int, ...] = ()
    batch_id: int = -1
    resident: dict[str, list[float]] = field(default_factory=dict)  # item -> [last use, count, loaded at]
    used_gib: float = 0.0
    load_start: float = 0.0
