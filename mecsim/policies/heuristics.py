"""Heuristic baseline policies, each combined with a bandwidth rule (equal share by default).

All of them only ever pick servers that can run the task (``state.feasible``); a task with no
feasible server (every host down) is deferred to the next epoch, and so is a task the bandwidth
rule leaves without a share (``srpt-<k>``, ``completion``: see
:func:`mecsim.decision.bandwidth.allocate_rule`); the server choice then sees only the admitted
tasks.

* ``random``: a uniformly random feasible server (the policy's own seeded stream).
* ``round-robin``: feasible servers in turn, continuing across epochs.
* ``nearest``: the feasible server with the lowest backhaul delay for the task.
* ``least-loaded``: join the shortest backlog (expected wait, ties by tasks queued per slot);
  the backlog grows with each task placed in the same epoch.
* ``greedy``: earliest expected completion: upload + backhaul, wait for the server, service,
  return; tasks placed one by one, each updating the server's expected availability.
* ``central-queue``: tasks wait at the access point (deferred), oldest first, until a server that
  can run them has a free GPU slot (:attr:`~mecsim.state.EpochState.free_slots`); among those,
  the earliest expected completion. Bandwidth goes to the dispatched tasks only. With
  ``epoch.length_s: 0`` the engine holds an epoch whenever a slot frees, so the queue is
  work-conserving: one-slot servers form an M/M/c queue.
* ``greedy-affinity``: ``greedy`` that also counts the load of weights that are not resident and
  the chance to join a batch of the same model (runs with batching or residency on; otherwise it
  is ``greedy``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from mecsim.decision.bandwidth import (
    BANDWIDTH_RULES,
    HeldBandwidth,
    InfeasibleBandwidthError,
    allocate_rule,
    check_rule,
)
from mecsim.policies.base import BasePolicy
from mecsim.registry import POLICIES
from mecsim.state import DEFER, Decision, EpochState

#: Task-indexed fields of :class:`EpochState` (rows), and task x server matrices.
_TASK_FIELDS = (
    "task_id",
    "device",
    "input_bits",
    "output_bits",
    "steps",
    "t_arrival",
    "deadline",
    "tx_power_w",
    "gain",
    "feasible",
    "service_s",
    "backhaul_s",
    "return_s",
)
_GPU_FIELDS = ("load_s", "warm", "batch_cap", "batch_factor2", "queued_same")

#: greedy and least-loaded place epochs of at most this many tasks with Python floats (cheaper
#: than array calls for a few tasks; tests/test_fast_paths.py compares both exactly)
FLOATS_MAX = 3
#: the engine's lane (SmallEpochLane) takes epochs of at most this many tasks: skipping the
#: snapshot pays for the float loops well beyond FLOATS_MAX
LANE_MAX = 8


def allocate(
    state: EpochState, rule: str, epoch_s: float = 0.0, held: HeldBandwidth | None = None
) -> np.ndarray:
    """Bandwidth shares for the epoch's tasks by a rule of
    :data:`mecsim.decision.bandwidth.BANDWIDTH_RULES` (0 = the task waits: srpt, completion);
    ``epoch_s`` and ``held`` (the shares handed out earlier) inform the ``completion`` rule."""
    if state.n_tasks == 0:
        return np.zeros(0)
    if rule == "equal" or state.ideal_radio:
        return state.equal_share()
    lanes = held.lanes(state.now, state.bandwidth_budget_hz) if held is not None else ((), ())
    return allocate_rule(
        rule,
        state.input_bits,
        state.snr_per_hz,
        state.bandwidth_budget_hz,
        state.min_bandwidth_hz,
        epoch_s,
        *lanes,
    )


def _least_loaded_floats(
    backlog: list[float],
    queued: list[int],
    slots: list[int],
    service: list[list[float]],
    feasible: list[list[bool]],
) -> list[int]:
    """least-loaded's placement on Python lists (``backlog`` is updated): for each task in turn
    the feasible server with the least ``backlog + 1e-9 queued / slots`` (the first on ties;
    server 0 if none is feasible), which then books the task's service."""
    per_slot = [q / k for q, k in zip(queued, slots, strict=True)]
    out = []
    for i, feas in enumerate(feasible):
        best, j = np.inf, 0
        for k, ok in enumerate(feas):
            if ok:
                key = backlog[k] + 1e-9 * per_slot[k]
                if key < best:
                    best, j = key, k
        out.append(j)
        backlog[j] += service[i][j] / slots[j]
        per_slot[j] += 1.0 / slots[j]
    return out


