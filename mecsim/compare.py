"""Policy comparisons on common random numbers, and the paper-style study.

:func:`compare` runs every policy on the same seeds of one scenario (the engine gives every
policy the same arrivals, task sizes and channels on one seed), optionally over a few values of
one or more scenario fields (``vary``), and writes into one folder:

* ``comparison.csv`` / ``.md``: one row per policy: mean, p95 and p99 latency with confidence
  intervals across seeds, deadline-miss rate, the standard deviation of the per-seed mean latency
  (stability), decision wall time per epoch, and transmit and server energy per task;
* ``paired.csv`` / ``.md``: every policy against a reference policy, seed by seed (with common
  random numbers the paired differences are much tighter than the separate intervals);
* ``vary_<field>.csv`` / ``.md``: mean latency by policy and field value;
* ``figures/``: latency CDF, per-seed spread, latency breakdown, mean latency against each
  varied field (PNG and PDF);
* ``report.md``: the settings and the numbers; ``sweep/``: every run (a :mod:`mecsim.sweep`
  folder, so an interrupted comparison resumes and finished runs are never recomputed).

Runs go through :func:`mecsim.sweep.run_sweep` on Dask (one worker process per core) or, with
``workers=1`` (or without dask installed), serially in this process with a progress bar.

:func:`run_study` runs a study file (``scenarios/studies/paper.yaml``: several scenarios, their
policies, the fields to vary, the RL training budget and a ``quick`` variant) and writes one
report; :func:`reproduce` runs the shipped paper study.

The ``"rl"`` policy needs a model: pass ``rl_model``, or the comparison trains one with
:func:`mecsim.rl.train.train_rl` (``rl_steps`` decisions, seed ``rl_seed``, on the scenario as
compared, with training run seeds drawn apart from the evaluation seeds).

Example:
    >>> from mecsim.compare import compare
    >>> cmp = compare("smoke-v1", ["greedy", "random"], seeds=2, out_dir="runs/cmp",  # doctest: +SKIP
    ...               duration_s=30, workers=1, progress=False)
    >>> cmp.table[["policy", "mean_s", "mean_s_lo", "mean_s_hi"]]                    # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mecsim.errors import MecsimError, PolicyError, ScenarioError

__all__ = [
    "CompareError",
    "PolicyChoice",
    "Comparison",
    "Study",
    "compare",
    "run_study",
    "reproduce",
    "load_study",
    "paired_differences",
    "vary_figure",
    "PAPER_STUDY",
    "DEFAULT_POLICIES",
]

#: The shipped paper-style study.
PAPER_STUDY = Path(__file__).resolve().parent.parent / "scenarios" / "studies" / "paper.yaml"

#: Policies compared when none are named.
DEFAULT_POLICIES = ("qubo-sa", "greedy", "least-loaded", "round-robin", "random")

#: The spec the RL policy runs under in sweeps: importable in any worker process, whether or not
#: the "rl" name has been registered there.
RL_SPEC = "mecsim.rl.policy:RLPolicy"

#: Default training budget (task decisions) of an RL model trained by a comparison.
DEFAULT_RL_STEPS = 20_000

_TASK_COLUMNS = ["status", "t_arrival", "latency", "deadline", "deadline_met", "t_decision",
                 "t_upload_start", "t_upload_end", "t_server_arrival", "t_service_start",
                 "t_service_end", "t_complete"]


class CompareError(MecsimError, ValueError):
    """A comparison or study is malformed (bad option, study file or field to vary)."""


@dataclass(frozen=True)
class PolicyChoice:
    """One policy of a comparison.

    Attributes:
        label: the name in tables and figures (``"rl"``, ``"greedy"``, ...).
        name: what the runs use: a registered name or ``"package.module:Object"``.
        params: the policy's parameters.
    """

    label: str
    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Comparison:
    """The outcome of :func:`compare`.

    Attributes:
        scenario: the scenario's name.
        out_dir: the folder written.
        table: one row per policy (see the module docstring), in the order given.
        paired: every other policy against ``reference``, seed by seed.
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

    def _labels(self) -> dict[str, str]:
        return {p.name: p.label for p in self.policies}

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
        from mecsim.analysis import to_markdown

        return to_markdown(compact_table(self.table, self.settings.get("ci", 0.95)))


@dataclass
class Study:
    """The outcome of :func:`run_study`: one :class:`Comparison` per scenario and the report."""

    name: str
    out_dir: Path
    comparisons: list[Comparison]
    report: Path
    settings: dict[str, Any]


# ---------------------------------------------------------------------------------------------
# policies


def _registered() -> list[str]:
    from mecsim.policies import make_policy  # noqa: F401  (registers the shipped policies)
    from mecsim.registry import POLICIES

    try:
        import mecsim.rl.policy  # noqa: F401  (registers "rl"; torch is imported only on use)
    except ImportError:  # pragma: no cover
        pass
    return POLICIES.names()


def parse_policies(policies: str | Iterable[Any]) -> list[Any]:
    """Policy entries from ``"a,b,c"`` or a list of names / ``{name, params, label, optional}``."""
    if isinstance(policies, str):
        items: list[Any] = [p.strip() for p in policies.split(",") if p.strip()]
    else:
        items = list(policies)
    if not items:
        raise CompareError("no policies to compare")
    return items


def _check_policy(name: str) -> None:
    from mecsim.registry import POLICIES

    _registered()
    POLICIES.resolve(name)  # PolicyError for unknown names and broken specs


