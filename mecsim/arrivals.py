"""Task generation: Poisson, MMPP (bursty on-off) and CSV trace replay, in time windows.

Tasks are generated window by window (the window length is fixed by the scenario, never by the
policy, about 2,000 tasks), so a seed gives the same tasks for every policy and memory does not
grow with the run length.

Streams:

- A Poisson or MMPP device of a group of at most :data:`~mecsim.streams.PER_DEVICE_MAX` (64)
  devices, and every device of an MMPP group, draws from its own streams keyed by the device
  index: ``arrivals`` (times; MMPP state changes), ``workload`` (model, sizes, steps, adapters)
  and ``jitter`` (service-time factor).
- A Poisson group of more than 64 devices draws its arrivals as ONE superposed Poisson process
  of rate ``count x rate_per_s``, each arrival's device uniform over the group, with the task
  attributes and jitter drawn for the whole window in one call, from streams keyed by the group
  (:func:`~mecsim.streams.group_key`: ``2_000_000 + g``). The superposition of independent
  Poisson processes is Poisson with the summed rate and independent uniform labels, so the law
  of the tasks is that of independent per-device processes; the set-up and per-window cost no
  longer grow with the number of devices (a per-device loop at 10,000 devices made 30,000
  generators and 10,000 draws per window). The realisation differs from the per-device one.
- A trace group draws its task attributes from streams keyed ``1_000_000 + g``.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mecsim.errors import ScenarioError
from mecsim.scenario import (
    MAX_BITS,
    MAX_EXPECTED_TASKS,
    DeviceGroup,
    MMPPArrivals,
    ModelProfile,
    PoissonArrivals,
    Scenario,
    TraceArrivals,
    Workload,
)
from mecsim.streams import PER_DEVICE_MAX, Streams, group_key

#: Largest trace file read, in bytes once decompressed (CSV) or on disk (Parquet).
MAX_TRACE_BYTES = 64 * 2**20
_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


@dataclass
class Trace:
    """A checked trace: arrival times in seconds relative to the earliest row (file order, before
    ``time_scale`` and ``start_s``) and the optional per-row columns (None when not mapped)."""

    t: np.ndarray
    device: np.ndarray | None
    input_units: np.ndarray | None
    steps: np.ndarray | None


def _read_table(path: Path, field: str) -> pd.DataFrame:
    """Read a CSV (plain, .gz, .bz2 or .xz) or a Parquet file, bounded by MAX_TRACE_BYTES."""
    cap = f"{MAX_TRACE_BYTES / 2**20:g} MiB"
    try:
        size = path.stat().st_size
        if path.suffix == ".parquet":
            if size > MAX_TRACE_BYTES:
                raise ScenarioError(f"{path.name} is larger than the {cap} limit for trace files", field)
            return pd.read_parquet(path)
        opener = _OPENERS.get(path.suffix, open)
        with opener(path, "rb") as fh:
            raw = fh.read(MAX_TRACE_BYTES + 1)
    except ScenarioError:
        raise
    except PermissionError:
        raise ScenarioError(f"cannot read {path}: permission denied", field) from None
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise ScenarioError(
            f"cannot read {path}: {' '.join(str(exc).split()) or type(exc).__name__}", field
        ) from None
    except Exception as exc:  # pyarrow raises its own types for a malformed Parquet file
        raise ScenarioError(f"cannot read Parquet {path}: {' '.join(str(exc).split())}", field) from None
    if len(raw) > MAX_TRACE_BYTES:
        raise ScenarioError(
            f"{path.name} is larger than the {cap} limit for trace files (decompressed)", field
        )
    if b"\x00" in raw[:65536]:
        raise ScenarioError(f"{path.name} is not a text CSV file (binary content)", field)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{path.name} is not UTF-8 text (byte {exc.start})", field) from None
    try:
        return pd.read_csv(io.BytesIO(raw))
    except pd.errors.EmptyDataError:
        raise ScenarioError(f"{path.name} is empty", field) from None
    except Exception as exc:  # pandas raises many types for malformed CSV
        raise ScenarioError(f"cannot read CSV {path}: {' '.join(str(exc).split())}", field) from None


def _numeric(df: pd.DataFrame, col: str, name: str, field: str, low: float, high: float) -> np.ndarray:
    vals = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(vals) | (vals < low) | (vals > high)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ScenarioError(
            f"row {row + 2} of {name}: {df[col].iloc[row]!r} is not a finite number in [{low:g}, {high:g}]",
            field,
        )
    return vals


#: the last few traces read: (file, its mtime and size, the columns read) -> Trace (read-only
#: arrays); a sweep of many short runs over a trace scenario parses its file once
_TRACE_CACHE: dict[tuple[Any, ...], Trace] = {}
_TRACE_CACHE_MAX = 4


def read_trace(arr: TraceArrivals, path: Path, field: str) -> Trace:
    """Open and check the trace file of a ``process: trace`` arrivals block (see
    :func:`_parse_trace`); a file read before, unchanged since (same mtime and size), with the
    same columns, is not parsed again (its arrays are read-only)."""
    try:
        st = path.stat()
    except OSError:
        return _parse_trace(arr, path, field)  # names the problem
    key = (
        str(path.resolve()),
        st.st_mtime_ns,
        st.st_size,
        arr.time_column,
        arr.time_format,
        arr.device_column,
        arr.input_bits_column,
        arr.input_bits_per_unit,
        arr.steps_column,
    )
    hit = _TRACE_CACHE.get(key)
    if hit is not None:
        return hit
    tr = _parse_trace(arr, path, field)
    for a in (tr.t, tr.device, tr.input_units, tr.steps):
        if a is not None:
            a.setflags(write=False)
    if len(_TRACE_CACHE) >= _TRACE_CACHE_MAX:
        del _TRACE_CACHE[next(iter(_TRACE_CACHE))]  # the oldest
    _TRACE_CACHE[key] = tr
    return tr


def _parse_trace(arr: TraceArrivals, path: Path, field: str) -> Trace:
    """Open and check the trace file of a ``process: trace`` arrivals block.

    Checks, each failure one :class:`ScenarioError` naming ``field`` (``devices.G.arrivals``) and
    the problem: the file exists and is at most :data:`MAX_TRACE_BYTES`; it is UTF-8 CSV
    (optionally .gz/.bz2/.xz) or Parquet; the named columns exist; it has rows (at most
    MAX_EXPECTED_TASKS); times are finite and >= 0 (seconds) or valid timestamps (datetime);
    device ids are whole numbers >= 0; sizes are finite, >= 0 and at most MAX_BITS bits; steps are
    in [1, 1e6]. Rows need not be in time order: they are replayed sorted by time (stable).
    """
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "not found"
        raise ScenarioError(f"trace file {what}: {path}", f"{field}.path")
    df = _read_table(path, f"{field}.path")
    for col_field in ("time_column", "device_column", "input_bits_column", "steps_column"):
        col = getattr(arr, col_field)
        if col is not None and col not in df.columns:
            raise ScenarioError(
                f"column {col!r} not in {path.name} (columns: {', '.join(map(str, df.columns))})",
                f"{field}.{col_field}",
            )
    if len(df) == 0:
        raise ScenarioError(f"{path.name} has no rows", f"{field}.path")
    if len(df) > MAX_EXPECTED_TASKS:
        raise ScenarioError(
            f"{path.name} has {len(df)} rows, above the limit of {MAX_EXPECTED_TASKS:g}", f"{field}.path"
        )
    raw = df[arr.time_column]
    if arr.time_format == "datetime":
        ts = pd.to_datetime(raw, errors="coerce")
        bad = ts.isna().to_numpy()
        t = (ts - ts.min()).dt.total_seconds().to_numpy() if not bad.all() else np.zeros(len(ts))
    else:
        tnum = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(tnum) | (tnum < 0)
        t = tnum
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ScenarioError(
            f"row {row + 2} of {path.name}: bad time value {raw.iloc[row]!r} "
            f"({'a timestamp' if arr.time_format == 'datetime' else 'finite seconds >= 0'}"
            " expected)",
            f"{field}.time_column",
        )
    dev = inp = steps = None
    if arr.device_column is not None:
        dev = _numeric(df, arr.device_column, path.name, f"{field}.device_column", 0, 2**62)
        if (dev != np.round(dev)).any():
            raise ScenarioError("device ids must be whole numbers", f"{field}.device_column")
    if arr.input_bits_column is not None:
        inp = _numeric(
            df,
            arr.input_bits_column,
            path.name,
            f"{field}.input_bits_column",
            0,
            MAX_BITS / arr.input_bits_per_unit,
        )
    if arr.steps_column is not None:
        steps = _numeric(df, arr.steps_column, path.name, f"{field}.steps_column", 1, 1e6)
    return Trace(t, dev, inp, steps)


def check_traces(scenario: Scenario) -> int:
    """Open and check every trace file the scenario names (see :func:`read_trace`); the number of
    trace rows. ``mecsim validate`` calls this; a run reads the traces the same way."""
    rows = 0
    for g, grp in enumerate(scenario.devices):
        if isinstance(grp.arrivals, TraceArrivals):
            rows += len(
                read_trace(grp.arrivals, scenario.resolve_path(grp.arrivals.path), f"devices.{g}.arrivals").t
            )
    return rows


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


def _draw(
    rng: np.random.Generator,
    spec: float | tuple[float, float] | None,
    default: float,
    n: int,
    integer: bool = False,
) -> np.ndarray:
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


def superposed(group: DeviceGroup) -> bool:
    """Whether a group draws its arrivals as one superposed Poisson process (a Poisson group of
    more than :data:`~mecsim.streams.PER_DEVICE_MAX` devices)."""
    return isinstance(group.arrivals, PoissonArrivals) and group.count > PER_DEVICE_MAX


class _Group:
    """Arrival state of a superposed Poisson group: devices ``first .. first + count - 1``."""

    def __init__(self, g: int, first: int, group: DeviceGroup, streams: Streams) -> None:
        assert isinstance(group.arrivals, PoissonArrivals)
        self.group = group
        self.first = first
        self.count = group.count
        self.rate = group.count * group.arrivals.rate_per_s
        key = group_key(g)
        self.arr_rng = streams.keyed("arrivals", key)
        self.wl_rng = streams.keyed("workload", key)
        self.jit_rng = streams.keyed("jitter", key)

    def draw(self, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray]:
        """(times, devices) of the group's arrivals in ``[t0, t1)``, unsorted."""
        rng = self.arr_rng
        n = rng.poisson(self.rate * (t1 - t0))
        times = rng.uniform(t0, t1, n)
        return times, self.first + rng.integers(0, self.count, n)


