"""Loading results and the statistics a latency study needs.

Loading: :func:`load_sweep` opens a sweep's output folder lazily: its catalogue is read at once,
its tables (``tasks``, ``epochs``, ``servers``) are one pyarrow dataset each over
``runs/run_id=*/`` (hive partitioning), read only when asked for, and come back joined with the
catalogue's policy, seed and override columns. :func:`load_run` opens one ``mecsim run --out``
folder the same way.

Statistics: :func:`latency_stats` (mean and tail latency with confidence intervals across seeds,
deadline misses, and an account of every task left out), :func:`latency_breakdown` (where the
time goes), :func:`queue_timeseries` (time-weighted queue levels on a regular grid) and
:func:`littles_law` (L against lambda W as a consistency check). :func:`write_report` writes the
tables and figures of ``mecsim report``.

Example:
    >>> import mecsim
    >>> from mecsim.analysis import latency_breakdown, latency_stats
    >>> res = mecsim.simulate("smoke-v1", policy="greedy", seed=1, duration_s=30)
    >>> stats = latency_stats(res.tasks.assign(policy="greedy", seed=1))
    >>> int(stats["n_tasks"].iloc[0]) == len(res.tasks)
    True
    >>> stages = latency_breakdown(res.tasks)
    >>> bool(((stages.drop(columns="latency").sum(axis=1) - stages["latency"]).abs().max() < 1e-9))
    True
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mecsim.errors import MecsimError

__all__ = [
    "AnalysisError",
    "RunSet",
    "load",
    "load_sweep",
    "load_run",
    "latency_stats",
    "per_seed_stats",
    "latency_breakdown",
    "mean_breakdown",
    "queue_timeseries",
    "littles_law",
    "to_markdown",
    "write_report",
    "STAGES",
]

#: The stages of a task's latency, in order; they add up to ``latency``.
STAGES = ("wait", "upload", "backhaul", "queue", "inference", "return")

# stage -> (end time, start time) columns of the tasks table
_STAGE_TIMES = {
    "wait": ("t_decision", "t_arrival"),
    "upload": ("t_upload_end", "t_upload_start"),
    "backhaul": ("t_server_arrival", "t_upload_end"),
    "queue": ("t_service_start", "t_server_arrival"),
    "inference": ("t_service_end", "t_service_start"),
    "return": ("t_complete", "t_service_end"),
}

_TABLES = ("tasks", "epochs", "servers")

# catalogue columns joined onto every table read from a sweep
_JOINED = ("scenario", "policy", "seed", "warmup_s", "duration_s")


class AnalysisError(MecsimError, ValueError):
    """A results folder cannot be read, or a table lacks what a statistic needs."""


# ---------------------------------------------------------------------------------------------
# loading


def _expand_overrides(cat: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The catalogue with one column per override key; returns it and the new column names."""
    parsed = [json.loads(s) if isinstance(s, str) and s else {} for s in cat["overrides"]]
    keys: list[str] = []
    for d in parsed:
        keys.extend(k for k in d if k not in keys)
    out = cat.copy()
    names = []
    for key in keys:
        if key in ("duration_s", "warmup_s"):
            continue  # the catalogue already has the resolved value of these
        name = key if key not in out.columns else f"override:{key}"
        # Lists and dicts become JSON text so that the column can be grouped on.
        vals = [d.get(key, None) for d in parsed]
        vals = [json.dumps(v, sort_keys=True) if isinstance(v, list | dict) else v for v in vals]
        out[name] = pd.Series(vals, index=out.index, dtype=object).infer_objects()
        names.append(name)
    return out, names


