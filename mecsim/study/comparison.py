"""Policy comparisons on common random numbers: tables, figures and a report.

:func:`compare` runs every policy on the same seeds of one scenario (the engine gives every
policy the same arrivals, task sizes and channels on one seed), optionally over a few values of
one or more scenario fields (``vary``), and writes into one folder:

* ``comparison.csv`` / ``.md``: one row per policy: mean, p95 and p99 latency with confidence
  intervals across seeds, deadline-miss rate, the standard deviation of the per-seed mean latency
  (spread), the stability test (:func:`mecsim.analysis.queues.stability`: an unstable policy gets
  no mean), decision wall time per epoch, and transmit and server energy per task;
* ``paired.csv`` / ``.md``: every policy against a reference policy, seed by seed (with common
  random numbers the paired differences are much tighter than the separate intervals);
* ``vary_<field>.csv`` / ``.md``: mean latency by policy and field value;
* ``contrasts.csv`` / ``.md``: where the hybrid's gain over greedy comes from (paired stage
  contrasts for the ablation policies compared; :func:`mecsim.analysis.report.contrasts_table`);
* ``figures/``: paired differences against the reference (the main figure), the latency CDF
  with dropped and unfinished tasks censored and a band across seeds, the latency breakdown
  (with a log panel for the millisecond stages), the per-seed spread of the stable policies,
  and each statistic against each varied field (PNG and PDF);
* ``report.md``: the settings and the numbers; ``sweep/``: every run (a :mod:`mecsim.study.sweep`
  folder, so an interrupted comparison resumes and finished runs are never recomputed).

Runs go through :func:`mecsim.study.sweep.run_sweep` and its one
:class:`~mecsim.study.executor.Executor`: on Dask (one worker process per core) or, with
``workers=1`` (or without dask installed), serially in this process with a progress bar.
Studies of several comparisons are in :mod:`mecsim.study.studies`.

The ``"rl"`` policy needs a model: pass ``rl_model``, or the comparison trains one with
:func:`mecsim.rl.train.train_rl` (``rl_steps`` decisions, seed ``rl_seed``, on the scenario as
compared, with training run seeds drawn apart from the evaluation seeds).

Example:
    >>> from mecsim.study import compare
    >>> cmp = compare("smoke-v1", ["greedy", "random"], seeds=2, out_dir="runs/cmp",  # doctest: +SKIP
    ...               duration_s=30, workers=1, progress=False)
    >>> cmp.table[["policy", "mean_s", "mean_s_lo", "mean_s_hi"]]                    # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mecsim.analysis import latency_stats, load_sweep, paired_differences, policy_table, stability
from mecsim.analysis.report import (
    _safe,
    compact_paired,
    compact_table,
    contrasts_table,
    report_header,
    scenario_section,
    seed_warning,
    write_table,
)
from mecsim.errors import ScenarioError
from mecsim.study.executor import Executor
from mecsim.study.figures import comparison_figures
from mecsim.study.policies import (
    DEFAULT_RL_STEPS,
    CompareError,
    PolicyChoice,
    parse_policies,
    prepare_rl,
    resolve_policies,
)
from mecsim.traces import TASK_TIME_COLUMNS, atomic_write

__all__ = ["Comparison", "compare", "parse_vary", "DEFAULT_POLICIES", "TASK_COLUMNS"]

#: Policies compared when none are named.
DEFAULT_POLICIES = ("qubo-sa", "greedy", "least-loaded", "round-robin", "random")

#: The tasks columns a comparison reads (figures and the stability test).
TASK_COLUMNS = [
    "status",
    "t_arrival",
    "latency",
    "deadline",
    "deadline_met",
    *TASK_TIME_COLUMNS,
]


@dataclass
class Comparison:
    """The outcome of :func:`compare`.

    Attributes:
        scenario: the scenario's name.
        out_dir: the folder written.
        table: one row per policy (see the module docstring), in the order given.
        paired: every other policy against ``reference``, seed by seed.
        contrasts: the stage contrasts of the hybrid's gain over greedy
            (:func:`mecsim.analysis.report.contrasts_table`), for the policies compared.
        vary: field -> mean latency by policy and value.
        policies: the policies compared.
        seeds: the seeds.
        reference: the reference policy of ``paired``.
        settings: the settings written into the report.
        notes: what was skipped, trained or reused.
        failed: runs that failed (policy, seed, overrides, error).
        files: the files written.
        run_ids: the runs of the main comparison (in ``out_dir/sweep``).
    """

    scenario: str
    out_dir: Path
    table: pd.DataFrame
    paired: pd.DataFrame
    vary: dict[str, pd.DataFrame]
    policies: list[PolicyChoice]
    seeds: list[int]
    reference: str | None
    settings: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    contrasts: pd.DataFrame = field(default_factory=pd.DataFrame)
    run_labels: dict[str, str] = field(default_factory=dict)

    def _labels(self) -> dict[str, str]:
        return self.run_labels

    def tasks(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The tasks of the main comparison's runs, with ``policy`` (label) and ``seed``."""
        from mecsim.analysis import load_sweep

        rs = load_sweep(self.out_dir / "sweep")
        df = rs.tasks(columns=columns, filters=[("run_id", "in", self.run_ids)])
        return _relabel(df, self._labels())

    def summaries(self) -> pd.DataFrame:
        """One row per run of the main comparison (its summary), with ``policy`` (label)."""
        from mecsim.analysis import load_sweep

        s = load_sweep(self.out_dir / "sweep").summaries()
        return _relabel(s[s["run_id"].isin(self.run_ids)].reset_index(drop=True), self._labels())

    def markdown(self) -> str:
        """The compact table as Markdown."""
        from mecsim.analysis.report import compact_table, seed_warning, to_markdown

        warn = seed_warning(len(self.seeds))
        table = to_markdown(compact_table(self.table, self.settings.get("ci", 0.95)))
        return (warn + "\n\n" if warn else "") + table


