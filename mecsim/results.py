"""Run results: the tasks, epochs and servers tables, the summary, and saving to disk.

Example:
    >>> import mecsim
    >>> res = mecsim.simulate("smoke-v1", seed=3, duration_s=20)
    >>> res.summary["scenario"], res.summary["seed"], res.summary["duration_s"]
    ('smoke-v1', 3, 20.0)
    >>> res.summary["tasks_generated"] == len(res.tasks)
    True
    >>> s = res.summary
    >>> s["tasks_completed"] + s["tasks_dropped"] + s["tasks_in_flight"] == s["tasks_generated"]
    True
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mecsim.scenario import Scenario
from mecsim.traces import atomic_write as _atomic
from mecsim.traces import faults_frame, servers_frame, tasks_frame


def _q(x: np.ndarray, q: float) -> float | None:
    return float(np.quantile(x, q)) if len(x) else None


def _busy(tasks: pd.DataFrame, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray]:
    """Busy time within [t0, t1] of each task's service, and the task's server index."""
    s = tasks["t_service_start"].to_numpy()
    e = tasks["t_service_end"].to_numpy()
    e = np.where(np.isnan(e) & ~np.isnan(s), t1, e)  # in service at the end
    busy = np.clip(np.minimum(e, t1) - np.maximum(s, t0), 0.0, None)
    busy = np.where(np.isnan(busy), 0.0, busy)
    if "batch_size" in tasks.columns:  # a batch of b keeps one GPU busy: each task counts 1/b
        b = tasks["batch_size"].to_numpy()
        busy = np.where(b > 1, busy / np.maximum(b, 1), busy)
    return busy, tasks["server_index"].to_numpy()


def _utilisation(
    busy: np.ndarray, idx: np.ndarray, server_names: tuple[str, ...], slots: np.ndarray, t0: float, t1: float
) -> dict[str, float]:
    out = {}
    for j, name in enumerate(server_names):
        out[name] = float(busy[idx == j].sum() / (slots[j] * (t1 - t0))) if t1 > t0 else 0.0
    return out


def utilisation(
    tasks: pd.DataFrame, server_names: tuple[str, ...], slots: np.ndarray, t0: float, t1: float
) -> dict[str, float]:
    """Busy fraction of each server's slots over [t0, t1], from the service intervals."""
    busy, idx = _busy(tasks, t0, t1)
    return _utilisation(busy, idx, server_names, slots, t0, t1)


_SUMMARY_COLUMNS = [
    "t_arrival",
    "status",
    "latency",
    "deadline",
    "deadline_met",
    "drop_reason",
    "t_service_start",
    "t_service_end",
    "server_index",
    "energy_tx_j",
    "energy_server_j",
]


class _Gather:
    """Arrays gathered piece by piece, in order, into one preallocated buffer each (a DataFrame
    is a single piece: its arrays are used as they are)."""

    def __init__(self, n: int, single: bool) -> None:
        self.n, self.single = n, single
        self.bufs: dict[str, np.ndarray] = {}
        self.fill: dict[str, int] = {}

    def put(self, name: str, a: np.ndarray) -> None:
        if self.single:
            self.bufs[name] = a
            return
        b = self.bufs.get(name)
        if b is None:
            b = self.bufs[name] = np.empty(self.n, dtype=a.dtype)
            self.fill[name] = 0
        k = self.fill[name]
        b[k : k + len(a)] = a
        self.fill[name] = k + len(a)

    def get(self, name: str) -> np.ndarray:
        b = self.bufs[name]
        return b if self.single else b[: self.fill[name]]


def _column_names(tasks: Any) -> list[str]:
    if isinstance(tasks, pd.DataFrame):
        return list(tasks.columns)
    import pyarrow.parquet as pq

    return list(pq.ParquetFile(tasks.path).schema_arrow.names)