class RunSet:
    """Runs on disk, read lazily: a catalogue and, per table, one dataset over the run folders.

    Use :func:`load_sweep` or :func:`load_run` to make one.

    Attributes:
        path: the folder that was opened.
        override_columns: the override keys that became catalogue columns.
    """

    def __init__(self, path: Path, catalogue: pd.DataFrame, folders: Mapping[str, Path],
                 hive_base: Path | None) -> None:
        self.path = path
        self._catalogue, self.override_columns = _expand_overrides(catalogue)
        self._folders = dict(folders)
        self._hive_base = hive_base
        self._datasets: dict[str, Any] = {}

    # -- the catalogue ---------------------------------------------------------------------------
    @property
    def catalogue(self) -> pd.DataFrame:
        """One row per run (see :data:`mecsim.sweep.CATALOGUE_COLUMNS`), plus one column per
        override key with the run's value."""
        return self._catalogue

    @property
    def is_sweep(self) -> bool:
        """Whether this is a sweep's folder (rather than one run's)."""
        return self._hive_base is not None

    @property
    def run_ids(self) -> list[str]:
        """The runs with results on disk, in catalogue order."""
        return list(self._folders)

    def varying(self) -> list[str]:
        """The grouping columns that differ between finished runs: scenario, policy, overrides."""
        done = self._catalogue[self._catalogue["run_id"].isin(self._folders)]
        cols = ["scenario", "policy", *self.override_columns, "duration_s", "warmup_s"]
        out = []
        for c in cols:
            vals = done[c].astype(str)
            if vals.nunique(dropna=False) > 1:
                out.append(c)
        return out

    def _join_columns(self) -> list[str]:
        return [*_JOINED, *self.override_columns]

    # -- tables ----------------------------------------------------------------------------------
    def _dataset(self, table: str) -> Any:
        import pyarrow as pa
        import pyarrow.dataset as ds
        import pyarrow.parquet as pq

        if table not in _TABLES:
            raise AnalysisError(f"unknown table {table!r}; use one of {_TABLES}")
        if table in self._datasets:
            return self._datasets[table]
        files = [str(folder / f"{table}.parquet") for folder in self._folders.values()]
        if not files:
            raise AnalysisError(f"{self.path}: no finished runs to read")
        # Runs may differ in columns (e.g. QUBO policies add epoch columns): unify the footers.
        schema = pa.unify_schemas([pq.read_schema(f) for f in files], promote_options="permissive")
        if self._hive_base is not None:
            if "run_id" in schema.names:
                schema = schema.remove(schema.get_field_index("run_id"))
            schema = schema.append(pa.field("run_id", pa.string()))
            # run ids are hex: declare the partition key a string, so "0123..." stays text.
            part = ds.partitioning(pa.schema([("run_id", pa.string())]), flavor="hive")
            dset = ds.dataset(files, schema=schema, format="parquet", partitioning=part,
                              partition_base_dir=str(self._hive_base))
        else:
            dset = ds.dataset(files, schema=schema, format="parquet")
        self._datasets[table] = dset
        return dset

    def _filter(self, filters: Any) -> tuple[Any, list[str] | None]:
        """Split filters into a dataset expression and a set of run ids from catalogue columns."""
        import pyarrow.compute as pc
        import pyarrow.dataset as ds
        import pyarrow.parquet as pq

        if filters is None:
            return None, None
        if isinstance(filters, pc.Expression):
            return filters, None
        conds = [tuple(f) for f in filters]
        for c in conds:
            if len(c) != 3 or not isinstance(c[0], str):
                raise AnalysisError(f"a filter is (column, op, value), got {c!r}")
        join = set(self._join_columns()) | {"run_id", "status", "digest", "sweep"}
        on_cat = [c for c in conds if c[0] in join]
        on_data = [c for c in conds if c not in on_cat]
        ids = None
        if on_cat:
            mask = pd.Series(True, index=self._catalogue.index)
            for col, op, val in on_cat:
                mask &= _compare(self._catalogue[col], op, val)
            ids = [r for r in self._catalogue.loc[mask, "run_id"] if r in self._folders]
        expr = pq.filters_to_expression(on_data) if on_data else None
        if ids is not None and self._hive_base is not None:
            keep = ds.field("run_id").isin(ids)
            expr = keep if expr is None else expr & keep
        return expr, ids

    def read(self, table: str, columns: Sequence[str] | None = None, filters: Any = None) -> pd.DataFrame:
        """Read one table of every finished run, joined with the catalogue's columns.

        Args:
            table: ``"tasks"``, ``"epochs"`` or ``"servers"``.
            columns: the table's columns to read (default all); ``run_id`` and the catalogue's
                columns (scenario, policy, seed, warmup_s, duration_s, overrides) always come.
            filters: a pyarrow expression, or a list of ``(column, op, value)`` conditions (all
                must hold); conditions on catalogue columns (``("policy", "==", "greedy")``,
                ``("seed", "in", [1, 2])``) select runs, the others filter rows.

        Returns:
            The rows of all selected runs, in catalogue order, with a categorical ``run_id``.
        """
        import pyarrow.compute as pc

        dset = self._dataset(table)
        expr, ids = self._filter(filters)
        if ids is not None and self._hive_base is None and not set(ids) & set(self._folders):
            expr = pc.scalar(False)  # a single run folder, filtered out by a catalogue condition
        cols = None
        if columns is not None:
            missing = [c for c in columns if c not in dset.schema.names]
            if missing:
                raise AnalysisError(f"{table} has no column(s) {missing}; it has {dset.schema.names}")
            cols = [c for c in columns if c != "run_id"]
            if self._hive_base is not None:
                cols.append("run_id")
        tab = dset.to_table(columns=cols, filter=expr)
        df = tab.to_pandas()
        if "run_id" not in df.columns:  # a single run folder read without partitioning
            df["run_id"] = next(iter(self._folders))
        order = list(self._folders)
        df["run_id"] = pd.Categorical(df["run_id"].astype(str), categories=order)
        # Join by position rather than merge: the run_id codes index the catalogue rows laid out
        # in category order, so the join is a take() per column and keeps the rows' order.
        cat = self._catalogue.set_index(self._catalogue["run_id"].astype(str)).loc[order]
        codes = df["run_id"].cat.codes.to_numpy()
        for col in self._join_columns():
            if col in df.columns:
                continue  # a table column wins over a catalogue column of the same name
            src = cat[col].astype("category") if col in ("policy", "scenario") else cat[col]
            df[col] = src.iloc[codes].reset_index(drop=True).set_axis(df.index)
        return df

    def tasks(self, columns: Sequence[str] | None = None, filters: Any = None) -> pd.DataFrame:
        """The tasks of every finished run, as one DataFrame (see :meth:`read`)."""
        return self.read("tasks", columns, filters)

    def epochs(self, columns: Sequence[str] | None = None, filters: Any = None) -> pd.DataFrame:
        """The epochs of every finished run (see :meth:`read`)."""
        return self.read("epochs", columns, filters)

    def servers(self, columns: Sequence[str] | None = None, filters: Any = None) -> pd.DataFrame:
        """The server change logs of every finished run (see :meth:`read`)."""
        return self.read("servers", columns, filters)

    def summaries(self) -> pd.DataFrame:
        """One row per finished run: its ``summary.json`` flattened (``utilisation.<server>``,
        ``dropped_by_reason.<reason>``), joined with the catalogue's columns."""
        rows = []
        for rid, folder in self._folders.items():
            s = json.loads((folder / "summary.json").read_text())
            flat: dict[str, Any] = {"run_id": rid}
            for k, v in s.items():
                if isinstance(v, dict):
                    flat.update({f"{k}.{kk}": vv for kk, vv in v.items()})
                else:
                    flat[k] = v
            rows.append(flat)
        df = pd.DataFrame(rows)
        join = self._catalogue[["run_id", *self._join_columns(), "policy_params"]]
        clash = [c for c in join.columns if c in df.columns and c != "run_id"]
        return join.merge(df.drop(columns=clash), on="run_id", how="inner")

    def scenario(self, run_id: str) -> dict[str, Any]:
        """The resolved scenario a run used (its ``scenario.yaml``)."""
        import yaml

        if run_id not in self._folders:
            raise AnalysisError(f"no finished run {run_id!r} in {self.path}")
        return yaml.safe_load((self._folders[run_id] / "scenario.yaml").read_text())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, runs={len(self._folders)})"