def resolve_policies(entries: Iterable[Any], notes: list[str]) -> list[PolicyChoice]:
    """Validate policy entries; optional ones that are not registered are skipped with a note.

    The RL policy keeps the label ``rl`` and gets its model later (see :func:`compare`).

    Raises:
        PolicyError: an unknown policy that is not optional.
        CompareError: a malformed entry or a label used twice.
    """
    out: list[PolicyChoice] = []
    for e in entries:
        if isinstance(e, str):
            e = {"name": e}
        if not isinstance(e, Mapping) or not isinstance(e.get("name"), str) or not e["name"].strip():
            raise CompareError(f"a policy is a name or {{name, params, label, optional}}, got {e!r}")
        unknown = set(e) - {"name", "params", "label", "optional"}
        if unknown:
            raise CompareError(f"policy {e['name']!r}: unknown key(s) {sorted(unknown)}")
        name = e["name"].strip()
        params = dict(e.get("params") or {})
        label = str(e.get("label") or name)
        if name == "rl":
            out.append(PolicyChoice(label, RL_SPEC, params))
            continue
        try:
            _check_policy(name)
        except PolicyError:
            if e.get("optional"):
                notes.append(f"{name} skipped: it is not registered in this installation "
                             f"(registered: {', '.join(_registered())})")
                continue
            raise
        out.append(PolicyChoice(label, name, params))
    labels = [p.label for p in out]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise CompareError(f"policies listed twice: {dup} (give one a different `label`)")
    if not out:
        raise CompareError("no policy left to compare")
    return out


def _prepare_rl(policies: list[PolicyChoice], source: str, overrides: dict[str, Any],
                rl_model: str | os.PathLike[str] | None, rl_steps: int, rl_seed: int,
                rl_duration_s: float | None, model_dir: Path, notes: list[str],
                progress: bool) -> tuple[list[PolicyChoice], dict[str, Any] | None]:
    """Give the RL policy a model: the one given, one trained before with the same settings,
    or a new one. Returns the policies and a description of the model for the report."""
    if not any(p.name == RL_SPEC for p in policies):
        return policies, None
    from mecsim.rl.policy import import_sb3, load_model, model_digest

    import_sb3()  # MissingExtraError before any training or run
    info: dict[str, Any]
    if rl_model is not None:
        path = Path(os.fspath(rl_model)).expanduser().resolve()
        _, cfg = load_model(path)  # PolicyError if it is not a model
        info = {"model": str(path), "trained_here": False, "scenario": cfg.scenario}
    else:
        from mecsim.rl.train import train_rl
        from mecsim.scenario import load_scenario

        train_over = dict(overrides)
        if rl_duration_s is not None:
            train_over["duration_s"] = rl_duration_s
        from mecsim.rl.train import DEFAULT_HYPERPARAMETERS

        sc = load_scenario(source, **train_over)
        # The name holds everything the training depends on, so a model on disk is reused only
        # when it is the one this call would train.
        hp = hashlib.sha256(json.dumps(DEFAULT_HYPERPARAMETERS, sort_keys=True).encode()).hexdigest()[:6]
        path = (model_dir / f"rl-{sc.name}-{sc.digest()}-hp{hp}-steps{rl_steps}-seed{rl_seed}.zip").resolve()
        info = {"model": str(path), "trained_here": True, "steps": rl_steps, "seed": rl_seed,
                "train_duration_s": sc.duration_s, "scenario": sc.name}
        if path.is_file():
            notes.append(f"rl: reused the model trained earlier with the same settings ({path.name})")
            info["reused"] = True
        else:
            rep = train_rl(source, rl_steps, path, seed=rl_seed, overrides=train_over, progress=progress)
            info.update(wall_s=rep.wall_s, episodes=rep.episodes,
                        first_returns=rep.episode_rewards[:3], last_returns=rep.episode_rewards[-3:])
            notes.append(f"rl: trained MaskablePPO for {rep.steps} decisions ({rep.episodes} runs of "
                         f"{sc.duration_s:g} s, seed {rl_seed}) in {rep.wall_s:.0f} s")
    digest = model_digest(path)
    info["digest"] = digest
    out = [PolicyChoice(p.label, p.name, {**p.params, "model": str(path), "digest": digest})
           if p.name == RL_SPEC else p for p in policies]
    return out, info


# ---------------------------------------------------------------------------------------------
# running


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


class _Executor:
    """Runs sweeps on one Dask client (made on first use) or serially in this process."""

    def __init__(self, workers: int | None, scheduler: Any, progress: bool) -> None:
        self.workers = workers
        self.scheduler = scheduler
        self.progress = progress
        self.client: Any = None
        self.cluster: Any = None
        self.serial = workers == 1 and scheduler is None
        if not self.serial and scheduler is None:
            try:
                import distributed  # noqa: F401
            except ImportError:
                self.serial = True

    def _client(self) -> Any:
        if self.scheduler is not None:
            return self.scheduler
        if self.client is None:
            import logging

            from distributed import Client, LocalCluster

            n = self.workers or os.cpu_count() or 1
            # One single-threaded process per worker: a run is pure Python and holds the GIL.
            self.cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                        dashboard_address=None, silence_logs=logging.ERROR)
            self.client = Client(self.cluster)
        return self.client

    def run(self, spec: dict[str, Any], out: Path, desc: str) -> list[dict[str, Any]]:
        """Run the sweep ``spec`` into ``out``; returns the failed runs' catalogue rows."""
        from mecsim.sweep import DONE, FAILED, execute_run, is_complete, plan_runs, run_dir, run_sweep

        if not self.serial:
            cat = run_sweep(spec, out, scheduler=self._client(), progress=self.progress)
            ids = {r.run_id for r in plan_runs(spec)}
            bad = cat[(cat["status"] == FAILED) & cat["run_id"].isin(ids)]
            return bad.astype(object).where(bad.notna(), None).to_dict("records")
        runs = plan_runs(spec)
        out.mkdir(parents=True, exist_ok=True)
        (out / "runs").mkdir(exist_ok=True)
        failed = []
        todo = [r for r in runs if not is_complete(run_dir(out, r.run_id))]
        it: Iterable[Any] = todo
        if self.progress:  # tqdm.auto only then: in a notebook without ipywidgets it warns on import
            from tqdm.auto import tqdm

            it = tqdm(todo, desc=desc, unit="run", dynamic_ncols=True)
        for run in it:
            row = execute_run(run, str(out))
            if row["status"] != DONE:
                failed.append(row)
        return failed

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        self.client = self.cluster = None


