"""Sweeps: many runs (scenario overrides x policies x seeds) on Dask, into one Parquet dataset.

A sweep file names a base scenario, the overrides to vary, the policies and the seeds:

.. code-block:: yaml

    name: smoke-bandwidth
    scenario: smoke-v1            # a registered name, or a path relative to this file
    overrides: {duration_s: 30}   # applied to every run
    grid:                         # cartesian product of dotted overrides
      radio.bandwidth_hz: [5.0e+6, 10.0e+6]
    cases:                        # explicit override sets, each combined with every grid point
      - {}
      - {servers.1.slots: 2}
    policies: [random, {name: greedy, params: {bandwidth: sum}}]
    seeds: {count: 3, start: 0}   # or a list: [1, 2, 3]

One run is (scenario with its overrides, policy with its params, seed). Its id is a hash of the
overridden scenario's digest, the policy name and params and the seed, so the same run planned by
two sweeps has the same id and is computed once. Each finished run lands in
``OUT/runs/run_id=<id>/`` (``tasks.parquet``, ``epochs.parquet``, ``servers.parquet``,
``summary.json``, ``scenario.yaml``, ``run.json``, ``_SUCCESS``): the folder is filled in a
staging area and renamed into place, so a folder under ``runs/`` is always complete.
``OUT/catalogue.parquet`` (and ``catalogue.csv``) has one row per run. Re-running a sweep skips
the runs whose folder is complete and redoes the missing and failed ones.

Runs go through Dask's distributed scheduler: an embedded ``LocalCluster`` (one single-threaded
worker process per core by default) or a user's cluster by address. Workers write the run folders
themselves, so with a remote cluster ``OUT`` must be on a filesystem the workers share, at the
same path.

Example:
    >>> from mecsim.sweep import plan_runs
    >>> runs = plan_runs({"scenario": "smoke-v1", "overrides": {"duration_s": 20},
    ...                   "policies": ["random", "greedy"], "seeds": [1, 2]})
    >>> [(r.policy, r.seed) for r in runs]
    [('random', 1), ('random', 2), ('greedy', 1), ('greedy', 2)]
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import os
import platform
import shutil
import signal
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mecsim.errors import MecsimError, MissingExtraError, ScenarioError
from mecsim.scenario import Scenario, load_scenario

__all__ = [
    "SweepError",
    "SweepSpec",
    "PolicyEntry",
    "RunSpec",
    "load_sweep_spec",
    "plan_runs",
    "run_sweep",
    "execute_run",
    "read_catalogue",
    "CATALOGUE_COLUMNS",
]

#: The catalogue's columns, in order (one row per run).
CATALOGUE_COLUMNS = (
    "run_id", "sweep", "scenario", "digest", "overrides", "policy", "policy_params", "seed",
    "status", "error", "wall_s", "attempts", "started", "finished", "duration_s", "warmup_s",
    "versions", "worker",
)

#: Run statuses in the catalogue: ``pending`` means planned but not (yet) run.
DONE, FAILED, PENDING = "done", "failed", "pending"

_VERSIONED = ("numpy", "simpy", "dimod", "pandas", "pyarrow")


class SweepError(MecsimError, ValueError):
    """A sweep file or spec is malformed, or a sweep cannot start.

    Attributes:
        field: dotted path of the offending field in the sweep spec, e.g. ``"seeds.count"``.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


# ---------------------------------------------------------------------------------------------
# the spec


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PolicyEntry(_Model):
    """A policy to run: a registered name or ``"package.module:Object"``, with its parameters.

    ``params: null`` (the default) means "as :func:`mecsim.simulate` would": the scenario's
    policy params when the name is the scenario's policy, none otherwise.
    """

    name: str = Field(min_length=1)
    params: dict[str, Any] | None = None


def _dotted(key: Any, where: str) -> str:
    if not isinstance(key, str) or not key.strip():
        raise ValueError(f"{where}: override keys must be non-empty strings, got {key!r}")
    return key.strip().replace("__", ".")


