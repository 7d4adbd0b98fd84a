"""Runs of a sweep: planning, executing one run, the dataset layout and the catalogue.

One run is (scenario with its overrides, policy with its params, seed). Its id is a hash of the
overridden scenario's digest, the policy name and params and the seed, so the same run planned by
two sweeps has the same id and is computed once.

A sweep's output folder ``OUT`` is one Parquet dataset per table, hive-partitioned by run, with
the side files beside the tables (never inside them)::

    OUT/tasks/run_id=<id>/part-0.parquet       one dataset per table: tasks, epochs, servers,
    OUT/epochs/run_id=<id>/part-0.parquet      faults; ``pd.read_parquet(OUT / "tasks")`` and
    OUT/servers/run_id=<id>/part-0.parquet     ``dask.dataframe.read_parquet(OUT / "tasks")``
    OUT/faults/run_id=<id>/part-0.parquet      read a table of every run at once
    OUT/runs/run_id=<id>/                      summary.json, scenario.yaml, run.json, _SUCCESS
    OUT/catalogue.parquet, catalogue.csv       one row per run
    OUT/sweep.yaml                             the sweep as run

A worker writes a run's table files first (each through a temporary name and a rename), then
its side folder, filled in a staging area and renamed into ``runs/`` with ``_SUCCESS`` written
last: a run counts as finished exactly when its side folder exists. Table columns are stored
with plain types (categories as strings, all-empty text columns as strings), and the sweep
harmonises the files' schemas when it ends (:func:`harmonise_tables`), so that a reader that
takes the schema of the first file (pandas, Dask) reads every column of every run.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import socket
import time
import uuid
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from mecsim.errors import MecsimError, ScenarioError
from mecsim.scenario import Scenario, load_scenario
from mecsim.study.spec import PolicyEntry, SweepError, SweepSpec, load_sweep_spec
from mecsim.traces import atomic_write

__all__ = [
    "RunSpec",
    "plan_runs",
    "run_id_for",
    "execute_run",
    "run_dir",
    "table_file",
    "is_complete",
    "read_catalogue",
    "write_catalogue",
    "harmonise_tables",
    "CATALOGUE_COLUMNS",
    "TABLES",
    "DONE",
    "FAILED",
    "PENDING",
]

#: The tables of a run, one Parquet dataset each in a sweep's folder.
TABLES = ("tasks", "epochs", "servers", "faults")

#: The catalogue's columns, in order (one row per run).
CATALOGUE_COLUMNS = (
    "run_id",
    "sweep",
    "scenario",
    "digest",
    "overrides",
    "policy",
    "policy_params",
    "seed",
    "status",
    "error",
    "wall_s",
    "attempts",
    "started",
    "finished",
    "duration_s",
    "warmup_s",
    "versions",
    "worker",
)

#: Run statuses in the catalogue: ``pending`` means planned but not (yet) run.
DONE, FAILED, PENDING = "done", "failed", "pending"

_VERSIONED = ("numpy", "simpy", "dimod", "pandas", "pyarrow")


# ---------------------------------------------------------------------------------------------
# planning


@dataclass(frozen=True)
class RunSpec:
    """One planned run. Treat the dicts as read-only.

    Attributes:
        run_id: hash of (overridden scenario digest, policy name and params, seed).
        index: position in the sweep's plan.
        sweep: the sweep's name.
        scenario: the scenario's name (after overrides).
        source: the base scenario as given to :func:`mecsim.simulate` (name or absolute path).
        overrides: every dotted override of this run (common, case, grid).
        policy: the policy's name or ``"package.module:Object"``.
        policy_params: the policy's parameters (resolved as :func:`mecsim.simulate` would).
        seed: the run seed.
        digest: :meth:`Scenario.digest` of the overridden scenario (None if it is invalid).
        error: why the run cannot be built (an invalid override), one line; None if it can.
        scenario_obj: the validated, overridden scenario the workers run.
    """

    run_id: str
    index: int
    sweep: str
    scenario: str
    source: str
    overrides: dict[str, Any]
    policy: str
    policy_params: dict[str, Any]
    seed: int
    digest: str | None
    error: str | None = None
    scenario_obj: Scenario | None = field(default=None, repr=False, compare=False)

    def simulate_kwargs(self) -> dict[str, Any]:
        """The arguments of the serial :func:`mecsim.simulate` call this run is equivalent to."""
        return {
            "scenario": self.source,
            "policy": self.policy,
            "seed": self.seed,
            "policy_params": dict(self.policy_params),
            **self.overrides,
        }

    def simulate(self) -> Any:
        """Run it serially in this process (the reference a sweep must reproduce bit for bit)."""
        from mecsim.api import simulate

        return simulate(**self.simulate_kwargs())

    def base_row(self) -> dict[str, Any]:
        """The catalogue row of this run before it ran."""
        sc = self.scenario_obj
        return {
            "run_id": self.run_id,
            "sweep": self.sweep,
            "scenario": self.scenario,
            "digest": self.digest,
            "overrides": _json(self.overrides),
            "policy": self.policy,
            "policy_params": _json(self.policy_params),
            "seed": self.seed,
            "status": PENDING,
            "error": None,
            "wall_s": None,
            "attempts": 0,
            "started": None,
            "finished": None,
            "duration_s": sc.duration_s if sc else None,
            "warmup_s": sc.warmup_s if sc else None,
            "versions": None,
            "worker": None,
        }


def _json(o: Any) -> str:
    return json.dumps(o, sort_keys=True, default=str)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def run_id_for(digest: str, policy: str, policy_params: dict[str, Any], seed: int) -> str:
    """The id of a run: a short hash of what determines its results."""
    blob = _json({"digest": digest, "policy": policy, "policy_params": policy_params, "seed": seed})
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _check_policy_name(name: str, where: str) -> None:
    from mecsim.errors import PolicyError
    from mecsim.policies import make_policy  # noqa: F401  (registers the shipped policies)
    from mecsim.registry import POLICIES

    try:
        POLICIES.resolve(name)
    except (PolicyError, MecsimError) as exc:
        raise SweepError(" ".join(str(exc).split()), where) from None


def plan_runs(spec: SweepSpec | dict[str, Any] | str | os.PathLike[str]) -> list[RunSpec]:
    """Every run of a sweep, in order: scenario points, then policies, then seeds.

    Each scenario point is validated here. A point whose overrides are invalid still yields its
    runs, with ``error`` set (one line naming the field), so the sweep reports them as failed
    and goes on with the others. Runs that resolve to the same id (e.g. a grid value equal to
    the default) are planned once, with a warning.

    Raises:
        SweepError: the spec is invalid, the base scenario cannot be loaded, or a policy name is
            unknown.
    """
    sp = load_sweep_spec(spec)
    source = sp.scenario_source()
    try:
        base = load_scenario(source)
    except ScenarioError as exc:
        raise SweepError(" ".join(str(exc).split()), "scenario") from None
    for i, p in enumerate(sp.policies):
        _check_policy_name(p.name, f"policies.{i}.name")
    policies = list(sp.policies) or [PolicyEntry(name=base.policy.name, params=base.policy.params)]

    runs: list[RunSpec] = []
    seen: dict[str, int] = {}
    for point in sp.points():
        try:
            sc: Scenario | None = load_scenario(source, **point)
            error = None
        except ScenarioError as exc:
            sc, error = None, _one_line(exc)
        for pol in policies:
            # The params simulate() would use: the scenario's when the policy is the scenario's.
            params = pol.params
            if params is None:
                ref = sc if sc is not None else base
                params = dict(ref.policy.params) if pol.name == ref.policy.name else {}
            for seed in sp.seeds:
                if sc is not None:
                    digest: str | None = sc.digest()
                    rid = run_id_for(digest, pol.name, params, seed)
                else:
                    # No valid scenario to digest: identify the attempt by what was asked.
                    digest = None
                    rid = run_id_for(f"invalid:{base.digest()}:{_json(point)}", pol.name, params, seed)
                if rid in seen:
                    warnings.warn(
                        f"run {rid} ({pol.name}, seed {seed}, overrides {_json(point)}) is "
                        f"the same run as plan entry {seen[rid]}; it is run once",
                        stacklevel=2,
                    )
                    continue
                seen[rid] = len(runs)
                runs.append(
                    RunSpec(
                        run_id=rid,
                        index=len(runs),
                        sweep=sp.name,
                        scenario=sc.name if sc is not None else base.name,
                        source=source,
                        overrides=dict(point),
                        policy=pol.name,
                        policy_params=dict(params),
                        seed=seed,
                        digest=digest,
                        error=error,
                        scenario_obj=sc,
                    )
                )
    return runs


# ---------------------------------------------------------------------------------------------
# the layout


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    import mecsim

    out = {"mecsim": mecsim.__version__, "python": platform.python_version()}
    for pkg in _VERSIONED:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "-"
    return out


def run_dir(out_dir: str | os.PathLike[str], run_id: str) -> Path:
    """The side folder of a run (summary, scenario, run record) in a sweep's output folder."""
    return Path(out_dir) / "runs" / f"run_id={run_id}"