def _greedy_floats(
    up: list[float],
    bh: list[list[float]],
    avail: list[float],
    slots: list[int],
    service: list[list[float]],
    ret: list[list[float]],
    feasible: list[list[bool]],
) -> list[int]:
    """greedy's placement on Python lists (``avail`` is updated): for each task in turn the
    feasible server with the earliest expected completion (the first on ties; server 0 if none
    is feasible), which then books the task's service."""
    out = []
    for i, feas in enumerate(feasible):
        u, b, sv, rt = up[i], bh[i], service[i], ret[i]
        best, j = np.inf, 0
        for k, ok in enumerate(feas):
            if ok:
                reach = u + b[k]
                start = reach if reach > avail[k] else avail[k]
                done = start + sv[k] + rt[k]
                if done < best:
                    best, j = done, k
        out.append(j)
        reach = u + b[j]
        avail[j] = (reach if reach > avail[j] else avail[j]) + sv[j] / slots[j]
    return out


class SmallEpochLane:
    """How a built-in heuristic decides a small epoch without a snapshot.

    Most epochs hold a few tasks. For those of at most :data:`LANE_MAX` tasks under ``greedy``
    or ``least-loaded`` with the ``equal`` rule, the engine skips building the
    :class:`~mecsim.state.EpochState`, calling ``decide`` and checking the decision: it hands
    :meth:`servers` the tasks' rows of the snapshot as Python values (``feasible``,
    ``service``, ``backhaul``, ``ret``, ``backlog``, ``queued``, ``slots``, ``share``,
    ``upload_s()``; see :meth:`mecsim.sim.snapshot.SnapshotMixin._lane_inputs`), and ``pick``
    places them by the function ``decide`` uses on the same values. Every task gets the equal
    share. tests/test_fast_paths.py runs scenarios both ways and compares every table.
    Subclasses and other rules get no lane (the engine then calls ``decide``).
    """

    __slots__ = ("info", "pick")
    max_tasks = LANE_MAX

    def __init__(self, rule: str, pick: Any) -> None:
        self.info = {"bandwidth_rule": rule}
        self.pick = pick

    def servers(self, x: Any) -> list[int]:
        """The tasks' servers, DEFER for a task with no feasible server (as ``decide``)."""
        ok = [any(row) for row in x.feasible]
        if not ((x.ideal_radio or x.share > 0) and any(ok)):
            return [DEFER] * len(ok)
        return [j if o else DEFER for j, o in zip(self.pick(x), ok, strict=True)]


def _rows(state: EpochState, idx: np.ndarray) -> EpochState:
    """The snapshot restricted to the tasks ``idx`` (for the tasks a bandwidth rule admitted)."""
    rows = {k: getattr(state, k)[idx] for k in _TASK_FIELDS}
    if state.key is not None:  # the GPU-server model's fields (mecsim.sim.gpu)
        rows.update({k: getattr(state, k)[idx] for k in _GPU_FIELDS})
        rows["key"] = tuple(state.key[i] for i in idx.tolist())
    return dataclasses.replace(state, model=tuple(state.model[i] for i in idx.tolist()), **rows)


