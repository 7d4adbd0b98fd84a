"""Sweeps: moved to :mod:`mecsim.study` (this import path stays).

See :mod:`mecsim.study.spec` (sweep files), :mod:`mecsim.study.runs` (planning, one run, the
dataset layout, the catalogue) and :mod:`mecsim.study.sweep` (:func:`run_sweep`).

Example:
    >>> from mecsim.sweep import plan_runs
    >>> runs = plan_runs({"scenario": "smoke-v1", "overrides": {"duration_s": 20},
    ...                   "policies": ["random", "greedy"], "seeds": [1, 2]})
    >>> [(r.policy, r.seed) for r in runs]
    [('random', 1), ('random', 2), ('greedy', 1), ('greedy', 2)]
"""

from mecsim.study.runs import (
    CATALOGUE_COLUMNS,
    DONE,
    FAILED,
    PENDING,
    TABLES,
    RunSpec,
    execute_run,
    harmonise_tables,
    is_complete,
    plan_runs,
    read_catalogue,
    run_dir,
    run_id_for,
    table_file,
)
from mecsim.study.spec import PolicyEntry, SweepError, SweepSpec, load_sweep_spec
from mecsim.study.sweep import run_sweep

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
    "TABLES",
    "DONE",
    "FAILED",
    "PENDING",
    "run_dir",
    "table_file",
    "is_complete",
    "harmonise_tables",
    "run_id_for",
]