def _relabel(df: pd.DataFrame, labels: Mapping[str, str]) -> pd.DataFrame:
    df = df.copy()
    df["policy"] = df["policy"].astype(str).map(lambda p: labels.get(p, p))
    return df


# ---------------------------------------------------------------------------------------------
# statistics


def paired_differences(summ: pd.DataFrame, reference: str, stats: Sequence[str] = ("latency_mean_s",
                       "latency_p95_s"), ci: float = 0.95, tie_s: float = 1e-3) -> pd.DataFrame:
    """Each policy minus the reference, seed by seed (common random numbers), with t intervals.

    Args:
        summ: one row per run with ``policy``, ``seed`` and the statistics.
        reference: the reference policy's label.
        stats: summary columns to compare.
        ci: the confidence level.
        tie_s: differences below this (s) count as ties.

    Returns:
        One row per other policy: for each statistic ``s``: ``s_diff`` (mean of policy - reference
        over the shared seeds), ``s_diff_lo``, ``s_diff_hi``, and ``ref_better_<s>`` (seeds on
        which the reference was lower by more than ``tie_s``), ``ties_<s>`` (seeds within
        ``tie_s``); and ``n_seeds``.
    """
    from scipy import stats as st

    rows = []
    ref = summ[summ["policy"] == reference].set_index("seed")
    for pol, g in summ[summ["policy"] != reference].groupby("policy", sort=False):
        g = g.set_index("seed")
        seeds = sorted(set(g.index) & set(ref.index))
        row: dict[str, Any] = {"policy": pol, "reference": reference, "n_seeds": len(seeds)}
        for s in stats:
            d = (pd.to_numeric(g.loc[seeds, s], errors="coerce")
                 - pd.to_numeric(ref.loc[seeds, s], errors="coerce")).to_numpy(float)
            d = d[np.isfinite(d)]
            key = s.removeprefix("latency_")
            if len(d) == 0:
                row.update({f"{key}_diff": math.nan, f"{key}_diff_lo": math.nan,
                            f"{key}_diff_hi": math.nan, f"ref_better_{key}": 0, f"ties_{key}": 0})
                continue
            mean = float(d.mean())
            if len(d) > 1 and d.std(ddof=1) > 0:
                half = float(st.t.ppf(0.5 + ci / 2, len(d) - 1)) * float(d.std(ddof=1)) / math.sqrt(len(d))
            else:
                half = math.nan if len(d) < 2 else 0.0
            row.update({f"{key}_diff": mean, f"{key}_diff_lo": mean - half, f"{key}_diff_hi": mean + half,
                        f"ref_better_{key}": int((d > tie_s).sum()),
                        f"ties_{key}": int((np.abs(d) <= tie_s).sum())})
        rows.append(row)
    return pd.DataFrame(rows)


def policy_table(summ: pd.DataFrame, order: Sequence[str], ci: float = 0.95) -> pd.DataFrame:
    """One row per policy from run summaries: latency statistics with intervals across seeds
    (:func:`mecsim.analysis.latency_stats`), miss rate, stability, decision time and energy."""
    from mecsim.analysis import latency_stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lat = latency_stats(summ, ["policy"], ci=ci)
    s = summ.copy()
    s["decision_ms_per_epoch"] = 1e3 * s["decision_wall_s_total"] / s["epochs"].where(s["epochs"] > 0)
    n = s["tasks_generated"].where(s["tasks_generated"] > 0)
    s["energy_tx_j_per_task"] = s["energy_tx_j_total"] / n
    s["energy_server_j_per_task"] = s["energy_server_j_total"] / n
    extra = s.groupby("policy")[["decision_ms_per_epoch", "energy_tx_j_per_task",
                                  "energy_server_j_per_task", "throughput_per_s"]].mean()
    cols = ["policy", "n_seeds", "mean_s", "mean_s_lo", "mean_s_hi", "p95_s", "p95_s_lo", "p95_s_hi",
            "p99_s", "p99_s_lo", "p99_s_hi", "miss_rate", "miss_rate_lo", "miss_rate_hi", "seed_std_s"]
    out = lat[cols].merge(extra.reset_index(), on="policy", how="left")
    out = out.merge(lat[["policy", "n_tasks", "n_latency", "excluded_dropped", "excluded_in_flight"]],
                    on="policy")
    rank = {p: k for k, p in enumerate(order)}
    out = out.sort_values("policy", key=lambda c: c.map(lambda p: rank.get(p, len(rank))))
    return out.reset_index(drop=True)