def summarise(
    tasks: pd.DataFrame,
    epochs: pd.DataFrame,
    scenario: Scenario,
    server_names: tuple[str, ...],
    slots: np.ndarray,
    t_end: float,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """The summary dict. Latency statistics are over the tasks completed by the end that arrived
    after the warm-up; the counts say exactly which tasks that excludes.

    ``tasks`` is a DataFrame or a :class:`ParquetColumns` (a streamed run's file, read one row
    group at a time: counts add up, and the latencies, busy times and energies are gathered whole
    and in task order, so both give the same numbers); ``epochs`` needs only ``len()``."""
    warm = scenario.warmup_s
    t1 = min(t_end, scenario.duration_s)
    single = isinstance(tasks, pd.DataFrame)
    cols = _SUMMARY_COLUMNS + (["batch_size"] if "batch_size" in _column_names(tasks) else [])
    pieces = [tasks] if single else tasks.iter_chunks(cols)
    g = _Gather(len(tasks), single)
    reason_parts: list[pd.Series] = []
    counts: dict[str, int] = {}
    missed = n_dl = n_comp = 0
    for df in pieces:
        after = df["t_arrival"].to_numpy() >= warm
        status = df["status"]
        st = status.to_numpy()
        comp = (st == "completed") & after
        n_comp += int(comp.sum())
        g.put("lat", df["latency"].to_numpy()[comp])
        dl_known = after & (st != "in_flight") & np.isfinite(df["deadline"].to_numpy())
        n_dl += int(dl_known.sum())
        met = df["deadline_met"].to_numpy(dtype=object)
        missed += int(sum(1 for k in np.flatnonzero(dl_known) if met[k] is not True))
        for k, v in status.value_counts().items():
            counts[str(k)] = counts.get(str(k), 0) + int(v)
        reason_parts.append(df["drop_reason"][st == "dropped"])
        busy, idx = _busy(df, warm, t1)
        g.put("busy", busy)
        g.put("idx", idx.astype(np.int16))  # server indices (-1: none) fit int16
        for k in ("energy_tx_j", "energy_server_j"):
            g.put(k, df[k].to_numpy())
        del df, status, st, met, busy, idx
    lat = g.get("lat")
    reasons = (reason_parts[0] if len(reason_parts) == 1 else pd.concat(reason_parts)).value_counts()
    span = max(scenario.duration_s - warm, 1e-12)
    summary: dict[str, Any] = {
        "scenario": scenario.name,
        "scenario_digest": scenario.digest(),
        "seed": extra.get("seed"),
        "policy": extra.get("policy"),
        "duration_s": scenario.duration_s,
        "warmup_s": warm,
        "drain_s": scenario.drain_s,
        "tasks_generated": int(len(tasks)),
        "tasks_completed": int(counts.get("completed", 0)),
        "tasks_dropped": int(counts.get("dropped", 0)),
        "tasks_in_flight": int(counts.get("in_flight", 0)),
        "dropped_by_reason": {str(k): int(v) for k, v in reasons.items() if v},
        "latency_basis": "completed tasks arriving after warmup_s",
        "latency_n": int(len(lat)),
        "latency_mean_s": float(lat.mean()) if len(lat) else None,
        "latency_p50_s": _q(lat, 0.5),
        "latency_p95_s": _q(lat, 0.95),
        "latency_p99_s": _q(lat, 0.99),
        "latency_max_s": float(lat.max()) if len(lat) else None,
        "deadline_tasks": n_dl,
        "deadline_missed": missed,
        "deadline_miss_rate": (missed / n_dl) if n_dl else None,
        "throughput_per_s": float(n_comp / span),
        "utilisation": _utilisation(g.get("busy"), g.get("idx"), server_names, slots, warm, t1),
        "energy_tx_j_total": float(pd.Series(g.get("energy_tx_j")).sum()),
        "energy_server_j_total": float(pd.Series(g.get("energy_server_j")).sum()),
        "epochs": int(len(epochs)),
        "decision_wall_s_total": float(extra.get("decision_wall_s", 0.0)),
        "run_wall_s": float(extra.get("run_wall_s", 0.0)),
    }
    summary.update(
        {k: v for k, v in extra.items() if k not in summary and k not in ("decision_wall_s", "run_wall_s")}
    )
    return summary


@dataclass
class Result:
    """The outcome of one run.

    Attributes:
        tasks: one row per generated task (see README for the columns).
        epochs: one row per scheduling epoch that decided tasks.
        servers: one row per change of a server's queue/busy/in-transit counts.
        faults: one row per fault event (server down/up, channel, backhaul) and per task a
            failure redispatched or dropped; empty without faults.
        summary: headline statistics (JSON-serialisable).
        scenario: the resolved scenario that ran.
        complete: False when the run stopped early (the tables hold what was simulated).

    A streamed run (``simulate(..., stream_to=DIR)``) returns a :class:`StreamedResult`, whose
    tables are read from DIR on first access.
    """

    tasks: pd.DataFrame
    epochs: pd.DataFrame
    servers: pd.DataFrame
    summary: dict[str, Any]
    scenario: Scenario
    faults: pd.DataFrame = field(default_factory=pd.DataFrame)
    complete: bool = True
    meta: dict[str, Any] = field(default_factory=dict)
    #: with ``service.residency`` on: one row per load of weights (see
    #: :func:`mecsim.traces.loads_frame`); None otherwise (and no loads.parquet is written)
    loads: pd.DataFrame | None = None

    def save(self, out_dir: str | os.PathLike[str]) -> Path:
        """Write tasks/epochs/servers Parquet files, summary.json and scenario.yaml to out_dir.

        Each file is written to a temporary name and renamed, so a reader never sees half a file.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        frames = [
            ("tasks", self.tasks),
            ("epochs", self.epochs),
            ("servers", self.servers),
            ("faults", self.faults),
        ]
        if self.loads is not None:
            frames.append(("loads", self.loads))
        for name, df in frames:
            _atomic(out / f"{name}.parquet", lambda p, df=df: df.to_parquet(p, index=False))
        _write_meta(out, self.summary, self.complete, self.scenario)
        return out


def _write_meta(out: Path, summary: dict[str, Any], complete: bool, scenario: Scenario) -> None:
    import yaml

    summary = dict(summary, complete=complete)
    _atomic(
        out / "summary.json", lambda p: Path(p).write_text(json.dumps(summary, indent=2, default=_jsonable))
    )
    _atomic(
        out / "scenario.yaml",
        lambda p: Path(p).write_text(yaml.safe_dump(scenario.resolved(), sort_keys=False)),
    )


class ParquetColumns:
    """A Parquet table read a column or a row group at a time, with pyarrow: ``len()`` from the
    file's metadata, ``[name]`` reads that column as a pandas Series, :meth:`iter_chunks` reads
    some columns row group by row group; nothing is kept."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import pyarrow.parquet as pq

        self.path = Path(path)
        self._n = pq.ParquetFile(self.path).metadata.num_rows

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, name: str) -> pd.Series:
        import pyarrow.parquet as pq

        return pq.read_table(self.path, columns=[name]).to_pandas()[name]

    def iter_chunks(self, columns: list[str]) -> Any:
        """One DataFrame of ``columns`` per row group (one empty DataFrame if there is none)."""
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(self.path)
        if pf.num_row_groups == 0:
            yield pq.read_table(self.path, columns=columns).to_pandas()
        for i in range(pf.num_row_groups):
            yield pf.read_row_group(i, columns=columns).to_pandas()


