"""Analysis of results: loading runs, the statistics of a latency study, reports and figures.

* :mod:`mecsim.analysis.load`: :func:`load_sweep` / :func:`load_run` open results lazily as a
  :class:`RunSet` (one dataset per table, joined with the catalogue);
* :mod:`mecsim.analysis.stats`: :func:`latency_stats` (with the one t-interval,
  :func:`t_interval`), :func:`paired_differences`, :func:`stability`, :func:`censored_cdf`,
  :func:`latency_breakdown`;
* :mod:`mecsim.analysis.queues`: :func:`queue_timeseries`, :func:`littles_law`;
* :mod:`mecsim.analysis.report`: :func:`write_report` (``mecsim report``), :func:`to_markdown`
  and the sections of comparison reports;
* :mod:`mecsim.analysis.plots`: every figure (also importable as ``mecsim.plots``);
* :mod:`mecsim.analysis.labels`: human names with units for dotted scenario keys.

Dependencies point one way: plots and report use stats; stats imports neither.
"""

from mecsim.analysis.load import RunSet, load, load_run, load_sweep
from mecsim.analysis.queues import littles_law, queue_timeseries, stability
from mecsim.analysis.report import to_markdown, write_report
from mecsim.analysis.stats import (
    STAGES,
    AnalysisError,
    censored_cdf,
    latency_breakdown,
    latency_stats,
    mean_breakdown,
    paired_differences,
    per_seed_stats,
    policy_table,
    t_interval,
)

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
    "t_interval",
    "paired_differences",
    "policy_table",
    "stability",
    "censored_cdf",
]