def _ci(v: float, lo: float, hi: float) -> str:
    if v is None or not np.isfinite(v):
        return "-"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{v:.3g}"
    return f"{v:.3g} [{lo:.3g}, {hi:.3g}]"


def compact_table(table: pd.DataFrame, ci: float = 0.95) -> pd.DataFrame:
    """The policy table for reading: values with their intervals in one cell."""
    pct = f"{ci:.0%}"
    rows = []
    for r in table.itertuples(index=False):
        miss = "-" if not np.isfinite(r.miss_rate) else f"{r.miss_rate:.1%}"
        rows.append({
            "policy": r.policy,
            f"mean latency (s) [{pct} CI]": _ci(r.mean_s, r.mean_s_lo, r.mean_s_hi),
            f"p95 (s) [{pct} CI]": _ci(r.p95_s, r.p95_s_lo, r.p95_s_hi),
            f"p99 (s) [{pct} CI]": _ci(r.p99_s, r.p99_s_lo, r.p99_s_hi),
            "deadline miss": miss,
            "std of seed means (s)": f"{r.seed_std_s:.3g}" if np.isfinite(r.seed_std_s) else "-",
            "decision (ms/epoch)": f"{r.decision_ms_per_epoch:.3g}",
            "tx energy (J/task)": f"{r.energy_tx_j_per_task:.3g}",
            "server energy (J/task)": f"{r.energy_server_j_per_task:.3g}",
        })
    return pd.DataFrame(rows)


def compact_paired(paired: pd.DataFrame, ci: float = 0.95) -> pd.DataFrame:
    """The paired table for reading."""
    if paired.empty:
        return paired
    pct = f"{ci:.0%}"
    rows = []
    for r in paired.to_dict("records"):
        n = r["n_seeds"]
        rows.append({
            "policy": r["policy"],
            f"mean - {r['reference']} (s) [{pct} CI]": _ci(r["mean_s_diff"], r["mean_s_diff_lo"],
                                                          r["mean_s_diff_hi"]),
            f"{r['reference']} lower / tied (seeds)": f"{r['ref_better_mean_s']} / {r['ties_mean_s']} of {n}",
            f"p95 - {r['reference']} (s) [{pct} CI]": _ci(r["p95_s_diff"], r["p95_s_diff_lo"],
                                                         r["p95_s_diff_hi"]),
            f"{r['reference']} lower / tied p95": f"{r['ref_better_p95_s']} / {r['ties_p95_s']} of {n}",
        })
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# figures


