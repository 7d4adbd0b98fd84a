"""The GPU-server model (mecsim.sim.gpu): today's queue as a special case, a bulk-service closed
form, cache replays for the cold starts, and properties of residency and task accounting."""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mecsim.sim.gpu import (
    Arrival,
    BatchEnd,
    BatchStart,
    Dropped,
    GPUServerModel,
    Item,
    LoadStart,
    ServedModel,
    ServerConfig,
    StepCurve,
    replay,
)


def starts_ends(model: GPUServerModel) -> tuple[dict[int, float], dict[int, float]]:
    return ({t: r.t_start for t, r in model.records.items()}, {t: r.t_end for t, r in model.records.items()})


# -- 1. batching off, one model, ample memory: today's c-slot queue -----------------------------


def plain_queue(arrivals: list[tuple[float, int, float, tuple]], c: int) -> dict[int, tuple[float, float]]:
    """Reference: a c-server queue, priority order, arrivals before service ends at equal times."""
    arrivals = sorted(arrivals, key=lambda a: (a[0], a[1]))
    ends: list[tuple[float, int]] = []  # (end, tid)
    queue: list[tuple[tuple, int, float]] = []
    out: dict[int, tuple[float, float]] = {}
    i = 0
    while i < len(arrivals) or ends:
        if i < len(arrivals) and (not ends or arrivals[i][0] <= ends[0][0]):
            t, tid, svc, pr = arrivals[i]
            i += 1
            if len(ends) < c and not queue:
                out[tid] = (t, t + svc)
                heapq.heappush(ends, (t + svc, tid))
            else:
                heapq.heappush(queue, (pr, tid, svc))
        else:
            t, _ = heapq.heappop(ends)
            if queue:
                _, tid, svc = heapq.heappop(queue)
                out[tid] = (t, t + svc)
                heapq.heappush(ends, (t + svc, tid))
    return out


HAND = [(0.0, 0, 4.0), (0.0, 1, 2.0), (1.0, 2, 3.0), (1.0, 3, 1.0), (2.0, 4, 2.0)]


def test_hand_computed_fifo_two_slots():
    # by hand: 0,1 start at 0 (end 4, 2); at 2 task 2 (queued first) starts, ends 5; at 4 task 3
    # starts, ends 5; at 5 task 4 starts, ends 7.
    m = GPUServerModel(ServerConfig.simple(2, {"u": 1.0}))
    replay(m, [Arrival(t, tid, "u", steps=s) for t, tid, s in HAND])
    s, e = starts_ends(m)
    assert s == {0: 0.0, 1: 0.0, 2: 2.0, 3: 4.0, 4: 5.0}
    assert e == {0: 4.0, 1: 2.0, 2: 5.0, 3: 5.0, 4: 7.0}
    assert all(r.batch_size == 1 and not r.cold for r in m.records.values())
    assert not m.loads and not m.evictions


def test_hand_computed_epoch_spt_two_slots():
    # one epoch, shortest first: at 2 task 3 (1 s), at 3 task 4 (2 s), at 4 task 2 (3 s)
    m = GPUServerModel(ServerConfig.simple(2, {"u": 1.0}))
    replay(m, [Arrival(t, tid, "u", steps=s, priority=(0, s)) for t, tid, s in HAND])
    s, _ = starts_ends(m)
    assert s == {0: 0.0, 1: 0.0, 3: 2.0, 4: 3.0, 2: 4.0}


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 3),
    st.booleans(),
    st.lists(st.tuples(st.integers(0, 20), st.integers(1, 6), st.integers(0, 2)), min_size=1, max_size=25),
)
def test_batching_off_equals_plain_queue(c, spt, raw):
    arr, ref_in = [], []
    for tid, (t, steps, epoch) in enumerate(raw):
        t = float(t) / 2
        svc = steps * 0.25
        pr = (epoch, svc) if spt else (t, 0.0)
        arr.append(Arrival(t, tid, "u", steps=steps, priority=pr))
        ref_in.append((t, tid, svc, pr))
    m = GPUServerModel(ServerConfig.simple(c, {"u": 0.25}))
    replay(m, arr)
    ref = plain_queue(ref_in, c)
    got = {tid: (r.t_start, r.t_end) for tid, r in m.records.items()}
    assert got == ref