_TABLES = ("tasks", "epochs", "servers")


class StreamedResult(Result):
    """The :class:`Result` of a streamed run (``simulate(..., stream_to=DIR)``).

    ``summary``, ``faults``, ``scenario`` and ``complete`` are in memory; ``tasks``, ``epochs`` and
    ``servers`` are read from ``DIR/<name>.parquet`` on first access and then kept (so a
    long run costs no memory until a table is asked for). ``path`` is DIR.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        summary: dict[str, Any],
        scenario: Scenario,
        faults: pd.DataFrame,
        complete: bool = True,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self.summary = summary
        self.scenario = scenario
        self.faults = faults
        self.complete = complete
        self.meta = meta if meta is not None else {}
        self._loaded: dict[str, pd.DataFrame] = {}

    def _table(self, name: str) -> pd.DataFrame:
        df = self._loaded.get(name)
        if df is None:
            df = self._loaded[name] = pd.read_parquet(self.path / f"{name}.parquet")
        return df

    @property
    def tasks(self) -> pd.DataFrame:  # type: ignore[override]
        return self._table("tasks")

    @property
    def epochs(self) -> pd.DataFrame:  # type: ignore[override]
        return self._table("epochs")

    @property
    def servers(self) -> pd.DataFrame:  # type: ignore[override]
        return self._table("servers")

    def __repr__(self) -> str:
        return (
            f"StreamedResult(path={str(self.path)!r}, scenario={self.scenario.name!r}, "
            f"tasks={self.summary.get('tasks_generated')}, complete={self.complete})"
        )

    def save(self, out_dir: str | os.PathLike[str]) -> Path:
        """As :meth:`Result.save`; the tables are copied file to file (not loaded)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if out.resolve() != self.path.resolve():
            for name in (*_TABLES, "faults"):
                src = self.path / f"{name}.parquet"
                _atomic(out / f"{name}.parquet", lambda p, src=src: shutil.copyfile(src, p))
        _write_meta(out, self.summary, self.complete, self.scenario)
        return out


def _jsonable(o: Any) -> Any:
    if isinstance(o, np.integer | np.floating | np.bool_):
        return o.item()
    return str(o)