def table_file(out_dir: str | os.PathLike[str], table: str, run_id: str) -> Path:
    """The Parquet file of one run's table: a hive partition of the table's dataset."""
    return Path(out_dir) / table / f"run_id={run_id}" / "part-0.parquet"


def is_complete(folder: Path) -> bool:
    """Whether a run's side folder (``OUT/runs/run_id=<id>``) holds a finished run: the
    ``_SUCCESS`` marker (written last), a readable summary and run record, and its table files."""
    if not (folder / "_SUCCESS").is_file():
        return False
    try:
        json.loads((folder / "summary.json").read_text())
        json.loads((folder / "run.json").read_text())
    except (OSError, ValueError):
        return False
    out, rid = folder.parent.parent, folder.name.removeprefix("run_id=")
    return all(table_file(out, t, rid).is_file() for t in TABLES)


def _plain(df: pd.DataFrame) -> pd.DataFrame:
    """The table with types every run shares: categories and object columns as text."""
    df = df.copy()
    for col in df.columns:
        if isinstance(df[col].dtype, pd.CategoricalDtype) or df[col].dtype == object:
            df[col] = df[col].astype("str")
    return df


def _write_table(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda p: _plain(df).to_parquet(p, index=False))


def execute_run(run: RunSpec, out_dir: str, attempt: int = 1) -> dict[str, Any]:
    """Run one planned run and write its table files and side folder; never raises for a
    failing run.

    This is what the executor runs (in this process or on a Dask worker). The run is simulated
    exactly as :meth:`RunSpec.simulate` would; its tables go to ``OUT/<table>/run_id=<id>/``,
    then its side folder is filled in ``OUT/.staging/`` and renamed to ``OUT/runs/run_id=<id>/``
    (so ``runs/`` never holds half a run).

    Args:
        run: the planned run.
        out_dir: the sweep's output folder (absolute, as seen by this worker).
        attempt: how many times this run has been executed, this time included.

    Returns:
        The run's catalogue row: ``status`` ``"done"``, or ``"failed"`` with a one-line error.
    """
    from mecsim.api import simulate
    from mecsim.results import _write_meta

    row = run.base_row()
    row.update(
        attempts=attempt,
        started=_now(),
        versions=_json(_versions()),
        worker=f"{socket.gethostname()}:{os.getpid()}",
    )
    t0 = time.perf_counter()
    staging: Path | None = None
    if run.error is not None:  # the scenario did not validate: nothing to simulate
        row.update(status=FAILED, error=run.error, wall_s=0.0, finished=_now())
        return row
    try:
        res = simulate(
            run.scenario_obj if run.scenario_obj is not None else run.source,
            policy=run.policy,
            seed=run.seed,
            policy_params=dict(run.policy_params),
            **({} if run.scenario_obj is not None else run.overrides),
        )
        if not res.complete:
            raise RuntimeError("the simulation stopped before its end")
        out = Path(out_dir)
        for table in TABLES:
            _write_table(getattr(res, table), table_file(out, table, run.run_id))
        stage_root = out / ".staging"
        stage_root.mkdir(parents=True, exist_ok=True)
        staging = stage_root / f"run_id={run.run_id}.{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        _write_meta(staging, res.summary, res.complete, res.scenario)
        row.update(status=DONE, wall_s=time.perf_counter() - t0, finished=_now())
        (staging / "run.json").write_text(json.dumps(row, indent=2, default=str))
        (staging / "_SUCCESS").write_text("")  # last: the folder is complete
        final = run_dir(out, run.run_id)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():  # a stale, incomplete folder from an earlier, interrupted write
            shutil.rmtree(final)
        os.replace(staging, final)
        staging = None
    except Exception as exc:  # a failed run is data, not a crash of the sweep
        row.update(status=FAILED, error=_one_line(exc), wall_s=time.perf_counter() - t0, finished=_now())
    finally:
        if staging is not None and staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return row