class EngineServer:
    """Today's engine server (mecsim/engine.py GPUServer), its queue and backlog bookkeeping
    written out with the same float operations, driven by arrivals and service ends."""

    def __init__(self, c: int) -> None:
        self.c, self.busy, self.queue, self.in_service, self.queued_work = c, 0, [], {}, 0.0

    def backlog(self, now: float) -> float:
        if self.busy + len(self.queue) < self.c:
            return 0.0
        rem = 0.0
        for end in self.in_service.values():
            if end > now:
                rem += end - now
        return (rem + self.queued_work + 0.0) / self.c


def engine_backlogs(arrivals, c):
    """(start, end) per task and the backlog right after each arrival, the engine's way."""
    srv = EngineServer(c)
    ends: list = []
    out, backlog = {}, {}
    arrivals = sorted(arrivals, key=lambda a: (a[0], a[1]))

    def start(tid, t, exp, act):
        srv.busy += 1
        srv.in_service[tid] = t + exp
        out[tid] = (t, t + act)
        heapq.heappush(ends, (t + act, tid))

    info = {}
    i = 0
    while i < len(arrivals) or ends:
        if i < len(arrivals) and (not ends or arrivals[i][0] <= ends[0][0]):
            t, tid, exp, act, pr = arrivals[i]
            i += 1
            info[tid] = (exp, act)
            if srv.busy < c and not srv.queue:
                start(tid, t, exp, act)
            else:
                heapq.heappush(srv.queue, (pr[0], pr[1], tid))
                srv.queued_work += exp
            backlog[tid] = srv.backlog(t)
        else:
            t, tid = heapq.heappop(ends)
            srv.busy -= 1
            del srv.in_service[tid]
            while srv.queue and srv.busy < c:
                _, _, nxt = heapq.heappop(srv.queue)
                srv.queued_work -= info[nxt][0]
                start(nxt, t, *info[nxt])
    return out, backlog


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 3),
    st.booleans(),
    st.lists(
        st.tuples(st.integers(0, 30), st.integers(1, 9), st.integers(0, 2), st.floats(0.5, 2.0)),
        min_size=1,
        max_size=30,
    ),
)
def test_batching_off_keeps_the_engines_backlog_bit_for_bit(c, spt, raw):
    """With jitter factors too: times and the backlog a policy sees are the same floats."""
    arr, ref_in = [], []
    for tid, (t, steps, epoch, f) in enumerate(raw):
        t = t / 3
        exp = steps * 0.173
        pr = (epoch, exp) if spt else (t, 0.0)
        arr.append(Arrival(t, tid, "u", steps=steps, factor=f, priority=pr))
        ref_in.append((t, tid, exp, exp * f, pr))
    m = GPUServerModel(ServerConfig.simple(c, {"u": 0.173}))
    seen = {}
    replay(m, arr, on_arrival=lambda mm, a: seen.__setitem__(a.tid, mm.fluid_backlog(a.t)))
    ref, ref_backlog = engine_backlogs(ref_in, c)
    assert {tid: (r.t_start, r.t_end) for tid, r in m.records.items()} == ref
    assert seen == ref_backlog


def test_negative_control_plain_queue_detects_a_changed_order():
    """The comparison can fail: serving LIFO instead of FIFO differs from the reference."""
    m = GPUServerModel(ServerConfig.simple(1, {"u": 1.0}))
    replay(m, [Arrival(t, tid, "u", steps=s, priority=(-t, 0)) for t, tid, s in HAND])
    got = {tid: (r.t_start, r.t_end) for tid, r in m.records.items()}
    assert got != plain_queue([(t, tid, s, (t, 0.0)) for t, tid, s in HAND], 1)


# -- 2. a deterministic batch server in closed form -------------------------------------------


