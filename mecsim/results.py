"""Run results: the tasks, epochs and servers tables, the summary, and saving to disk.

Example:
    >>> import mecsim
    >>> res = mecsim.simulate("smoke-v1", seed=3, duration_s=20)
    >>> sorted(res.summary)[:3]
    ['deadline_miss_rate', 'decision_wall_s_total', 'drain_s']
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mecsim.scenario import Scenario
from mecsim.traces import faults_frame, servers_frame, tasks_frame


def _q(x: np.ndarray, q: float) -> float | None:
    return float(np.quantile(x, q)) if len(x) else None


def utilisation(tasks: pd.DataFrame, server_names: tuple[str, ...], slots: np.ndarray,
                t0: float, t1: float) -> dict[str, float]:
    """Busy fraction of each server's slots over [t0, t1], from the service intervals."""
    s = tasks["t_service_start"].to_numpy()
    e = tasks["t_service_end"].to_numpy()
    e = np.where(np.isnan(e) & ~np.isnan(s), t1, e)  # in service at the end
    busy = np.clip(np.minimum(e, t1) - np.maximum(s, t0), 0.0, None)
    busy = np.where(np.isnan(busy), 0.0, busy)
    idx = tasks["server_index"].to_numpy()
    out = {}
    for j, name in enumerate(server_names):
        out[name] = float(busy[idx == j].sum() / (slots[j] * (t1 - t0))) if t1 > t0 else 0.0
    return out


def summarise(tasks: pd.DataFrame, epochs: pd.DataFrame, scenario: Scenario,
              server_names: tuple[str, ...], slots: np.ndarray, t_end: float,
              extra: dict[str, Any]) -> dict[str, Any]:
    """The summary dict. Latency statistics are over the tasks completed by the end that arrived
    after the warm-up; the counts say exactly which tasks that excludes."""
    warm = scenario.warmup_s
    after = tasks["t_arrival"].to_numpy() >= warm
    st = tasks["status"].to_numpy()
    comp = (st == "completed") & after
    lat = tasks["latency"].to_numpy()[comp]
    dl_known = after & (st != "in_flight") & np.isfinite(tasks["deadline"].to_numpy())
    met = tasks["deadline_met"].to_numpy(dtype=object)
    missed = int(sum(1 for k in np.flatnonzero(dl_known) if met[k] is not True))
    span = max(scenario.duration_s - warm, 1e-12)
    counts = tasks["status"].value_counts()
    reasons = tasks.loc[tasks["status"] == "dropped", "drop_reason"].value_counts()
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
        "deadline_tasks": int(dl_known.sum()),
        "deadline_missed": missed,
        "deadline_miss_rate": (missed / int(dl_known.sum())) if dl_known.sum() else None,
        "throughput_per_s": float(comp.sum() / span),
        "utilisation": utilisation(tasks, server_names, slots, warm, min(t_end, scenario.duration_s)),
        "energy_tx_j_total": float(tasks["energy_tx_j"].sum()),
        "energy_server_j_total": float(tasks["energy_server_j"].sum()),
        "epochs": int(len(epochs)),
        "decision_wall_s_total": float(extra.get("decision_wall_s", 0.0)),
        "run_wall_s": float(extra.get("run_wall_s", 0.0)),
    }
    summary.update({k: v for k, v in extra.items() if k not in summary and k not in
                    ("decision_wall_s", "run_wall_s")})
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
    """

    tasks: pd.DataFrame
    epochs: pd.DataFrame
    servers: pd.DataFrame
    summary: dict[str, Any]
    scenario: Scenario
    faults: pd.DataFrame = field(default_factory=pd.DataFrame)
    complete: bool = True
    meta: dict[str, Any] = field(default_factory=dict)

    def save(self, out_dir: str | os.PathLike[str]) -> Path:
        """Write tasks/epochs/servers Parquet files, summary.json and scenario.yaml to out_dir.

        Each file is written to a temporary name and renamed, so a reader never sees half a file.
        """
        import yaml

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        frames = [("tasks", self.tasks), ("epochs", self.epochs), ("servers", self.servers),
                  ("faults", self.faults)]
        for name, df in frames:
            _atomic(out / f"{name}.parquet", lambda p, df=df: df.to_parquet(p, index=False))
        summary = dict(self.summary, complete=self.complete)
        _atomic(out / "summary.json",
                lambda p: Path(p).write_text(json.dumps(summary, indent=2, default=_jsonable)))
        _atomic(out / "scenario.yaml",
                lambda p: Path(p).write_text(yaml.safe_dump(self.scenario.resolved(),
                                                            sort_keys=False)))
        return out


def _jsonable(o: Any) -> Any:
    if isinstance(o, np.integer | np.floating | np.bool_):
        return o.item()
    return str(o)


def _atomic(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def collect(sim: Any) -> Result:
    """Build a :class:`Result` from a finished (or stopped) :class:`~mecsim.engine.Simulation`."""
    t_end = float(sim.env.now) if not sim.complete else sim.t_end
    cols = sim.tasks.view()
    if not sim.complete:  # tasks generated ahead of a stop had not arrived yet
        keep = int(np.searchsorted(cols["t_arrival"], t_end, side="right"))
        cols = {k: v[:keep] for k, v in cols.items()}
    tasks = tasks_frame(cols, sim.model_names, sim.server_names, t_end)
    epochs = pd.DataFrame(sim.epoch_rows)
    servers = servers_frame(sim.server_log.view(), sim.server_names)
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
    faults = faults_frame(sim.fault_log.view(), sim.server_names)
    if len(faults):
        extra["fault_events"] = {str(k): int(v) for k, v in faults["event"].value_counts().items() if v}
        extra["tasks_redispatched"] = int((tasks["redispatches"] > 0).sum())
    summary = summarise(tasks, epochs, sim.sc, sim.server_names, sim.slots, t_end, extra)
    return Result(tasks, epochs, servers, summary, sim.sc, faults=faults, complete=sim.complete)
