"""Reports: Markdown tables, the ``mecsim report`` folder, and the sections of a comparison report."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mecsim.analysis.load import RunSet, load
from mecsim.analysis.queues import littles_law, queue_timeseries
from mecsim.analysis.stats import _STAGE_TIMES, AnalysisError, latency_stats, mean_breakdown
from mecsim.errors import MecsimError
from mecsim.traces import atomic_write

__all__ = [
    "to_markdown",
    "write_table",
    "write_report",
    "seed_warning",
    "compact_table",
    "compact_paired",
    "report_header",
    "findings",
    "scenario_section",
    "contrasts_table",
]


def _fmt_cell(v: Any, digits: int) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float | np.floating):
        return f"{v:.{digits}g}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def to_markdown(df: pd.DataFrame, digits: int = 4) -> str:
    """A DataFrame as a GitHub-flavoured Markdown table (floats to ``digits`` significant
    digits), without needing the ``tabulate`` package."""
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt_cell(v, digits) for v in row) + " |")
    return "\n".join(lines)


def write_table(
    df: pd.DataFrame, folder: Path, name: str, md: pd.DataFrame | None = None, note: str = ""
) -> list[Path]:
    """``folder/name.csv`` (the numbers) and ``folder/name.md`` (``md`` or the same table for
    reading, after ``note``), each written atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    csv, mdp = folder / f"{name}.csv", folder / f"{name}.md"
    atomic_write(csv, lambda p: df.to_csv(p, index=False))
    text = (note + "\n\n" if note else "") + to_markdown(md if md is not None else df) + "\n"
    atomic_write(mdp, lambda p: Path(p).write_text(text))
    return [csv, mdp]


_LATENCY_COLUMNS = [
    "n_seeds",
    "mean_s",
    "mean_s_lo",
    "mean_s_hi",
    "p50_s",
    "p95_s",
    "p95_s_lo",
    "p95_s_hi",
    "p99_s",
    "miss_rate",
    "seed_std_s",
    "n_tasks",
    "n_latency",
    "excluded_dropped",
    "excluded_in_flight",
    "excluded_warmup",
]


def write_report(
    path: str | os.PathLike[str],
    by: Sequence[str] | None = None,
    ci: float = 0.95,
    dt: float | None = None,
    figures: bool = True,
) -> dict[str, Any]:
    """Write the tables (CSV and Markdown) and figures (PNG and PDF) of a finished sweep or of
    one run folder into ``path/report/``.

    Tables: ``latency`` (:func:`latency_stats` by group), ``breakdown`` (:func:`mean_breakdown`),
    ``runs`` (the catalogue, sweeps only; failed runs with their error) and ``littles_law``
    (per run, single runs only). Figures: ``latency_cdf``, ``seed_spread``, ``breakdown`` and
    ``queue`` (one run per group). Without matplotlib the figures are skipped and
    ``"figures_skipped"`` says why.

    Args:
        path: the sweep's output folder or a run folder.
        by: the grouping columns (default: policy plus whatever varies between the runs).
        ci: the confidence level of the latency intervals.
        dt: the queue plot's grid step (default: a 200th of the duration).
        figures: write the figures.

    Returns:
        ``{"latency": DataFrame, "breakdown": DataFrame, "files": [paths], "by": [columns],
        "figures_skipped": reason or None}``.
    """
    rs = load(path)
    if not rs.run_ids:
        raise AnalysisError(f"{rs.path}: no finished runs to report on")
    keys = list(by) if by else ["policy", *[c for c in rs.varying() if c != "policy"]]
    bad = [k for k in keys if k not in rs.catalogue.columns]
    if bad:
        raise AnalysisError(
            f"cannot group by {bad}: not catalogue columns; use some of "
            f"{['scenario', 'policy', 'seed', *rs.override_columns]}"
        )
    out = rs.path / "report"
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []

    summ = rs.summaries()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pooled groups are the user's choice of `by`
        lat = latency_stats(summ, keys, ci=ci)
    lat_table = lat[[*keys, *_LATENCY_COLUMNS]]
    files += write_table(lat_table, out, "latency", note=seed_warning(int(lat["n_seeds"].min())))

    need = [
        "status",
        "t_arrival",
        "latency",
        "deadline",
        "deadline_met",
        "t_complete",
        *{c for pair in _STAGE_TIMES.values() for c in pair},
    ]
    tasks = rs.tasks(columns=sorted(set(need)))
    brk = mean_breakdown(tasks, keys)
    files += write_table(brk, out, "breakdown")

    cat = rs.catalogue
    is_sweep = rs.is_sweep
    if is_sweep:
        runs = cat[
            ["run_id", "policy", "seed", *rs.override_columns, "status", "error", "wall_s", "attempts"]
        ]
        files += write_table(runs, out, "runs")
    else:
        rid = rs.run_ids[0]
        srv = rs.servers()
        row = cat.iloc[0]
        ll = littles_law(tasks, srv, float(row["warmup_s"] or 0.0), float(row["duration_s"]))
        files += write_table(pd.DataFrame([{"run_id": rid, **ll}]), out, "littles_law")

    skipped = None
    if figures:
        from mecsim.analysis import plots

        try:
            files += _report_figures(rs, tasks, summ, keys, out, dt, is_sweep, plots)
        except MecsimError as exc:  # a missing extra: tables are still useful
            skipped = " ".join(str(exc).split())
    return {"latency": lat_table, "breakdown": brk, "files": files, "by": keys, "figures_skipped": skipped}


