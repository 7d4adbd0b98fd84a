"""Loading results: a sweep's folder or one run's folder as a lazy :class:`RunSet`.

:func:`load_sweep` opens a sweep's output folder lazily: its catalogue is read at once, its tables
(``tasks``, ``epochs``, ``servers``, ``faults``) are one pyarrow dataset each
(``OUT/<table>/run_id=*/``, hive partitioning), read only when asked for, and come back joined
with the catalogue's policy, seed and override columns. :func:`load_run` opens one
``mecsim run --out`` folder the same way.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mecsim.analysis.stats import AnalysisError

__all__ = ["RunSet", "load", "load_sweep", "load_run"]

_TABLES = ("tasks", "epochs", "servers", "faults")

# catalogue columns joined onto every table read from a sweep
_JOINED = ("scenario", "policy", "seed", "warmup_s", "duration_s")

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

    def __init__(
        self, path: Path, catalogue: pd.DataFrame, folders: Mapping[str, Path], hive_base: Path | None
    ) -> None:
        self.path = path
        self._catalogue, self.override_columns = _expand_overrides(catalogue)
        self._folders = dict(folders)
        self._hive_base = hive_base
        self._datasets: dict[str, Any] = {}

    def _files(self, table: str) -> list[Path]:
        if self._hive_base is None:
            return [folder / f"{table}.parquet" for folder in self._folders.values()]
        from mecsim.study.runs import table_file

        return [table_file(self._hive_base, table, rid) for rid in self._folders]

    # -- the catalogue ---------------------------------------------------------------------------
    @property
    def catalogue(self) -> pd.DataFrame:
        """One row per run (see :data:`mecsim.study.runs.CATALOGUE_COLUMNS`), plus one column per
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
        files = [str(f) for f in self._files(table)]
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
            dset = ds.dataset(
                files,
                schema=schema,
                format="parquet",
                partitioning=part,
                partition_base_dir=str(self._hive_base / table),
            )
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
            table: ``"tasks"``, ``"epochs"``, ``"servers"`` or ``"faults"``.
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

    def faults(self, columns: Sequence[str] | None = None, filters: Any = None) -> pd.DataFrame:
        """The fault events of every finished run (see :meth:`read`)."""
        return self.read("faults", columns, filters)

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
        "==": lambda: col == val,
        "=": lambda: col == val,
        "!=": lambda: col != val,
        "<": lambda: col < val,
        "<=": lambda: col <= val,
        ">": lambda: col > val,
        ">=": lambda: col >= val,
        "in": lambda: col.isin(list(val)),
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
    from mecsim.study.runs import DONE, SweepError, is_complete, read_catalogue, run_dir

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
    return RunSet(root, cat, folders, hive_base=root)


def load_run(path: str | os.PathLike[str]) -> RunSet:
    """Open one run's folder (``mecsim run ... --out DIR`` or ``Result.save(DIR)``) like a sweep
    of one run; its run id is the folder's name.

    Raises:
        AnalysisError: the folder is not a run folder.
    """
    from mecsim.study.runs import CATALOGUE_COLUMNS, _catalogue_frame

    root = Path(path)
    missing = [
        f
        for f in ("summary.json", "tasks.parquet", "epochs.parquet", "servers.parquet")
        if not (root / f).is_file()
    ]
    if missing:
        raise AnalysisError(f"{root} is not a run folder: no {', '.join(missing)}")
    s = json.loads((root / "summary.json").read_text())
    rid = root.resolve().name
    row = dict.fromkeys(CATALOGUE_COLUMNS)
    row.update(
        run_id=rid,
        scenario=s.get("scenario"),
        digest=s.get("scenario_digest"),
        overrides="{}",
        policy=s.get("policy"),
        policy_params=None,
        seed=int(s.get("seed") or 0),
        status="done",
        wall_s=s.get("run_wall_s"),
        attempts=1,
        duration_s=s.get("duration_s"),
        warmup_s=s.get("warmup_s"),
    )
    return RunSet(root, _catalogue_frame([row]), {rid: root}, hive_base=None)


def load(path: str | os.PathLike[str]) -> RunSet:
    """A sweep folder or a single run's folder, whichever ``path`` is."""
    p = Path(path)
    if (p / "summary.json").is_file() and (p / "tasks.parquet").is_file():
        return load_run(p)
    return load_sweep(p)