class HeuristicPolicy(BasePolicy):
    """Shared parts: the bandwidth rule and the decision assembly."""

    def __init__(self, bandwidth: str = "equal") -> None:
        super().__init__()
        try:
            check_rule(bandwidth)
        except InfeasibleBandwidthError:
            from mecsim.errors import PolicyError

            raise PolicyError(
                f"bandwidth: unknown rule {bandwidth!r}; use one of {BANDWIDTH_RULES} (or srpt-<k>)"
            ) from None
        self.bandwidth = bandwidth
        self.epoch_s = 0.0
        self.budget_hz: float | None = None
        self.held: HeldBandwidth | None = None

    def bind(self, info: dict[str, Any]) -> None:
        """Remember the epoch length and the uplink budget (the ``completion`` rule models them)."""
        sc = info.get("scenario")
        self.epoch_s = float(sc.epoch.length_s) if sc is not None else 0.0
        self.budget_hz = float(sc.radio.bandwidth_hz) if sc is not None else None

    def reset(self, rng: np.random.Generator) -> None:
        super().reset(rng)
        # The completion rule's record of the shares handed out (see HeldBandwidth).
        track = self.bandwidth == "completion" and self.budget_hz is not None
        self.held = HeldBandwidth(self.budget_hz) if track else None

    def choose(self, state: EpochState, bw: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def _small_epoch_lane(self) -> SmallEpochLane | None:
        """The engine's lane for small epochs (:class:`SmallEpochLane`): for a class that
        defines ``_lane_pick`` itself (greedy, least-loaded; not their subclasses, which may
        decide otherwise) with the ``equal`` rule; else None."""
        pick = type(self).__dict__.get("_lane_pick")
        if pick is None or self.bandwidth != "equal":
            return None
        return SmallEpochLane(self.bandwidth, pick.__func__)

    def decide(self, state: EpochState) -> Decision:
        bw = allocate(state, self.bandwidth, self.epoch_s, self.held)
        if state.task_id.shape[0] == 1:  # the usual epoch: the same choice with fewer array calls
            go1 = (state.ideal_radio or bw[0] > 0) and state.feasible[0].any()
            server = self.choose(state, bw) if go1 else np.full(1, DEFER, dtype=np.int64)
        else:
            server = np.full(state.n_tasks, DEFER, dtype=np.int64)
            ok = state.feasible.any(axis=1)
            go = bw > 0 if not state.ideal_radio else np.ones(state.n_tasks, dtype=bool)
            if go.all() and ok.any():
                server = self.choose(state, bw)
                server = np.where(ok, server, DEFER)
            elif (ok & go).any():  # the rule left some tasks waiting: place only the admitted ones
                idx = np.flatnonzero(go)
                server[idx] = self.choose(_rows(state, idx), bw[idx])
                server = np.where(ok & go, server, DEFER)
        if self.held is not None and not state.ideal_radio:
            sent = np.where(server >= 0, bw, 0.0)
            self.held.add(state.now, state.upload_s(sent), sent)
        if self.bandwidth == "equal" or state.ideal_radio:  # bw: a new array (equal_share)
            return Decision._owned(bw, server, {"bandwidth_rule": self.bandwidth})
        return Decision(bw, server, {"bandwidth_rule": self.bandwidth})


class RandomPolicy(HeuristicPolicy):
    """A uniformly random feasible server per task, equal bandwidth."""

    name = "random"

    def choose(self, state: EpochState, bw: np.ndarray) -> np.ndarray:
        u = self.rng.random(state.feasible.shape)
        return np.argmax(np.where(state.feasible, u, -1.0), axis=1)


class RoundRobinPolicy(HeuristicPolicy):
    """Feasible servers in turn, continuing across epochs."""

    name = "round-robin"

    def __init__(self, bandwidth: str = "equal") -> None:
        super().__init__(bandwidth)
        self.next = 0

    def reset(self, rng: np.random.Generator) -> None:
        super().reset(rng)
        self.next = 0

    def choose(self, state: EpochState, bw: np.ndarray) -> np.ndarray:
        m = state.n_servers
        out = np.zeros(state.n_tasks, dtype=np.int64)
        for i in range(state.n_tasks):
            feas = state.feasible[i]
            for k in range(m):
                j = (self.next + k) % m
                if feas[j]:
                    out[i] = j
                    self.next = (j + 1) % m
                    break
        return out


class NearestPolicy(HeuristicPolicy):
    """The feasible server with the lowest backhaul delay."""

    name = "nearest"

    def choose(self, state: EpochState, bw: np.ndarray) -> np.ndarray:
        return np.argmin(np.where(state.feasible, state.backhaul_s, np.inf), axis=1)


class LeastLoadedPolicy(HeuristicPolicy):
    """Join the shortest backlog (expected wait), updated as tasks are placed."""

    name = "least-loaded"

    def choose(self, state: EpochState, bw: np.ndarray) -> np.ndarray:
        if state.task_id.shape[0] <= FLOATS_MAX:
            return self._choose_floats(state)
        return self._choose_arrays(state)

    def _choose_floats(self, state: EpochState) -> np.ndarray:
        """:meth:`_choose_arrays` on Python floats (the same operations in the same order)."""
        out = _least_loaded_floats(
            state.backlog_s.tolist(),
            state.queued.tolist(),
            state.slots.tolist(),
            state.service_s.tolist(),
            state.feasible.tolist(),
        )
        return np.array(out, dtype=np.int64)

    @staticmethod
    def _lane_pick(x: Any) -> list[int]:
        return _least_loaded_floats(x.backlog, x.queued, x.slots, x.service, x.feasible)

    def _choose_arrays(self, state: EpochState) -> np.ndarray:
        backlog = state.backlog_s.astype(float)  # a copy
        per_slot = state.queued / state.slots
        out = np.zeros(state.n_tasks, dtype=np.int64)
        for i in range(state.n_tasks):
            feas = state.feasible[i]
            key = np.where(feas, backlog + 1e-9 * per_slot, np.inf)
            j = int(np.argmin(key))
            out[i] = j
            backlog[j] += state.service_s[i, j] / state.slots[j]
            per_slot[j] += 1.0 / state.slots[j]
        return out


class GreedyPolicy(HeuristicPolicy):
    """Earliest expected completion, tasks placed one by one."""

    name = "greedy"

    def choose(self, state: EpochState, bw: np.ndarray) -> np.ndarray:
        if state.task_id.shape[0] <= FLOATS_MAX:
            return self._choose_floats(state, bw)
        return self._choose_arrays(state, bw)

    def _choose_floats(self, state: EpochState, bw: np.ndarray) -> np.ndarray:
        """:meth:`_choose_arrays` on Python floats (the same operations in the same order; a
        task with no feasible server still books server 0, as there)."""
        out = _greedy_floats(
            state.upload_s(bw).tolist(),
            state.backhaul_s.tolist(),
            state.backlog_s.tolist(),
            state.slots.tolist(),
            state.service_s.tolist(),
            state.return_s.tolist(),
            state.feasible.tolist(),
        )
        return np.array(out, dtype=np.int64)

    @staticmethod
    def _lane_pick(x: Any) -> list[int]:
        return _greedy_floats(x.upload_s(), x.backhaul, x.backlog, x.slots, x.service, x.ret, x.feasible)

    def _choose_arrays(self, state: EpochState, bw: np.ndarray) -> np.ndarray:
        reach = state.upload_s(bw)[:, None] + state.backhaul_s
        avail = state.backlog_s.astype(float)  # a copy
        slots = state.slots
        service = state.service_s
        ret = state.return_s
        feas = state.feasible
        out = np.zeros(state.n_tasks, dtype=np.int64)
        for i in range(state.n_tasks):
            start = np.maximum(reach[i], avail)
            done = np.where(feas[i], start + service[i] + ret[i], np.inf)
            j = int(np.argmin(done))
            out[i] = j
            avail[j] = start[j] + service[i, j] / slots[j]
        return out


class GreedyAffinityPolicy(GreedyPolicy):
    """Earliest expected completion that sees model residency and batching (model affinity).

    As ``greedy``, tasks placed one by one at the server with the earliest expected completion,
    where on server j task i also waits for its weights to load (``state.load_s``) unless a task of
    the same key was already placed on j in this epoch (that task's load brings them), and may
    share a batch: with a task of its key placed on j in this epoch, while that batch has room
    (``state.batch_cap``), it starts with that batch; with tasks of its key queued at j
    (``state.queued_same``) and room in their batch, it starts when the server frees. A task in a
    batch completes ``f_j(2) s_ij`` after its start and adds ``(f_j(2) - 1) s_ij`` of GPU time
    instead of ``s_ij`` (the pairwise batch cost of :mod:`mecsim.decision.qubo`). A load
    occupies one GPU for its duration, so it adds ``load / slots`` to the server's availability. Without the
    GPU-server model's fields (batching and residency off) it is ``greedy``.
    """

    name = "greedy-affinity"

    def choose(self, state: EpochState, bw: np.ndarray) -> np.ndarray:
        if state.key is None:
            return super().choose(state, bw)
        reach = state.upload_s(bw)[:, None] + state.backhaul_s
        avail = state.backlog_s.astype(float)  # a copy
        slots = state.slots
        service = state.service_s
        ret = state.return_s
        feas = state.feasible
        load = state.load_s
        cap = state.batch_cap
        f2 = state.batch_factor2
        keys = state.key
        # (server, key) -> [start, size] of the batch this epoch's tasks of the key form there
        batch: dict[tuple[int, str], list[float]] = {}
        loaded: set[tuple[int, str]] = set()  # a task placed now brings the key's weights
        out = np.zeros(state.n_tasks, dtype=np.int64)
        for i in range(state.n_tasks):
            k = keys[i]
            best, bj, bstart, bavail, bjoin = np.inf, 0, 0.0, 0.0, False
            for j in np.flatnonzero(feas[i]).tolist():
                c = int(cap[i, j])
                s = float(service[i, j])
                ob = batch.get((j, k))
                if ob is not None and ob[1] < c:  # join the batch formed now: start with it
                    start = max(reach[i, j], ob[0])
                    done = start + f2[i, j] * s + ret[i, j]
                    avail_j = avail[j] + (f2[i, j] - 1.0) * s / slots[j]
                    join = True
                else:
                    ld = 0.0 if (j, k) in loaded else float(load[i, j])
                    queued = c >= 2 and int(state.queued_same[i, j]) % c != 0  # room in a queued batch
                    start = max(reach[i, j], avail[j] + ld)
                    done = start + (f2[i, j] * s if queued else s) + ret[i, j]
                    work = (f2[i, j] - 1.0) * s if queued else s
                    avail_j = max(reach[i, j], avail[j] + ld / slots[j]) + work / slots[j]
                    join = False
                if done < best:
                    best, bj, bstart, bavail, bjoin = done, j, start, avail_j, join
            out[i] = bj
            avail[bj] = bavail
            loaded.add((bj, k))
            if bjoin:
                batch[(bj, k)][1] += 1
            elif cap[i, bj] >= 2:
                batch[(bj, k)] = [bstart, 1.0]
        return out


class CentralQueuePolicy(HeuristicPolicy):
    """Hold tasks, oldest first, until a feasible server has a free GPU slot."""

    name = "central-queue"

    def decide(self, state: EpochState) -> Decision:
        n = state.n_tasks
        server = np.full(n, DEFER, dtype=np.int64)
        free = state.free_slots.astype(np.int64)
        if n and free.any():
            # no wait at a server with a free slot: rank by backhaul + service + return
            cost = np.where(state.feasible, state.backhaul_s + state.service_s + state.return_s, np.inf)
            for i in range(n):  # oldest first
                key = np.where(free > 0, cost[i], np.inf)
                j = int(np.argmin(key))
                if key[j] == np.inf:
                    continue
                server[i] = j
                free[j] -= 1
                if not free.any():
                    break
        bw = np.zeros(n)
        go = server >= 0
        if go.any():
            if self.bandwidth == "equal" or state.ideal_radio:
                bw[go] = state.bandwidth_budget_hz / int(go.sum())
            else:
                from mecsim.decision.bandwidth import allocate_bandwidth

                bw[go] = allocate_bandwidth(
                    state.input_bits[go],
                    state.snr_per_hz[go],
                    state.bandwidth_budget_hz,
                    state.min_bandwidth_hz,
                    objective=self.bandwidth,
                )
        return Decision(bw, server, {"bandwidth_rule": self.bandwidth})


def _register() -> None:
    for cls in (
        RandomPolicy,
        RoundRobinPolicy,
        NearestPolicy,
        LeastLoadedPolicy,
        GreedyPolicy,
        CentralQueuePolicy,
        GreedyAffinityPolicy,
    ):
        POLICIES.register(cls.name)(cls)


_register()

__all__: list[Any] = [
    "RandomPolicy",
    "RoundRobinPolicy",
    "NearestPolicy",
    "LeastLoadedPolicy",
    "GreedyPolicy",
    "CentralQueuePolicy",
    "GreedyAffinityPolicy",
    "allocate",
    "BANDWIDTH_RULES",
]