def _report_figures(
    rs: RunSet,
    tasks: pd.DataFrame,
    summ: pd.DataFrame,
    keys: list[str],
    out: Path,
    dt: float | None,
    is_sweep: bool,
    plots: Any,
) -> list[Path]:
    files: list[Path] = []
    fig = plots.latency_cdf(tasks, by=keys, log_x=True, save=out / "latency_cdf")
    files += [out / "latency_cdf.png", out / "latency_cdf.pdf"]
    plots.close(fig)
    fig = plots.seed_spread(summ, by=keys, save=out / "seed_spread")
    files += [out / "seed_spread.png", out / "seed_spread.pdf"]
    plots.close(fig)
    fig = plots.breakdown_bars(tasks, by=keys, save=out / "breakdown")
    files += [out / "breakdown.png", out / "breakdown.pdf"]
    plots.close(fig)

    cat = rs.catalogue[rs.catalogue["run_id"].isin(rs.run_ids)].copy()
    duration = float(cat["duration_s"].max())
    step = dt or max(duration / 200.0, 1e-9)
    if is_sweep:
        # One run per group (its lowest seed): the queue of all servers together.
        cat["_label"] = [plots.group_label(keys, vals) for vals in cat[keys].itertuples(index=False)]
        first = cat.sort_values("seed", kind="stable").groupby("_label", sort=True).head(1)
        srv = rs.servers(filters=[("run_id", "in", list(first["run_id"]))])
        ts = queue_timeseries(srv, step, t1=duration)
        ts = ts.groupby(["run_id", "t"], observed=True)[["queue_len", "in_system"]].sum().reset_index()
        ts["group"] = ts["run_id"].astype(str).map(dict(zip(first["run_id"], first["_label"], strict=True)))
        fig = plots.queue_plot(
            ts,
            value="in_system",
            hue="group",
            save=out / "queue",
            title="tasks at the servers (all, lowest seed of each group)",
        )
    else:
        rid = rs.run_ids[0]
        ts = queue_timeseries(rs.servers(), step, slots=rs.scenario(rid), t1=duration)
        fig = plots.queue_plot(ts, hue="server", save=out / "queue", title="queue length per server")
    files += [out / "queue.png", out / "queue.pdf"]
    plots.close(fig)
    return files


# ---------------------------------------------------------------------------------------------
# the report of a comparison


def seed_warning(n_seeds: int) -> str:
    """A warning line for tables over fewer than :data:`~mecsim.analysis.stats.MIN_SEEDS` seeds
    (empty otherwise)."""
    from mecsim.analysis.stats import MIN_SEEDS

    if n_seeds >= MIN_SEEDS:
        return ""
    return (
        f"**Warning: {n_seeds} seed(s) only.** With fewer than {MIN_SEEDS} seeds the t-intervals "
        "are very wide (or missing) and no ranking below should be trusted."
    )


def _ci(v: float, lo: float, hi: float) -> str:
    if v is None or not np.isfinite(v):
        return "-"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{v:.3g}"
    return f"{v:.3g} [{lo:.3g}, {hi:.3g}]"


