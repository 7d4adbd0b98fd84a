"""The engine's side of the GPU-server model: the run's servers whose GPUs are a
:class:`~mecsim.sim.gpu.GPUServerModel` (used when ``service.batching`` or ``service.residency``
is on, or requests carry adapters), built from the serving data, and the model's fields of the
policy's snapshot. The model itself is imported only when a run builds such servers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mecsim.traces import GPU_TASK_COLUMNS as GPU_COLS

if TYPE_CHECKING:
    from mecsim.sim.core import Simulation


class _Share:
    """What :meth:`Simulation.finish` reads of a server, with the busy power split over a batch
    (each of the b tasks of a batch is booked power x batch time / b)."""

    __slots__ = ("j", "power_w")

    def __init__(self, j: int, power_w: float) -> None:
        self.j = j
        self.power_w = power_w


class ModelServer:
    """An AIGC server whose GPUs are a :class:`~mecsim.sim.gpu.GPUServerModel` (used when
    ``service.batching`` or ``service.residency`` is on, or requests carry adapters).

    Same interface as :class:`~mecsim.sim.server.GPUServer` for the engine (``arrive``, ``backlog``, ``fail``,
    ``busy``, ``queue``, ``transit``, ``up``). The model returns events: each :class:`Timer`
    becomes a SimPy timeout that fires it back; :class:`BatchStart` sets the tasks' service start;
    :class:`BatchEnd` records batch id and size, cold start and load wait and finishes the tasks;
    :class:`Dropped` drops an expired task. Loads are in ``model.loads`` (the loads table).
    """

    def __init__(self, sim: Simulation, j: int, slots: int, power_w: float, fifo: bool, model: Any) -> None:
        self.sim = sim
        self.j = j
        self.slots = slots
        self.model = model
        self.transit = 0
        self.transit_work = 0.0
        self.fifo = fifo
        self.power_w = power_w
        self._up = True
        self._gid: dict[int, int] = {}  # the model's batch id -> the run's (unique over servers)

    @property
    def busy(self) -> int:
        """GPUs not idle (serving, loading, or waiting to fill a batch)."""
        return self.model.occupied

    @property
    def queue(self) -> range:
        """Stands for the queue where only its length is read (``len(srv.queue)``)."""
        return range(self.model.queued)

    @property
    def up(self) -> bool:
        return self._up

    @up.setter
    def up(self, value: bool) -> None:
        if value and not self._up:
            self.model.recover(self.sim.env.now)  # the preload set is resident again
        self._up = bool(value)

    def backlog(self, now: float) -> float:
        """The fluid backlog (work in service, queued and in transit, over the slots), as
        :meth:`~mecsim.sim.server.GPUServer.backlog`; loads and batching are in the state's ``load_s`` and
        ``batch_cap`` instead."""
        return self.model.fluid_backlog(now, self.transit, self.transit_work)

    def arrive(self, tid: int) -> None:
        sim = self.sim
        i = tid - sim._base
        exp = sim.expected_service[i]
        self.transit -= 1
        self.transit_work -= exp
        if not self._up:
            sim.server_failed_task(tid, self.j)
        else:
            now = sim.env.now
            c = sim.tasks.cols
            pr = (now, 0.0) if self.fifo else (float(sim.T_epoch[i]), exp)
            self._apply(
                self.model.submit(
                    tid,
                    task_key(sim, i),
                    float(c["steps"][i]),
                    now,
                    float(c["service_factor"][i]),
                    pr,
                    float(sim.T_deadline[i]),
                )
            )
        sim.monitor(self)

    def _fire(self, timer: Any) -> None:
        sim = self.sim
        evs = self.model.fire(timer, sim.env.now)
        if not evs:
            return  # void (the server failed meanwhile)
        self._apply(evs)
        sim.monitor(self)
        if sim.waiting and self.model.occupied < self.slots:
            sim._wake_at(sim.env.now)  # work conservation: a waiting task may take the free GPU

    def _apply(self, events: list[Any]) -> None:
        from mecsim.sim.gpu.events import BatchEnd, BatchStart, Dropped, Timer

        sim = self.sim
        env = sim.env
        base = sim._base
        for ev in events:
            if type(ev) is Timer:
                t = env.timeout(ev.delay)
                t.callbacks.append(lambda _e, ev=ev: self._fire(ev))
            elif type(ev) is BatchStart:
                gid = sim._batch_seq
                self._gid[ev.batch_id] = gid
                sim._batch_seq += 1
                c = sim.tasks.cols
                recs = self.model.records
                for tid in ev.tasks:
                    i = tid - base
                    rec = recs[tid]
                    sim.T_service_start[i] = ev.t
                    c["batch_id"][i] = gid
                    c["batch_size"][i] = rec.batch_size
                    c["gpu"][i] = rec.slot
                    c["cold_start"][i] = rec.cold
                    c["load_wait_s"][i] = rec.load_wait
            elif type(ev) is BatchEnd:
                share = _Share(self.j, self.power_w / len(ev.tasks))
                del self._gid[ev.batch_id]
                for tid in ev.tasks:
                    self.model.pop_record(tid)
                    sim.finish(tid, ev.t, share)
            elif type(ev) is Dropped:
                sim.drop(ev.task, 3, ev.t)
            # LoadStart: kept in model.loads (the loads table)

    def fail(self) -> list[int]:
        """Take the server down; return the tasks it held (in service first, then queued). Each
        task of a batch cut short is booked power x elapsed / b."""
        sim = self.sim
        now = sim.env.now
        c = sim.tasks.cols
        base = sim._base
        m = self.model
        for tid in m.in_service_tasks():
            b = m.records[tid].batch_size
            i = tid - base
            c["energy_server_j"][i] += self.power_w / b * (now - c["t_service_start"][i])
        held = m.fail(now)
        self._gid.clear()
        self._up = False
        for tid in held:  # a batch cut short is no batch of the task's (it may be served again)
            i = tid - base
            for k, (_, fill) in GPU_COLS.items():
                if k != "adapter":
                    c[k][i] = fill
        return held


def task_key(sim: Simulation, i: int) -> str:
    """The GPU-model key of buffer row i: its model, ``+`` its adapter if it carries one."""
    c = sim.tasks.cols
    name = sim.model_names[int(c["model"][i])]
    a = int(c["adapter"][i])
    return name if a < 0 else f"{name}+{sim.adapter_names[a]}"


def gpu_state_fields(sim: Simulation, rows: Any) -> dict[str, Any]:
    """The GPU-model fields of :class:`~mecsim.state.EpochState` for the tasks at buffer rows
    ``rows``: keys, load time, warm, batch cap, ``f(2)`` and same-key queue per task x server."""
    import numpy as np

    keys = tuple(task_key(sim, i) for i in rows.tolist())
    n, m = len(keys), len(sim.servers)
    load = np.zeros((n, m))
    warm = np.zeros((n, m), dtype=bool)
    cap = np.ones((n, m), dtype=np.int64)
    f2 = np.full((n, m), 2.0)
    same = np.zeros((n, m), dtype=np.int64)
    for j, s in enumerate(sim.servers):
        mdl = s.model
        cfg = mdl.cfg
        seen: dict[str, tuple[float, bool, int, float, int]] = {}
        for i, k in enumerate(keys):
            v = seen.get(k)
            if v is None:
                if k not in cfg.models:
                    continue
                w = mdl.warm(k)
                b = cfg.batch_cap(k)
                v = (
                    0.0 if w else mdl.load_cost(k),
                    w,
                    b,
                    cfg.models[k].curve.factor(2) if b >= 2 else 2.0,
                    len(mdl.queues[k]),
                )
                seen[k] = v
            load[i, j], warm[i, j], cap[i, j], f2[i, j], same[i, j] = v
    for a in (load, warm, cap, f2, same):
        a.setflags(write=False)
    return {
        "key": keys,
        "load_s": load,
        "warm": warm,
        "batch_cap": cap,
        "batch_factor2": f2,
        "queued_same": same,
    }


def model_servers(sim: Simulation, gpus: dict[str, Any], fifo: bool) -> list[ModelServer]:
    """A :class:`ModelServer` over a :class:`~mecsim.sim.gpu.GPUServerModel` per server of the
    run, configured by :func:`~mecsim.sim.gpu.server_config` from the serving data and the
    scenario (called by :func:`~mecsim.sim.server.build_servers`)."""
    from mecsim.sim.gpu.data import load_serving_data, server_config
    from mecsim.sim.gpu.model import GPUServerModel

    sc = sim.sc
    sim._batch_seq = 0  # batch ids of the tasks table: in start order over the run
    data = load_serving_data(sc.profiles)
    bat, res = sc.service.batching, sc.service.residency
    extra: dict[str, tuple[str, ...]] = {}
    for g in sc.devices:
        for w in g.workload:
            if w.adapters is not None:
                base = data.uses.get(w.model, (w.model,))
                for r in range(w.adapters.count):
                    a = f"{w.adapters.kind}#{r}"
                    extra[f"{w.model}+{a}"] = tuple(base) + (a,)
    out: list[ModelServer] = []
    for j, s in enumerate(sc.servers):
        sps = {m: float(gpus[s.gpu].seconds_per_step[m]) for m in s.models}
        keys = {k: v for k, v in extra.items() if k.split("+", 1)[0] in sps}
        try:
            cfg = server_config(
                data,
                s.gpu,
                s.slots,
                sps,
                batching=bat.enabled,
                max_batch=bat.max_batch,
                batch_timeout_s=bat.timeout_s,
                residency=res.enabled,
                eviction=res.eviction,
                preload=s.preload,
                drop_expired=sim.drop_expired,
                extra_keys=keys,
            )
        except (ValueError, KeyError) as exc:
            from mecsim.errors import ScenarioError

            raise ScenarioError(str(exc).strip("'\""), f"servers.{j}") from None
        out.append(
            ModelServer(sim, j, int(sim.slots[j]), float(sim.server_power[j]), fifo, GPUServerModel(cfg))
        )
    return out
