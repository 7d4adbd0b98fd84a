"""Policy comparisons and studies: moved to :mod:`mecsim.study` (this import path stays).

See :mod:`mecsim.study.comparison` (:func:`compare`) and :mod:`mecsim.study.studies`
(:func:`run_study`, :func:`reproduce`).
"""

from mecsim.analysis.plots import vary_figure
from mecsim.analysis.report import compact_paired, compact_table, findings
from mecsim.analysis.stats import paired_differences, policy_table
from mecsim.study.comparison import DEFAULT_POLICIES, TASK_COLUMNS, Comparison, compare, parse_vary
from mecsim.study.policies import (
    DEFAULT_RL_STEPS,
    RL_SPEC,
    CompareError,
    PolicyChoice,
    parse_policies,
    resolve_policies,
)
from mecsim.study.studies import (
    PAPER_STUDY,
    REGIMES_STUDY,
    Study,
    is_study_file,
    load_study,
    reproduce,
    run_study,
)

__all__ = [
    "CompareError",
    "PolicyChoice",
    "Comparison",
    "Study",
    "compare",
    "run_study",
    "reproduce",
    "load_study",
    "is_study_file",
    "paired_differences",
    "policy_table",
    "vary_figure",
    "compact_table",
    "compact_paired",
    "findings",
    "parse_policies",
    "resolve_policies",
    "parse_vary",
    "PAPER_STUDY",
    "REGIMES_STUDY",
    "DEFAULT_POLICIES",
    "DEFAULT_RL_STEPS",
    "RL_SPEC",
    "TASK_COLUMNS",
]