def compact_table(table: pd.DataFrame, ci: float = 0.95) -> pd.DataFrame:
    """The policy table for reading: values with their intervals in one cell. A policy marked
    ``unstable`` (see :func:`mecsim.analysis.queues.stability`) gets no latency mean: its cells
    say so, and the stability column gives its growth."""
    pct = f"{ci:.0%}"
    rows = []
    for r in table.to_dict("records"):
        bad = bool(r.get("unstable", False))
        miss = "-" if not np.isfinite(r["miss_rate"]) else f"{r['miss_rate']:.1%}"
        if "growth" in r and np.isfinite(r["growth"]):
            grow = _ci(100 * r["growth"], 100 * r["growth_lo"], 100 * r["growth_hi"]) + " %"
            stab = ("UNSTABLE, grows " if bad else "no growth shown, ") + grow
        else:
            stab = "-"
        na = "unstable: no mean"
        rows.append(
            {
                "policy": r["policy"],
                f"mean latency (s) [{pct} CI]": na
                if bad
                else _ci(r["mean_s"], r["mean_s_lo"], r["mean_s_hi"]),
                f"p95 (s) [{pct} CI]": na if bad else _ci(r["p95_s"], r["p95_s_lo"], r["p95_s_hi"]),
                f"p99 (s) [{pct} CI]": na if bad else _ci(r["p99_s"], r["p99_s_lo"], r["p99_s_hi"]),
                "deadline miss": miss,
                "std of seed means (s)": f"{r['seed_std_s']:.3g}" if np.isfinite(r["seed_std_s"]) else "-",
                "backlog growth, 2nd half vs 1st [CI]": stab,
                "decision (ms/epoch)": f"{r['decision_ms_per_epoch']:.3g}",
                "tx energy (J/task)": f"{r['energy_tx_j_per_task']:.3g}",
                "server energy (J/task)": f"{r['energy_server_j_per_task']:.3g}",
            }
        )
    return pd.DataFrame(rows)


def compact_paired(paired: pd.DataFrame, ci: float = 0.95) -> pd.DataFrame:
    """The paired table for reading."""
    if paired.empty:
        return paired
    pct = f"{ci:.0%}"
    rows = []
    for r in paired.to_dict("records"):
        n = r["n_seeds"]
        rows.append(
            {
                "policy": r["policy"],
                f"mean - {r['reference']} (s) [{pct} CI]": _ci(
                    r["mean_s_diff"], r["mean_s_diff_lo"], r["mean_s_diff_hi"]
                ),
                f"{r['reference']} lower / tied (seeds)": (
                    f"{r['ref_better_mean_s']} / {r['ties_mean_s']} of {n}"
                ),
                f"p95 - {r['reference']} (s) [{pct} CI]": _ci(
                    r["p95_s_diff"], r["p95_s_diff_lo"], r["p95_s_diff_hi"]
                ),
                f"{r['reference']} lower / tied p95": f"{r['ref_better_p95_s']} / {r['ties_p95_s']} of {n}",
            }
        )
    return pd.DataFrame(rows)


def report_header(title: str, command: str) -> str:
    """The head of a report: title, command, versions, and how to read the numbers."""
    import platform
    from datetime import UTC, datetime

    import mecsim
    from mecsim.analysis.queues import GROWTH_LIMIT

    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"# {title}\n\nWritten by `{command}` (mecsim {mecsim.__version__}, Python "
        f"{platform.python_version()}) on {when}. Latencies are end-to-end (arrival to result "
        "back at the device) over the completed tasks that arrived after the warm-up; every "
        "interval is a Student-t interval across seeds (one replicate per seed). A policy is "
        "marked unstable when its backlog (time-average tasks in the system, unfinished ones "
        "included) in the second half of the measured window exceeds the first half's by more than "
        f"{GROWTH_LIMIT:.0%} with confidence (and by at least half a task): its queue grows with the "
        "run's length, so it has no steady-state "
        "mean and none is given.\n\n"
    )


def _fmt_s(v: float) -> str:
    return f"{v:.3g} s" if np.isfinite(v) else "-"


