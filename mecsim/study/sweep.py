"""Sweeps: many runs (scenario overrides x policies x seeds) into one Parquet dataset per table.

:func:`run_sweep` plans a sweep (:mod:`mecsim.study.spec`, :func:`mecsim.study.runs.plan_runs`),
skips the runs already finished in its output folder, hands the others to an
:class:`~mecsim.study.executor.Executor` (serial or Dask) and keeps the catalogue up to date.
The output layout is described in :mod:`mecsim.study.runs`.

Example:
    >>> from mecsim.study import plan_runs
    >>> runs = plan_runs({"scenario": "smoke-v1", "overrides": {"duration_s": 20},
    ...                   "policies": ["random", "greedy"], "seeds": [1, 2]})
    >>> [(r.policy, r.seed) for r in runs]
    [('random', 1), ('random', 2), ('greedy', 1), ('greedy', 2)]
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from mecsim.study.executor import Executor
from mecsim.study.runs import (
    DONE,
    FAILED,
    PENDING,
    RunSpec,
    _one_line,
    execute_run,
    harmonise_tables,
    is_complete,
    plan_runs,
    run_dir,
    write_catalogue,
)
from mecsim.study.spec import SweepError, SweepSpec, load_sweep_spec
from mecsim.traces import atomic_write

__all__ = ["run_sweep"]


def run_sweep(
    spec_or_path: SweepSpec | dict[str, Any] | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    scheduler: Any = None,
    workers: int | None = None,
    progress: bool = True,
    *,
    max_runs: int | None = None,
    executor: Executor | None = None,
) -> pd.DataFrame:
    """Run a sweep and return its catalogue (one row per run).

    Runs whose side folder in ``out_dir/runs/`` is complete are skipped; the others (missing,
    failed before, or never started) are executed. A failing run is recorded with its one-line
    error and does not stop the others. The catalogue is rewritten atomically as runs finish and
    once more at the end, also when the sweep is interrupted; at the end the table files'
    schemas are harmonised (:func:`mecsim.study.runs.harmonise_tables`).

    When called from a script, guard the call with ``if __name__ == "__main__":``: the local
    cluster's worker processes are spawned and re-import the main module.

    Args:
        spec_or_path: a sweep file, a dict, or a :class:`~mecsim.study.spec.SweepSpec`.
        out_dir: the output folder (created if needed).
        scheduler: None for an embedded ``LocalCluster``, the address of a running Dask
            scheduler (``"tcp://host:8786"``), or a ``distributed.Client`` to use as is.
        workers: 1 runs serially in this process; N worker processes of the embedded cluster
            (default: one per core, at most one per pending run).
        progress: show a progress bar (runs done / running / failed).
        max_runs: execute at most this many pending runs, then stop (the rest stay pending; a
            later call resumes). For chunked execution and tests.
        executor: an executor to use (and leave open) instead of ``scheduler``/``workers``.

    Returns:
        The catalogue as a DataFrame (also in ``out_dir/catalogue.parquet`` and ``.csv``).

    Raises:
        SweepError: the spec is invalid or the scheduler cannot be reached.
        MissingExtraError: a scheduler is given but dask[distributed] is not installed.
    """
    spec = load_sweep_spec(spec_or_path)
    runs = plan_runs(spec)
    if max_runs is not None and max_runs < 0:
        raise SweepError(f"max_runs must be >= 0, got {max_runs}")
    ex = executor or Executor(workers, scheduler, progress)
    out = Path(out_dir).resolve()
    (out / "runs").mkdir(parents=True, exist_ok=True)
    # The spec as run, its scenario made absolute so that the copy can be re-run from here.
    as_run = dict(spec.model_dump(mode="json"), scenario=spec.scenario_source())
    atomic_write(out / "sweep.yaml", lambda p: Path(p).write_text(yaml.safe_dump(as_run, sort_keys=False)))
    # Leftovers of runs that were being written when an earlier sweep was killed.
    shutil.rmtree(out / ".staging", ignore_errors=True)

    previous: dict[str, dict[str, Any]] = {}
    if (out / "catalogue.parquet").is_file():
        try:
            old = pd.read_parquet(out / "catalogue.parquet")
            previous = {
                r["run_id"]: r for r in old.astype(object).where(old.notna(), None).to_dict("records")
            }
        except (OSError, ValueError) as exc:
            warnings.warn(f"ignoring an unreadable catalogue ({_one_line(exc)}); rebuilding it", stacklevel=2)

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
    # Finished runs of earlier plans of this folder stay in the catalogue (their files are part
    # of the dataset); their failed or pending runs are forgotten.
    extra = [
        r
        for rid, r in previous.items()
        if rid not in rows and r.get("status") == DONE and is_complete(run_dir(out, rid))
    ]
    if max_runs is not None:
        pending = pending[:max_runs]

    def flush() -> pd.DataFrame:
        return write_catalogue(out, list(rows.values()) + extra)

    n_skipped = sum(1 for r in rows.values() if r["status"] == DONE)
    flush()
    attempts = {r.run_id: int(rows[r.run_id]["attempts"]) for r in pending}
    # Invalid runs need no worker: record them here.
    for run in [r for r in pending if r.error is not None]:
        rows[run.run_id] = execute_run(run, str(out), attempts[run.run_id] + 1)
    to_submit = [r for r in pending if r.error is None]
    n_failed = len(pending) - len(to_submit)

    if progress:  # tqdm.auto only then: in a notebook without ipywidgets it warns on import
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm
    bar = tqdm(
        total=len(runs),
        initial=n_skipped + n_failed,
        desc=f"sweep {spec.name}",
        unit="run",
        disable=not progress,
        dynamic_ncols=True,
    )
    counts = {"done": 0, "failed": n_failed, "skipped": n_skipped, "outstanding": len(to_submit)}
    last_flush = [time.monotonic()]
    slots = [1]

    def show() -> None:
        bar.set_postfix(
            done=counts["done"],
            running=min(counts["outstanding"], slots[0]),
            failed=counts["failed"],
            skipped=counts["skipped"],
            refresh=False,
        )

    def on_row(run: RunSpec, row: dict[str, Any]) -> None:
        if row["status"] == DONE and not is_complete(run_dir(out, run.run_id)):
            row.update(
                status=FAILED,
                error="the worker reported the run done but its folder is not "
                "complete here: workers must see OUT at the same path",
            )
        rows[run.run_id] = row
        counts["done" if row["status"] == DONE else "failed"] += 1
        counts["outstanding"] -= 1
        show()
        bar.update(1)
        if time.monotonic() - last_flush[0] > 2.0:  # bounded cost for large sweeps
            flush()
            last_flush[0] = time.monotonic()

    try:
        if to_submit:
            if not ex.serial:
                ex.client(len(to_submit))
            slots[0] = ex.slots()
            show()
            ex.map(to_submit, out, attempts, on_row)
    finally:
        bar.close()
        # Runs a worker finished after an interruption, before the client heard of them.
        for rid, row in rows.items():
            if row["status"] == PENDING and is_complete(run_dir(out, rid)):
                rows[rid] = json.loads((run_dir(out, rid) / "run.json").read_text())
        catalogue = flush()
        if executor is None:
            ex.close()
        with contextlib.suppress(OSError):  # only when empty: another writer may be using it
            (out / ".staging").rmdir()
    harmonise_tables(out)
    return catalogue
