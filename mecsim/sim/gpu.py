"""The GPU-server model: batching, model residency and loads, without SimPy.

A server has ``slots`` GPUs. Each GPU (slot) has its own memory and its own resident set of model
weights ("items": a base model or an adapter such as a LoRA or ControlNet, see models/aigc.yaml).
Tasks are submitted with a *key* (the model a request asks for, with its adapter if any); the key
names the items that must be resident and the batch-1 step time and batch factors on this GPU.

Rules (one place, so the engine, the tests and the decision estimate all use the same ones):

- Queues: one per key, each ordered by the task's ``priority`` tuple then task id (the engine passes
  ``(epoch, expected service)`` for epoch-SPT or ``(arrival time, 0)`` for FIFO).
- Dispatch, whenever a GPU is idle: take the highest-priority head among the keys that still have
  unclaimed tasks (a key is claimed by a GPU loading it or waiting to fill a batch of it, for up to one
  batch). Choose the idle GPU: one where all the key's items are resident (lowest index), else the
  one with the least to load. A warm GPU starts a batch at once; a cold one first loads the missing
  items (evicting as needed) and starts the batch when the load ends (tasks of the key that arrived
  meanwhile join it). With ``batch_timeout_s > 0`` a warm GPU whose batch is not full waits up to
  the timeout for more tasks of the key (the batch starts as soon as it is full).
- Batch: up to ``max_batch`` tasks of the key, in queue order. It runs ``max(steps)`` denoising
  steps at ``seconds_per_step * factor(b)`` per step (static batching: every task of the batch
  ends together), times the jitter factor of its first task. With b = 1 this is exactly the
  engine's ``steps * t_step * factor``.
- Eviction, when a load needs memory: among the GPU's resident items not needed by the key being
  loaded, the least recently used (``lru``), the least frequently used with ties to the least
  recent (``lfu``; counts are per task served and reset on eviction), or the first loaded
  (``fifo``, the recency-blind baseline). A GPU that loads serves nothing meanwhile, so an item in
  use is never evicted.
- Continuous (step-level) batching is not modelled: the profiles (models/gpus.yaml) measure static
  batches of b images only, and no public measurement of the cost of joining a running batch at a
  step boundary was found.

Wiring into the engine (:class:`mecsim.sim.server.ModelServer`, used when ``service.batching`` or
``service.residency`` is on or requests carry adapters): one model per server, built by
:func:`server_config` from
:func:`load_serving_data` and the scenario; ``ModelServer.arrive`` calls :meth:`GPUServerModel.submit`
with ``priority=(epoch, expected)`` (epoch-SPT) or ``(now, 0.0)`` (FIFO) and the task's jitter
factor and deadline; each returned :class:`Timer` becomes ``env.timeout(timer.delay)`` whose
callback calls :meth:`GPUServerModel.fire`; :class:`BatchStart` sets the tasks' service start,
:class:`BatchEnd` finishes them (``pop_record`` gives batch id and size, cold start, load wait),
:class:`Dropped` drops an expired task; ``backlog`` is :meth:`GPUServerModel.fluid_backlog`.
With batching and residency off this reproduces today's start and end times and backlog bit for
bit (tests/test_gpu_model.py).

The model never schedules anything itself. Its methods return *events*: :class:`Timer` objects the
caller must fire back (``fire(timer, now)``) at ``now + timer.delay``, and notices
(:class:`BatchStart`, :class:`BatchEnd`, :class:`LoadStart`, :class:`Dropped`). :func:`replay`
drives a model over a list of arrivals with a plain heap; the engine drives it with SimPy timeouts.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Literal

Eviction = Literal["lru", "lfu", "fifo"]

_IDLE, _LOADING, _WAITING, _BUSY = 0, 1, 2, 3


# ---------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class StepCurve:
    """Step time of a batch relative to batch 1, at profiled batch sizes (linear in between).

    Example:
        >>> c = StepCurve.from_table({1: 1.0, 2: 1.593, 4: 2.839})
        >>> c.max_batch, c.factor(1), round(c.factor(3), 3)
        (4, 1.0, 2.216)
    """

    sizes: tuple[int, ...] = (1,)
    factors: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        if not self.sizes or self.sizes[0] != 1 or self.factors[0] != 1.0:
            raise ValueError(
                f"batch_factor: must start at batch 1 with factor 1.0 (got {self.sizes}, {self.factors})"
            )
        if len(self.sizes) != len(self.factors):
            raise ValueError("batch_factor: sizes and factors differ in length")
        if any(b <= a for a, b in zip(self.sizes, self.sizes[1:], strict=False)):
            raise ValueError(f"batch_factor: batch sizes must increase (got {self.sizes})")
        if any(f <= 0 or not math.isfinite(f) for f in self.factors):
            raise ValueError(f"batch_factor: factors must be positive and finite (got {self.factors})")

    @classmethod
    def from_table(cls, table: Mapping[int, float] | None) -> StepCurve:
        """From a {batch size: factor} mapping (models/gpus.yaml); empty or None: batch 1 only."""
        if not table:
            return cls()
        items = sorted((int(b), float(f)) for b, f in table.items())
        return cls(tuple(b for b, _ in items), tuple(f for _, f in items))

    @property
    def max_batch(self) -> int:
        return self.sizes[-1]

    def factor(self, b: int) -> float:
        """Time of a batch of b relative to batch 1 (exactly 1.0 for b = 1)."""
        if b == 1:
            return 1.0
        if b < 1 or b > self.sizes[-1]:
            raise ValueError(f"batch size {b} outside the profiled 1..{self.sizes[-1]}")
        s, f = self.sizes, self.factors
        for k in range(1, len(s)):
            if b <= s[k]:
                return f[k - 1] + (f[k] - f[k - 1]) * (b - s[k - 1]) / (s[k] - s[k - 1])
        return f[-1]  # pragma: no cover - b == sizes[-1] is caught above


@dataclass(frozen=True)
class Item:
    """Something that can be resident on a GPU: model weights, or an adapter on a ``base``
    (evicting a base evicts its adapters with it: they are useless without it)."""

    name: str
    memory_gib: float
    load_s: float
    base: str | None = None


@dataclass(frozen=True)
class ServedModel:
    """What a task key needs on this server: resident items and its step-time profile."""

    key: str
    items: tuple[str, ...]
    seconds_per_step: float
    curve: StepCurve = StepCurve()


@dataclass(frozen=True)
class ServerConfig:
    """One server's GPU model.

    Args:
        slots: GPUs (each with its own memory and resident set).
        models: the keys served, by name.
        items: the loadable items, by name (every item a model uses must be here).
        memory_gib: memory per GPU for resident weights (``inf``: ample).
        max_batch: a cap on the batch size (1: batching off); the effective maximum of a key is
            ``min(max_batch, curve.max_batch)``.
        batch_timeout_s: how long an idle warm GPU waits to fill a batch (0: start at once).
        eviction: ``"lru"``, ``"lfu"`` or ``"fifo"``.
        preload: items resident on every GPU at time 0 and after a recovery (None: all items, which
            must then fit).
        drop_expired: drop a task whose deadline has passed when its batch would start (the
            engine's ``deadline_action: drop``).
    """

    slots: int
    models: Mapping[str, ServedModel]
    items: Mapping[str, Item] = field(default_factory=dict)
    memory_gib: float = math.inf
    max_batch: int = 1
    batch_timeout_s: float = 0.0
    eviction: Eviction = "lru"
    preload: tuple[str, ...] | None = None
    drop_expired: bool = False

    def __post_init__(self) -> None:
        if self.slots < 1:
            raise ValueError(f"slots: must be at least 1 (got {self.slots})")
        if self.max_batch < 1:
            raise ValueError(f"max_batch: must be at least 1 (got {self.max_batch})")
        if not self.batch_timeout_s >= 0:
            raise ValueError(f"batch_timeout_s: must be >= 0 (got {self.batch_timeout_s})")
        if self.eviction not in ("lru", "lfu", "fifo"):
            raise ValueError(f"eviction: must be lru, lfu or fifo (got {self.eviction!r})")
        if not self.memory_gib > 0:
            raise ValueError(f"memory_gib: must be positive (got {self.memory_gib})")
        for it in self.items.values():
            if it.memory_gib < 0 or it.load_s < 0:
                raise ValueError(f"items.{it.name}: memory_gib and load_s must be >= 0")
            if it.base is not None and it.base not in self.items:
                raise ValueError(f"items.{it.name}: unknown base {it.base!r}")
        for m in self.models.values():
            missing = [i for i in m.items if i not in self.items]
            if missing:
                raise ValueError(f"models.{m.key}: unknown item(s) {missing}")
            need = sum(self.items[i].memory_gib for i in m.items)
            if need > self.memory_gib:
                raise ValueError(
                    f"models.{m.key}: needs {need:g} GiB, more than memory_gib {self.memory_gib:g}"
                )
            if not m.seconds_per_step > 0:
                raise ValueError(f"models.{m.key}: seconds_per_step must be positive")
        pre = self.preload_items
        unknown = [i for i in pre if i not in self.items]
        if unknown:
            raise ValueError(f"preload: unknown item(s) {unknown}")
        total = sum(self.items[i].memory_gib for i in pre)
        if total > self.memory_gib:
            raise ValueError(
                f"preload: {total:g} GiB does not fit memory_gib {self.memory_gib:g}"
                + (" (no preload given: all items)" if self.preload is None else "")
            )

    @property
    def preload_items(self) -> tuple[str, ...]:
        return tuple(self.items) if self.preload is None else tuple(self.preload)

    def batch_cap(self, key: str) -> int:
        return min(self.max_batch, self.models[key].curve.max_batch)

    @classmethod
    def simple(cls, slots: int, seconds_per_step: Mapping[str, float], **kw: Any) -> ServerConfig:
        """Each key its own zero-size, instant-load item: today's server (ample memory)."""
        items = {k: Item(k, 0.0, 0.0) for k in seconds_per_step}
        models = {k: ServedModel(k, (k,), float(v)) for k, v in seconds_per_step.items()}
        return cls(slots=slots, models=models, items=items, **kw)


# ---------------------------------------------------------------------------------------------
# events and records


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


# ---------------------------------------------------------------------------------------------
# the model


class GPUServerModel:
    """One server's GPUs, queues, batches and resident sets (see the module docstring).

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

    def resident(self, slot: int) -> tuple[str, ...]:
        return tuple(self.slots[slot].resident)

    def in_service_tasks(self) -> tuple[int, ...]:
        """Tasks in a running batch (GPU order), e.g. for the energy of a partial service."""
        return tuple(tid for s in self.slots for tid in s.batch)

    def warm(self, key: str) -> bool:
        """Some GPU holds every item the key needs (loaded, or loading)."""
        return any(not self._missing(s, key) for s in self.slots)

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

    def load_cost(self, key: str) -> float:
        """Load time of the key's items missing on the GPU that misses the least (0 if warm)."""
        return min(self._missing_load(s, key) for s in self.slots)

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

    def pop_record(self, tid: int) -> TaskRecord:
        """Hand a finished task's record over (the engine copies it into its columns)."""
        return self.records.pop(tid)

    # -- internals ----------------------------------------------------------------------------
    def _clone(self) -> GPUServerModel:
        """A copy of the live state only (no history), for :meth:`expected_wait`."""
        c = object.__new__(GPUServerModel)
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

    def _next_tick(self) -> int:
        self._tick += 1
        return self._tick

    def _reset_residency(self, now: float) -> None:
        for s in self.slots:
            s.resident = {}
            s.used_gib = 0.0
            for name in self.cfg.preload_items:
                s.resident[name] = [0.0, 0.0, float(self._next_tick())]
                s.used_gib += self.cfg.items[name].memory_gib

    def _missing(self, s: _Slot, key: str) -> list[str]:
        return [i for i in self.cfg.models[key].items if i not in s.resident]

    def _missing_load(self, s: _Slot, key: str) -> float:
        return sum(self.cfg.items[i].load_s for i in self._missing(s, key))

    def _warm_idle_slot(self, key: str) -> int | None:
        if self._always_warm:
            for j, s in enumerate(self.slots):
                if s.state == _IDLE:
                    return j
            return None
        for j, s in enumerate(self.slots):
            if s.state == _IDLE and not self._missing(s, key):
                return j
        return None

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

    def _victim(self, s: _Slot, protect: set[str]) -> str:
        cands = [i for i in s.resident if i not in protect]
        if not cands:  # pragma: no cover - excluded by the config check (the key fits alone)
            raise RuntimeError("no evictable item")
        r = s.resident
        if self.cfg.eviction == "lru":
            return min(cands, key=lambda i: (r[i][0], r[i][2]))
        if self.cfg.eviction == "lfu":
            return min(cands, key=lambda i: (r[i][1], r[i][0], r[i][2]))
        return min(cands, key=lambda i: r[i][2])

    def _start_load(self, j: int, key: str, now: float, out: list[Event]) -> None:
        cfg = self.cfg
        s = self.slots[j]
        need = self._missing(s, key)
        protect = set(cfg.models[key].items)
        add = sum(cfg.items[i].memory_gib for i in need)
        evicted: list[str] = []
        while s.used_gib + add > cfg.memory_gib + 1e-9:
            v = self._victim(s, protect)
            for w in [v] + [i for i in s.resident if cfg.items[i].base == v and i not in protect]:
                s.used_gib -= cfg.items[w].memory_gib
                del s.resident[w]
                evicted.append(w)
                self.evictions.append((now, j, w))
        tick = float(self._next_tick())
        for i in need:  # reserved now; 'loaded at' set when the load ends
            s.resident[i] = [tick, 0.0, math.nan]
        s.used_gib += add
        delay = sum(cfg.items[i].load_s for i in need)
        s.state, s.key, s.load_start = _LOADING, key, now
        self._n_claiming += 1
        ev = LoadStart(j, key, tuple(need), tuple(evicted), now, now + delay)
        self.loads.append(ev)
        out.append(ev)
        self._set_timer(j, TimerKind.LOAD_END, now, delay, out)

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


# ---------------------------------------------------------------------------------------------
# from the shipped data (models/gpus.yaml `serving`, models/aigc.yaml `weights` and `uses`)


@dataclass(frozen=True)
class ServingData:
    """The serving sections of models/: per GPU memory, workspace and batch factors; per item
    footprint, load time and base; per model the items it uses."""

    gpus: Mapping[str, Mapping[str, Any]]
    items: Mapping[str, Item]
    uses: Mapping[str, tuple[str, ...]]

    def usable_gib(self, gpu: str) -> float:
        g = self.gpus[gpu]
        return float(g["memory_gib"]) - float(g["workspace_gib"])

    def curve(self, gpu: str, model: str) -> StepCurve:
        return StepCurve.from_table(self.gpus[gpu].get("batch_factor", {}).get(model))


def load_serving_data(overlay: Any = None) -> ServingData:
    """Read the serving sections of models/aigc.yaml and models/gpus.yaml (errors name the field).

    ``overlay``: a scenario's :class:`~mecsim.scenario.Profiles`; its ``serving``, ``weights`` and
    ``uses`` entries replace (or add) the shipped ones of the same name."""
    from mecsim.scenario import _load_yaml_file, data_dir  # light: scenario is always imported

    root = data_dir("models")
    raw_g = dict((_load_yaml_file(root / "gpus.yaml") or {}).get("serving", {}) or {})
    raw_m = dict(_load_yaml_file(root / "aigc.yaml") or {})
    if overlay is not None:
        raw_g.update({k: v.model_dump() for k, v in overlay.serving.items()})
        raw_m["weights"] = {
            **(raw_m.get("weights") or {}),
            **{k: v.model_dump() for k, v in overlay.weights.items()},
        }
        raw_m["uses"] = {**(raw_m.get("uses") or {}), **{k: list(v) for k, v in overlay.uses.items()}}
    items: dict[str, Item] = {}
    for name, v in (raw_m.get("weights") or {}).items():
        try:
            items[name] = Item(name, float(v["memory_gib"]), float(v["load_s"]), v.get("base"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"models/aigc.yaml weights.{name}: needs memory_gib and load_s ({exc})"
            ) from None
    uses = {k: tuple(v) for k, v in (raw_m.get("uses") or {}).items()}
    for k, v in uses.items():
        for i in v:
            if i not in items:
                raise ValueError(f"models/aigc.yaml uses.{k}: unknown weights {i!r}")
    for g, v in raw_g.items():
        for f in ("memory_gib", "workspace_gib"):
            if f not in v:
                raise ValueError(f"models/gpus.yaml serving.{g}.{f}: missing")
        for mname, table in (v.get("batch_factor") or {}).items():
            try:
                StepCurve.from_table(table)
            except ValueError as exc:
                raise ValueError(f"models/gpus.yaml serving.{g}.batch_factor.{mname}: {exc}") from None
    return ServingData(raw_g, items, uses)


def server_config(
    data: ServingData,
    gpu: str,
    slots: int,
    seconds_per_step: Mapping[str, float],
    *,
    batching: bool = False,
    max_batch: int | None = None,
    batch_timeout_s: float = 0.0,
    residency: bool = False,
    eviction: Eviction = "lru",
    preload: Sequence[str] | None = None,
    drop_expired: bool = False,
    extra_keys: Mapping[str, tuple[str, ...]] | None = None,
) -> ServerConfig:
    """A server's config from the shipped data and the scenario's choices.

    With ``batching=False`` and ``residency=False`` (the defaults) it is today's server: batch 1,
    ample memory, every hosted model resident and nothing to load. ``seconds_per_step`` is the
    server's hosted models (the ``gpus`` profile); ``extra_keys`` adds keys such as
    ``"sd15+sd15-lora#3" -> ("sd15", "sd15-lora#3")`` (from :meth:`ModelMix.keys`), whose adapter
    items take the size and load time of their kind (the name before ``#``). With residency and
    no ``preload``, each GPU starts with the hosted models' weights in the listed order, as many as
    fit in ``memory_gib - workspace_gib``.
    """
    if not residency:
        cfg = ServerConfig.simple(slots, seconds_per_step, drop_expired=drop_expired)
        models = dict(cfg.models)
        for key in extra_keys or {}:
            base = key.split("+", 1)[0]
            models[key] = ServedModel(key, (base,), float(seconds_per_step[base]))
        cfg = ServerConfig(slots=slots, models=models, items=cfg.items, drop_expired=drop_expired)
    else:
        items: dict[str, Item] = {}
        models = {}

        def item(name: str) -> Item:
            kind = name.split("#", 1)[0]
            if kind not in data.items:
                raise ValueError(f"weights.{kind}: not in models/aigc.yaml")
            it = data.items[kind]
            return Item(name, it.memory_gib, it.load_s, it.base)

        keys = {m: data.uses.get(m, (m,)) for m in seconds_per_step}
        keys.update(extra_keys or {})
        for key, its in keys.items():
            base = key.split("+", 1)[0]
            for i in its:
                items.setdefault(i, item(i))
            models[key] = ServedModel(key, tuple(its), float(seconds_per_step[base]))
        mem = data.usable_gib(gpu)
        if preload is None:  # the hosted models' weights in the listed order, while they fit
            pre: list[str] = []
            used = 0.0
            for i in dict.fromkeys(i for m in seconds_per_step for i in keys[m]):
                if used + items[i].memory_gib <= mem:
                    pre.append(i)
                    used += items[i].memory_gib
            preload = pre
        cfg = ServerConfig(
            slots=slots,
            models=models,
            items=items,
            memory_gib=mem,
            eviction=eviction,
            drop_expired=drop_expired,
            preload=tuple(preload),
        )
    if batching:
        models = {
            k: ServedModel(k, m.items, m.seconds_per_step, data.curve(gpu, k.split("+", 1)[0]))
            for k, m in cfg.models.items()
        }
        cap = max_batch if max_batch is not None else max(m.curve.max_batch for m in models.values())
        cfg = ServerConfig(
            slots=slots,
            models=models,
            items=cfg.items,
            memory_gib=cfg.memory_gib,
            max_batch=cap,
            batch_timeout_s=batch_timeout_s,
            eviction=cfg.eviction,
            preload=cfg.preload,
            drop_expired=drop_expired,
        )
    return cfg


# ---------------------------------------------------------------------------------------------
# a plain driver (tests, and the decision estimate's replay)


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