def bulk_when_idle_wait(lam: float, d: float) -> tuple[float, float]:
    """Mean wait and mean batch size of a single server with Poisson(lam) arrivals that, when it
    becomes free, serves *all* waiting tasks in one batch of fixed duration d, and when idle starts
    a batch with the first arrival (unlimited batch size; the threshold-1 case of Neuts' general
    bulk-service rule, Neuts 1967, "A general class of bulk queues with Poisson input").

    Derivation (regenerative cycles, PASTA): a busy run is a chain of services of length d that
    continues while at least one task arrived during the last one (probability p = 1 - e^{-lam d}),
    so it holds N ~ Geometric(1 - p) services, E[N] = e^{lam d}; an idle period lasts 1/lam on
    average. The server is busy a fraction rho = d e^{lam d} / (d e^{lam d} + 1/lam) of the time; a
    task arriving to a busy server waits the residual of the current service (uniform on [0, d]:
    Poisson arrivals within a fixed interval), one arriving to an idle server waits 0. Hence
    W = rho d / 2. Batches per cycle E[N], tasks per cycle lam (d E[N] + 1/lam), so the mean
    batch size is (lam d e^{lam d} + 1) / e^{lam d}.
    """
    e = math.exp(lam * d)
    rho = d * e / (d * e + 1 / lam)
    return rho * d / 2, (lam * d * e + 1) / e


def simulate_bulk(lam: float, d: float, n: int, cap: int, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.exponential(1 / lam, n))
    curve = StepCurve((1, 1000), (1.0, 1.0))  # a batch takes d whatever its size (deterministic)
    cfg = ServerConfig(
        slots=1,
        models={"u": ServedModel("u", ("u",), d, curve)},
        items={"u": Item("u", 0.0, 0.0)},
        max_batch=cap,
    )
    m = GPUServerModel(cfg)
    replay(m, [Arrival(float(ti), i, "u", steps=1.0) for i, ti in enumerate(t)])
    wait = np.array([m.records[i].t_start - t[i] for i in range(n)])
    sizes = np.array([m.records[i].batch_size for i in range(n)])
    nb = len({m.records[i].batch_id for i in range(n)})
    cut = n // 10  # warm-up
    return float(wait[cut:].mean()), float(n / nb if sizes.size else 0.0)


def test_bulk_service_mean_wait_matches_closed_form():
    lam, d = 1.0, 1.0
    w_theory, b_theory = bulk_when_idle_wait(lam, d)  # 0.3655, 1.368
    w, b = simulate_bulk(lam, d, 60_000, cap=1000, seed=1)
    assert w == pytest.approx(w_theory, rel=0.03)
    assert b == pytest.approx(b_theory, rel=0.02)


def test_bulk_negative_control_batching_off_is_md1():
    """With batching off the same server is M/D/1: its mean wait is Pollaczek-Khinchine's
    rho d / (2 (1 - rho)) (0.5 at rho = 0.5), far from the bulk formula (0.226) the test above
    checks, so that test would catch a server that does not batch."""
    lam, d = 0.5, 1.0
    w_bulk, _ = bulk_when_idle_wait(lam, d)
    w, b = simulate_bulk(lam, d, 60_000, cap=1, seed=2)
    assert b == 1.0
    assert w == pytest.approx(lam * d * d / (2 * (1 - lam * d)), rel=0.06)
    assert abs(w - w_bulk) > 0.2


def test_hand_computed_batches_with_factors_and_timeout():
    # step factors 1, 1.5 (b=2), 2.5 (b=4); max batch 4; 1 s per step, 2 steps; timeout 0.5 s.
    curve = StepCurve.from_table({1: 1.0, 2: 1.5, 4: 2.5})
    cfg = ServerConfig(
        slots=1,
        models={"u": ServedModel("u", ("u",), 1.0, curve)},
        items={"u": Item("u", 0.0, 0.0)},
        max_batch=4,
        batch_timeout_s=0.5,
    )
    m = GPUServerModel(cfg)
    # t=0: task 0 alone -> waits to 0.5 (timeout) -> batch {0,1} (1 arrived at 0.2): 2 x 1.5 = 3 s,
    # ends 3.5. Tasks 2..6 arrive at 1.0..1.4 -> at 3.5 batch {2,3,4,5} (full: starts at once):
    # 2 x 2.5 = 5 s, ends 8.5; task 6 -> at 8.5 alone, waits to 9.0, then 2 s: ends 11.
    arr = [Arrival(0.0, 0, "u", 2), Arrival(0.2, 1, "u", 2)]
    arr += [Arrival(1.0 + 0.1 * k, 2 + k, "u", 2) for k in range(5)]
    replay(m, arr)
    r = m.records
    assert [r[i].batch_size for i in range(7)] == [2, 2, 4, 4, 4, 4, 1]
    assert r[0].t_start == 0.5 and r[0].t_end == 3.5
    assert r[2].t_start == 3.5 and r[2].t_end == 8.5
    assert r[6].t_start == 9.0 and r[6].t_end == 11.0
    # a batch the factor interpolates: b = 3 -> 1.5 + (2.5 - 1.5) / 2 = 2.0
    assert curve.factor(3) == 2.0


