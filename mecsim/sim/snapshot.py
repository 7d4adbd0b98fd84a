"""What a policy sees: the read-only :class:`~mecsim.state.EpochState` of an epoch's tasks
(:meth:`SnapshotMixin.build_state`), and for the heuristics' lane the same values as Python
lists (:meth:`SnapshotMixin._lane_inputs`, see :mod:`mecsim.sim.epoch`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from mecsim.state import _OPTIONAL, EpochState, shannon_rate_bps, upload_time_s


class _FewTasks:
    """The rows of a few tasks' snapshot as Python values (see :meth:`SnapshotMixin._lane_inputs`);
    the backhaul and return rows and the upload times are computed when read (least-loaded
    reads none of them)."""

    __slots__ = (
        "budget",
        "share",
        "ideal_radio",
        "feasible",
        "service",
        "backlog",
        "queued",
        "slots",
        "bits",
        "snr",
        "_sizes",
        "_links",
    )

    @property
    def backhaul(self) -> list[list[float]]:
        """:attr:`EpochState.backhaul_s` rows: latency + input bits / rate."""
        lat, inv, _ = self._link_lists()
        return [[a + b * v for a, v in zip(lat, inv, strict=True)] for b, _ in self._sizes]

    @property
    def ret(self) -> list[list[float]]:
        """:attr:`EpochState.return_s` rows: backhaul back, then the downlink."""
        lat, inv, (dl_rate, dl_lat) = self._link_lists()
        out = []
        for _, o in self._sizes:
            tail = o / dl_rate + dl_lat
            out.append([a + o * v + tail for a, v in zip(lat, inv, strict=True)])
        return out

    def _link_lists(self) -> tuple[list[float], list[float], tuple[float, float]]:
        lat, inv, dl = self._links
        return lat.tolist(), inv.tolist(), dl

    def upload_s(self) -> list[float]:
        """:meth:`EpochState.upload_s` of the equal shares (the same array operations)."""
        n = len(self.feasible)
        if self.ideal_radio:
            return [0.0] * n
        return upload_time_s(self.bits, shannon_rate_bps(self.snr, np.full(n, self.share))).tolist()


class SnapshotMixin:
    """The snapshot of an epoch; part of :class:`~mecsim.sim.core.Simulation`."""

    def build_state(self, ids: list[int], now: float, budget: float) -> EpochState:
        """The read-only snapshot a policy sees for the given waiting tasks."""
        if len(ids) == 1 and self.all_up and not self.gpu_mode:
            return self._build_state_one(ids[0], now, budget)
        c = self.tasks.cols
        idx = np.array(ids, dtype=np.int64)  # global task ids
        loc = idx - self._base if self._base else idx  # buffer rows
        dev = c["device"][loc].astype(np.int64)
        mod = c["model"][loc]
        steps = c["steps"][loc].astype(float)
        bits = c["input_bits"][loc]
        out = c["output_bits"][loc]
        if self.all_up:
            feasible = self.host_T[mod]
            service = steps[:, None] * self.t_step_T[mod]  # inf where not hosted
        else:
            feasible = self.host_T[mod] & self.server_up
            service = np.where(feasible, steps[:, None] * self.t_step_T[mod], np.inf)
        backhaul = self.bh_lat + bits[:, None] * self.inv_bh_rate
        ret = self.bh_lat + out[:, None] * self.inv_bh_rate + (out / self.dl_rate + self.dl_lat)[:, None]
        gain = self.channel.gain_now(dev, now) if not self.sc.radio.ideal else np.ones(len(idx))
        names = self.model_names
        servers = self.servers
        return EpochState._build(
            now=now,
            epoch=self.epoch_index,
            task_id=idx,
            device=dev,
            model=tuple([names[k] for k in mod.tolist()]),
            input_bits=bits,
            output_bits=out,
            steps=steps,
            t_arrival=c["t_arrival"][loc],
            deadline=c["deadline"][loc],
            tx_power_w=self.tx_power_w[dev],
            gain=gain,
            noise_psd_w_per_hz=self.channel.n0,
            bandwidth_budget_hz=budget,
            min_bandwidth_hz=self.sc.radio.min_bandwidth_hz,
            ideal_radio=self.sc.radio.ideal,
            server_names=self.server_names,
            slots=self.slots,
            server_up=self.server_up,
            backlog_s=np.array([s.backlog(now) for s in servers]),
            queued=np.array([s.busy + len(s.queue) + s.transit for s in servers], dtype=np.int64),
            feasible=feasible,
            service_s=service,
            backhaul_s=backhaul,
            return_s=ret,
            server_energy_w=self.server_power,
            **(self._gpu_fields(loc) if self.gpu_mode else {}),
        )

    def _build_state_one(self, tid: int, now: float, budget: float) -> EpochState:
        """:meth:`build_state` for one task with every server up and no GPU-server model (the
        usual epoch): the same values, the task's numbers read as Python scalars, the rows of
        the model's tables as read-only views, and the fields fixed for the run set from one
        dict (:meth:`_run_fields`)."""
        c = self.tasks.cols
        r = tid - self._base
        d = int(c["device"][r])
        k = int(c["model"][r])
        st = float(c["steps"][r])
        b = float(c["input_bits"][r])
        o = float(c["output_bits"][r])
        dev = np.array([d], dtype=np.int64)
        servers = self.servers
        state = object.__new__(EpochState)
        f = state.__dict__
        f.update(self._run_fields())
        f["extra"] = {}
        f["now"] = now
        f["epoch"] = self.epoch_index
        f["task_id"] = np.array([tid], dtype=np.int64)
        f["device"] = dev
        f["model"] = (self.model_names[k],)
        f["input_bits"] = np.array([b])
        f["output_bits"] = np.array([o])
        f["steps"] = np.array([st])
        f["t_arrival"] = c["t_arrival"][r : r + 1].copy()
        f["deadline"] = c["deadline"][r : r + 1].copy()
        f["tx_power_w"] = self.tx_power_w[d : d + 1].copy()
        f["gain"] = np.ones(1) if self.sc.radio.ideal else self.channel.gain_now(dev, now)
        f["bandwidth_budget_hz"] = budget
        f["server_up"] = self.server_up
        f["backlog_s"] = np.array([s.backlog(now) for s in servers])
        f["queued"] = np.array([s.busy + len(s.queue) + s.transit for s in servers], dtype=np.int64)
        f["feasible"] = self.host_T[k : k + 1]  # read-only
        f["service_s"] = st * self.t_step_T[k : k + 1]  # inf where not hosted
        f["backhaul_s"] = (self.bh_lat + b * self.inv_bh_rate)[None, :]
        f["return_s"] = (self.bh_lat + o * self.inv_bh_rate + (o / self.dl_rate + self.dl_lat))[None, :]
        return state

    def _lane_inputs(self, ids: list[int], now: float, budget: float) -> _FewTasks:
        """The rows of the snapshot of a few tasks as Python values, for a built-in heuristic's
        lane (:class:`mecsim.policies.heuristics.SmallEpochLane`): every value is the one
        :meth:`build_state` would hold (the same IEEE operations in the same order), and the
        channel is asked for the gains as the snapshot asks (so fading draws keep their order)."""
        c = self.tasks.cols
        base = self._base
        model, steps, c_in, c_out = c["model"], c["steps"], c["input_bits"], c["output_bits"]
        x = _FewTasks()
        x.budget = budget
        x.share = budget / len(ids)  # EpochState.equal_share
        x.ideal_radio = ideal = self.sc.radio.ideal
        x.feasible, x.service, x._sizes = feas, service, sizes = [], [], []
        for tid in ids:
            r = tid - base
            k = int(model[r])
            st = float(steps[r])
            feas.append(self._host_rows[k])
            service.append([st * t for t in self._t_step_rows[k]])  # inf where not hosted
            sizes.append((float(c_in[r]), float(c_out[r])))
        # the backhaul arrays are replaced (not changed) while a backhaul fault lasts: these are
        # the epoch's, and are read as lists only by a policy that asks (greedy, not least-loaded)
        x._links = (self.bh_lat, self.inv_bh_rate, (self.dl_rate, self.dl_lat))
        servers = self.servers
        x.backlog = [s.backlog(now) for s in servers]
        x.queued = [s.busy + len(s.queue) + s.transit for s in servers]
        x.slots = self._slots_list
        if not ideal:
            rows = np.array(ids, dtype=np.int64) - base
            dev = c["device"][rows].astype(np.int64)
            x.bits = c_in[rows]
            x.snr = self.tx_power_w[dev] * self.channel.gain_now(dev, now) / self.channel.n0
        return x

    def _run_fields(self) -> dict[str, Any]:
        """The fields of every epoch's state that are fixed for the run, with the optional
        fields' defaults (made on first use)."""
        fields = self.__dict__.get("_run_fields_dict")
        if fields is None:
            fields = self._run_fields_dict = {
                **_OPTIONAL,
                "noise_psd_w_per_hz": self.channel.n0,
                "min_bandwidth_hz": self.sc.radio.min_bandwidth_hz,
                "ideal_radio": self.sc.radio.ideal,
                "server_names": self.server_names,
                "slots": self.slots,
                "server_energy_w": self.server_power,
            }
        return fields

    def _gpu_fields(self, loc: np.ndarray) -> dict[str, Any]:
        """The GPU-server model's fields of the state (that package loads only for runs using it)."""
        from mecsim.sim.gpu.server import gpu_state_fields

        return gpu_state_fields(self, loc)