def _figure(width: float = 6.4, height: float = 4.0) -> Any:
    from mecsim.errors import MissingExtraError

    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingExtraError("matplotlib", "plots") from None
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def vary_figure(stats: pd.DataFrame, key: str, value: str = "mean_s",
                save: str | os.PathLike[str] | None = None, title: str | None = None) -> Any:
    """A statistic against a varied field, one line per policy, with the interval as error bars.

    Args:
        stats: :func:`mecsim.analysis.latency_stats` output grouped by ``policy`` and ``key``.
        key: the column of the varied field's values.
        value: ``mean_s``, ``p95_s``, ``p99_s`` or ``miss_rate`` (with ``_lo``/``_hi``).
        save: path stem to write PNG and PDF.
        title: the title (default: the statistic against the field).

    Returns:
        A matplotlib Figure (Agg canvas, no pyplot).
    """
    from mecsim import plots

    fig = _figure()
    ax = fig.add_subplot()
    vals: list[float] = []
    groups = list(stats.groupby("policy", sort=False))
    xs_all = np.unique(pd.to_numeric(stats[key], errors="coerce").dropna().to_numpy(float))
    span = float(xs_all.max() - xs_all.min()) if len(xs_all) > 1 else 1.0
    markers, styles = "os^DvPXh", ("-", "--", ":", "-.")
    for k, (pol, g) in enumerate(groups):
        g = g.sort_values(key)
        # A small sideways shift per policy: equal results stay visible, error bars do not overlap.
        shift = 0.012 * span * (k - (len(groups) - 1) / 2)
        x = pd.to_numeric(g[key], errors="coerce").to_numpy(float) + shift
        y = g[value].to_numpy(float)
        lo = g.get(f"{value}_lo", pd.Series(np.nan, index=g.index)).to_numpy(float)
        hi = g.get(f"{value}_hi", pd.Series(np.nan, index=g.index)).to_numpy(float)
        err = np.vstack([np.where(np.isfinite(lo), y - lo, 0.0), np.where(np.isfinite(hi), hi - y, 0.0)])
        ax.errorbar(x, y, yerr=np.clip(err, 0.0, None), marker=markers[k % len(markers)],
                    linestyle=styles[k % len(styles)], capsize=3, markersize=5, label=str(pol))
        vals.extend(y[np.isfinite(y) & (y > 0)].tolist())
    if len(xs_all) <= 12:
        ax.set_xticks(xs_all, [f"{v:g}" for v in xs_all])
    if vals and max(vals) / max(min(vals), 1e-12) > 20:
        ax.set_yscale("log")
    unit = "" if value == "miss_rate" else " (s)"
    ax.set_xlabel(key)
    ax.set_ylabel(f"{value.removesuffix('_s').replace('_', ' ')} latency{unit}" if unit
                  else "deadline-miss rate")
    what = "deadline-miss rate" if value == "miss_rate" else f"{value.removesuffix('_s')} latency"
    ax.set_title(title or f"{what} against {key}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    if save is not None:
        plots.save_figure(fig, save)
    return fig


def _figures(cmp_tasks: pd.DataFrame, summ: pd.DataFrame, vary_stats: Mapping[str, pd.DataFrame],
             out: Path, order: Sequence[str]) -> list[Path]:
    from mecsim import plots

    files: list[Path] = []
    rank = {p: k for k, p in enumerate(order)}
    # Categorical policy in the given order: the figures' groups follow it.
    cat = pd.CategoricalDtype(sorted(set(cmp_tasks["policy"]), key=lambda p: rank.get(p, 99)), ordered=True)
    tasks = cmp_tasks.assign(policy=cmp_tasks["policy"].astype(cat))
    s = summ.assign(policy=summ["policy"].astype(cat))
    for name, make in (
        ("latency_cdf", lambda p: plots.latency_cdf(tasks, by="policy", log_x=True, save=p)),
        ("seed_spread", lambda p: plots.seed_spread(s, by="policy", save=p)),
        ("breakdown", lambda p: plots.breakdown_bars(_ordered_breakdown(tasks, cat), by="policy", save=p)),
    ):
        fig = make(out / name)
        plots.close(fig)
        files += [out / f"{name}.png", out / f"{name}.pdf"]
    for key, st in vary_stats.items():
        stem = out / f"vs_{_safe(key)}"
        fig = vary_figure(st, key, save=stem)
        plots.close(fig)
        files += [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    return files


def _ordered_breakdown(tasks: pd.DataFrame, cat: pd.CategoricalDtype) -> pd.DataFrame:
    """Mean time per stage by policy, rows in the policies' order (as the other figures)."""
    from mecsim.analysis import mean_breakdown

    means = mean_breakdown(tasks, "policy")
    means["policy"] = means["policy"].astype(str).astype(cat)
    return means.sort_values("policy").reset_index(drop=True)


def _safe(key: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in key)


# ---------------------------------------------------------------------------------------------
# compare


def _write_table(df: pd.DataFrame, folder: Path, name: str, md: pd.DataFrame | None = None) -> list[Path]:
    from mecsim.analysis import to_markdown

    folder.mkdir(parents=True, exist_ok=True)
    csv, mdp = folder / f"{name}.csv", folder / f"{name}.md"
    df.to_csv(csv, index=False)
    mdp.write_text(to_markdown(md if md is not None else df) + "\n")
    return [csv, mdp]


def compare(scenario: Any, policies: str | Iterable[Any] = DEFAULT_POLICIES, seeds: int | Sequence[int] = 10,
            *, out_dir: str | os.PathLike[str], duration_s: float | None = None,
            warmup_s: float | None = None, overrides: Mapping[str, Any] | None = None,
            vary: Mapping[str, Sequence[Any]] | Iterable[str] | None = None,
            vary_seeds: int | None = None, workers: int | None = None, scheduler: Any = None,
            rl_model: str | os.PathLike[str] | None = None, rl_steps: int = DEFAULT_RL_STEPS,
            rl_seed: int = 0, rl_duration_s: float | None = None, reference: str | None = None,
            ci: float = 0.95, figures: bool = True, progress: bool = True,
            _executor: _Executor | None = None) -> Comparison:
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
    chosen, rl_info = _prepare_rl(chosen, source, over, rl_model, rl_steps, rl_seed, rl_duration_s,
                                  out / "models", notes, progress)
    by_name = {p.name: p.label for p in chosen}
    pol_entries = [{"name": p.name, "params": p.params} for p in chosen]

    main_spec = {"name": _safe(sc.name), "scenario": source, "overrides": over,
                 "policies": pol_entries, "seeds": seed_list}
    nv = len(seed_list) if vary_seeds is None else max(1, min(int(vary_seeds), len(seed_list)))
    v_seeds = seed_list[:nv]
    cases: list[dict[str, Any]] = []
    for key, values in vary_map.items():
        base_value = _dotted_get(base, key)
        for v in values:
            if v == base_value:
                continue  # the main runs are this point
            cases.append({key: v})

    from mecsim.sweep import plan_runs

    main_runs = plan_runs(main_spec)
    vary_spec = None
    vary_runs = []
    if cases:
        vary_spec = {"name": _safe(sc.name) + "-vary", "scenario": source, "overrides": over,
                     "cases": cases, "policies": pol_entries, "seeds": v_seeds}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a case equal to a default: planned once
            vary_runs = plan_runs(vary_spec)

    ex = _executor or _Executor(workers, scheduler, progress)
    sweep_dir = out / "sweep"
    failed: list[dict[str, Any]] = []
    try:
        failed += ex.run(main_spec, sweep_dir, f"compare {sc.name}")
        if vary_spec is not None:
            failed += ex.run(vary_spec, sweep_dir, f"vary {sc.name}")
    finally:
        if _executor is None:
            ex.close()

    from mecsim.analysis import load_sweep

    rs = load_sweep(sweep_dir)
    summ_all = rs.summaries()
    main_ids = [r.run_id for r in main_runs]
    summ = _relabel(summ_all[summ_all["run_id"].isin(main_ids)].reset_index(drop=True), by_name)
    if summ.empty:
        raise CompareError(f"{sc.name}: no run finished; first error: "
                           f"{failed[0]['error'] if failed else 'unknown'}")
    table = policy_table(summ, labels, ci)
    paired = paired_differences(summ, ref, ci=ci)
    if not paired.empty:
        rank = {p: k for k, p in enumerate(labels)}
        paired = paired.sort_values("policy", key=lambda c: c.map(rank)).reset_index(drop=True)

    vary_stats: dict[str, pd.DataFrame] = {}
    if vary_map:
        from mecsim.analysis import latency_stats

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
            sv = _relabel(sv, by_name)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                st = latency_stats(sv, ["policy", key], ci=ci)
            rank = {p: k for k, p in enumerate(labels)}
            st = st.sort_values(["policy", key], key=lambda c: c.map(rank) if c.name == "policy" else c)
            vary_stats[key] = st.reset_index(drop=True)

    files: list[Path] = []
    files += _write_table(table, out, "comparison", compact_table(table, ci))
    files += _write_table(paired, out, "paired", compact_paired(paired, ci))
    vary_cols = ["policy", "n_seeds", "mean_s", "mean_s_lo", "mean_s_hi", "p95_s", "p95_s_lo", "p95_s_hi",
                 "miss_rate", "n_latency", "excluded_dropped", "excluded_in_flight"]
    for key, st in vary_stats.items():
        files += _write_table(st[[vary_cols[0], key, *vary_cols[1:]]], out, f"vary_{_safe(key)}")
    if figures:
        ts = rs.tasks(columns=_TASK_COLUMNS, filters=[("run_id", "in", main_ids)])
        ts = _relabel(ts, by_name)
        files += _figures(ts, summ, vary_stats, out / "figures", labels)

    settings = {
        "scenario": sc.name, "source": source, "description": sc.description,
        "devices": sc.n_devices, "servers": [s.name for s in sc.servers],
        "duration_s": sc.duration_s, "warmup_s": sc.warmup_s, "seeds": seed_list, "overrides": over,
        "policies": [{"label": p.label, "name": p.name, "params": p.params} for p in chosen],
        "vary": vary_map, "vary_seeds": v_seeds, "reference": ref, "ci": ci, "rl": rl_info,
        "runs": len(main_runs) + len(vary_runs), "wall_s": time.perf_counter() - t0,
        "executor": "serial" if ex.serial else "dask",
    }
    for row in failed:
        notes.append(f"run failed: {by_name.get(str(row.get('policy')), row.get('policy'))}, seed "
                     f"{row.get('seed')}, overrides {row.get('overrides')}: {row.get('error')}")
    cmp = Comparison(scenario=sc.name, out_dir=out, table=table, paired=paired, vary=vary_stats,
                     policies=chosen, seeds=seed_list, reference=ref, settings=settings, notes=notes,
                     failed=failed, files=files, run_ids=main_ids)
    report = out / "report.md"
    report.write_text(_report_header(f"mecsim comparison: {sc.name}", "mecsim compare")
                      + _scenario_section(cmp, out, level=2))
    (out / "settings.json").write_text(json.dumps(settings, indent=2, default=str))
    cmp.files += [report, out / "settings.json"]
    return cmp


def _scenario_source(scenario: Any) -> Any:
    """A path's absolute form (Dask workers may start elsewhere); names and objects as they are."""
    if isinstance(scenario, str | os.PathLike) and Path(os.fspath(scenario)).exists():
        return str(Path(os.fspath(scenario)).resolve())
    if not isinstance(scenario, str):
        from mecsim.scenario import Scenario

        if isinstance(scenario, dict | Scenario):
            raise CompareError("compare takes a registered scenario name or a YAML path (runs are "
                               "planned by name or path); save the scenario to a file first")
    return scenario


# ---------------------------------------------------------------------------------------------
# the report


def _report_header(title: str, command: str) -> str:
    import mecsim

    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (f"# {title}\n\nWritten by `{command}` (mecsim {mecsim.__version__}, Python "
            f"{platform.python_version()}) on {when}. Latencies are end-to-end (arrival to result "
            "back at the device) over the completed tasks that arrived after the warm-up; every "
            "interval is a Student-t interval across seeds (one replicate per seed).\n\n")


def _fmt_s(v: float) -> str:
    return f"{v:.3g} s" if np.isfinite(v) else "-"


def findings(cmp: Comparison) -> list[str]:
    """Plain sentences on who wins where, read off the tables (used in the report)."""
    t = cmp.table
    out: list[str] = []
    if t.empty:
        return out
    best = t.loc[t["mean_s"].idxmin()]
    out.append(f"Lowest mean latency: **{best['policy']}**, {_fmt_s(best['mean_s'])} "
               f"[{_fmt_s(best['mean_s_lo'])}, {_fmt_s(best['mean_s_hi'])}].")
    best95 = t.loc[t["p95_s"].idxmin()]
    out.append(f"Lowest p95 latency: **{best95['policy']}**, {_fmt_s(best95['p95_s'])}.")
    ref = cmp.reference
    p = cmp.paired
    if ref is not None and not p.empty:
        others = p.dropna(subset=["mean_s_diff"])
        if not others.empty:
            closest = others.loc[others["mean_s_diff"].idxmin()]
            d, lo, hi = closest["mean_s_diff"], closest["mean_s_diff_lo"], closest["mean_s_diff_hi"]
            n, k = int(closest["n_seeds"]), int(closest["ref_better_mean_s"])
            ties = int(closest["ties_mean_s"])
            if np.isfinite(lo) and np.isfinite(hi) and lo <= 0 <= hi:
                verdict = "not distinguishable at this confidence level"
            elif d > 0:
                verdict = f"{ref} is better"
            else:
                verdict = f"{closest['policy']} is better"
            out.append(f"{ref} against its closest competitor, {closest['policy']}: mean latency "
                       f"difference ({closest['policy']} - {ref}) {d:+.3g} s, paired interval "
                       f"[{lo:+.3g}, {hi:+.3g}] s; {ref} was lower on {k} of {n} seeds (tied within 1 ms on "
                       f"{ties}): {verdict}.")
    return out


def _scenario_section(cmp: Comparison, root: Path, level: int = 2) -> str:
    from mecsim.analysis import to_markdown

    h = "#" * level
    s = cmp.settings
    rel = os.path.relpath(cmp.out_dir, root)
    pref = "" if rel == "." else rel + "/"
    seeds = s["seeds"]
    lines = [f"{h} {cmp.scenario}\n"]
    if s.get("description"):
        lines.append(f"{s['description']}\n")
    pol_desc = ", ".join(p["label"] for p in s["policies"])
    lines.append(f"- Settings: {s['devices']} devices, {len(s['servers'])} servers; {s['duration_s']:g} s "
                 f"simulated per run (warm-up {s['warmup_s']:g} s); seeds "
                 f"{seeds[0]}..{seeds[-1]} ({len(seeds)}); overrides {s['overrides'] or 'none'}.")
    lines.append(f"- Policies: {pol_desc}. Reference for the paired table: {s['reference']}.")
    rl = s.get("rl")
    if rl:
        if rl.get("trained_here"):
            lines.append(f"- RL: MaskablePPO, {rl['steps']} decisions of training (seed {rl['seed']}, "
                         f"runs of {rl['train_duration_s']:g} s whose seeds are drawn apart from the "
                         f"evaluation seeds), model `{Path(rl['model']).name}` (digest {rl['digest']}).")
        else:
            lines.append(f"- RL: model `{rl['model']}` (trained on {rl.get('scenario') or '?'}; digest "
                         f"{rl['digest']}).")
    if s.get("vary"):
        lines.append("- Varied one at a time (other fields as above; RL model as above): "
                     + "; ".join(f"`{k}` in {v}" for k, v in s["vary"].items())
                     + f", on seeds {s['vary_seeds']}.")
    lines.append(f"- {s['runs']} runs ({s['executor']}), {s['wall_s']:.0f} s wall.")
    for n in cmp.notes:
        lines.append(f"- Note: {n}")
    lines.append("")
    lines.append(f"{h}# Latency, misses, stability, decision time, energy\n")
    lines.append(to_markdown(compact_table(cmp.table, s["ci"])) + "\n")
    if not cmp.paired.empty:
        lines.append(f"{h}# Paired against {cmp.reference} (same seeds, so the same tasks and channels)\n")
        lines.append(to_markdown(compact_paired(cmp.paired, s["ci"])) + "\n")
    for key, st in cmp.vary.items():
        lines.append(f"{h}# Mean latency (s) against `{key}`\n")
        piv = st.pivot(index="policy", columns=key, values="mean_s")
        piv = piv.reindex([p for p in cmp.table["policy"] if p in piv.index])
        piv.columns = [f"{key.rsplit('.', 1)[-1]}={c:g}" if isinstance(c, int | float) else str(c)
                       for c in piv.columns]
        lines.append(to_markdown(piv.reset_index()) + "\n")
    f = findings(cmp)
    if f:
        lines.append(f"{h}# Findings\n")
        lines += [f"- {x}" for x in f]
        lines.append("")
    figs = sorted({p.stem for p in cmp.files if p.suffix == ".png"})
    if figs:
        lines.append(f"{h}# Figures\n")
        lines += [f"![{stem}]({pref}figures/{stem}.png)" for stem in figs]
        lines.append("")
    lines.append(f"Tables: `{pref}comparison.csv`, `{pref}paired.csv`"
                 + "".join(f", `{pref}vary_{_safe(k)}.csv`" for k in cmp.vary) + ".\n")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# studies


_STUDY_KEYS = {"name", "description", "seeds", "vary_seeds", "duration_s", "warmup_s", "overrides", "rl",
               "reference", "quick", "studies", "ci"}
_ENTRY_KEYS = {"scenario", "policies", "vary", "overrides", "reference", "rl_model", "seeds", "vary_seeds",
               "duration_s", "warmup_s"}
_QUICK_KEYS = {"seeds", "vary_seeds", "duration_s", "warmup_s", "rl_steps", "vary_values", "rl_duration_s"}


def is_study_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a study file (a YAML mapping with a ``studies`` list)."""
    import yaml

    p = Path(os.fspath(path))
    if not p.is_file() or p.suffix.lower() not in (".yaml", ".yml"):
        return False
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, OSError):
        return False
    return isinstance(data, dict) and "studies" in data


def load_study(source: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
    """Load and check a study file (see ``scenarios/studies/paper.yaml``).

    Raises:
        CompareError: one line naming the field.
    """

    base_dir = None
    if isinstance(source, Mapping):
        data: Any = dict(source)
    else:
        from mecsim.scenario import _load_yaml_file

        p = Path(os.fspath(source))
        if not p.is_file():
            raise CompareError(f"no such study file: {p}")
        data = _load_yaml_file(p, CompareError, "study file")
        base_dir = p.resolve().parent
    if not isinstance(data, dict):
        raise CompareError("a study must be a mapping of fields")
    bad = set(data) - _STUDY_KEYS
    if bad:
        raise CompareError(f"{sorted(bad)[0]}: unknown field (use {sorted(_STUDY_KEYS)})")
    studies = data.get("studies")
    if not isinstance(studies, list) or not studies:
        raise CompareError("studies: give a list of {scenario, policies, vary, ...}")
    for i, e in enumerate(studies):
        if not isinstance(e, dict) or "scenario" not in e:
            raise CompareError(f"studies.{i}: needs at least `scenario`")
        bad = set(e) - _ENTRY_KEYS
        if bad:
            raise CompareError(f"studies.{i}.{sorted(bad)[0]}: unknown field (use {sorted(_ENTRY_KEYS)})")
        src = str(e["scenario"])
        if base_dir is not None and not Path(src).is_absolute() and (base_dir / src).exists():
            e["scenario"] = str((base_dir / src).resolve())
    quick = data.get("quick") or {}
    if not isinstance(quick, dict) or set(quick) - _QUICK_KEYS:
        raise CompareError(f"quick: a mapping with some of {sorted(_QUICK_KEYS)}")
    rl = data.get("rl") or {}
    if not isinstance(rl, dict) or set(rl) - {"steps", "seed", "duration_s"}:
        raise CompareError("rl: a mapping with some of steps, seed, duration_s")
    data.setdefault("name", "study")
    return data


def _thin(values: Sequence[Any], k: int | None) -> list[Any]:
    """At most k values, evenly spread and keeping the first and the last."""
    vals = list(values)
    if k is None or len(vals) <= k:
        return vals
    if k <= 1:
        return vals[:1]
    idx = sorted({round(i * (len(vals) - 1) / (k - 1)) for i in range(k)})
    return [vals[i] for i in idx]


def run_study(source: str | os.PathLike[str] | Mapping[str, Any], out_dir: str | os.PathLike[str], *,
              quick: bool = False, seeds: int | None = None, workers: int | None = None,
              scheduler: Any = None, rl_models: Mapping[str, str] | None = None,
              rl_steps: int | None = None, figures: bool = True, progress: bool = True,
              command: str = "mecsim compare STUDY") -> Study:
    """Run every comparison of a study file into ``out_dir/<scenario>/`` and write
    ``out_dir/report.md``.

    Args:
        source: the study file (or its dict).
        out_dir: the output folder.
        quick: use the study's ``quick`` settings (fewer seeds, shorter runs, a small RL budget,
            fewer varied values): minutes instead of tens of minutes.
        seeds: seeds per comparison, over the study's.
        workers: as :func:`compare`.
        scheduler: as :func:`compare`.
        rl_models: scenario name -> a model for its ``rl`` policy (else one is trained).
        rl_steps: training decisions of the RL models trained here, over the study's.
        figures: write the figures.
        progress: show progress bars.
        command: the command named in the report.

    Returns:
        A :class:`Study`.
    """
    study = load_study(source)
    out = Path(os.fspath(out_dir))
    q = study.get("quick") or {} if quick else {}
    rl = study.get("rl") or {}
    n_seeds = seeds or q.get("seeds") or study.get("seeds") or 10
    steps = rl_steps or q.get("rl_steps") or rl.get("steps") or DEFAULT_RL_STEPS
    ex = _Executor(workers, scheduler, progress)
    comps = []
    t0 = time.perf_counter()
    try:
        for entry in study["studies"]:
            over = {**dict(study.get("overrides") or {}), **dict(entry.get("overrides") or {})}
            dur = q.get("duration_s") or entry.get("duration_s") or study.get("duration_s")
            warm = q.get("warmup_s", entry.get("warmup_s", study.get("warmup_s")))
            vary = {k: _thin(v, q.get("vary_values")) for k, v in (entry.get("vary") or {}).items()}
            from mecsim.scenario import load_scenario

            name = load_scenario(entry["scenario"]).name
            model = (rl_models or {}).get(name) or entry.get("rl_model")
            comps.append(compare(
                entry["scenario"], entry.get("policies") or DEFAULT_POLICIES,
                seeds=entry.get("seeds") if seeds is None and not quick and entry.get("seeds") else n_seeds,
                out_dir=out / _safe(name), duration_s=dur, warmup_s=warm, overrides=over, vary=vary,
                vary_seeds=q.get("vary_seeds") or entry.get("vary_seeds") or study.get("vary_seeds"),
                rl_model=model, rl_steps=steps, rl_seed=int(rl.get("seed", 0)),
                rl_duration_s=q.get("rl_duration_s") or rl.get("duration_s"),
                reference=entry.get("reference") or study.get("reference"),
                ci=float(study.get("ci", 0.95)), figures=figures, progress=progress, _executor=ex))
    finally:
        ex.close()
    settings = {"name": study["name"], "quick": quick, "seeds": n_seeds, "rl_steps": steps,
                "wall_s": time.perf_counter() - t0}
    text = _report_header(f"mecsim study: {study['name']}" + (" (quick)" if quick else ""), command)
    if study.get("description"):
        text += " ".join(str(study["description"]).split()) + "\n\n"
    text += (f"{len(comps)} scenarios, {sum(c.settings['runs'] for c in comps)} runs, "
             f"{settings['wall_s']:.0f} s wall in all.\n\n")
    for c in comps:
        text += _scenario_section(c, out, level=2)
    out.mkdir(parents=True, exist_ok=True)
    report = out / "report.md"
    report.write_text(text)
    record = {"settings": settings, "scenarios": [c.settings for c in comps]}
    (out / "study.json").write_text(json.dumps(record, indent=2, default=str))
    return Study(name=study["name"], out_dir=out, comparisons=comps, report=report, settings=settings)


def reproduce(out_dir: str | os.PathLike[str] = "runs/reproduce", *, quick: bool = False,
              **kwargs: Any) -> Study:
    """Run the shipped paper-style study (``scenarios/studies/paper.yaml``); see :func:`run_study`."""
    return run_study(PAPER_STUDY, out_dir, quick=quick, command="mecsim reproduce" + (" --quick" if quick
                                                                                      else ""), **kwargs)
