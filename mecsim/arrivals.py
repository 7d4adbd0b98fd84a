"""Task generation: Poisson, MMPP (bursty on-off) and CSV trace replay, in time windows.

Tasks are generated window by window (the window length is fixed by the scenario, never by the
policy), each device drawing from its own streams, so a seed gives the same tasks for every
policy and memory does not grow with the run length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mecsim.errors import ScenarioError
from mecsim.scenario import (
    DeviceGroup,
    MMPPArrivals,
    ModelProfile,
    PoissonArrivals,
    Scenario,
    TraceArrivals,
    Workload,
)
from mecsim.streams import Streams


@dataclass
class TaskBatch:
    """Tasks of one window, sorted by arrival time."""

    t_arrival: np.ndarray
    device: np.ndarray
    model: np.ndarray  # model code (index into TaskSource.model_names)
    input_bits: np.ndarray
    output_bits: np.ndarray
    steps: np.ndarray
    deadline_rel: np.ndarray  # relative deadline (s), inf when none
    jitter: np.ndarray  # service-time factor, mean 1
    adapter: np.ndarray  # adapter code (index into TaskSource.adapter_names), -1 for none

    def __len__(self) -> int:
        return int(self.t_arrival.shape[0])


def _draw(rng: np.random.Generator, spec: float | tuple[float, float] | None, default: float,
          n: int, integer: bool = False) -> np.ndarray:
    if spec is None:
        return np.full(n, float(default))
    if isinstance(spec, tuple):
        if integer:
            return rng.integers(int(spec[0]), int(spec[1]) + 1, n).astype(float)
        return rng.uniform(spec[0], spec[1], n)
    return np.full(n, float(spec))


class _Device:
    """Arrival state of one device."""

    def __init__(self, index: int, group: DeviceGroup, streams: Streams) -> None:
        self.index = index
        self.group = group
        self.arr_rng = streams.keyed("arrivals", index)
        self.wl_rng = streams.keyed("workload", index)
        self.jit_rng = streams.keyed("jitter", index)
        arr = group.arrivals
        if isinstance(arr, MMPPArrivals):
            self.state = int(self.arr_rng.integers(len(arr.rates_per_s)))
            self.t_switch = float(self.arr_rng.exponential(arr.mean_sojourn_s[self.state]))

    def times(self, t0: float, t1: float) -> np.ndarray:
        arr = self.group.arrivals
        rng = self.arr_rng
        if isinstance(arr, PoissonArrivals):
            n = rng.poisson(arr.rate_per_s * (t1 - t0))
            return np.sort(rng.uniform(t0, t1, n))
        assert isinstance(arr, MMPPArrivals)
        out = []
        t = t0
        while t < t1:
            seg_end = min(self.t_switch, t1)
            rate = arr.rates_per_s[self.state]
            if rate > 0 and seg_end > t:
                n = rng.poisson(rate * (seg_end - t))
                out.append(np.sort(rng.uniform(t, seg_end, n)))
            t = seg_end
            if self.t_switch <= t1:
                k = len(arr.rates_per_s)
                nxt = int(rng.integers(k - 1))
                self.state = nxt if nxt < self.state else nxt + 1
                self.t_switch += float(rng.exponential(arr.mean_sojourn_s[self.state]))
        return np.concatenate(out) if out else np.zeros(0)


class TaskSource:
    """Generates the scenario's tasks window by window.

    Args:
        scenario: the validated scenario.
        models: model profiles (merged).
        streams: the run's streams.
    """

    def __init__(self, scenario: Scenario, models: dict[str, ModelProfile],
                 streams: Streams) -> None:
        self.scenario = scenario
        self.models = models
        used = sorted({w.model for g in scenario.devices for w in g.workload}
                      | {m for s in scenario.servers for m in s.models})
        self.model_names: tuple[str, ...] = tuple(used)
        self.model_code = {m: k for k, m in enumerate(used)}
        # adapters (LoRA, ControlNet) requests may carry: "<kind>#<rank>", one code each
        self.adapter_names: tuple[str, ...] = ()
        self._adapter_codes: dict[str, np.ndarray] = {}
        names: list[str] = []
        for grp in scenario.devices:
            for wl in grp.workload:
                a = wl.adapters
                if a is not None:
                    for r in range(a.count):
                        name = f"{a.kind}#{r}"
                        if name not in names:
                            names.append(name)
        if names:
            self.adapter_names = tuple(names)
            code = {n: k for k, n in enumerate(names)}
            for grp in scenario.devices:
                for wl in grp.workload:
                    a = wl.adapters
                    if a is not None and a.kind not in self._adapter_codes:
                        self._adapter_codes[a.kind] = np.array(
                            [code[f"{a.kind}#{r}"] for r in range(max(
                                w.adapters.count for g in scenario.devices for w in g.workload
                                if w.adapters is not None and w.adapters.kind == a.kind))])
        self.devices: list[_Device] = []
        self.group_of: list[int] = []
        idx = 0
        for g, grp in enumerate(scenario.devices):
            for _ in range(grp.count):
                self.devices.append(_Device(idx, grp, streams))
                self.group_of.append(g)
                idx += 1
        self.duration = scenario.duration_s
        self.trace_rows_total = 0
        self.trace_rows_used = 0
        self._trace = self._load_traces(streams)
        rate = 0.0
        for grp in scenario.devices:
            a = grp.arrivals
            if isinstance(a, PoissonArrivals):
                rate += grp.count * a.rate_per_s
            elif isinstance(a, MMPPArrivals):
                w = np.asarray(a.mean_sojourn_s)
                rate += grp.count * float(np.dot(a.rates_per_s, w) / w.sum())
        # about 2,000 tasks per window, between 1 s and the whole run
        self.window = float(min(max(2000.0 / rate, 1.0), self.duration)) if rate > 0 else self.duration
        self.t_next = 0.0

    # -- traces -------------------------------------------------------------------------------
    def _load_traces(self, streams: Streams) -> list[TaskBatch]:
        out: list[TaskBatch] = []
        first = 0
        for g, grp in enumerate(self.scenario.devices):
            arr = grp.arrivals
            if isinstance(arr, TraceArrivals):
                devs = [d for d in self.devices if self.group_of[d.index] == g]
                out.append(self._load_trace(g, grp, arr, devs, streams))
            first += grp.count
        return out

    def _load_trace(self, g: int, grp: DeviceGroup, arr: TraceArrivals, devs: list[_Device],
                    streams: Streams) -> TaskBatch:
        field = f"devices.{g}.arrivals"
        path = self.scenario.resolve_path(arr.path)
        if not path.is_file():
            raise ScenarioError(f"trace file not found: {path}", f"{field}.path")
        try:
            df = pd.read_csv(path)
        except Exception as exc:  # pandas raises many types for malformed CSV
            raise ScenarioError(f"cannot read CSV {path}: {' '.join(str(exc).split())}",
                                f"{field}.path") from None
        for col_field in ("time_column", "device_column", "input_bits_column", "steps_column"):
            col = getattr(arr, col_field)
            if col is not None and col not in df.columns:
                raise ScenarioError(f"column {col!r} not in {path.name} (columns: "
                                    f"{', '.join(map(str, df.columns))})", f"{field}.{col_field}")
        raw = df[arr.time_column]
        if arr.time_format == "datetime":
            ts = pd.to_datetime(raw, errors="coerce")
            bad = ts.isna()
            t = (ts - ts.min()).dt.total_seconds().to_numpy()
        else:
            tnum = pd.to_numeric(raw, errors="coerce")
            bad = tnum.isna() | ~np.isfinite(tnum.fillna(0)) | (tnum < 0)
            t = tnum.to_numpy(dtype=float)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ScenarioError(f"row {row + 2} of {path.name}: bad time value "
                                f"{raw.iloc[row]!r}", f"{field}.time_column")
        t = arr.start_s + t * arr.time_scale
        n = len(t)
        self.trace_rows_total += n
        if arr.device_column is not None:
            dcol = pd.to_numeric(df[arr.device_column], errors="coerce")
            if dcol.isna().any():
                raise ScenarioError("non-numeric device ids", f"{field}.device_column")
            local = dcol.to_numpy(dtype=np.int64) % len(devs)
        else:
            local = np.arange(n) % len(devs)
        device = np.array([d.index for d in devs], dtype=np.int64)[local]
        rng = streams.keyed("workload", 1_000_000 + g)
        batch = self._attributes(grp, rng, streams.keyed("jitter", 1_000_000 + g), n)
        if arr.input_bits_column is not None:
            col = pd.to_numeric(df[arr.input_bits_column], errors="coerce").to_numpy(dtype=float)
            if np.isnan(col).any() or (col < 0).any():
                raise ScenarioError("negative or non-numeric values", f"{field}.input_bits_column")
            batch.input_bits = col * arr.input_bits_per_unit
        if arr.steps_column is not None:
            col = pd.to_numeric(df[arr.steps_column], errors="coerce").to_numpy(dtype=float)
            if np.isnan(col).any() or (col < 1).any():
                raise ScenarioError("steps must be >= 1", f"{field}.steps_column")
            batch.steps = np.round(col)
        order = np.argsort(t, kind="stable")
        keep = order[t[order] < self.duration]
        self.trace_rows_used += len(keep)
        batch.t_arrival = t
        batch.device = device
        return _take(batch, keep)

    # -- attributes ---------------------------------------------------------------------------
    def _attributes(self, grp: DeviceGroup, rng: np.random.Generator,
                    jit_rng: np.random.Generator, n: int) -> TaskBatch:
        wls: list[Workload] = grp.workload
        if grp.model_zipf_s is not None:  # Zipf over the listed order (mecsim.sim.workload_mix)
            from mecsim.sim.workload_mix import zipf_weights

            p = zipf_weights(len(wls), grp.model_zipf_s)
        else:
            w = np.array([x.weight for x in wls])
            p = w / w.sum()
        kind = rng.choice(len(wls), size=n, p=p) if len(wls) > 1 else np.zeros(n, int)
        model = np.zeros(n, dtype=np.int64)
        inp, out, steps = np.zeros(n), np.zeros(n), np.zeros(n)
        dl = np.full(n, np.inf)
        for k, wl in enumerate(wls):
            sel = np.flatnonzero(kind == k)
            m = len(sel)
            if m == 0:
                continue
            prof = self.models[wl.model]
            model[sel] = self.model_code[wl.model]
            inp[sel] = _draw(rng, wl.input_bits, prof.prompt_bits, m)
            out[sel] = _draw(rng, wl.output_bits, prof.output_bits, m)
            steps[sel] = _draw(rng, wl.steps, prof.steps, m, integer=True)
            if wl.deadline_s is not None:
                dl[sel] = wl.deadline_s
        jit = self.scenario.service.jitter
        if jit.distribution == "exponential":
            jf = jit_rng.exponential(1.0, n)
        elif jit.distribution == "lognormal" and jit.cv > 0:
            s2 = np.log1p(jit.cv**2)
            jf = jit_rng.lognormal(-s2 / 2.0, np.sqrt(s2), n)
        else:
            jf = np.ones(n)
        adapter = np.full(n, -1, dtype=np.int64)
        for k, wl in enumerate(wls):  # drawn last: scenarios without adapters draw as before
            a = wl.adapters
            if a is None:
                continue
            sel = np.flatnonzero(kind == k)
            if len(sel) == 0:
                continue
            from mecsim.sim.workload_mix import zipf_weights

            has = sel[rng.random(len(sel)) < a.probability]
            if len(has):
                rank = rng.choice(a.count, size=len(has), p=zipf_weights(a.count, a.zipf_s))
                adapter[has] = self._adapter_codes[a.kind][rank]
        return TaskBatch(np.zeros(n), np.zeros(n, np.int64), model, inp, out, steps, dl, jf, adapter)

    # -- windows ------------------------------------------------------------------------------
    def next_batch(self) -> TaskBatch | None:
        """Tasks of the next window, or None when the run's arrivals are exhausted."""
        if self.t_next >= self.duration:
            return None
        t0, t1 = self.t_next, min(self.t_next + self.window, self.duration)
        self.t_next = t1
        parts: list[TaskBatch] = []
        for dev in self.devices:
            if isinstance(dev.group.arrivals, TraceArrivals):
                continue
            times = dev.times(t0, t1)
            if len(times) == 0:
                continue
            b = self._attributes(dev.group, dev.wl_rng, dev.jit_rng, len(times))
            b.t_arrival = times
            b.device = np.full(len(times), dev.index, dtype=np.int64)
            parts.append(b)
        for tb in self._trace:
            sel = np.flatnonzero((tb.t_arrival >= t0) & (tb.t_arrival < t1))
            if len(sel):
                parts.append(_take(tb, sel))
        if not parts:
            return _empty()
        cat = TaskBatch(*(np.concatenate([getattr(p, f) for p in parts])
                          for f in TaskBatch.__dataclass_fields__))
        order = np.lexsort((cat.device, cat.t_arrival))
        return _take(cat, order)


def _take(b: TaskBatch, idx: np.ndarray) -> TaskBatch:
    return TaskBatch(*(getattr(b, f)[idx] for f in TaskBatch.__dataclass_fields__))


def _empty() -> TaskBatch:
    z = np.zeros(0)
    zi = np.zeros(0, dtype=np.int64)
    return TaskBatch(z, zi, zi, z, z, z, z, z, zi)