def _verdict(d: float, lo: float, hi: float, a: str, b: str) -> str:
    """Who is better on a paired difference d = b - a with interval [lo, hi]."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "no interval (too few seeds)"
    if lo <= 0 <= hi:
        return "not distinguishable at this confidence level"
    return f"{a} is better" if d > 0 else f"{b} is better"


def findings(cmp: Any) -> list[str]:
    """Plain sentences on who wins where, read off the tables (used in the report)."""
    t = cmp.table
    out: list[str] = []
    if t.empty:
        return out
    stable = t[~t.get("unstable", pd.Series(False, index=t.index)).astype(bool)]
    bad = [p for p in t["policy"] if p not in set(stable["policy"])]
    if bad:
        out.append(f"Unstable (latency grows with run length, no mean given): {', '.join(map(str, bad))}.")
    if not stable.empty and stable["mean_s"].notna().any():
        best = stable.loc[stable["mean_s"].idxmin()]
        out.append(
            f"Lowest mean latency among stable policies: **{best['policy']}**, "
            f"{_fmt_s(best['mean_s'])} "
            f"[{_fmt_s(best['mean_s_lo'])}, {_fmt_s(best['mean_s_hi'])}]."
        )
        best95 = stable.loc[stable["p95_s"].idxmin()]
        out.append(
            f"Lowest p95 latency among stable policies: **{best95['policy']}**, {_fmt_s(best95['p95_s'])}."
        )
    ref = cmp.reference
    p = cmp.paired
    if ref is not None and not p.empty:
        for r in p.dropna(subset=["mean_s_diff"]).to_dict("records"):
            if r["policy"] in bad:
                continue
            d, lo, hi = r["mean_s_diff"], r["mean_s_diff_lo"], r["mean_s_diff_hi"]
            out.append(
                f"{r['policy']} - {ref}: {d:+.3g} s [{lo:+.3g}, {hi:+.3g}]; {ref} lower on "
                f"{r['ref_better_mean_s']} of {r['n_seeds']} seeds: "
                f"{_verdict(d, lo, hi, ref, r['policy'])}."
            )
    return out


#: Stage contrasts of the hybrid's gain over greedy: (what, policy A, policy B); the table gives
#: B - A seed by seed, so a positive value is what A gains over B. Rows whose policies were not
#: both compared are left out.
CONTRASTS = (
    ("total: hybrid (qubo-sa) against greedy", "qubo-sa", "greedy"),
    (
        "bandwidth rule: greedy with the hybrid's default rule (completion) against equal shares",
        "greedy-completion",
        "greedy",
    ),
    ("server choice: hybrid against greedy with the same bandwidth rule", "qubo-sa", "greedy-completion"),
    ("repair + local search added to greedy", "greedy-ls", "greedy"),
    ("hybrid against greedy with the same local search", "qubo-sa", "greedy-ls"),
    ("solver: SA against random-feasible at equal reads (with local search)", "qubo-sa", "qubo-random"),
    (
        "solver: SA against random-feasible at equal reads (no local search)",
        "qubo-sa-nols",
        "qubo-random-nols",
    ),
    ("repair + local search inside the hybrid", "qubo-sa", "qubo-sa-nols"),
    ("hybrid against RL", "qubo-sa", "rl"),
    ("hybrid against least-loaded", "qubo-sa", "least-loaded"),
)


def contrasts_table(
    summ: pd.DataFrame, ci: float = 0.95, contrasts: Sequence[tuple[str, str, str]] = CONTRASTS
) -> pd.DataFrame:
    """Paired differences of mean latency for the stage contrasts (:data:`CONTRASTS`)."""
    from mecsim.analysis.stats import t_interval

    pols = set(summ["policy"].astype(str))
    rows = []
    for what, a, b in contrasts:
        if a not in pols or b not in pols:
            continue
        sa = summ[summ["policy"].astype(str) == a].set_index("seed")["latency_mean_s"]
        sb = summ[summ["policy"].astype(str) == b].set_index("seed")["latency_mean_s"]
        seeds = sorted(set(sa.index) & set(sb.index))
        d = (pd.to_numeric(sb.loc[seeds]) - pd.to_numeric(sa.loc[seeds])).to_numpy(float)
        mean, lo, hi, _ = t_interval(d, ci)
        rows.append(
            {
                "contrast": what,
                "a": a,
                "b": b,
                "n_seeds": len(seeds),
                "gain_s": mean,
                "gain_s_lo": lo,
                "gain_s_hi": hi,
                "a_better_seeds": int((d > 1e-3).sum()),
                "verdict": _verdict(mean, lo, hi, a, b),
            }
        )
    return pd.DataFrame(rows)


def scenario_section(cmp: Any, root: Path, level: int = 2) -> str:
    """The report section of one comparison (settings, tables, findings, figures)."""
    h = "#" * level
    s = cmp.settings
    rel = os.path.relpath(cmp.out_dir, root)
    pref = "" if rel == "." else rel + "/"
    seeds = s["seeds"]
    lines = [f"{h} {s.get('title') or cmp.scenario}\n"]
    if s.get("description"):
        lines.append(f"{' '.join(str(s['description']).split())}\n")
    pol_desc = ", ".join(p["label"] for p in s["policies"])
    lines.append(
        f"- Settings: {s['devices']} devices, {len(s['servers'])} servers; {s['duration_s']:g} s "
        f"simulated per run (warm-up {s['warmup_s']:g} s); seeds "
        f"{seeds[0]}..{seeds[-1]} ({len(seeds)}); overrides {s['overrides'] or 'none'}."
    )
    lines.append(f"- Policies: {pol_desc}. Reference for the paired table: {s['reference']}.")
    rl = s.get("rl")
    if rl:
        if rl.get("trained_here"):
            lines.append(
                f"- RL: MaskablePPO trained on this scenario for "
                f"{rl.get('trained_steps', rl['steps'])} "
                f"decisions (budget {rl['steps']}, stopping once the learning curve is flat; "
                f"seed {rl['seed']}, runs of {rl['train_duration_s']:g} s whose seeds are drawn "
                "apart "
                f"from the evaluation seeds), model `{Path(rl['model']).name}` (digest "
                f"{rl['digest']}); "
                + (
                    "a model of its own trained at each varied point."
                    if rl.get("per_point")
                    else "the same model at every varied point and mode."
                )
            )
        else:
            lines.append(
                f"- RL: model `{rl['model']}` (trained on {rl.get('scenario') or '?'}; digest "
                f"{rl['digest']}), the same model at every varied point and mode."
            )
    if s.get("vary"):
        lines.append(
            "- Varied one at a time (other fields as above): "
            + "; ".join(f"`{k}` in {v}" for k, v in s["vary"].items())
            + f", on seeds {s['vary_seeds']}."
        )
    lines.append(f"- {s['runs']} runs ({s['executor']}), {s['wall_s']:.0f} s wall.")
    for n in cmp.notes:
        lines.append(f"- Note: {n}")
    lines.append("")
    warn = seed_warning(len(seeds))
    if warn:
        lines.append(warn + "\n")
    lines.append(f"{h}# Latency, misses, stability, decision time, energy\n")
    lines.append(to_markdown(compact_table(cmp.table, s["ci"])) + "\n")
    if not cmp.paired.empty:
        lines.append(f"{h}# Paired against {cmp.reference} (same seeds, so the same tasks and channels)\n")
        lines.append(to_markdown(compact_paired(cmp.paired, s["ci"])) + "\n")
    contrasts = getattr(cmp, "contrasts", None)
    if contrasts is not None and not contrasts.empty:
        lines.append(f"{h}# Where the hybrid's gain comes from (paired, mean latency)\n")
        lines.append("Gain = latency of b minus latency of a, seed by seed; positive means a is faster.\n")
        shown = contrasts.assign(
            **{
                f"gain (s) [{s['ci']:.0%} CI]": [
                    _ci(r.gain_s, r.gain_s_lo, r.gain_s_hi) for r in contrasts.itertuples()
                ]
            }
        )
        lines.append(
            to_markdown(
                shown[
                    [
                        "contrast",
                        "a",
                        "b",
                        f"gain (s) [{s['ci']:.0%} CI]",
                        "a_better_seeds",
                        "n_seeds",
                        "verdict",
                    ]
                ]
            )
            + "\n"
        )
    for key, st in cmp.vary.items():
        from mecsim.analysis.labels import axis_label

        lines.append(f"{h}# Mean latency (s) against {axis_label(key)} (`{key}`)\n")
        piv = st.pivot(index="policy", columns=key, values="mean_s")
        piv = piv.reindex([p for p in cmp.table["policy"] if p in piv.index])
        piv.columns = [
            f"{key.rsplit('.', 1)[-1]}={c:g}" if isinstance(c, int | float) else str(c) for c in piv.columns
        ]
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
    lines.append(
        f"Tables: `{pref}comparison.csv`, `{pref}paired.csv`"
        + "".join(f", `{pref}vary_{_safe(k)}.csv`" for k in cmp.vary)
        + ".\n"
    )
    return "\n".join(lines) + "\n"


def _safe(key: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in key)