def _compare(col: pd.Series, op: str, val: Any) -> pd.Series:
    ops = {
        "==": lambda: col == val, "=": lambda: col == val, "!=": lambda: col != val,
        "<": lambda: col < val, "<=": lambda: col <= val, ">": lambda: col > val,
        ">=": lambda: col >= val, "in": lambda: col.isin(list(val)),
        "not in": lambda: ~col.isin(list(val)),
    }
    if op not in ops:
        raise AnalysisError(f"unknown filter operator {op!r}; use one of {sorted(ops)}")
    return ops[op]().fillna(False).astype(bool)


def load_sweep(path: str | os.PathLike[str]) -> RunSet:
    """Open a sweep's output folder (``mecsim sweep ... --out DIR``) lazily.

    Example:
        >>> from mecsim.analysis import load_sweep
        >>> sw = load_sweep("runs/my-sweep")                          # doctest: +SKIP
        >>> sw.tasks(columns=["latency", "status"], filters=[("policy", "==", "greedy")])
        ...                                                           # doctest: +SKIP

    Raises:
        AnalysisError: the folder holds no sweep.
    """
    from mecsim.sweep import DONE, SweepError, is_complete, read_catalogue, run_dir

    root = Path(path)
    if not root.is_dir():
        raise AnalysisError(f"no such folder: {root}")
    try:
        cat = read_catalogue(root)
    except SweepError as exc:
        raise AnalysisError(str(exc)) from None
    folders = {}
    for rid, status in zip(cat["run_id"], cat["status"], strict=True):
        folder = run_dir(root, rid)
        if status == DONE and is_complete(folder):
            folders[str(rid)] = folder
    return RunSet(root, cat, folders, hive_base=root / "runs")


def load_run(path: str | os.PathLike[str]) -> RunSet:
    """Open one run's folder (``mecsim run ... --out DIR`` or ``Result.save(DIR)``) like a sweep
    of one run; its run id is the folder's name.

    Raises:
        AnalysisError: the folder is not a run folder.
    """
    from mecsim.sweep import CATALOGUE_COLUMNS, _catalogue_frame

    root = Path(path)
    missing = [f for f in ("summary.json", "tasks.parquet", "epochs.parquet", "servers.parquet")
               if not (root / f).is_file()]
    if missing:
        raise AnalysisError(f"{root} is not a run folder: no {', '.join(missing)}")
    s = json.loads((root / "summary.json").read_text())
    rid = root.resolve().name
    row = dict.fromkeys(CATALOGUE_COLUMNS)
    row.update(run_id=rid, scenario=s.get("scenario"), digest=s.get("scenario_digest"), overrides="{}",
               policy=s.get("policy"), policy_params=None, seed=int(s.get("seed") or 0), status="done",
               wall_s=s.get("run_wall_s"), attempts=1, duration_s=s.get("duration_s"),
               warmup_s=s.get("warmup_s"))
    return RunSet(root, _catalogue_frame([row]), {rid: root}, hive_base=None)


def load(path: str | os.PathLike[str]) -> RunSet:
    """A sweep folder or a single run's folder, whichever ``path`` is."""
    p = Path(path)
    if (p / "summary.json").is_file() and (p / "tasks.parquet").is_file():
        return load_run(p)
    return load_sweep(p)