class TaskSource:
    """Generates the scenario's tasks window by window.

    Args:
        scenario: the validated scenario.
        models: model profiles (merged).
        streams: the run's streams.
    """

    def __init__(self, scenario: Scenario, models: dict[str, ModelProfile], streams: Streams) -> None:
        self.scenario = scenario
        self.models = models
        used = sorted(
            {w.model for g in scenario.devices for w in g.workload}
            | {m for s in scenario.servers for m in s.models}
        )
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
                            [
                                code[f"{a.kind}#{r}"]
                                for r in range(
                                    max(
                                        w.adapters.count
                                        for g in scenario.devices
                                        for w in g.workload
                                        if w.adapters is not None and w.adapters.kind == a.kind
                                    )
                                )
                            ]
                        )
        # per-device state (Poisson groups of at most PER_DEVICE_MAX devices, MMPP groups) and
        # superposed Poisson groups; trace groups need neither
        self.devices: list[_Device] = []
        self.groups: list[_Group] = []
        #: index of each device's first device (in ``scenario.devices`` order)
        self.group_first: list[int] = []
        idx = 0
        for g, grp in enumerate(scenario.devices):
            self.group_first.append(idx)
            if superposed(grp):
                self.groups.append(_Group(g, idx, grp, streams))
            elif not isinstance(grp.arrivals, TraceArrivals):
                self.devices.extend(_Device(idx + k, grp, streams) for k in range(grp.count))
            idx += grp.count
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
        for g, grp in enumerate(self.scenario.devices):
            arr = grp.arrivals
            if isinstance(arr, TraceArrivals):
                out.append(self._load_trace(g, grp, arr, streams))
        return out

    def _load_trace(self, g: int, grp: DeviceGroup, arr: TraceArrivals, streams: Streams) -> TaskBatch:
        field = f"devices.{g}.arrivals"
        tr = read_trace(arr, self.scenario.resolve_path(arr.path), field)
        t = arr.start_s + tr.t * arr.time_scale
        n = len(t)
        self.trace_rows_total += n
        if tr.device is not None:
            local = tr.device.astype(np.int64) % grp.count
        else:
            local = np.arange(n) % grp.count
        device = self.group_first[g] + local
        rng = streams.keyed("workload", 1_000_000 + g)
        batch = self._attributes(grp, rng, streams.keyed("jitter", 1_000_000 + g), n)
        if tr.input_units is not None:
            batch.input_bits = tr.input_units * arr.input_bits_per_unit
        if tr.steps is not None:
            batch.steps = np.round(tr.steps)
        order = np.argsort(t, kind="stable")
        keep = order[t[order] < self.duration]
        self.trace_rows_used += len(keep)
        batch.t_arrival = t
        batch.device = device
        return _take(batch, keep)

    # -- attributes ---------------------------------------------------------------------------
    def _attributes(
        self, grp: DeviceGroup, rng: np.random.Generator, jit_rng: np.random.Generator, n: int
    ) -> TaskBatch:
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
            times = dev.times(t0, t1)
            if len(times) == 0:
                continue
            b = self._attributes(dev.group, dev.wl_rng, dev.jit_rng, len(times))
            b.t_arrival = times
            b.device = np.full(len(times), dev.index, dtype=np.int64)
            parts.append(b)
        for grp in self.groups:
            times, device = grp.draw(t0, t1)
            if len(times) == 0:
                continue
            b = self._attributes(grp.group, grp.wl_rng, grp.jit_rng, len(times))
            b.t_arrival = times
            b.device = device
            parts.append(b)
        for tb in self._trace:
            sel = np.flatnonzero((tb.t_arrival >= t0) & (tb.t_arrival < t1))
            if len(sel):
                parts.append(_take(tb, sel))
        if not parts:
            return _empty()
        cat = TaskBatch(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in TaskBatch.__dataclass_fields__)
        )
        order = np.lexsort((cat.device, cat.t_arrival))
        return _take(cat, order)


def _take(b: TaskBatch, idx: np.ndarray) -> TaskBatch:
    return TaskBatch(*(getattr(b, f)[idx] for f in TaskBatch.__dataclass_fields__))


def _empty() -> TaskBatch:
    z = np.zeros(0)
    zi = np.zeros(0, dtype=np.int64)
    return TaskBatch(z, zi, zi, z, z, z, z, z, zi)
