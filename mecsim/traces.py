"""Recording: growable numpy column buffers for tasks, server events and epochs.

Records are columns of numpy arrays, not Python objects per event, so a run of a million tasks
costs a few hundred bytes per task. :func:`tasks_frame` and friends turn them into pandas
DataFrames with the documented column names.

Streaming (``Simulation(..., stream_to=DIR)``): :class:`TraceWriter` appends the rows that can no
longer change to Parquet files as the run goes, so memory stays flat however long the run is:

* ``tasks.parquet`` and ``servers.parquet``: one ``ParquetWriter`` each, one row group per flush
  (written as ``.tasks.parquet.partial`` and renamed when closed, so a reader never sees half a
  file). Rows are converted by :func:`tasks_frame` / :func:`servers_frame`, the functions the
  in-memory path uses, so the files read back equal what ``Result.save`` writes.
* ``epochs.parquet``: policies may add ``info`` keys in some epochs only, or change a key's type,
  so the schema can grow. Epoch rows are converted chunk by chunk (``pandas.DataFrame(rows)``)
  and appended to a part file under ``.epochs.parts/`` as long as the Arrow schema stays the
  same; a chunk with another schema starts a new part. At the end a single part is renamed to
  ``epochs.parquet``; several are merged into it under one schema: the columns in order of first
  appearance, a key missing from some epochs null there, integer columns that are missing
  somewhere (or mixed with floats) become float64, as ``pandas.DataFrame(rows)`` would make them;
  types that cannot be unified are written as strings.
* ``faults.parquet`` (small: kept in memory) is written when the stream is closed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: Task status codes (internal) and their names in the ``status`` column.
WAITING, DISPATCHED, SERVED, DROPPED = 0, 1, 2, 3
STATUS_NAMES = ("completed", "dropped", "in_flight")

#: Drop reasons (``drop_reason`` column).
DROP_REASONS = ("", "policy", "deadline_expired_waiting", "deadline_expired_queue", "server_failure")

#: Events of the faults table.
FAULT_EVENTS = (
    "server_down",
    "server_up",
    "channel_down",
    "channel_up",
    "backhaul_degraded",
    "backhaul_restored",
    "task_redispatched",
    "task_dropped",
)


#: the columns every epoch row has, in order (the engine's own; a policy's ``info`` keys follow)
EPOCH_FIXED = (
    "epoch",
    "t",
    "t_decision",
    "n_waiting",
    "n_decided",
    "n_dispatched",
    "n_dropped",
    "n_deferred",
    "bandwidth_budget_hz",
    "decision_wall_s",
    "decision_delay_s",
)


class EpochLog:
    """The epochs table as it grows: per epoch a tuple of the :data:`EPOCH_FIXED` values and the
    decision's ``info`` dict (often one shared dict), not a dict per row.

    :meth:`frame` gives exactly ``pandas.DataFrame(rows)`` of the rows ``{**fixed, **info}``
    (tests/test_fast_paths.py checks this against pandas), about three times as fast: columns of
    Python ints and floats are typed by numpy (as pandas types them), ``info`` columns of one
    plain kind are given to pandas as lists; anything else goes the rows' way.
    """

    __slots__ = ("fixed", "info")

    def __init__(self) -> None:
        self.fixed: list[tuple[Any, ...]] = []
        self.info: list[dict[str, Any]] = []

    def __len__(self) -> int:
        return len(self.fixed)

    def append(self, fixed: tuple[Any, ...], info: dict[str, Any]) -> None:
        """One epoch: its :data:`EPOCH_FIXED` values, in order, and its ``info``."""
        self.fixed.append(fixed)
        self.info.append(info)

    def rows(self) -> list[dict[str, Any]]:
        """The rows as dicts (fixed columns, then ``info``, which wins on a shared key)."""
        return [
            {**dict(zip(EPOCH_FIXED, f, strict=True)), **i}
            for f, i in zip(self.fixed, self.info, strict=True)
        ]

    def frame(self) -> pd.DataFrame:
        """``pandas.DataFrame(self.rows())``, built by columns."""
        if not self.fixed:
            return pd.DataFrame()
        keys = set().union(*self.info)
        if not keys.isdisjoint(EPOCH_FIXED):  # a policy's info overrides an engine column
            return pd.DataFrame(self.rows())
        data: dict[str, Any] = {}
        for k, col in zip(EPOCH_FIXED, zip(*self.fixed, strict=True), strict=True):
            if not set(map(type, col)) <= {int, float}:  # not plain numbers: pandas types the rows
                return pd.DataFrame(self.rows())
            data[k] = np.array(col)
        if keys:
            data.update(self._info_columns())
        return pd.DataFrame(data)

    def _info_columns(self) -> dict[str, Any]:
        """The ``info`` columns: as lists where every epoch has the same keys and a key's values
        are all ints and floats, all strings or all booleans (pandas types such a list as it
        types the rows); otherwise by ``pandas.DataFrame`` of the dicts."""
        info = self.info
        first = info[0]
        cols: dict[str, list[Any]] | None = None
        if all(d is first for d in info):  # one dict (a built-in policy's, say)
            cols = {k: [v] * len(info) for k, v in first.items()}
        elif all(d.keys() == first.keys() for d in info):
            cols = {k: [d[k] for d in info] for k in first}
        if cols is not None and all(_plain(v) for v in cols.values()):
            return cols
        df = pd.DataFrame(info)
        return {k: df[k] for k in df.columns}


def _plain(values: list[Any]) -> bool:
    """Whether pandas types this list as it types the same values in dict rows: ints and floats,
    strings, or booleans, with no None and no other type."""
    kinds = set(map(type, values))
    return kinds <= {int, float} or kinds == {str} or kinds == {bool}


class Columns:
    """A set of named numpy columns that grow by doubling."""

    def __init__(self, spec: dict[str, tuple[Any, Any]], capacity: int = 1024) -> None:
        self.spec = spec
        self.n = 0
        self.cap = capacity
        self.cap0 = capacity
        self.cols: dict[str, np.ndarray] = {
            k: np.full(capacity, fill, dtype=dt) for k, (dt, fill) in spec.items()
        }

    def reserve(self, extra: int) -> None:
        """Make room for ``extra`` more rows."""
        need = self.n + extra
        if need <= self.cap:
            return
        cap = self.cap
        while cap < need:
            cap *= 2
        for k, (dt, fill) in self.spec.items():
            new = np.full(cap, fill, dtype=dt)
            new[: self.n] = self.cols[k][: self.n]
            self.cols[k] = new
        self.cap = cap

    def append_many(self, **values: np.ndarray) -> tuple[int, int]:
        """Append rows given as equal-length arrays; returns the (start, stop) row range."""
        m = len(next(iter(values.values())))
        self.reserve(m)
        a, b = self.n, self.n + m
        for k, v in values.items():
            self.cols[k][a:b] = v
        self.n = b
        return a, b

    def drop_front(self, k: int, min_capacity: int = 0) -> None:
        """Forget the first ``k`` rows: row ``i`` becomes row ``i - k``. The freed rows get the
        fill values back; the buffers shrink when they would be at most a quarter full (never
        below the initial capacity or ``min_capacity``)."""
        n = self.n
        if k <= 0:
            return
        if k > n:
            raise ValueError(f"cannot drop {k} rows of {n}")
        m = n - k
        cap = max(self.cap0, 1)
        while cap < max(2 * m, min_capacity):
            cap *= 2
        shrink = cap * 4 <= self.cap
        for key, (dt, fill) in self.spec.items():
            col = self.cols[key]
            if shrink:
                new = np.full(cap, fill, dtype=dt)
                new[:m] = col[k:n]
                self.cols[key] = new
            else:
                col[:m] = col[k:n]
                col[m:n] = fill
        if shrink:
            self.cap = cap
        self.n = m

    def view(self) -> dict[str, np.ndarray]:
        """The filled part of every column (views, not copies)."""
        return {k: v[: self.n] for k, v in self.cols.items()}

    def nbytes(self) -> int:
        """Memory held by the buffers."""
        return sum(v.nbytes for v in self.cols.values())


TASK_COLUMNS: dict[str, tuple[Any, Any]] = {
    "device": (np.int32, -1),
    "model": (np.int16, -1),
    "input_bits": (np.float64, np.nan),
    "output_bits": (np.float64, np.nan),
    "steps": (np.int32, 0),
    "deadline": (np.float64, np.inf),
    "service_factor": (np.float64, 1.0),
    "epoch": (np.int64, -1),
    "server": (np.int16, -1),
    "bandwidth_hz": (np.float64, np.nan),
    "t_arrival": (np.float64, np.nan),
    "t_decision": (np.float64, np.nan),
    "t_upload_start": (np.float64, np.nan),
    "t_upload_end": (np.float64, np.nan),
    "t_server_arrival": (np.float64, np.nan),
    "t_service_start": (np.float64, np.nan),
    "t_service_end": (np.float64, np.nan),
    "t_complete": (np.float64, np.nan),
    "state": (np.int8, WAITING),
    "drop_reason": (np.int8, 0),
    "energy_tx_j": (np.float64, 0.0),
    "energy_server_j": (np.float64, 0.0),
    "attempts": (np.int16, 0),
}

#: Extra task columns of runs that use the GPU-server model (``service.batching`` or
#: ``service.residency`` on, or requests with adapters; see :mod:`mecsim.sim.gpu`). Other runs do
#: not have them, so their tables are exactly what they were before the model existed.
GPU_TASK_COLUMNS: dict[str, tuple[Any, Any]] = {
    "adapter": (np.int32, -1),
    "batch_id": (np.int64, -1),
    "batch_size": (np.int32, 0),
    "gpu": (np.int16, -1),
    "cold_start": (np.bool_, False),
    "load_wait_s": (np.float64, 0.0),
}

#: Extra task column of runs in the ``reallocated`` uplink mode (:mod:`mecsim.sim.uplink`), where
#: a task's share changes while it uploads: ``bandwidth_mean_hz``, its time-averaged share over
#: the upload (``bandwidth_hz`` is the share it got first). Other runs do not have it.
UPLINK_TASK_COLUMNS: dict[str, tuple[Any, Any]] = {
    "bandwidth_mean_hz": (np.float64, np.nan),
}

FAULT_COLUMNS: dict[str, tuple[Any, Any]] = {
    "t": (np.float64, np.nan),
    "event": (np.int8, 0),
    "server": (np.int16, -1),
    "device": (np.int32, -1),
    "task_id": (np.int64, -1),
}

SERVER_COLUMNS: dict[str, tuple[Any, Any]] = {
    "t": (np.float64, np.nan),
    "server": (np.int16, -1),
    "queue_len": (np.int32, 0),
    "busy_slots": (np.int16, 0),
    "in_transit": (np.int32, 0),
}

#: The times of a task after its arrival, in the order they happen (NaN until they do).
TASK_TIME_COLUMNS = (
    "t_decision",
    "t_upload_start",
    "t_upload_end",
    "t_server_arrival",
    "t_service_start",
    "t_service_end",
    "t_complete",
)


def tasks_frame(
    cols: dict[str, np.ndarray],
    model_names: tuple[str, ...],
    server_names: tuple[str, ...],
    t_end: float,
    first_id: int = 0,
    adapter_names: tuple[str, ...] = (),
) -> pd.DataFrame:
    """The tasks table as seen at ``t_end``: times after the end are NaN (not yet happened).
    Row ``i`` of ``cols`` is task ``first_id + i`` (streamed runs convert the table in chunks).

    With the GPU-server model's columns (:data:`GPU_TASK_COLUMNS`) the table also has
    ``adapter`` (the adapter item a request carries, e.g. ``sd15-lora#3``; missing: none),
    ``batch_id`` and ``batch_size`` (the batch it is served in, ids unique in the run and in
    order of the batches' starts; -1 and 0 until its batch starts),
    ``gpu`` (the GPU of the server, 0-based), ``cold_start`` (it waited for weights to load) and
    ``load_wait_s`` (how long, from its arrival or the load's start, whichever is later).
    In the ``reallocated`` uplink mode (:data:`UPLINK_TASK_COLUMNS`) it also has
    ``bandwidth_mean_hz``, the share averaged over the upload's time."""
    n = len(cols["device"])
    # the columns go into one dict and the frame is made once (inserting ~35 columns one by one
    # into a DataFrame had cost a few ms per table)
    df: dict[str, Any] = {"task_id": np.arange(first_id, first_id + n, dtype=np.int64)}
    df["device"] = cols["device"].astype(np.int64)
    df["model"] = pd.Categorical.from_codes(cols["model"].astype(np.int64), categories=list(model_names))
    for k in ("input_bits", "output_bits"):
        df[k] = cols[k]
    df["steps"] = cols["steps"].astype(np.int64)
    srv = cols["server"].astype(np.int64)
    df["server"] = pd.Categorical.from_codes(np.where(srv >= 0, srv, -1), categories=list(server_names))
    df["server_index"] = srv
    df["epoch"] = cols["epoch"]
    df["bandwidth_hz"] = cols["bandwidth_hz"]
    df["t_arrival"] = cols["t_arrival"]
    for k in TASK_TIME_COLUMNS:
        v = cols[k].copy()
        v[v > t_end] = np.nan
        df[k] = v
    state = cols["state"]
    dropped = state == DROPPED
    completed = ~dropped & (cols["t_complete"] <= t_end)
    status = np.where(completed, 0, np.where(dropped, 1, 2))
    df["status"] = pd.Categorical.from_codes(status, categories=list(STATUS_NAMES))
    df["drop_reason"] = pd.Categorical.from_codes(
        cols["drop_reason"].astype(np.int64), categories=list(DROP_REASONS)
    )
    df["latency"] = np.where(completed, cols["t_complete"] - cols["t_arrival"], np.nan)
    deadline = cols["deadline"]
    df["deadline"] = deadline
    met = pd.array(np.where(completed, cols["t_complete"] <= deadline, False), dtype="boolean")
    met[~completed & ~dropped] = pd.NA  # not decided yet
    df["deadline_met"] = met
    df["energy_tx_j"] = np.where(np.isnan(df["t_upload_end"]), 0.0, cols["energy_tx_j"])
    # busy energy is booked when it is spent (end of service, or a failure mid-service), so it is
    # never in the future: no masking, and a task dropped by a failure keeps its partial energy
    df["energy_server_j"] = cols["energy_server_j"]
    df["service_factor"] = cols["service_factor"]
    df["redispatches"] = cols["attempts"].astype(np.int64)
    if "bandwidth_mean_hz" in cols:  # reallocated uplink: NaN until the upload has ended
        df["bandwidth_mean_hz"] = np.where(np.isnan(df["t_upload_end"]), np.nan, cols["bandwidth_mean_hz"])
    if "batch_size" in cols:
        df["adapter"] = pd.Categorical.from_codes(
            cols["adapter"].astype(np.int64), categories=list(adapter_names)
        )
        done = ~np.isnan(df["t_service_start"])  # its batch had started by t_end
        df["batch_id"] = np.where(done, cols["batch_id"], -1)
        df["batch_size"] = np.where(done, cols["batch_size"], 0).astype(np.int64)
        df["gpu"] = np.where(done, cols["gpu"], -1).astype(np.int64)
        df["cold_start"] = cols["cold_start"] & done
        df["load_wait_s"] = np.where(done, cols["load_wait_s"], 0.0)
    return pd.DataFrame(df)


def loads_frame(models: list[Any], server_names: tuple[str, ...]) -> pd.DataFrame:
    """The loads table of a run with ``service.residency`` on: one row per load of weights onto a
    GPU: ``t`` (start), ``t_end``, ``server``, ``gpu``, ``key`` (the request key it was loaded
    for), ``items`` (the weights loaded, comma-separated), ``evicted`` (the weights evicted to make
    room, comma-separated, empty if none) and ``load_s``. ``models``: one GPU-server model (or
    None) per server."""
    rows = []
    for j, m in enumerate(models):
        if m is None:
            continue
        for ev in m.loads:
            rows.append(
                (
                    ev.t,
                    ev.t_end,
                    j,
                    ev.slot,
                    ev.key,
                    ",".join(ev.items),
                    ",".join(ev.evicted),
                    ev.t_end - ev.t,
                )
            )
    df = pd.DataFrame(
        rows, columns=["t", "t_end", "server_index", "gpu", "key", "items", "evicted", "load_s"]
    )
    df.insert(
        2,
        "server",
        pd.Categorical.from_codes(df["server_index"].to_numpy(dtype=np.int64), categories=list(server_names)),
    )
    return df.sort_values(["t", "server_index", "gpu"], kind="stable").reset_index(drop=True)


def faults_frame(cols: dict[str, np.ndarray], server_names: tuple[str, ...]) -> pd.DataFrame:
    """The faults table: one row per fault event and per task it redispatched or dropped."""
    df = pd.DataFrame({"t": cols["t"]})
    df["event"] = pd.Categorical.from_codes(cols["event"].astype(np.int64), categories=list(FAULT_EVENTS))
    srv = cols["server"].astype(np.int64)
    df["server"] = pd.Categorical.from_codes(srv, categories=list(server_names))
    df["device"] = cols["device"].astype(np.int64)
    df["task_id"] = cols["task_id"]
    return df


def servers_frame(cols: dict[str, np.ndarray], server_names: tuple[str, ...]) -> pd.DataFrame:
    """The servers table: one row per change of a server's queue, busy slots or transit count."""
    queue_len = cols["queue_len"].astype(np.int64)
    busy = cols["busy_slots"].astype(np.int64)
    return pd.DataFrame(
        {
            "t": cols["t"],
            "server": pd.Categorical.from_codes(
                cols["server"].astype(np.int64), categories=list(server_names)
            ),
            "queue_len": queue_len,
            "busy_slots": busy,
            "in_transit": cols["in_transit"].astype(np.int64),
            "in_system": queue_len + busy,
        }
    )


# -- streaming to Parquet ---------------------------------------------------------------------


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(tmp)`` with a temporary name next to ``path``, then rename it to ``path``, so
    a reader never sees half a file."""
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


class TraceWriter:
    """Appends the final rows of a run's tables to Parquet files in ``out`` (see the module doc).

    Args:
        out: the output folder (created if needed).
        chunk_rows: rows per flush of the tasks and the servers tables. Epoch rows are Python
            dicts, so they are flushed every ``min(chunk_rows, 8192)`` epochs.
    """

    EPOCH_CHUNK_MAX = 8192

    def __init__(self, out: str | os.PathLike[str], chunk_rows: int) -> None:
        if int(chunk_rows) < 1:
            raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.chunk_rows = int(chunk_rows)
        self.epoch_chunk = min(self.chunk_rows, self.EPOCH_CHUNK_MAX)
        self.rows = {"tasks": 0, "servers": 0, "epochs": 0}
        self._writers: dict[str, tuple[Any, Path]] = {}
        self._parts_dir = self.out / ".epochs.parts"
        shutil.rmtree(self._parts_dir, ignore_errors=True)  # left by a killed run
        self._parts: list[Path] = []
        self._epoch_writer: Any = None
        self.closed = False

    def _append(self, name: str, df: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        entry = self._writers.get(name)
        if entry is None:
            table = pa.Table.from_pandas(df, preserve_index=False)
            tmp = self.out / f".{name}.parquet.partial"
            entry = (pq.ParquetWriter(tmp, table.schema), tmp)
            self._writers[name] = entry
        elif len(df) == 0:
            return
        else:
            table = pa.Table.from_pandas(df, schema=entry[0].schema, preserve_index=False)
        entry[0].write_table(table)
        self.rows[name] += len(df)

    def write_tasks(self, df: pd.DataFrame) -> None:
        """Append rows of the tasks table (as made by :func:`tasks_frame`)."""
        self._append("tasks", df)

    def write_servers(self, df: pd.DataFrame) -> None:
        """Append rows of the servers table (as made by :func:`servers_frame`)."""
        self._append("servers", df)

    def write_epochs(self, rows: EpochLog | list[dict[str, Any]]) -> None:
        """Append epoch rows (an :class:`EpochLog` or dicts); a new part file starts when the
        Arrow schema changes."""
        import pyarrow.parquet as pq

        if not rows:
            return
        table = _epochs_table(rows.frame() if isinstance(rows, EpochLog) else pd.DataFrame(rows))
        w = self._epoch_writer
        if w is None or not table.schema.equals(w.schema, check_metadata=False):
            if w is not None:
                self._epoch_writer = None
                w.close()
            self._parts_dir.mkdir(exist_ok=True)
            path = self._parts_dir / f"part-{len(self._parts):05d}.parquet"
            w = self._epoch_writer = pq.ParquetWriter(path, table.schema)
            self._parts.append(path)
        w.write_table(table)
        self.rows["epochs"] += len(rows)

    def close(self, faults: pd.DataFrame | None = None) -> None:
        """Close the writers and put tasks/servers/epochs(/faults).parquet in place. Also meant
        for a run that stopped early: what was written stays readable. Idempotent."""
        if self.closed:
            return
        self.closed = True
        first: BaseException | None = None
        steps = [
            lambda w=w, tmp=tmp, name=name: (w.close(), os.replace(tmp, self.out / f"{name}.parquet"))
            for name, (w, tmp) in self._writers.items()
        ]
        steps.append(self._finish_epochs)
        if faults is not None:
            steps.append(
                lambda: atomic_write(self.out / "faults.parquet", lambda p: faults.to_parquet(p, index=False))
            )
        for step in steps:
            try:
                step()
            except BaseException as exc:  # close the others all the same
                first = first or exc
        if first is not None:
            raise first

    def _finish_epochs(self) -> None:
        final = self.out / "epochs.parquet"
        if self._epoch_writer is not None:
            self._epoch_writer.close()
            self._epoch_writer = None
        if not self._parts:
            atomic_write(final, lambda p: pd.DataFrame([]).to_parquet(p, index=False))
        elif len(self._parts) == 1:
            os.replace(self._parts[0], final)
        else:
            _merge_parts(self._parts, final)
        shutil.rmtree(self._parts_dir, ignore_errors=True)


def _epochs_table(df: pd.DataFrame) -> Any:
    """Arrow table of a chunk of epoch rows; object columns Arrow cannot type (a key whose values
    mix types) become strings."""
    import pyarrow as pa

    try:
        return pa.Table.from_pandas(df, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        df = df.copy()
        for c in df.columns:
            if df[c].dtype != object:
                continue
            try:
                pa.array(df[c], from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                df[c] = [None if v is None or (isinstance(v, float) and v != v) else str(v) for v in df[c]]
        return pa.Table.from_pandas(df, preserve_index=False)


def _unify(types: list[Any], absent: bool) -> Any:
    """One Arrow type for a column seen with ``types`` in some parts (and in none of the others
    when ``absent``), as ``pandas.DataFrame(rows)`` would type the whole column."""
    import pyarrow as pa

    known = [t for t in types if not pa.types.is_null(t)]
    if not known:  # only None values: None with missing values makes pandas use float64
        return pa.float64() if absent else pa.null()
    kinds = set(known)
    if len(kinds) == 1:
        t = known[0]
        if pa.types.is_integer(t) and (absent or len(known) < len(types)):
            return pa.float64()  # integers with missing values
        return t
    if all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in kinds):
        return pa.float64()
    return pa.large_string()  # strings of both widths, or types that cannot be unified


def _merge_parts(parts: list[Path], final: Path) -> None:
    """Write the part files, row group by row group, as one file under a unified schema."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schemas = [pq.read_schema(p) for p in parts]
    names: list[str] = []
    for s in schemas:
        names.extend(n for n in s.names if n not in names)
    fields = []
    for name in names:
        types = [s.field(name).type for s in schemas if name in s.names]
        fields.append(pa.field(name, _unify(types, len(types) < len(schemas))))
    schema = pa.schema(fields)  # no pandas metadata: the Arrow types give the pandas dtypes

    def write(tmp: str) -> None:
        with pq.ParquetWriter(tmp, schema) as w:
            for p in parts:
                pf = pq.ParquetFile(p)
                for i in range(pf.num_row_groups):
                    t = pf.read_row_group(i)
                    cols = []
                    for f in schema:
                        if f.name not in t.column_names:
                            cols.append(pa.chunked_array([pa.nulls(len(t), f.type)]))
                            continue
                        c = t.column(f.name)
                        cols.append(c if c.type == f.type else c.cast(f.type, safe=False))
                    w.write_table(pa.Table.from_arrays(cols, schema=schema))

    atomic_write(final, write)