# -- 3. cold starts: the model against a direct cache replay ----------------------------------


def lru_misses(seq: list[str], size: dict[str, float], cap: float) -> int:
    cache: OrderedDict[str, float] = OrderedDict()
    misses = 0
    for x in seq:
        if x in cache:
            cache.move_to_end(x)
            continue
        misses += 1
        while sum(cache.values()) + size[x] > cap:
            cache.popitem(last=False)
        cache[x] = size[x]
    return misses


def lfu_misses(seq: list[str], size: dict[str, float], cap: float) -> int:
    count: dict[str, int] = {}
    last: dict[str, int] = {}
    misses = 0
    for i, x in enumerate(seq):
        if x not in count:
            misses += 1
            while sum(size[k] for k in count) + size[x] > cap:
                v = min(count, key=lambda k: (count[k], last[k]))
                del count[v], last[v]
            count[x] = 0
        count[x] += 1
        last[x] = i
    return misses


def cache_server(sizes: dict[str, float], cap: float, eviction: str) -> GPUServerModel:
    items = {k: Item(k, v, 1.0) for k, v in sizes.items()}
    models = {k: ServedModel(k, (k,), 1.0) for k in sizes}
    return GPUServerModel(
        ServerConfig(slots=1, models=models, items=items, memory_gib=cap, eviction=eviction, preload=())
    )


def cold_count(seq: list[str], sizes: dict[str, float], cap: float, eviction: str) -> int:
    m = cache_server(sizes, cap, eviction)
    # all requests at time 0, served in order (FIFO by task id), one at a time
    replay(m, [Arrival(0.0, i, k) for i, k in enumerate(seq)])
    assert len(m.loads) == sum(r.cold for r in m.records.values())
    return sum(r.cold for r in m.records.values())


SIZES = {"a": 2.0, "b": 1.0, "c": 1.5, "d": 3.0, "e": 0.5}


@settings(max_examples=80, deadline=None)
@given(st.lists(st.sampled_from(sorted(SIZES)), min_size=1, max_size=40), st.sampled_from([3.0, 4.0, 5.5]))
def test_cold_starts_lru_and_lfu_match_a_direct_replay(seq, cap):
    assert cold_count(seq, SIZES, cap, "lru") == lru_misses(seq, SIZES, cap)
    assert cold_count(seq, SIZES, cap, "lfu") == lfu_misses(seq, SIZES, cap)


def test_negative_control_fifo_eviction_disagrees_with_lru():
    # unit sizes, room for 2: A B A C A. LRU evicts B for C (A hits: 3 misses); FIFO evicts A (4).
    seq = list("ABACA")
    sizes = {k: 1.0 for k in "ABC"}
    assert lru_misses(seq, sizes, 2.0) == 3
    assert cold_count(seq, sizes, 2.0, "lru") == 3
    assert cold_count(seq, sizes, 2.0, "fifo") == 4


def test_adapter_loads_only_what_is_missing_and_keeps_its_base():
    items = {
        "sd15": Item("sd15", 2.0, 24.0),
        "lora": Item("lora", 0.125, 3.0, base="sd15"),
        "sdxl": Item("sdxl", 6.5, 32.0),
    }
    models = {
        "sd15": ServedModel("sd15", ("sd15",), 0.1),
        "sd15+lora": ServedModel("sd15+lora", ("sd15", "lora"), 0.1),
        "sdxl": ServedModel("sdxl", ("sdxl",), 0.1),
    }
    m = GPUServerModel(ServerConfig(slots=1, models=models, items=items, memory_gib=7.0, preload=("sd15",)))
    replay(m, [Arrival(0.0, 0, "sd15+lora", 10), Arrival(0.0, 1, "sdxl", 10), Arrival(0.0, 2, "sd15", 10)])
    assert [(ld.items, ld.evicted, ld.t_end - ld.t) for ld in m.loads] == [
        (("lora",), (), 3.0),  # base resident: the adapter only, 3 s
        (("sdxl",), ("sd15", "lora"), 32.0),  # sd15 out (LRU), and its adapter with it
        (("sd15",), ("sdxl",), 24.0),
    ]
    assert m.records[0].cold and m.records[0].load_wait == 3.0
    assert m.records[0].t_start == 3.0 and m.records[0].t_end == 4.0