# ---------------------------------------------------------------------------------------------
# latency statistics


def _as_list(by: str | Iterable[str] | None) -> list[str]:
    if by is None:
        return []
    return [by] if isinstance(by, str) else list(by)


def _need(df: pd.DataFrame, cols: Iterable[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise AnalysisError(f"{what} needs column(s) {missing}; the table has {list(df.columns)}")


def _warmup(df: pd.DataFrame, warmup_s: float | None) -> np.ndarray:
    if warmup_s is not None:
        return np.full(len(df), float(warmup_s))
    if "warmup_s" in df.columns:
        return pd.to_numeric(df["warmup_s"], errors="coerce").fillna(0.0).to_numpy(float)
    return np.zeros(len(df))


def _task_masks(tasks: pd.DataFrame, warmup_s: float | None) -> dict[str, np.ndarray]:
    """Which tasks count for latency and why the others do not.

    Every task is in exactly one of: used, dropped, in_flight, warmup (completed, but arrived
    during the warm-up). Deadline accounting follows the run summary: tasks arriving after the
    warm-up, not in flight, with a finite deadline; dropped ones count as missed.
    """
    status = tasks["status"].astype(str).to_numpy()
    after = tasks["t_arrival"].to_numpy(float) >= _warmup(tasks, warmup_s)
    completed = status == "completed"
    if "deadline" in tasks.columns and "deadline_met" in tasks.columns:
        dl_known = after & (status != "in_flight") & np.isfinite(tasks["deadline"].to_numpy(float))
        met = tasks["deadline_met"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    else:
        dl_known = met = np.zeros(len(tasks), dtype=bool)
    return {
        "used": completed & after,
        "dropped": status == "dropped",
        "in_flight": status == "in_flight",
        "warmup": completed & ~after,
        "deadline": dl_known,
        "missed": dl_known & ~met,
    }


def per_seed_stats(tasks: pd.DataFrame, by: str | Iterable[str] = ("policy",),
                   warmup_s: float | None = None) -> pd.DataFrame:
    """Latency statistics per group and seed, from a tasks table.

    Args:
        tasks: a tasks table with the ``by`` columns and ``seed`` (as :meth:`RunSet.tasks`
            returns; without ``seed`` all tasks count as one seed).
        by: the grouping columns.
        warmup_s: leave out tasks arriving earlier (default: the ``warmup_s`` column, else 0).

    Returns:
        One row per (group, seed): ``mean_s, p50_s, p95_s, p99_s`` over the used tasks,
        ``miss_rate``, ``n_tasks, n_latency, excluded_dropped, excluded_in_flight,
        excluded_warmup, n_deadline, n_missed`` and ``n_runs`` (runs pooled in the row).
    """
    keys = _as_list(by)
    _need(tasks, [*keys, "status", "t_arrival", "latency", "deadline", "deadline_met"], "latency_stats")
    df = pd.DataFrame({k: tasks[k].to_numpy() for k in keys}, index=tasks.index)
    df["seed"] = tasks["seed"].to_numpy() if "seed" in tasks.columns else 0
    keys_s = [*keys, "seed"]
    m = _task_masks(tasks, warmup_s)
    for name in ("used", "dropped", "in_flight", "warmup", "deadline", "missed"):
        df[name] = m[name]
    df["latency"] = np.where(m["used"], tasks["latency"].to_numpy(float), np.nan)
    df["run"] = tasks["run_id"].astype(str).to_numpy() if "run_id" in tasks.columns else ""
    g = df.groupby(keys_s, observed=True, dropna=False, sort=True)
    out = pd.DataFrame({
        "n_tasks": g.size(),
        "n_latency": g["used"].sum(),
        "excluded_dropped": g["dropped"].sum(),
        "excluded_in_flight": g["in_flight"].sum(),
        "excluded_warmup": g["warmup"].sum(),
        "n_deadline": g["deadline"].sum(),
        "n_missed": g["missed"].sum(),
        "n_runs": g["run"].nunique(),
        # pandas' quantile is linear interpolation, like numpy's default used by the summary
        "mean_s": g["latency"].mean(),
        "p50_s": g["latency"].quantile(0.5),
        "p95_s": g["latency"].quantile(0.95),
        "p99_s": g["latency"].quantile(0.99),
    })
    out["miss_rate"] = np.where(out["n_deadline"] > 0, out["n_missed"] / out["n_deadline"].where(
        out["n_deadline"] > 0, 1), np.nan)
    out = out.reset_index()
    if (out["n_runs"] > 1).any():
        warnings.warn("some (group, seed) rows pool several runs; add the columns that vary between "
                      "them (e.g. an override) to `by` to keep them apart", stacklevel=3)
    return out


def _per_seed_from_summaries(summ: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    _need(summ, [*by, "seed", "latency_mean_s", "latency_n", "tasks_generated"], "latency_stats")
    out = summ[[*by, "seed"]].copy()
    out["n_tasks"] = summ["tasks_generated"].astype("int64")
    out["n_latency"] = summ["latency_n"].astype("int64")
    out["excluded_dropped"] = summ["tasks_dropped"].astype("int64")
    out["excluded_in_flight"] = summ["tasks_in_flight"].astype("int64")
    out["excluded_warmup"] = (summ["tasks_completed"] - summ["latency_n"]).astype("int64")
    out["n_deadline"] = summ["deadline_tasks"].astype("int64")
    out["n_missed"] = summ["deadline_missed"].astype("int64")
    out["n_runs"] = 1
    for src, dst in (("latency_mean_s", "mean_s"), ("latency_p50_s", "p50_s"),
                     ("latency_p95_s", "p95_s"), ("latency_p99_s", "p99_s"),
                     ("deadline_miss_rate", "miss_rate")):
        out[dst] = pd.to_numeric(summ[src], errors="coerce").astype(float)
    if out.duplicated([*by, "seed"]).any():
        warnings.warn("several runs share a (group, seed): each counts as a replicate; add the "
                      "columns that vary between them to `by` to keep them apart", stacklevel=3)
    return out.sort_values([*by, "seed"], kind="stable").reset_index(drop=True)


def _t_interval(x: np.ndarray, ci: float) -> tuple[float, float, float, float]:
    """(mean, low, high, std) of the values across seeds; NaN bounds below two seeds."""
    from scipy import stats

    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return (math.nan,) * 4
    mean = float(x.mean())
    if n < 2:
        return mean, math.nan, math.nan, math.nan
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + ci / 2, n - 1)) * sd / math.sqrt(n)
    return mean, mean - half, mean + half, sd


def latency_stats(data: pd.DataFrame, by: str | Iterable[str] = ("policy",), ci: float = 0.95,
                  warmup_s: float | None = None) -> pd.DataFrame:
    """Latency per group, with t-based confidence intervals across seeds.

    Each seed is one replicate: the statistics are computed per seed first (mean, p50, p95, p99
    of the latency of the completed tasks that arrived after the warm-up, and the deadline-miss
    rate), then averaged over the seeds with a Student-t interval ``mean +- t * s / sqrt(n)``.
    No task is dropped silently: ``n_tasks = n_latency + excluded_dropped + excluded_in_flight
    + excluded_warmup``.

    Args:
        data: a tasks table (with ``seed`` and the ``by`` columns, as :meth:`RunSet.tasks`
            returns) or a summaries table (:meth:`RunSet.summaries`, one row per run).
        by: the grouping columns.
        ci: the confidence level of the intervals.
        warmup_s: tasks only: the warm-up to leave out (default: the ``warmup_s`` column, else 0).

    Returns:
        One row per group: ``n_seeds``; ``mean_s, p50_s, p95_s, p99_s, miss_rate``, each with
        ``_lo`` and ``_hi`` bounds (NaN with fewer than two seeds); ``seed_std_s`` (std of the
        per-seed mean latency: how stable the policy is across seeds); and the task counts
        ``n_tasks, n_latency, excluded_dropped, excluded_in_flight, excluded_warmup, n_deadline,
        n_missed``. ``attrs["ci"]`` holds the level.
    """
    if not 0 < ci < 1:
        raise AnalysisError(f"ci must be in (0, 1), got {ci}")
    keys = _as_list(by)
    if "seed" in keys:
        raise AnalysisError("seed is the replicate the intervals are taken over, not a grouping "
                            "column; use per_seed_stats for one row per seed")
    if "latency" in data.columns and "status" in data.columns:
        per = per_seed_stats(data, keys, warmup_s)
    elif "latency_mean_s" in data.columns:
        per = _per_seed_from_summaries(data, keys)
    else:
        raise AnalysisError("latency_stats takes a tasks table (with latency, status) or a summaries "
                            "table (with latency_mean_s)")
    counts = ["n_tasks", "n_latency", "excluded_dropped", "excluded_in_flight", "excluded_warmup",
              "n_deadline", "n_missed"]
    rows = []
    groups = per.groupby(keys, observed=True, dropna=False, sort=True) if keys else [((), per)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(keys, key, strict=True))
        row["n_seeds"] = int(g["seed"].nunique())
        for stat in ("mean_s", "p50_s", "p95_s", "p99_s", "miss_rate"):
            mean, lo, hi, sd = _t_interval(g[stat].to_numpy(float), ci)
            row[stat], row[f"{stat}_lo"], row[f"{stat}_hi"] = mean, lo, hi
            if stat == "mean_s":
                row["seed_std_s"] = sd
        for c in counts:
            row[c] = int(g[c].sum())
        rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs["ci"] = ci
    return out


# ---------------------------------------------------------------------------------------------
# latency breakdown


def latency_breakdown(tasks: pd.DataFrame) -> pd.DataFrame:
    """Each task's latency split into stages (s).

    ``wait`` (arrival to decision, including the decision's own time), ``upload``, ``backhaul``
    (to the server), ``queue`` (at the server), ``inference`` and ``return`` (backhaul and
    downlink of the result). For a completed task they add up to ``latency``; stages that did
    not happen (dropped or unfinished tasks) are NaN.

    Returns:
        A DataFrame with the index of ``tasks`` and the columns :data:`STAGES` + ``latency``.
    """
    _need(tasks, {c for pair in _STAGE_TIMES.values() for c in pair} | {"latency"}, "latency_breakdown")
    out = pd.DataFrame(index=tasks.index)
    for stage in STAGES:
        end, start = _STAGE_TIMES[stage]
        out[stage] = tasks[end].to_numpy(float) - tasks[start].to_numpy(float)
    out["latency"] = tasks["latency"].to_numpy(float)
    return out


def mean_breakdown(tasks: pd.DataFrame, by: str | Iterable[str] = ("policy",),
                   warmup_s: float | None = None) -> pd.DataFrame:
    """Mean time per stage by group, over the completed tasks that arrived after the warm-up
    (the tasks :func:`latency_stats` uses), pooled over seeds.

    Returns:
        One row per group: ``n`` and the mean of each of :data:`STAGES` and of ``latency``.
    """
    keys = _as_list(by)
    _need(tasks, [*keys, "status", "t_arrival"], "mean_breakdown")
    used = _task_masks(tasks, warmup_s)["used"]
    stages = latency_breakdown(tasks)[used]
    for k in keys:
        stages[k] = tasks.loc[used, k].to_numpy()
    if not keys:
        res = stages[[*STAGES, "latency"]].mean().to_frame().T
        res.insert(0, "n", int(used.sum()))
        return res
    g = stages.groupby(keys, observed=True, dropna=False, sort=True)
    res = g[[*STAGES, "latency"]].mean()
    res.insert(0, "n", g.size())
    return res.reset_index()


# ---------------------------------------------------------------------------------------------
# queues over time


def _slots_of(slots: Any) -> dict[str, int] | None:
    """Slots per server from a mapping, a Scenario, or a resolved scenario dict."""
    if slots is None:
        return None
    if hasattr(slots, "servers"):
        return {s.name: int(s.slots) for s in slots.servers}
    if isinstance(slots, Mapping) and "servers" in slots:
        return {s["name"]: int(s.get("slots", 1)) for s in slots["servers"]}
    return {str(k): int(v) for k, v in dict(slots).items()}


def _step_integral(t: np.ndarray, v: np.ndarray, x: np.ndarray) -> np.ndarray:
    """F(x) = integral from -inf to x of a step function that is 0 before t[0] and v[k] on
    [t[k], t[k+1]) (t sorted, one value per time), for each x; v may have several columns."""
    if len(t) == 0:
        return np.zeros((len(x),) + v.shape[1:])
    cum = np.concatenate([np.zeros((1,) + v.shape[1:]), np.cumsum(v[:-1] * np.diff(t)[:, None], axis=0)])
    k = np.searchsorted(t, x, side="right") - 1
    inside = k >= 0
    kk = np.where(inside, k, 0)
    val = cum[kk] + v[kk] * (x - t[kk])[:, None]
    return np.where(inside[:, None], val, 0.0)


def _levels(g: pd.DataFrame, cols: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """One server's change log as (times, levels), the last row winning at equal times."""
    order = np.argsort(g["t"].to_numpy(float), kind="stable")
    t = g["t"].to_numpy(float)[order]
    v = g[cols].to_numpy(float)[order]
    last = np.r_[t[1:] != t[:-1], True]
    return t[last], v[last]


_LEVELS = ["queue_len", "busy_slots", "in_transit", "in_system"]


def queue_timeseries(servers: pd.DataFrame, dt: float, slots: Any = None, t0: float = 0.0,
                     t1: float | None = None) -> pd.DataFrame:
    """Time-weighted queue length, busy slots, in-transit and in-system counts per server on a
    regular grid.

    The servers table has one row per change; a level holds from its row until the next row of
    the same server (and is 0 before the first). Each grid cell ``[t, t + dt)`` gets the time
    average of the level over the cell, so the cells' mean is the exact time average.

    Args:
        servers: a servers table (several runs if it has ``run_id``: each run separately).
        dt: the grid step (s).
        slots: slots per server (a mapping, a Scenario or a resolved scenario dict), for
            ``utilisation = busy_slots / slots``; without it utilisation is NaN.
        t0: start of the grid.
        t1: end of the grid (default: the last change in the table; pass the run's duration to
            cover the end of the run).

    Returns:
        Columns ``[run_id,] server, t, queue_len, busy_slots, in_transit, in_system,
        utilisation``; ``t`` is the start of each cell.
    """
    if not dt > 0:
        raise AnalysisError(f"dt must be > 0, got {dt}")
    _need(servers, ["t", "server", "queue_len", "busy_slots"], "queue_timeseries")
    df = servers
    if "in_system" not in df.columns:
        df = df.assign(in_system=df["queue_len"] + df["busy_slots"])
    if "in_transit" not in df.columns:
        df = df.assign(in_transit=0)
    end = float(df["t"].max()) if t1 is None else float(t1)
    if not end > t0:
        raise AnalysisError(f"the grid [{t0}, {end}] is empty")
    n = math.ceil((end - t0) / dt - 1e-9)
    edges = np.minimum(t0 + dt * np.arange(n + 1), end)
    width = np.diff(edges)
    slot_map = _slots_of(slots)
    keys = ["run_id", "server"] if "run_id" in df.columns else ["server"]
    parts = []
    for key, g in df.groupby(keys, observed=True, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        t, v = _levels(g, _LEVELS)
        avg = np.diff(_step_integral(t, v, edges), axis=0) / width[:, None]
        part = pd.DataFrame(avg, columns=_LEVELS)
        part.insert(0, "t", edges[:-1])
        for k, val in zip(reversed(keys), reversed(key), strict=True):
            part.insert(0, k, val)
        srv = str(key[-1])
        cap = slot_map.get(srv) if slot_map else None
        part["utilisation"] = part["busy_slots"] / cap if cap else np.nan
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=[*keys, "t", *_LEVELS, "utilisation"])
    return pd.concat(parts, ignore_index=True)


def littles_law(tasks: pd.DataFrame, servers: pd.DataFrame, t0: float, t1: float) -> dict[str, float]:
    """Little's law at the servers over [t0, t1): L against lambda * W.

    ``L`` is the time-average number of tasks at the servers (queued or in service: the
    servers table's ``in_system``, summed over servers); ``lambda`` the rate of arrivals at the
    servers in the window (tasks table); ``W`` the mean time at a server (``t_service_end -
    t_server_arrival``) of those arrivals. They agree up to edge effects at t0 and t1, which
    shrink as the window grows. Arrivals without a recorded departure (still there at the end,
    or dropped from a queue) are left out of W and counted in ``n_unfinished``.

    Args:
        tasks: one run's tasks table.
        servers: the same run's servers table.
        t0: start of the window (e.g. the warm-up).
        t1: end of the window (e.g. the duration).

    Returns:
        ``{"L", "lambda", "W", "lambda_W", "rel_diff", "n_arrivals", "n_unfinished", "t0", "t1"}``
        with ``rel_diff = (L - lambda_W) / lambda_W``.
    """
    if not t1 > t0:
        raise AnalysisError(f"the window [{t0}, {t1}) is empty")
    for name, df in (("tasks", tasks), ("servers", servers)):
        if "run_id" in df.columns and df["run_id"].nunique() > 1:
            raise AnalysisError(f"littles_law takes one run; the {name} table has "
                                f"{df['run_id'].nunique()} (filter on run_id)")
    _need(tasks, ["t_server_arrival", "t_service_end"], "littles_law")
    df = servers if "in_system" in servers.columns else servers.assign(
        in_system=servers["queue_len"] + servers["busy_slots"])
    area = 0.0
    for _, g in df.groupby("server", observed=True):
        t, v = _levels(g, ["in_system"])
        f = _step_integral(t, v, np.array([t0, t1], dtype=float))
        area += float(f[1, 0] - f[0, 0])
    span = t1 - t0
    arr = tasks["t_server_arrival"].to_numpy(float)
    dep = tasks["t_service_end"].to_numpy(float)
    inwin = (arr >= t0) & (arr < t1)
    done = inwin & np.isfinite(dep)
    lam = float(inwin.sum()) / span
    w = float((dep[done] - arr[done]).mean()) if done.any() else math.nan
    L = area / span
    lw = lam * w
    return {"L": L, "lambda": lam, "W": w, "lambda_W": lw,
            "rel_diff": (L - lw) / lw if lw else math.nan,
            "n_arrivals": int(inwin.sum()), "n_unfinished": int(inwin.sum() - done.sum()),
            "t0": float(t0), "t1": float(t1)}


# ---------------------------------------------------------------------------------------------
# reporting


def _fmt_cell(v: Any, digits: int) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float | np.floating):
        return f"{v:.{digits}g}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def to_markdown(df: pd.DataFrame, digits: int = 4) -> str:
    """A DataFrame as a GitHub-flavoured Markdown table (floats to ``digits`` significant
    digits), without needing the ``tabulate`` package."""
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt_cell(v, digits) for v in row) + " |")
    return "\n".join(lines)