def _dotted_get(d: Any, key: str) -> Any:
    cur = d
    for part in key.split("."):
        if isinstance(cur, list):
            cur = cur[int(part)]
        elif isinstance(cur, dict):
            cur = cur.get(part)
        else:
            return None
    return cur


def _number(v: Any) -> Any:
    """YAML 1.1 reads ``5e6`` as text; numbers are meant."""
    if isinstance(v, str):
        for conv in (int, float):
            try:
                return conv(v)
            except ValueError:
                pass
    return v


def parse_vary(items: Iterable[str] | Mapping[str, Sequence[Any]] | None) -> dict[str, list[Any]]:
    """``["devices.0.count=4,8,12"]`` or ``{"devices.0.count": [4, 8, 12]}`` -> a dict of lists."""
    import yaml

    if not items:
        return {}
    if isinstance(items, Mapping):
        out = {str(k): list(v) for k, v in items.items()}
    else:
        out = {}
        for item in items:
            key, sep, raw = str(item).partition("=")
            if not sep or not key.strip() or not raw.strip():
                raise CompareError(f"--vary {item!r} is not of the form FIELD=V1,V2,...")
            out[key.strip()] = [_number(yaml.safe_load(v)) for v in raw.split(",") if v.strip()]
    for k, v in out.items():
        if not v:
            raise CompareError(f"vary {k}: no values")
    return out


def _relabel(df: pd.DataFrame, run_labels: Mapping[str, str]) -> pd.DataFrame:
    """``policy`` as the label the run was compared under: two entries of one policy with
    different params (``{name: qubo-sa, label: qubo-sa-nols, params: ...}``) stay apart."""
    df = df.copy()
    df["policy"] = [
        run_labels.get(r, p) for r, p in zip(df["run_id"].astype(str), df["policy"].astype(str), strict=True)
    ]
    return df


def _label_runs(runs: Sequence[Any], policies: Sequence[PolicyChoice]) -> dict[str, str]:
    """run id -> the label of the policy entry it was planned from (by name and params)."""

    def key(name: str, params: Any) -> tuple[str, str]:
        return name, json.dumps(params or {}, sort_keys=True, default=str)

    labels = {key(p.name, p.params): p.label for p in policies}
    return {r.run_id: labels.get(key(r.policy, r.policy_params), r.policy) for r in runs}