# -- 4. properties ------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 3),
    st.integers(1, 4),
    st.sampled_from([0.0, 0.3]),
    st.sampled_from(["lru", "lfu", "fifo"]),
    st.sampled_from([3.5, 4.5, 8.0]),
    st.lists(
        st.tuples(st.integers(0, 40), st.sampled_from(["a", "b", "c", "ab"]), st.integers(1, 4)),
        min_size=1,
        max_size=30,
    ),
)
def test_residency_in_use_and_accounting(slots, cap_b, timeout, eviction, mem, raw):
    items = {"a": Item("a", 2.0, 1.0), "b": Item("b", 1.5, 0.7), "c": Item("c", 2.5, 1.3)}
    curve = StepCurve.from_table({1: 1.0, 2: 1.6, 4: 2.9})
    models = {
        "a": ServedModel("a", ("a",), 0.2, curve),
        "b": ServedModel("b", ("b",), 0.3, curve),
        "c": ServedModel("c", ("c",), 0.25, curve),
        "ab": ServedModel("ab", ("a", "b"), 0.2, curve),
    }
    cfg = ServerConfig(
        slots=slots,
        models=models,
        items=items,
        memory_gib=mem,
        max_batch=cap_b,
        batch_timeout_s=timeout,
        eviction=eviction,
        preload=(),
    )
    model = GPUServerModel(cfg)
    resident = [set() for _ in range(slots)]
    running: list[tuple | None] = [None] * slots
    finished: list[int] = []

    def check(m, ev):
        if isinstance(ev, LoadStart):
            assert running[ev.slot] is None  # a GPU serving a batch does not load
            for v in ev.evicted:
                assert v in resident[ev.slot] and v not in models[ev.key].items
                resident[ev.slot].discard(v)
            resident[ev.slot] |= set(ev.items)
            assert sum(items[i].memory_gib for i in resident[ev.slot]) <= mem + 1e-9
        elif isinstance(ev, BatchStart):
            assert running[ev.slot] is None
            assert set(models[ev.key].items) <= resident[ev.slot]
            assert 1 <= len(ev.tasks) <= cfg.batch_cap(ev.key)
            running[ev.slot] = ev.tasks
        elif isinstance(ev, BatchEnd):
            assert running[ev.slot] == ev.tasks
            running[ev.slot] = None
            finished.extend(ev.tasks)
        assert not isinstance(ev, Dropped)

    arr = [Arrival(t / 4, i, k, steps) for i, (t, k, steps) in enumerate(raw)]
    replay(model, arr, on_event=check)
    assert sorted(finished) == list(range(len(raw)))  # every task exactly once
    assert model.queued == 0 and not model.tasks and all(r is None for r in running)