class SweepSpec(_Model):
    """A validated sweep. See the module docstring for the file format.

    Attributes:
        name: the sweep's name (the default output folder is ``runs/<name>``).
        scenario: the base scenario: a registered name or a path (relative to ``base_dir``).
        overrides: dotted overrides applied to every run; a case may override them again.
        grid: dotted override -> list of values; the runs take the cartesian product.
        cases: explicit override dicts; every case is combined with every grid point.
        policies: the policies to compare (default: the scenario's policy).
        seeds: the run seeds, a list or ``{count: K, start: S}`` (S, S+1, ..., S+K-1).
        base_dir: the folder of the sweep file (not part of the file).
    """

    name: str = Field(default="sweep", min_length=1)
    description: str = ""
    scenario: str = Field(min_length=1)
    overrides: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    cases: list[dict[str, Any]] = Field(default_factory=list)
    policies: list[PolicyEntry] = Field(default_factory=list)
    seeds: list[int] = Field(min_length=1)
    base_dir: str | None = Field(default=None, exclude=True)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        # The name becomes a folder name: keep it to one path component.
        if "/" in v or "\\" in v or v in (".", ".."):
            raise ValueError(f"must be a plain name without path separators, got {v!r}")
        return v

    @field_validator("overrides", mode="before")
    @classmethod
    def _overrides(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        return {_dotted(k, "overrides"): x for k, x in v.items()}

    @field_validator("grid", mode="before")
    @classmethod
    def _grid(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        out = {}
        for k, vals in v.items():
            key = _dotted(k, "grid")
            if not isinstance(vals, list):
                raise ValueError(f"{key}: give a list of values, got {vals!r}")
            if not vals:
                raise ValueError(f"{key}: the list of values is empty")
            out[key] = vals
        return out

    @field_validator("cases", mode="before")
    @classmethod
    def _cases(cls, v: Any) -> Any:
        if not isinstance(v, list):
            return v
        return [{_dotted(k, f"case {i}"): x for k, x in c.items()} if isinstance(c, dict) else c
                for i, c in enumerate(v)]

    @field_validator("policies", mode="before")
    @classmethod
    def _policies(cls, v: Any) -> Any:
        # A bare string is the common case; normalise it before the model sees it.
        if isinstance(v, str | dict):
            v = [v]
        if isinstance(v, list):
            return [{"name": p} if isinstance(p, str) else p for p in v]
        return v

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError(f"give a list of seeds or {{count: K, start: S}}, got {v!r}")
        if isinstance(v, int):
            v = [v]
        if isinstance(v, dict):
            unknown = set(v) - {"count", "start"}
            if unknown:
                raise ValueError(f"unknown key(s) {sorted(unknown)}; use {{count: K, start: S}}")
            count, start = v.get("count"), v.get("start", 0)
            for key, x, low in (("count", count, 1), ("start", start, 0)):
                if isinstance(x, bool) or not isinstance(x, int) or x < low:
                    raise ValueError(f"{key} must be a whole number >= {low}, got {x!r}")
            return list(range(start, start + count))
        if isinstance(v, list):
            for x in v:
                if isinstance(x, bool) or not isinstance(x, int) or x < 0:
                    raise ValueError(f"seeds must be whole numbers >= 0, got {x!r}")
            dup = sorted({x for x in v if v.count(x) > 1})
            if dup:
                raise ValueError(f"duplicate seed(s) {dup}")
            return v
        raise ValueError(f"give a list of seeds or {{count: K, start: S}}, got {v!r}")

    @model_validator(mode="after")
    def _disjoint(self) -> SweepSpec:
        # A key both in the grid and elsewhere would make the run's value depend on an order
        # nobody wrote down; cases may override the common `overrides` on purpose.
        for key in self.grid:
            if key in self.overrides:
                raise ValueError(f"grid key {key!r} is also in overrides; keep it in one place")
            for i, case in enumerate(self.cases):
                if key in case:
                    raise ValueError(f"grid key {key!r} is also set by case {i}; keep it in one place")
        names = [(p.name, json.dumps(p.params, sort_keys=True, default=str)) for p in self.policies]
        dup = sorted({n for n, _ in names if names.count((n, _)) > 1})
        if dup:
            raise ValueError(f"policies: listed twice with the same params: {dup}")
        return self

    def points(self) -> list[dict[str, Any]]:
        """The override dicts of the sweep's scenario points: overrides, then case, then grid."""
        keys = list(self.grid)
        combos = [dict(zip(keys, vals, strict=True)) for vals in itertools.product(*self.grid.values())]
        cases = self.cases or [{}]
        return [{**self.overrides, **case, **combo} for case in cases for combo in combos]

    def scenario_source(self) -> str:
        """The base scenario as :func:`~mecsim.scenario.load_scenario` takes it: a registered
        name, or a path resolved against the sweep file's folder."""
        src = self.scenario
        path = Path(os.path.expanduser(src))
        if not path.is_absolute() and self.base_dir:
            candidate = Path(self.base_dir) / path
            if candidate.exists():
                return str(candidate.resolve())
        if path.exists():
            return str(path.resolve())
        return src  # a registered name (load_scenario says so if it is not)


def _format_spec_error(exc: ValidationError) -> SweepError:
    from mecsim.scenario import _format_validation_error

    err = _format_validation_error(exc, SweepError, skip=())
    assert isinstance(err, SweepError)
    return err


def load_sweep_spec(source: str | os.PathLike[str] | dict[str, Any] | SweepSpec) -> SweepSpec:
    """Load and validate a sweep from a YAML file, a dict or a :class:`SweepSpec`.

    Raises:
        SweepError: one line naming the field and the problem.
    """
    if isinstance(source, SweepSpec):
        return source
    base_dir: str | None = None
    if isinstance(source, dict):
        data: Any = source
    else:
        from mecsim.scenario import _load_yaml_file

        path = Path(os.fspath(source))
        if not path.is_file():
            raise SweepError(f"no such sweep file: {path}")
        data = _load_yaml_file(path, SweepError, "sweep file")
        base_dir = str(path.resolve().parent)
    if not isinstance(data, dict):
        raise SweepError(f"a sweep must be a mapping of fields, got {type(data).__name__}")
    data = dict(data)
    if base_dir is not None:
        data["base_dir"] = base_dir
    else:
        data.pop("base_dir", None)
    try:
        return SweepSpec(**data)
    except ValidationError as exc:
        raise _format_spec_error(exc) from None


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
        return {"scenario": self.source, "policy": self.policy, "seed": self.seed,
                "policy_params": dict(self.policy_params), **self.overrides}

    def simulate(self) -> Any:
        """Run it serially in this process (the reference a sweep must reproduce bit for bit)."""
        from mecsim.api import simulate

        return simulate(**self.simulate_kwargs())

    def base_row(self) -> dict[str, Any]:
        """The catalogue row of this run before it ran."""
        sc = self.scenario_obj
        return {
            "run_id": self.run_id, "sweep": self.sweep, "scenario": self.scenario,
            "digest": self.digest, "overrides": _json(self.overrides), "policy": self.policy,
            "policy_params": _json(self.policy_params), "seed": self.seed, "status": PENDING,
            "error": None, "wall_s": None, "attempts": 0, "started": None, "finished": None,
            "duration_s": sc.duration_s if sc else None, "warmup_s": sc.warmup_s if sc else None,
            "versions": None, "worker": None,
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
                    warnings.warn(f"run {rid} ({pol.name}, seed {seed}, overrides {_json(point)}) is "
                                  f"the same run as plan entry {seen[rid]}; it is run once",
                                  stacklevel=2)
                    continue
                seen[rid] = len(runs)
                runs.append(RunSpec(
                    run_id=rid, index=len(runs), sweep=sp.name,
                    scenario=sc.name if sc is not None else base.name, source=source,
                    overrides=dict(point), policy=pol.name, policy_params=dict(params), seed=seed,
                    digest=digest, error=error, scenario_obj=sc,
                ))
    return runs


# ---------------------------------------------------------------------------------------------
# one run (on a worker)


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
    """The folder of a run inside a sweep's output folder (a hive partition of ``runs/``)."""
    return Path(out_dir) / "runs" / f"run_id={run_id}"


def is_complete(folder: Path) -> bool:
    """Whether a run folder holds a finished run: the ``_SUCCESS`` marker (written last) and a
    readable summary and run record."""
    if not (folder / "_SUCCESS").is_file():
        return False
    try:
        json.loads((folder / "summary.json").read_text())
        json.loads((folder / "run.json").read_text())
    except (OSError, ValueError):
        return False
    return all((folder / f"{t}.parquet").is_file() for t in ("tasks", "epochs", "servers"))


def _write_atomic(path: Path, write: Callable[[str], Any]) -> None:
    """Write through a temporary file in the same folder and rename: readers see old or new."""
    from mecsim.results import _atomic

    _atomic(path, write)


def execute_run(run: RunSpec, out_dir: str, attempt: int = 1) -> dict[str, Any]:
    """Run one planned run and write its folder; never raises for a failing run.

    This is what the Dask workers execute. The run is simulated exactly as
    :meth:`RunSpec.simulate` would, saved into ``OUT/.staging/``, and the finished folder is
    renamed to ``OUT/runs/run_id=<id>/`` (so ``runs/`` never holds half a run).

    Args:
        run: the planned run.
        out_dir: the sweep's output folder (absolute, as seen by this worker).
        attempt: how many times this run has been executed, this time included.

    Returns:
        The run's catalogue row: ``status`` ``"done"``, or ``"failed"`` with a one-line error.
    """
    from mecsim.api import simulate

    row = run.base_row()
    row.update(attempts=attempt, started=_now(), versions=_json(_versions()),
               worker=f"{socket.gethostname()}:{os.getpid()}")
    t0 = time.perf_counter()
    staging: Path | None = None
    if run.error is not None:  # the scenario did not validate: nothing to simulate
        row.update(status=FAILED, error=run.error, wall_s=0.0, finished=_now())
        return row
    try:
        res = simulate(run.scenario_obj if run.scenario_obj is not None else run.source,
                       policy=run.policy, seed=run.seed, policy_params=dict(run.policy_params),
                       **({} if run.scenario_obj is not None else run.overrides))
        if not res.complete:
            raise RuntimeError("the simulation stopped before its end")
        stage_root = Path(out_dir) / ".staging"
        stage_root.mkdir(parents=True, exist_ok=True)
        staging = stage_root / f"run_id={run.run_id}.{uuid.uuid4().hex[:8]}"
        res.save(staging)
        row.update(status=DONE, wall_s=time.perf_counter() - t0, finished=_now())
        (staging / "run.json").write_text(json.dumps(row, indent=2, default=str))
        (staging / "_SUCCESS").write_text("")  # last: the folder is complete
        final = run_dir(out_dir, run.run_id)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():  # a stale, incomplete folder from an earlier, interrupted write
            shutil.rmtree(final)
        os.replace(staging, final)
        staging = None
    except Exception as exc:  # a failed run is data, not a crash of the sweep
        row.update(status=FAILED, error=_one_line(exc), wall_s=time.perf_counter() - t0,
                   finished=_now())
    finally:
        if staging is not None and staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return row


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
    for col in ("run_id", "sweep", "scenario", "digest", "overrides", "policy", "policy_params",
                "status", "error", "versions", "worker"):
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
    found = {f.name.removeprefix("run_id="): f for f in sorted(runs.glob("run_id=*"))
             if is_complete(f)} if runs.is_dir() else {}
    if path.is_file():
        cat = pd.read_parquet(path)
        stale = [rid for rid, st in zip(cat["run_id"], cat["status"], strict=True)
                 if st != DONE and rid in found]
        missing = [rid for rid in found if rid not in set(cat["run_id"])]
        if not stale and not missing:
            return cat
        rows = cat.astype(object).where(cat.notna(), None).to_dict("records")
        rows = [json.loads((found[r["run_id"]] / "run.json").read_text()) if r["run_id"] in stale else r
                for r in rows]
        rows += [json.loads((found[rid] / "run.json").read_text()) for rid in missing]
        return _catalogue_frame(rows)
    if not found:
        raise SweepError(f"{out} holds no sweep (no catalogue.parquet and no finished run folders)")
    return _catalogue_frame(json.loads((f / "run.json").read_text()) for f in found.values())


def _write_catalogue(out: Path, rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = _catalogue_frame(rows)
    _write_atomic(out / "catalogue.parquet", lambda p: df.to_parquet(p, index=False))
    _write_atomic(out / "catalogue.csv", lambda p: df.to_csv(p, index=False))
    return df


# ---------------------------------------------------------------------------------------------
# the sweep


def _client(scheduler: Any, workers: int | None, n_pending: int) -> tuple[Any, Any, bool]:
    """(client, cluster or None, whether we own the client)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise MissingExtraError("dask[distributed]", "dist") from None
    if scheduler is not None and not isinstance(scheduler, str):
        if isinstance(scheduler, Client):
            return scheduler, None, False
        raise SweepError(f"scheduler must be an address or a distributed.Client, got "
                         f"{type(scheduler).__name__}")
    if scheduler:
        if workers is not None:
            raise SweepError("--workers sizes the embedded local cluster; a cluster at an address "
                             "has the workers it has")
        try:
            return Client(scheduler, timeout="20s"), None, True
        except (OSError, TimeoutError) as exc:
            raise SweepError(f"cannot connect to the Dask scheduler at {scheduler!r}: "
                             f"{' '.join(str(exc).split())}") from None
    n = workers if workers is not None else min(os.cpu_count() or 1, max(n_pending, 1))
    if n < 1:
        raise SweepError(f"workers must be >= 1, got {n}")
    # One single-threaded process per worker: a run is pure Python (SimPy) and holds the GIL.
    # The worker processes are started with SIGINT ignored (inherited through spawn): Ctrl-C
    # then reaches only this process, which records what finished and shuts the cluster down,
    # instead of every worker printing its own KeyboardInterrupt traceback.
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main else None
    try:
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
    finally:
        if in_main:
            signal.signal(signal.SIGINT, previous)
    return Client(cluster), cluster, True


def run_sweep(spec_or_path: SweepSpec | dict[str, Any] | str | os.PathLike[str],
              out_dir: str | os.PathLike[str], scheduler: Any = None, workers: int | None = None,
              progress: bool = True, *, max_runs: int | None = None) -> pd.DataFrame:
    """Run a sweep on Dask and return its catalogue (one row per run).

    Runs whose folder in ``out_dir/runs/`` is complete are skipped; the others (missing, failed
    before, or never started) are submitted. A failing run is recorded with its one-line error
    and does not stop the others. The catalogue is rewritten atomically as runs finish and once
    more at the end, also when the sweep is interrupted.

    When called from a script, guard the call with ``if __name__ == "__main__":``: the local
    cluster's worker processes are spawned and re-import the main module.

    Args:
        spec_or_path: a sweep file, a dict, or a :class:`SweepSpec`.
        out_dir: the output folder (created if needed).
        scheduler: None for an embedded ``LocalCluster``, the address of a running Dask
            scheduler (``"tcp://host:8786"``), or a ``distributed.Client`` to use as is.
        workers: worker processes of the embedded cluster (default: one per core, at most one
            per pending run).
        progress: show a progress bar (runs done / running / failed).
        max_runs: execute at most this many pending runs, then stop (the rest stay pending; a
            later call resumes). For chunked execution and tests.

    Returns:
        The catalogue as a DataFrame (also in ``out_dir/catalogue.parquet`` and ``.csv``).

    Raises:
        SweepError: the spec is invalid or the scheduler cannot be reached.
        MissingExtraError: dask[distributed] is not installed (``pip install 'mecsim[dist]'``).
    """
    spec = load_sweep_spec(spec_or_path)
    runs = plan_runs(spec)
    out = Path(out_dir).resolve()
    (out / "runs").mkdir(parents=True, exist_ok=True)
    # The spec as run, its scenario made absolute so that the copy can be re-run from here.
    as_run = dict(spec.model_dump(mode="json"), scenario=spec.scenario_source())
    _write_atomic(out / "sweep.yaml", lambda p: Path(p).write_text(yaml.safe_dump(as_run, sort_keys=False)))
    # Leftovers of runs that were being written when an earlier sweep was killed.
    shutil.rmtree(out / ".staging", ignore_errors=True)

    previous: dict[str, dict[str, Any]] = {}
    if (out / "catalogue.parquet").is_file():
        try:
            old = pd.read_parquet(out / "catalogue.parquet")
            previous = {r["run_id"]: r for r in old.astype(object).where(old.notna(), None)
                        .to_dict("records")}
        except (OSError, ValueError) as exc:
            warnings.warn(f"ignoring an unreadable catalogue ({_one_line(exc)}); rebuilding it",
                          stacklevel=2)

    rows: dict[str, dict[str, Any]] = {}
    pending: list[RunSpec] = []
    for run in runs:
        folder = run_dir(out, run.run_id)
        if is_complete(folder):
            rows[run.run_id] = json.loads((folder / "run.json").read_text())
            continue
        row = run.base_row()
        row["attempts"] = int((previous.get(run.run_id) or {}).get("attempts") or 0)
        rows[run.run_id] = row
        pending.append(run)
    # Finished runs of earlier plans of this folder stay in the catalogue (their folders are
    # part of the dataset); their failed or pending runs are forgotten.
    extra = [r for rid, r in previous.items()
             if rid not in rows and r.get("status") == DONE and is_complete(run_dir(out, rid))]
    if max_runs is not None:
        if max_runs < 0:
            raise SweepError(f"max_runs must be >= 0, got {max_runs}")
        pending = pending[:max_runs]

    def flush() -> pd.DataFrame:
        return _write_catalogue(out, list(rows.values()) + extra)

    n_skipped = sum(1 for r in rows.values() if r["status"] == DONE)
    flush()
    # Invalid runs need no worker: record them here.
    for run in [r for r in pending if r.error is not None]:
        rows[run.run_id] = execute_run(run, str(out), rows[run.run_id]["attempts"] + 1)
    to_submit = [r for r in pending if r.error is None]
    n_failed = sum(1 for r in pending if r.error is not None)

    from tqdm.auto import tqdm

    bar = tqdm(total=len(runs), initial=n_skipped + n_failed, desc=f"sweep {spec.name}", unit="run",
               disable=not progress, dynamic_ncols=True)
    counts = {"done": 0, "failed": n_failed, "skipped": n_skipped}
    client = cluster = None
    owns = False
    futures: list[Any] = []
    try:
        if to_submit:
            client, cluster, owns = _client(scheduler, workers, len(to_submit))
            from distributed import as_completed

            # A fresh suffix per submission: a long-lived cluster must never hand back the
            # result of an earlier sweep's task with the same key.
            token = uuid.uuid4().hex[:8]
            futures = [client.submit(execute_run, run, str(out), rows[run.run_id]["attempts"] + 1,
                                     key=f"mecsim-run-{run.run_id}-{token}", pure=False)
                       for run in to_submit]
            by_key = {f.key: run for f, run in zip(futures, to_submit, strict=True)}
            nthreads = max(sum(client.nthreads().values()), 1)
            outstanding = len(futures)
            last_flush = time.monotonic()

            def show() -> None:
                bar.set_postfix(done=counts["done"], running=min(outstanding, nthreads),
                                failed=counts["failed"], skipped=counts["skipped"], refresh=False)

            show()
            for fut in as_completed(futures):
                run = by_key[fut.key]
                try:
                    row = fut.result()
                except Exception as exc:  # the worker died (KilledWorker) or the task was lost
                    row = run.base_row()
                    row.update(status=FAILED, error=_one_line(exc), finished=_now(),
                               attempts=rows[run.run_id]["attempts"] + 1)
                if row["status"] == DONE and not is_complete(run_dir(out, run.run_id)):
                    row.update(status=FAILED, error="the worker reported the run done but its folder "
                               "is not complete here: workers must see OUT at the same path")
                rows[run.run_id] = row
                counts["done" if row["status"] == DONE else "failed"] += 1
                outstanding -= 1
                fut.release()
                show()
                bar.update(1)
                if time.monotonic() - last_flush > 2.0:  # bounded cost for large sweeps
                    flush()
                    last_flush = time.monotonic()
    except BaseException:
        if client is not None and futures:
            client.cancel(futures)
        raise
    finally:
        bar.close()
        # Runs a worker finished after an interruption, before the client heard of them.
        for rid, row in rows.items():
            if row["status"] == PENDING and is_complete(run_dir(out, rid)):
                rows[rid] = json.loads((run_dir(out, rid) / "run.json").read_text())
        catalogue = flush()
        if owns and client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
        with contextlib.suppress(OSError):  # only when empty: another writer may be using it
            (out / ".staging").rmdir()
    return catalogue