def compare(
    scenario: Any,
    policies: str | Iterable[Any] = DEFAULT_POLICIES,
    seeds: int | Sequence[int] = 10,
    *,
    out_dir: str | os.PathLike[str],
    duration_s: float | None = None,
    warmup_s: float | None = None,
    overrides: Mapping[str, Any] | None = None,
    vary: Mapping[str, Sequence[Any]] | Iterable[str] | None = None,
    vary_seeds: int | None = None,
    workers: int | None = None,
    scheduler: Any = None,
    rl_model: str | os.PathLike[str] | None = None,
    rl_steps: int = DEFAULT_RL_STEPS,
    rl_seed: int = 0,
    rl_duration_s: float | None = None,
    reference: str | None = None,
    ci: float = 0.95,
    figures: bool = True,
    progress: bool = True,
    title: str | None = None,
    executor: Executor | None = None,
) -> Comparison:
    """Compare policies on the same seeds of one scenario; write tables, figures and a report.

    Args:
        scenario: a registered name, a YAML path, a dict or a Scenario.
        policies: ``"a,b,c"`` or a list of names / ``{name, params, label, optional}``; ``rl``
            is the trained RL baseline.
        seeds: how many seeds (0..K-1) or the list of seeds.
        out_dir: the output folder (runs go to ``out_dir/sweep``; finished ones are reused).
        duration_s: overrides the scenario's ``duration_s``.
        warmup_s: overrides the scenario's ``warmup_s``.
        overrides: more dotted scenario overrides, for every run.
        vary: field -> values to sweep one at a time (``{"devices.0.count": [4, 8, 12]}`` or
            ``["devices.0.count=4,8,12"]``); the other fields stay at the compared values.
        vary_seeds: seeds per varied point (default: all; the first ones are used).
        workers: 1 runs serially in this process; N > 1 runs on a local Dask cluster of N
            processes; None: one per core (serially when dask is not installed).
        scheduler: a Dask scheduler address or ``distributed.Client`` instead of a local cluster.
        rl_model: the model of the ``rl`` policy; without one it is trained here.
        rl_steps: decisions to train the RL model on when it is trained here.
        rl_seed: the training seed.
        rl_duration_s: the training runs' duration (default: the compared duration).
        reference: the policy the paired table compares against (default: the first).
        ci: the confidence level of all intervals.
        figures: write the figures (needs matplotlib).
        progress: show progress bars.
        title: the report section's title (default: the scenario's name).
        executor: an executor to use and leave open (a study shares one across comparisons).

    Returns:
        A :class:`Comparison`.

    Raises:
        ScenarioError: the scenario or an override or varied value is invalid.
        PolicyError: an unknown policy, or an RL model that cannot be loaded.
        CompareError: malformed options.
        MissingExtraError: ``rl`` without the rl extra, figures without matplotlib.
    """
    from mecsim.scenario import load_scenario

    t0 = time.perf_counter()
    out = Path(os.fspath(out_dir))
    if not 0 < ci < 1:
        raise CompareError(f"ci must be in (0, 1), got {ci}")
    seed_list = list(range(int(seeds))) if isinstance(seeds, int | np.integer) else [int(s) for s in seeds]
    if not seed_list or len(set(seed_list)) != len(seed_list) or min(seed_list) < 0:
        raise CompareError(f"seeds must be a count >= 1 or distinct whole numbers >= 0, got {seeds!r}")
    over = {str(k).replace("__", "."): v for k, v in dict(overrides or {}).items()}
    if duration_s is not None:
        over["duration_s"] = float(duration_s)
    if warmup_s is not None:
        over["warmup_s"] = float(warmup_s)
    source = _scenario_source(scenario)
    sc = load_scenario(source, **over)  # ScenarioError early
    vary_map = parse_vary(vary)
    base = sc.resolved()
    for key, values in vary_map.items():
        for v in values:
            try:
                load_scenario(source, **{**over, key: v})
            except ScenarioError as exc:
                raise ScenarioError(f"vary {key}={v!r}: {exc}") from None
    notes: list[str] = []
    chosen = resolve_policies(parse_policies(policies), notes)
    labels = [p.label for p in chosen]
    ref = reference or labels[0]
    if ref not in labels:
        raise CompareError(f"reference {ref!r} is not one of the compared policies {labels}")
    out.mkdir(parents=True, exist_ok=True)
    unbound = list(chosen)  # before the RL policy gets its model
    chosen, rl_info = prepare_rl(
        chosen, source, over, rl_model, rl_steps, rl_seed, rl_duration_s, out / "models", notes, progress
    )
    pol_entries = [{"name": p.name, "params": p.params} for p in chosen]

    main_spec = {
        "name": _safe(sc.name),
        "scenario": source,
        "overrides": over,
        "policies": pol_entries,
        "seeds": seed_list,
    }
    nv = len(seed_list) if vary_seeds is None else max(1, min(int(vary_seeds), len(seed_list)))
    v_seeds = seed_list[:nv]
    cases: list[dict[str, Any]] = []
    for key, values in vary_map.items():
        base_value = _dotted_get(base, key)
        for v in values:
            if v == base_value:
                continue  # the main runs are this point
            cases.append({key: v})

    from mecsim.study.runs import FAILED, plan_runs
    from mecsim.study.sweep import run_sweep

    main_runs = plan_runs(main_spec)
    # An RL model trained here is trained again at every varied point (the policy a user would
    # deploy there); a model given by the caller is used at every point. Either way it is said.
    per_point = rl_info is not None and rl_info.get("trained_here", False)
    vary_specs: list[dict[str, Any]] = []
    spec_policies: list[list[PolicyChoice]] = []
    if cases and per_point:
        for case in cases:
            pts, _ = prepare_rl(
                unbound,
                source,
                {**over, **case},
                None,
                rl_steps,
                rl_seed,
                rl_duration_s,
                out / "models",
                notes,
                progress,
            )
            vary_specs.append(
                {
                    "name": _safe(sc.name) + "-vary",
                    "scenario": source,
                    "overrides": over,
                    "cases": [case],
                    "seeds": v_seeds,
                    "policies": [{"name": p.name, "params": p.params} for p in pts],
                }
            )
            spec_policies.append(pts)
        rl_info["per_point"] = True
    elif cases:
        vary_specs.append(
            {
                "name": _safe(sc.name) + "-vary",
                "scenario": source,
                "overrides": over,
                "cases": cases,
                "policies": pol_entries,
                "seeds": v_seeds,
            }
        )
        spec_policies.append(chosen)
        if rl_info is not None:
            rl_info["per_point"] = False
    vary_runs = []
    run_labels = _label_runs(main_runs, chosen)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a case equal to a default: planned once
        for vs, pts in zip(vary_specs, spec_policies, strict=True):
            planned_vary = plan_runs(vs)
            vary_runs += planned_vary
            run_labels.update(_label_runs(planned_vary, pts))

    ex = executor or Executor(workers, scheduler, progress)
    sweep_dir = out / "sweep"
    planned = {r.run_id for r in [*main_runs, *vary_runs]}
    try:
        cat = run_sweep(main_spec, sweep_dir, progress=progress, executor=ex)
        for vs in vary_specs:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cat = run_sweep(vs, sweep_dir, progress=progress, executor=ex)
    finally:
        if executor is None:
            ex.close()
    bad = cat[(cat["status"] == FAILED) & cat["run_id"].isin(planned)]
    failed: list[dict[str, Any]] = bad.astype(object).where(bad.notna(), None).to_dict("records")

    rs = load_sweep(sweep_dir)
    summ_all = rs.summaries()
    main_ids = [r.run_id for r in main_runs]
    summ = _relabel(summ_all[summ_all["run_id"].isin(main_ids)].reset_index(drop=True), run_labels)
    if summ.empty:
        raise CompareError(
            f"{sc.name}: no run finished; first error: {failed[0]['error'] if failed else 'unknown'}"
        )
    tasks = _relabel(rs.tasks(columns=TASK_COLUMNS, filters=[("run_id", "in", main_ids)]), run_labels)
    stab = stability(tasks, "policy", ci=ci)
    table = policy_table(summ, labels, ci).merge(
        stab[["policy", "growth", "growth_lo", "growth_hi", "unfinished_frac", "unstable"]],
        on="policy",
        how="left",
    )
    paired = paired_differences(summ, ref, ci=ci)
    contrasts = contrasts_table(summ, ci)
    if not paired.empty:
        rank = {p: k for k, p in enumerate(labels)}
        paired = paired.sort_values("policy", key=lambda c: c.map(rank)).reset_index(drop=True)

    vary_stats: dict[str, pd.DataFrame] = {}
    if vary_map:
        _missing = object()
        v_of: dict[str, tuple[str, Any]] = {}  # run id -> (varied field, value)
        for r in vary_runs:
            for key in vary_map:
                if key in r.overrides and r.overrides[key] != over.get(key, _missing):
                    v_of[r.run_id] = (key, r.overrides[key])
        for key in vary_map:
            base_value = _dotted_get(base, key)
            ids = {rid: val for rid, (k, val) in v_of.items() if k == key}
            ids.update({r.run_id: base_value for r in main_runs if r.seed in v_seeds})
            sv = summ_all[summ_all["run_id"].isin(ids)].copy()
            if sv.empty:
                continue
            sv[key] = sv["run_id"].map(ids)
            sv = _relabel(sv, run_labels)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                st = latency_stats(sv, ["policy", key], ci=ci)
            rank = {p: k for k, p in enumerate(labels)}
            st = st.sort_values(["policy", key], key=lambda c: c.map(rank) if c.name == "policy" else c)
            vary_stats[key] = st.reset_index(drop=True)

    files: list[Path] = []
    warn = seed_warning(len(seed_list))
    files += write_table(table, out, "comparison", compact_table(table, ci), note=warn)
    files += write_table(paired, out, "paired", compact_paired(paired, ci), note=warn)
    if not contrasts.empty:
        files += write_table(contrasts, out, "contrasts", note=warn)
    vary_cols = [
        "policy",
        "n_seeds",
        "mean_s",
        "mean_s_lo",
        "mean_s_hi",
        "p95_s",
        "p95_s_lo",
        "p95_s_hi",
        "miss_rate",
        "n_latency",
        "excluded_dropped",
        "excluded_in_flight",
    ]
    for key, st in vary_stats.items():
        files += write_table(st[[vary_cols[0], key, *vary_cols[1:]]], out, f"vary_{_safe(key)}", note=warn)
    if figures:
        heading = f"{title or sc.name}, seeds {seed_list[0]}..{seed_list[-1]} ({len(seed_list)})"
        unstable = set(table.loc[table["unstable"].fillna(False).astype(bool), "policy"])
        files += comparison_figures(
            tasks, summ, vary_stats, out / "figures", labels, ref, heading, unstable, ci
        )

    settings = {
        "scenario": sc.name,
        "source": source,
        "description": sc.description,
        "devices": sc.n_devices,
        "servers": [s.name for s in sc.servers],
        "duration_s": sc.duration_s,
        "warmup_s": sc.warmup_s,
        "seeds": seed_list,
        "overrides": over,
        "policies": [{"label": p.label, "name": p.name, "params": p.params} for p in chosen],
        "vary": vary_map,
        "vary_seeds": v_seeds,
        "reference": ref,
        "ci": ci,
        "rl": rl_info,
        "runs": len(main_runs) + len(vary_runs),
        "wall_s": time.perf_counter() - t0,
        "executor": ex.kind,
        "title": title,
    }
    for row in failed:
        notes.append(
            f"run failed: {run_labels.get(str(row.get('run_id')), row.get('policy'))}, seed "
            f"{row.get('seed')}, overrides {row.get('overrides')}: {row.get('error')}"
        )
    cmp = Comparison(
        scenario=sc.name,
        out_dir=out,
        table=table,
        paired=paired,
        vary=vary_stats,
        policies=chosen,
        seeds=seed_list,
        reference=ref,
        settings=settings,
        notes=notes,
        failed=failed,
        files=files,
        run_ids=main_ids,
        contrasts=contrasts,
        run_labels=run_labels,
    )
    report = out / "report.md"
    atomic_write(
        report,
        lambda p: Path(p).write_text(
            report_header(f"mecsim comparison: {sc.name}", "mecsim compare")
            + scenario_section(cmp, out, level=2)
        ),
    )
    atomic_write(
        out / "settings.json", lambda p: Path(p).write_text(json.dumps(settings, indent=2, default=str))
    )
    cmp.files += [report, out / "settings.json"]
    return cmp


def _scenario_source(scenario: Any) -> Any:
    """A path's absolute form (Dask workers may start elsewhere); names and objects as they are."""
    if isinstance(scenario, str | os.PathLike) and Path(os.fspath(scenario)).exists():
        return str(Path(os.fspath(scenario)).resolve())
    if not isinstance(scenario, str):
        from mecsim.scenario import Scenario

        if isinstance(scenario, dict | Scenario):
            raise CompareError(
                "compare takes a registered scenario name or a YAML path (runs are "
                "planned by name or path); save the scenario to a file first"
            )
    return scenario