@settings(max_examples=50, deadline=None)
@given(
    st.integers(1, 2),
    st.integers(1, 4),
    st.sampled_from([0.0, 0.4]),
    st.lists(
        st.tuples(st.integers(0, 12), st.sampled_from(["a", "b"]), st.integers(1, 4)), min_size=0, max_size=12
    ),
    st.integers(0, 12),
    st.sampled_from(["a", "b"]),
)
def test_expected_wait_is_the_start_of_a_task_with_no_later_arrivals(
    slots, cap_b, timeout, raw, t_probe, key
):
    """With deterministic service and nothing arriving after it, the estimate is exact."""
    items = {"a": Item("a", 2.0, 5.0), "b": Item("b", 2.0, 4.0)}
    curve = StepCurve.from_table({1: 1.0, 2: 1.6, 4: 2.9})
    models = {"a": ServedModel("a", ("a",), 0.5, curve), "b": ServedModel("b", ("b",), 0.3, curve)}
    cfg = ServerConfig(
        slots=slots,
        models=models,
        items=items,
        memory_gib=3.0,
        max_batch=cap_b,
        batch_timeout_s=timeout,
        preload=("a",),
    )
    now = t_probe / 2
    before = [Arrival(t / 2, i, k, s) for i, (t, k, s) in enumerate(raw) if t / 2 < now]
    # state at `now`: replay the earlier arrivals, then stop the clock at now
    m = GPUServerModel(cfg)
    heap: list = []
    seq = 0

    def push(evs):
        nonlocal seq
        for ev in evs:
            if hasattr(ev, "kind"):
                heapq.heappush(heap, (ev.t, seq, ev))
                seq += 1

    for a in sorted(before, key=lambda a: (a.t, a.tid)):
        while heap and heap[0][0] < a.t:
            t, _, tm = heapq.heappop(heap)
            push(m.fire(tm, t))
        push(m.submit(a.tid, a.key, a.steps, a.t, priority=(a.t, 0.0)))
    while heap and heap[0][0] < now:
        t, _, tm = heapq.heappop(heap)
        push(m.fire(tm, t))
    est = m.expected_wait(key, now, steps=1.0, priority=(now, 0.0))
    probe = 10_000
    push(m.submit(probe, key, 1.0, now, priority=(now, 0.0)))
    while heap and probe not in m.records:
        t, _, tm = heapq.heappop(heap)
        push(m.fire(tm, t))
    assert est == pytest.approx(m.records[probe].t_start - now, abs=1e-9)


def test_expected_wait_sees_loads_and_batches():
    items = {"a": Item("a", 2.0, 24.0), "b": Item("b", 2.0, 3.0)}
    curve = StepCurve.from_table({1: 1.0, 2: 1.5})
    models = {"a": ServedModel("a", ("a",), 0.1, curve), "b": ServedModel("b", ("b",), 0.1, curve)}
    m = GPUServerModel(
        ServerConfig(
            slots=1,
            models=models,
            items=items,
            memory_gib=2.0,
            max_batch=2,
            batch_timeout_s=1.0,
            preload=("a",),
        )
    )
    assert m.expected_wait("a", 0.0) == 1.0  # warm and idle: waits 1 s to fill a batch
    assert m.expected_wait("b", 0.0) == 3.0  # must load b first (no wait after a load)
    assert m.load_cost("b") == 3.0 and m.load_cost("a") == 0.0
    m.submit(0, "a", 10, 0.0)  # waits up to 1 s to fill a batch of 2
    assert m.expected_wait("a", 0.25) == 0.0  # joins that batch: starts at once
    assert m.expected_wait("b", 0.25) == pytest.approx(0.75 + 1.0 + 3.0)  # timeout, a's 1 s, load


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="models.big: needs 9 GiB"):
        ServerConfig(
            slots=1,
            models={"big": ServedModel("big", ("x",), 1.0)},
            items={"x": Item("x", 9.0, 1.0)},
            memory_gib=8.0,
        )
    with pytest.raises(ValueError, match="preload"):
        ServerConfig(
            slots=1,
            models={"a": ServedModel("a", ("x",), 1.0)},
            items={"x": Item("x", 5.0, 1.0), "y": Item("y", 5.0, 1.0)},
            memory_gib=8.0,
        )
    with pytest.raises(ValueError, match="eviction"):
        ServerConfig.simple(1, {"u": 1.0}, eviction="random")
    with pytest.raises(ValueError, match="batch_factor"):
        StepCurve.from_table({2: 1.5})


def test_failure_returns_held_tasks_and_voids_timers():
    m = GPUServerModel(ServerConfig.simple(1, {"u": 1.0}))
    ev = m.submit(0, "u", 2, 0.0)
    m.submit(1, "u", 2, 0.5)
    assert m.fail(1.0) == [0, 1]
    timer = [e for e in ev if hasattr(e, "kind")][0]
    assert m.fire(timer, 2.0) == []
    m.recover(3.0)
    assert m.expected_wait("u", 3.0) == 0.0


# -- 5. the shipped data ------------------------------------------------------------------------