def harmonise_tables(out_dir: str | os.PathLike[str]) -> list[Path]:
    """Give every file of each table dataset the same schema (the union of the files' columns).

    Readers such as ``pd.read_parquet(folder)`` take the first file's schema: without this, the
    columns only some policies write (e.g. the QUBO policies' solver columns in ``epochs``)
    would be dropped from the other runs' rows silently, or a column empty in one run would
    clash with its type in another. Only files whose schema differs are rewritten (atomically).

    Returns:
        The files rewritten.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out_dir)
    rewritten = []
    for table in TABLES:
        files = sorted((out / table).glob("run_id=*/part-0.parquet"))
        if len(files) < 2:
            continue
        schemas = [pq.read_schema(f) for f in files]
        # The first file's pandas metadata travels with the union (nullable booleans and the like
        # come back as they were written).
        target = pa.unify_schemas(schemas, promote_options="permissive")
        bare = target.remove_metadata()
        for f, s in zip(files, schemas, strict=True):
            if s.remove_metadata().equals(bare):
                continue
            tab = pq.read_table(f)
            cols = [
                tab.column(n).cast(target.field(n).type)
                if n in tab.column_names
                else pa.nulls(len(tab), target.field(n).type)
                for n in target.names
            ]
            new = pa.Table.from_arrays(cols, schema=target)
            atomic_write(f, lambda p, new=new: pq.write_table(new, p))
            rewritten.append(f)
    return rewritten


# ---------------------------------------------------------------------------------------------
# the catalogue


def _catalogue_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(list(rows), columns=list(CATALOGUE_COLUMNS))
    df["seed"] = df["seed"].astype("int64")
    df["attempts"] = df["attempts"].fillna(0).astype("int64")
    for col in ("wall_s", "duration_s", "warmup_s"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    for col in ("started", "finished"):
        df[col] = pd.to_datetime(df[col], utc=True, format="ISO8601")
    for col in (
        "run_id",
        "sweep",
        "scenario",
        "digest",
        "overrides",
        "policy",
        "policy_params",
        "status",
        "error",
        "versions",
        "worker",
    ):
        df[col] = df[col].astype(object).where(df[col].notna(), None).astype("string")
    return df


def read_catalogue(out_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """A sweep's catalogue, brought up to date with its run folders.

    The run folders are the truth: a sweep killed between finishing a run and its next
    catalogue write leaves a complete folder that the file still calls pending (or does not
    list); such rows are taken from the folder's ``run.json``.
    """
    out = Path(out_dir)
    path = out / "catalogue.parquet"
    runs = out / "runs"
    found = (
        {f.name.removeprefix("run_id="): f for f in sorted(runs.glob("run_id=*")) if is_complete(f)}
        if runs.is_dir()
        else {}
    )
    if path.is_file():
        cat = pd.read_parquet(path)
        stale = [
            rid for rid, st in zip(cat["run_id"], cat["status"], strict=True) if st != DONE and rid in found
        ]
        missing = [rid for rid in found if rid not in set(cat["run_id"])]
        if not stale and not missing:
            return cat
        rows = cat.astype(object).where(cat.notna(), None).to_dict("records")
        rows = [
            json.loads((found[r["run_id"]] / "run.json").read_text()) if r["run_id"] in stale else r
            for r in rows
        ]
        rows += [json.loads((found[rid] / "run.json").read_text()) for rid in missing]
        return _catalogue_frame(rows)
    if not found:
        raise SweepError(f"{out} holds no sweep (no catalogue.parquet and no finished run folders)")
    return _catalogue_frame(json.loads((f / "run.json").read_text()) for f in found.values())


def write_catalogue(out: Path, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Write the catalogue (Parquet and CSV, each atomically) and return it."""
    df = _catalogue_frame(rows)
    atomic_write(out / "catalogue.parquet", lambda p: df.to_parquet(p, index=False))
    atomic_write(out / "catalogue.csv", lambda p: df.to_csv(p, index=False))
    return df