def _write_table(df: pd.DataFrame, folder: Path, name: str) -> list[Path]:
    from mecsim.sweep import _write_atomic

    csv, md = folder / f"{name}.csv", folder / f"{name}.md"
    _write_atomic(csv, lambda p: df.to_csv(p, index=False))
    _write_atomic(md, lambda p: Path(p).write_text(to_markdown(df) + "\n"))
    return [csv, md]


_LATENCY_COLUMNS = ["n_seeds", "mean_s", "mean_s_lo", "mean_s_hi", "p50_s", "p95_s", "p95_s_lo",
                    "p95_s_hi", "p99_s", "miss_rate", "seed_std_s", "n_tasks", "n_latency",
                    "excluded_dropped", "excluded_in_flight", "excluded_warmup"]


def write_report(path: str | os.PathLike[str], by: Sequence[str] | None = None, ci: float = 0.95,
                 dt: float | None = None, figures: bool = True) -> dict[str, Any]:
    """Write the tables (CSV and Markdown) and figures (PNG and PDF) of a finished sweep or of
    one run folder into ``path/report/``.

    Tables: ``latency`` (:func:`latency_stats` by group), ``breakdown`` (:func:`mean_breakdown`),
    ``runs`` (the catalogue, sweeps only; failed runs with their error) and ``littles_law``
    (per run, single runs only). Figures: ``latency_cdf``, ``seed_spread``, ``breakdown`` and
    ``queue`` (one run per group). Without matplotlib the figures are skipped and
    ``"figures_skipped"`` says why.

    Args:
        path: the sweep's output folder or a run folder.
        by: the grouping columns (default: policy plus whatever varies between the runs).
        ci: the confidence level of the latency intervals.
        dt: the queue plot's grid step (default: a 200th of the duration).
        figures: write the figures.

    Returns:
        ``{"latency": DataFrame, "breakdown": DataFrame, "files": [paths], "by": [columns],
        "figures_skipped": reason or None}``.
    """
    rs = load(path)
    if not rs.run_ids:
        raise AnalysisError(f"{rs.path}: no finished runs to report on")
    keys = list(by) if by else ["policy", *[c for c in rs.varying() if c != "policy"]]
    bad = [k for k in keys if k not in rs.catalogue.columns]
    if bad:
        raise AnalysisError(f"cannot group by {bad}: not catalogue columns; use some of "
                            f"{['scenario', 'policy', 'seed', *rs.override_columns]}")
    out = rs.path / "report"
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []

    summ = rs.summaries()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pooled groups are the user's choice of `by`
        lat = latency_stats(summ, keys, ci=ci)
    lat_table = lat[[*keys, *_LATENCY_COLUMNS]]
    files += _write_table(lat_table, out, "latency")

    need = ["status", "t_arrival", "latency", "deadline", "deadline_met",
            *{c for pair in _STAGE_TIMES.values() for c in pair}]
    tasks = rs.tasks(columns=sorted(set(need)))
    brk = mean_breakdown(tasks, keys)
    files += _write_table(brk, out, "breakdown")

    cat = rs.catalogue
    is_sweep = rs.is_sweep
    if is_sweep:
        runs = cat[["run_id", "policy", "seed", *rs.override_columns, "status", "error", "wall_s",
                    "attempts"]]
        files += _write_table(runs, out, "runs")
    else:
        rid = rs.run_ids[0]
        srv = rs.servers()
        row = cat.iloc[0]
        ll = littles_law(tasks, srv, float(row["warmup_s"] or 0.0), float(row["duration_s"]))
        files += _write_table(pd.DataFrame([{"run_id": rid, **ll}]), out, "littles_law")

    skipped = None
    if figures:
        try:
            from mecsim import plots
        except ImportError as exc:  # pragma: no cover - plots imports matplotlib lazily
            skipped = str(exc)
        else:
            try:
                files += _report_figures(rs, tasks, summ, keys, out, dt, is_sweep, plots)
            except MecsimError as exc:  # a missing extra: tables are still useful
                skipped = " ".join(str(exc).split())
    return {"latency": lat_table, "breakdown": brk, "files": files, "by": keys,
            "figures_skipped": skipped}