def test_shipped_serving_data_is_consistent():
    from mecsim.scenario import base_profiles
    from mecsim.sim.gpu import load_serving_data

    data = load_serving_data()
    _, gpus = base_profiles()  # the old profiles still load unchanged
    assert set(data.gpus) == set(gpus)
    for g, prof in gpus.items():
        for m in prof.seconds_per_step:
            c = data.curve(g, m)
            assert c.factor(1) == 1.0
            # sub-linear but not free: per-image cost between 0.5 and 1 of a single image
            assert all(0.5 <= f / b <= 1.0 for b, f in zip(c.sizes, c.factors, strict=True))
            assert data.usable_gib(g) >= sum(data.items[i].memory_gib for i in data.uses[m])
    for it in data.items.values():
        assert it.base is None or it.base in data.items


def test_default_server_config_is_todays_server():
    from mecsim.scenario import base_profiles
    from mecsim.sim.gpu import load_serving_data, server_config

    _, gpus = base_profiles()
    sps = {m: gpus["rtx3060"].seconds_per_step[m] for m in ("sd15", "sdxl")}
    cfg = server_config(load_serving_data(), "rtx3060", 2, sps)
    assert cfg.max_batch == 1 and cfg.memory_gib == math.inf
    assert all(it.load_s == 0 for it in cfg.items.values())
    # with residency on, the 3060 cannot hold both (1.99 + 6.46 GiB > 12 - 4.8): sd15 preloaded only
    cfg = server_config(load_serving_data(), "rtx3060", 2, sps, residency=True, batching=True)
    assert cfg.preload == ("sd15",) and cfg.batch_cap("sd15") == 4 and cfg.batch_cap("sdxl") == 1
    m = GPUServerModel(cfg)
    replay(m, [Arrival(0.0, 0, "sdxl", 30)])
    assert m.records[0].cold and m.records[0].load_wait == 32.0 and m.evictions == [(0.0, 0, "sd15")]


def test_state_queries():
    items = {"a": Item("a", 2.0, 4.0), "b": Item("b", 2.0, 3.0)}
    models = {"a": ServedModel("a", ("a",), 1.0), "b": ServedModel("b", ("b",), 1.0)}
    m = GPUServerModel(ServerConfig(slots=2, models=models, items=items, memory_gib=2.0, preload=("a",)))
    assert m.warm("a") and not m.warm("b")
    m.submit(0, "a", 5, 0.0)
    m.submit(1, "b", 5, 0.0)  # the idle GPU 1 loads b (evicting a there)
    assert m.in_service_tasks() == (0,) and m.occupied == 2 and m.busy == 1
    assert m.warm("b") and m.resident(1) == ("b",)
    assert m.expected_wait("a", 1.0) == 4.0  # GPU 0 frees at 5; GPU 1 busy with b until 3 + 5


def test_expected_wait_does_not_see_future_jitter():
    """Queued tasks' jitter factors are not known at decision time: the estimate ignores them."""

    def state(factors):
        m = GPUServerModel(ServerConfig.simple(1, {"u": 1.0}))
        for i, f in enumerate(factors):
            m.submit(i, "u", 2, 0.0, factor=f)
        return m

    a, b = state([1.0, 1.0, 1.0]), state([1.0, 3.0, 0.2])
    # task 0 started at 0 with factor 1 in both; 1 and 2 queued with different factors
    assert a.expected_wait("u", 0.5) == b.expected_wait("u", 0.5) == pytest.approx(5.5)


def test_batching_on_the_shipped_a100_profile_cuts_the_wait_under_load():
    """SD1.5 on one A100 (0.032 s/step, 30 steps: 0.96 s alone) at 1.2 requests/s is overloaded
    one at a time (rho = 1.15) but stable with batches up to 16 (factor 10.653 at 16: 0.64 s per
    image), so the mean wait must fall by far."""
    from mecsim.scenario import base_profiles
    from mecsim.sim.gpu import load_serving_data, server_config

    _, gpus = base_profiles()
    sps = {"sd15": gpus["a100"].seconds_per_step["sd15"]}
    rng = np.random.default_rng(4)
    t = np.cumsum(rng.exponential(1 / 1.2, 3000))
    arr = [Arrival(float(x), i, "sd15", 30) for i, x in enumerate(t)]
    waits = {}
    for on in (False, True):
        m = GPUServerModel(server_config(load_serving_data(), "a100", 1, sps, batching=on))
        replay(m, arr)
        waits[on] = np.mean([m.records[i].t_start - t[i] for i in range(len(t))])
    assert waits[True] < 5.0 < 100.0 < waits[False]