def _extra(sim: Any, t_end: float) -> dict[str, Any]:
    extra = {
        "seed": sim.seed,
        "policy": getattr(sim.policy, "name", type(sim.policy).__name__),
        "decision_wall_s": sim.decision_wall_total,
        "run_wall_s": getattr(sim, "wall_s", 0.0),
    }
    if sim.source.trace_rows_total:
        extra["trace_rows"] = sim.source.trace_rows_total
        extra["trace_rows_replayed"] = sim.source.trace_rows_used
    if not sim.complete:
        extra["stopped_at_s"] = t_end
    return extra


def collect(sim: Any) -> Result:
    """Build a :class:`Result` from a finished (or stopped) :class:`~mecsim.engine.Simulation`.

    For a streamed run (``stream_to``) this closes the files (writing what is still in memory),
    computes the summary from them, writes summary.json and scenario.yaml next to them, and
    returns a :class:`StreamedResult` whose tables load lazily.
    """
    if getattr(sim, "_stream", None) is not None:
        return _collect_streamed(sim)
    t_end = float(sim.env.now) if not sim.complete else sim.t_end
    cols = sim.tasks.view()
    if not sim.complete:  # tasks generated ahead of a stop had not arrived yet
        keep = int(np.searchsorted(cols["t_arrival"], t_end, side="right"))
        cols = {k: v[:keep] for k, v in cols.items()}
    tasks = tasks_frame(
        cols, sim.model_names, sim.server_names, t_end, adapter_names=getattr(sim, "adapter_names", ())
    )
    epochs = sim.epoch_log.frame()
    servers = servers_frame(sim.server_log.view(), sim.server_names)
    extra = _extra(sim, t_end)
    faults = _fault_extra(sim, tasks, extra)
    loads = _gpu_extra(sim, tasks, extra)
    summary = summarise(tasks, epochs, sim.sc, sim.server_names, sim.slots, t_end, extra)
    return Result(tasks, epochs, servers, summary, sim.sc, faults=faults, complete=sim.complete, loads=loads)


def _gpu_extra(sim: Any, tasks: Any, extra: dict[str, Any]) -> pd.DataFrame | None:
    """With the GPU-server model: ``cold_start_rate`` (share of the completed tasks arriving after
    the warm-up that waited for weights to load), ``mean_batch_size`` (mean size of the batches
    those tasks were served in, per batch), ``batches`` and ``loads`` in the summary's extras;
    returns the loads table (None without residency)."""
    if not getattr(sim, "gpu_mode", False):
        return None
    st = tasks["status"].to_numpy()
    keep = (st == "completed") & (tasks["t_arrival"].to_numpy() >= sim.sc.warmup_s)
    cold = tasks["cold_start"].to_numpy()[keep]
    bid = tasks["batch_id"].to_numpy()[keep]
    bsz = tasks["batch_size"].to_numpy()[keep]
    _, first = np.unique(bid, return_index=True)
    extra["cold_start_rate"] = float(cold.mean()) if len(cold) else None
    extra["mean_batch_size"] = float(bsz[first].mean()) if len(first) else None
    extra["batches"] = int(len(first))
    if not sim.sc.service.residency.enabled:
        return None
    from mecsim.traces import loads_frame

    loads = loads_frame([s.model for s in sim.servers], sim.server_names)
    extra["loads"] = int(len(loads))
    return loads


def _fault_extra(sim: Any, tasks: Any, extra: dict[str, Any]) -> pd.DataFrame:
    """The faults table; adds the fault counts to the summary's extras when there were any."""
    faults = faults_frame(sim.fault_log.view(), sim.server_names)
    if len(faults):
        extra["fault_events"] = {str(k): int(v) for k, v in faults["event"].value_counts().items() if v}
        extra["tasks_redispatched"] = int((tasks["redispatches"] > 0).sum())
    return faults


def _collect_streamed(sim: Any) -> StreamedResult:
    sim.close_stream()
    out = sim._stream.out
    t_end = float(sim.env.now) if not sim.complete else sim.t_end
    tasks = ParquetColumns(out / "tasks.parquet")
    epochs = ParquetColumns(out / "epochs.parquet")
    extra = _extra(sim, t_end)
    faults = _fault_extra(sim, tasks, extra)
    _gpu_extra(sim, tasks, extra)
    summary = summarise(tasks, epochs, sim.sc, sim.server_names, sim.slots, t_end, extra)
    _write_meta(out, summary, sim.complete, sim.sc)
    return StreamedResult(out, summary, sim.sc, faults, complete=sim.complete)