def _report_figures(rs: RunSet, tasks: pd.DataFrame, summ: pd.DataFrame, keys: list[str], out: Path,
                    dt: float | None, is_sweep: bool, plots: Any) -> list[Path]:
    files: list[Path] = []
    fig = plots.latency_cdf(tasks, by=keys, save=out / "latency_cdf")
    files += [out / "latency_cdf.png", out / "latency_cdf.pdf"]
    plots.close(fig)
    fig = plots.seed_spread(summ, by=keys, save=out / "seed_spread")
    files += [out / "seed_spread.png", out / "seed_spread.pdf"]
    plots.close(fig)
    fig = plots.breakdown_bars(tasks, by=keys, save=out / "breakdown")
    files += [out / "breakdown.png", out / "breakdown.pdf"]
    plots.close(fig)

    cat = rs.catalogue[rs.catalogue["run_id"].isin(rs.run_ids)].copy()
    duration = float(cat["duration_s"].max())
    step = dt or max(duration / 200.0, 1e-9)
    if is_sweep:
        # One run per group (its lowest seed): the queue of all servers together.
        cat["_label"] = [plots.group_label(keys, vals) for vals in cat[keys].itertuples(index=False)]
        first = cat.sort_values("seed", kind="stable").groupby("_label", sort=True).head(1)
        srv = rs.servers(filters=[("run_id", "in", list(first["run_id"]))])
        ts = queue_timeseries(srv, step, t1=duration)
        ts = ts.groupby(["run_id", "t"], observed=True)[["queue_len", "in_system"]].sum().reset_index()
        ts["group"] = ts["run_id"].astype(str).map(dict(zip(first["run_id"], first["_label"], strict=True)))
        fig = plots.queue_plot(ts, value="in_system", hue="group", save=out / "queue",
                               title="tasks at the servers (all, lowest seed of each group)")
    else:
        rid = rs.run_ids[0]
        ts = queue_timeseries(rs.servers(), step, slots=rs.scenario(rid), t1=duration)
        fig = plots.queue_plot(ts, hue="server", save=out / "queue", title="queue length per server")
    files += [out / "queue.png", out / "queue.pdf"]
    plots.close(fig)
    return files
