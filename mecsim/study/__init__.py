"""Studies: runs and their catalogue, one executor, sweeps, comparisons and study files.

* :mod:`mecsim.study.spec`: sweep files (:class:`SweepSpec`, :func:`load_sweep_spec`);
* :mod:`mecsim.study.runs`: planned runs (:func:`plan_runs`), one run's execution, the dataset
  layout of a sweep's folder and its catalogue;
* :mod:`mecsim.study.executor`: :class:`Executor`, serial or Dask, used by everything below;
* :mod:`mecsim.study.sweep`: :func:`run_sweep`;
* :mod:`mecsim.study.policies`, :mod:`mecsim.study.comparison`: :func:`compare` (policies on common
  random numbers, tables, figures, report);
* :mod:`mecsim.study.studies`: study files, :func:`run_study`, :func:`reproduce`.

Names are loaded on first use (``from mecsim.study import compare`` imports only what it needs).
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "SweepError": "spec",
    "SweepSpec": "spec",
    "PolicyEntry": "spec",
    "load_sweep_spec": "spec",
    "RunSpec": "runs",
    "plan_runs": "runs",
    "execute_run": "runs",
    "read_catalogue": "runs",
    "run_dir": "runs",
    "table_file": "runs",
    "is_complete": "runs",
    "harmonise_tables": "runs",
    "CATALOGUE_COLUMNS": "runs",
    "TABLES": "runs",
    "DONE": "runs",
    "FAILED": "runs",
    "PENDING": "runs",
    "run_id_for": "runs",
    "Executor": "executor",
    "run_sweep": "sweep",
    "CompareError": "policies",
    "PolicyChoice": "policies",
    "parse_policies": "policies",
    "resolve_policies": "policies",
    "RL_SPEC": "policies",
    "DEFAULT_RL_STEPS": "policies",
    "Comparison": "comparison",
    "compare": "comparison",
    "parse_vary": "comparison",
    "DEFAULT_POLICIES": "comparison",
    "comparison_figures": "figures",
    "Study": "studies",
    "load_study": "studies",
    "is_study_file": "studies",
    "run_study": "studies",
    "reproduce": "studies",
    "REGIMES_STUDY": "studies",
    "PAPER_STUDY": "studies",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"mecsim.study.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'mecsim.study' has no attribute {name!r}")
