"""Figures for latency studies, all made by ONE helper (:func:`figure`).

Every function returns a :class:`matplotlib.figure.Figure` and, with ``save="path/stem"``, also
writes ``stem.png`` and ``stem.pdf``. Figures are built on matplotlib's Agg canvas directly,
without pyplot, so nothing here changes the backend of a notebook or a GUI session and no window
ever opens. matplotlib is imported only when a figure is made (the ``plots`` extra). This module
uses :mod:`mecsim.analysis.stats`; nothing there imports it.

* :func:`paired_figure`: the main comparison figure: each policy minus a reference, one dot per
  seed and the mean with its t-interval (common random numbers make these tight);
* :func:`latency_cdf`: the CDF with dropped and unfinished tasks censored (curves end below 1)
  and a band across seeds;
* :func:`breakdown_bars`: where the latency goes, in seconds and per stage on a log scale (so the
  millisecond stages show);
* :func:`seed_spread`, :func:`vary_figure`, :func:`queue_plot`.

Axis labels use :mod:`mecsim.analysis.labels`; log axes print plain numbers (0.1, 1, 10).

Example:
    >>> import mecsim
    >>> from mecsim import plots
    >>> res = mecsim.simulate("smoke-v1", policy="greedy", seed=1, duration_s=30)
    >>> fig = plots.latency_cdf(res.tasks.assign(policy="greedy"))
    >>> fig.axes[0].get_xlabel()
    'latency (s)'
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mecsim.analysis.labels import axis_label, stat_label
from mecsim.analysis.stats import (
    STAGES,
    _per_seed_from_summaries,
    _task_masks,
    censored_cdf,
    mean_breakdown,
    per_seed_stats,
    t_interval,
)
from mecsim.errors import MissingExtraError

__all__ = [
    "figure",
    "latency_cdf",
    "seed_spread",
    "breakdown_bars",
    "queue_plot",
    "paired_figure",
    "vary_figure",
    "save_figure",
    "close",
    "group_label",
    "log_axis",
]

_MARKERS = "os^DvPXh"
_STYLES = ("-", "--", ":", "-.")


def figure(width: float = 6.4, height: float = 4.0, ncols: int = 1) -> Any:
    """A figure on the Agg canvas (no pyplot) with ``ncols`` axes side by side."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingExtraError("matplotlib", "plots") from None
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)  # attaches itself: savefig works without pyplot
    for k in range(ncols):
        fig.add_subplot(1, ncols, k + 1)
    return fig


def log_axis(ax: Any, which: str = "x") -> None:
    """A log scale whose major ticks read as plain numbers (0.01, 1, 100) and whose minor ticks
    carry no labels (matplotlib would print ``4x10^1`` on a short axis)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    lo, hi = ax.get_xlim() if which == "x" else ax.get_ylim()
    decades = np.log10(max(hi, 1e-300) / max(lo, 1e-300)) if lo > 0 and hi > 0 else 1.0
    # 1-2-5 ticks on a short axis; powers of ten only when it spans many decades
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades <= 2.5 else (1.0,)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def save_figure(
    fig: Any, path: str | os.PathLike[str], formats: Sequence[str] = ("png", "pdf"), dpi: int = 150
) -> list[Path]:
    """Save ``fig`` as ``path.<format>`` for each format (``path`` without a suffix, or its
    suffix is replaced); the folder is created. Returns the files written."""
    stem = Path(path)
    if stem.suffix.lower() in {f".{f}" for f in formats}:
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for fmt in formats:
        p = stem.parent / f"{stem.name}.{fmt}"
        fig.savefig(p, dpi=dpi, format=fmt)
        out.append(p)
    return out


def close(fig: Any) -> None:
    """Release a figure's memory (figures made here are not tracked by pyplot)."""
    fig.clear()


def _keys(by: str | Iterable[str] | None) -> list[str]:
    if by is None:
        return []
    return [by] if isinstance(by, str) else list(by)


def _fmt_value(v: Any) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
        return "default"  # an override column is empty where the run kept the default
    if isinstance(v, float | np.floating):
        return f"{v:g}"
    return str(v)


def group_label(keys: Sequence[str], values: Sequence[Any]) -> str:
    """A short legend label for a group: ``"greedy"`` for one key, else
    ``"greedy, bandwidth_hz=5e+06"`` (dotted keys shortened to their last part)."""
    if len(keys) == 1:
        return _fmt_value(values[0])
    parts = []
    for k, v in zip(keys, values, strict=True):
        parts.append(_fmt_value(v) if k == "policy" else f"{k.rsplit('.', 1)[-1]}={_fmt_value(v)}")
    return ", ".join(parts)


def _groups(df: pd.DataFrame, keys: list[str]) -> list[tuple[str, pd.DataFrame]]:
    if not keys:
        return [("all", df)]
    out = []
    for key, g in df.groupby(keys, observed=True, dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        out.append((group_label(keys, key), g))
    return out


def _finish(fig: Any, save: str | os.PathLike[str] | None) -> Any:
    if save is not None:
        save_figure(fig, save)
    return fig


def latency_cdf(
    tasks: pd.DataFrame,
    by: str | Iterable[str] | None = ("policy",),
    warmup_s: float | None = None,
    log_x: bool = False,
    censored: bool = True,
    title: str | None = None,
    save: str | os.PathLike[str] | None = None,
) -> Any:
    """The latency CDF per group.

    With ``censored`` (the default) the curve is :func:`~mecsim.analysis.stats.censored_cdf`:
    every task that arrived after the warm-up counts, a dropped or unfinished one never
    completes, so the curve ends below 1; the line is the mean over seeds and the band its
    t-interval (with two seeds or more). Without it, the ECDF of the completed tasks pooled over
    seeds (the old view, which flatters policies that drop work).
    """
    keys = _keys(by)
    fig = figure()
    ax = fig.axes[0]
    if censored:
        data = tasks if "seed" in tasks.columns else tasks.assign(seed=0)
        if warmup_s is not None:
            data = data.assign(warmup_s=warmup_s)
        cdf = censored_cdf(data, keys)
        for k, (label, g) in enumerate(_groups(cdf, keys)):
            x, y = g["x"].to_numpy(float), g["F"].to_numpy(float)
            n, cens = int(g["n_seeds"].iloc[0]), float(g["censored"].iloc[0])
            (line,) = ax.step(
                x,
                y,
                where="post",
                linestyle=_STYLES[k % len(_STYLES)],
                label=f"{label} ({cens:.0%} dropped or unfinished)",
            )
            if n > 1:
                ax.fill_between(
                    x,
                    np.clip(g["F_lo"], 0, 1),
                    np.clip(g["F_hi"], 0, 1),
                    step="post",
                    alpha=0.2,
                    color=line.get_color(),
                    linewidth=0,
                )
        ax.set_ylabel("fraction of tasks done within x")
    else:
        used = _task_masks(tasks, warmup_s)["used"]
        df = tasks.loc[used, [*keys, "latency"]]
        for label, g in _groups(df, keys):
            x = np.sort(g["latency"].to_numpy(float))
            if len(x):
                ax.step(x, np.arange(1, len(x) + 1) / len(x), where="post", label=f"{label} (n={len(x)})")
        ax.set_ylabel("fraction of completed tasks")
    ax.set_xlabel("latency (s)")
    ax.set_ylim(0, 1.01)
    if log_x:
        log_axis(ax, "x")
    ax.grid(alpha=0.3)
    if keys:
        ax.legend(fontsize="small")
    band = " (mean over seeds, band: CI)" if censored else ""
    ax.set_title(title or f"latency CDF{band}", fontsize="medium")
    return _finish(fig, save)


def seed_spread(
    data: pd.DataFrame,
    by: str | Iterable[str] | None = ("policy",),
    stat: str = "mean_s",
    title: str | None = None,
    log: bool | None = None,
    save: str | os.PathLike[str] | None = None,
) -> Any:
    """One statistic per seed, as a box per group with the seeds drawn over it.

    Args:
        data: a tasks table (the per-seed statistic is computed) or a summaries table.
        by: the grouping columns.
        stat: ``mean_s``, ``p50_s``, ``p95_s``, ``p99_s`` or ``miss_rate``.
        title: the title.
        log: a log axis (default: when the values span more than a factor of 20).
        save: path stem to write PNG and PDF.
    """
    keys = _keys(by)
    per = (
        per_seed_stats(data, keys)
        if "latency" in data.columns and "status" in data.columns
        else (_per_seed_from_summaries(data, keys))
    )
    if stat not in per.columns:
        raise ValueError(f"stat must be one of mean_s, p50_s, p95_s, p99_s, miss_rate; got {stat!r}")
    groups = _groups(per, keys)
    # Horizontal boxes: group labels can be long, and they read best on the left.
    fig = figure(6.4, max(2.5, 0.45 * len(groups) + 1.5))
    ax = fig.axes[0]
    values = [g[stat].dropna().to_numpy(float) for _, g in groups]
    ax.boxplot(values, tick_labels=[lbl for lbl, _ in groups], showfliers=False, orientation="horizontal")
    for i, v in enumerate(values, start=1):
        # Spread the seeds evenly across the box: deterministic, no random jitter.
        off = np.linspace(-0.15, 0.15, len(v)) if len(v) > 1 else np.zeros(len(v))
        ax.plot(v, i + off, "o", alpha=0.7, markersize=4, color="black")
    ax.invert_yaxis()
    allv = np.concatenate(values) if values else np.array([])
    allv = allv[allv > 0]
    if log or (log is None and len(allv) and allv.max() / allv.min() > 20):
        log_axis(ax, "x")
    ax.set_xlabel(f"{stat_label(stat)} per seed")
    ax.set_title(title or f"{stat_label(stat)} across seeds (one dot per seed)", fontsize="medium")
    ax.grid(alpha=0.3, axis="x")
    return _finish(fig, save)


def breakdown_bars(
    data: pd.DataFrame,
    by: str | Iterable[str] | None = ("policy",),
    title: str | None = None,
    save: str | os.PathLike[str] | None = None,
) -> Any:
    """Where the latency goes: left, the mean latency per group as stacked bars of its stages
    (wait, upload, backhaul, queue, inference, return) in seconds; right, each stage's mean on a
    log scale, so that stages of milliseconds (upload, backhaul, return) are visible next to
    stages of seconds.

    Args:
        data: a tasks table, or the output of :func:`mecsim.analysis.mean_breakdown`.
        by: the grouping columns.
        title: the title.
        save: path stem to write PNG and PDF.
    """
    keys = _keys(by)
    means = (
        data
        if set(STAGES) <= set(data.columns) and "t_arrival" not in data.columns
        else (mean_breakdown(data, keys))
    )
    labels = [lbl for lbl, _ in _groups(means, keys)] if keys else ["all"]
    fig = figure(10.0, max(2.8, 0.5 * len(labels) + 1.8), ncols=2)
    ax, ax2 = fig.axes
    left = np.zeros(len(means))
    y = np.arange(len(means))
    colors = {}
    for stage in STAGES:
        w = means[stage].fillna(0.0).to_numpy(float)
        bars = ax.barh(y, w, left=left, label=stage)
        colors[stage] = bars.patches[0].get_facecolor() if bars.patches else None
        left += w
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel("mean time (s), stacked")
    ax.grid(alpha=0.3, axis="x")
    h = 0.8 / len(STAGES)
    for k, stage in enumerate(STAGES):
        w = 1e3 * means[stage].to_numpy(float)
        ok = np.isfinite(w) & (w > 0)
        ax2.barh(y[ok] - 0.4 + (k + 0.5) * h, w[ok], height=h, color=colors[stage])
    ax2.set_yticks(y, [""] * len(y))
    ax2.invert_yaxis()
    log_axis(ax2, "x")
    ax2.set_xlabel("mean time per stage (ms, log scale)")
    ax2.grid(alpha=0.3, axis="x")
    fig.suptitle(title or "where the latency goes", fontsize="medium")
    fig.legend(
        *ax.get_legend_handles_labels(), fontsize="small", ncols=len(STAGES), loc="outside lower center"
    )
    return _finish(fig, save)


def paired_figure(
    summ: pd.DataFrame,
    reference: str,
    stat: str = "latency_mean_s",
    ci: float = 0.95,
    order: Sequence[str] | None = None,
    unstable: Iterable[str] = (),
    title: str | None = None,
    save: str | os.PathLike[str] | None = None,
) -> Any:
    """The main comparison figure: each policy minus ``reference``, seed by seed.

    One dot per seed (the same seed means the same tasks and channels for every policy) and
    the mean difference with its t-interval; right of zero means the reference is better.
    Unstable policies (see :func:`mecsim.analysis.queues.stability`) have no mean, so they are
    not drawn: a note under the axes names them.
    """
    unstable = set(unstable)
    every = [p for p in (order or list(dict.fromkeys(summ["policy"].astype(str)))) if p != reference]
    pols = [p for p in every if p not in unstable]
    ref = summ[summ["policy"].astype(str) == reference].set_index("seed")[stat]
    fig = figure(6.4, max(2.5, 0.5 * len(pols) + 1.8))
    ax = fig.axes[0]
    first = True
    for i, pol in enumerate(pols):
        g = summ[summ["policy"].astype(str) == pol].set_index("seed")[stat]
        seeds = sorted(set(g.index) & set(ref.index))
        d = (pd.to_numeric(g.loc[seeds]) - pd.to_numeric(ref.loc[seeds])).to_numpy(float)
        d = d[np.isfinite(d)]
        if len(d) == 0:
            continue
        off = np.linspace(-0.18, 0.18, len(d)) if len(d) > 1 else np.zeros(1)
        ax.plot(d, i + off, "o", markersize=4, alpha=0.7, color="black", label="one seed" if first else None)
        mean, lo, hi, _ = t_interval(d, ci)
        if np.isfinite(lo):
            ax.errorbar(
                [mean],
                [i],
                xerr=[[mean - lo], [hi - mean]],
                fmt="D",
                color="C3",
                capsize=4,
                markersize=6,
                label=f"mean, {ci:.0%} CI" if first else None,
            )
        else:
            ax.plot([mean], [i], "D", color="C3", markersize=6, label="mean" if first else None)
        first = False
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(pols)), pols)
    ax.set_ylim(max(len(pols), 1) - 0.5, -0.5)
    name = stat_label(stat.removeprefix("latency_"))
    ax.set_xlabel(f"{name}: policy minus {reference} (positive: {reference} is better)")
    ax.set_title(title or f"paired differences against {reference}", fontsize="medium")
    ax.grid(alpha=0.3, axis="x")
    if not first:
        ax.legend(fontsize="small", loc="best")
    left_out = [p for p in every if p in unstable]
    if left_out:
        fig.text(
            0.01,
            0.005,
            f"not drawn, unstable (latency grows with run length): {', '.join(left_out)}",
            fontsize="small",
            ha="left",
            va="bottom",
        )
        fig.get_layout_engine().set(rect=(0, 0.05, 1, 0.95))
    return _finish(fig, save)


def vary_figure(
    stats: pd.DataFrame,
    key: str,
    value: str = "mean_s",
    title: str | None = None,
    save: str | os.PathLike[str] | None = None,
) -> Any:
    """A statistic against a varied field, one line per policy; the interval as error bars
    where there is one (two seeds or more), plain lines otherwise, so the legend shows what is
    drawn. The axes carry the field's name and unit (:func:`mecsim.analysis.labels.axis_label`).

    Args:
        stats: :func:`mecsim.analysis.latency_stats` output grouped by ``policy`` and ``key``.
        key: the column of the varied field's values.
        value: ``mean_s``, ``p95_s``, ``p99_s`` or ``miss_rate`` (with ``_lo``/``_hi``).
        title: the title (default: the statistic against the field).
        save: path stem to write PNG and PDF.
    """
    fig = figure()
    ax = fig.axes[0]
    vals: list[float] = []
    groups = list(stats.groupby("policy", sort=False, observed=True))
    xs_all = np.unique(pd.to_numeric(stats[key], errors="coerce").dropna().to_numpy(float))
    span = float(xs_all.max() - xs_all.min()) if len(xs_all) > 1 else 1.0
    for k, (pol, g) in enumerate(groups):
        g = g.sort_values(key)
        # A small sideways shift per policy: equal results stay visible, error bars do not overlap.
        shift = 0.012 * span * (k - (len(groups) - 1) / 2)
        x = pd.to_numeric(g[key], errors="coerce").to_numpy(float) + shift
        y = g[value].to_numpy(float)
        lo = g.get(f"{value}_lo", pd.Series(np.nan, index=g.index)).to_numpy(float)
        hi = g.get(f"{value}_hi", pd.Series(np.nan, index=g.index)).to_numpy(float)
        style = {
            "marker": _MARKERS[k % len(_MARKERS)],
            "linestyle": _STYLES[k % len(_STYLES)],
            "markersize": 5,
            "label": str(pol),
        }
        if np.isfinite(lo).any():
            err = np.vstack([np.where(np.isfinite(lo), y - lo, 0.0), np.where(np.isfinite(hi), hi - y, 0.0)])
            ax.errorbar(x, y, yerr=np.clip(err, 0.0, None), capsize=3, **style)
        else:
            ax.plot(x, y, **style)
        vals.extend(y[np.isfinite(y) & (y > 0)].tolist())
    if len(xs_all) <= 12:
        ax.set_xticks(xs_all, [f"{v:g}" for v in xs_all])
    if vals and max(vals) / max(min(vals), 1e-12) > 20:
        log_axis(ax, "y")
    ax.set_xlabel(axis_label(key))
    ax.set_ylabel(stat_label(value))
    ax.set_title(title or f"{stat_label(value)} against {axis_label(key)}", fontsize="medium")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _finish(fig, save)


def queue_plot(
    ts: pd.DataFrame,
    value: str = "queue_len",
    hue: str = "server",
    title: str | None = None,
    save: str | os.PathLike[str] | None = None,
) -> Any:
    """A level over time, one line per value of ``hue``.

    Args:
        ts: the output of :func:`mecsim.analysis.queue_timeseries` (or any frame with ``t``,
            ``value`` and ``hue`` columns).
        value: the column to draw (``queue_len``, ``busy_slots``, ``in_system``,
            ``utilisation``).
        hue: the column telling the lines apart.
        title: the title (default: the value).
        save: path stem to write PNG and PDF.
    """
    n_lines = int(ts[hue].nunique()) if len(ts) else 0
    ncols = 2 if n_lines > 3 else max(n_lines, 1)
    # The legend goes below the axes; the figure grows with it instead of squeezing the plot.
    fig = figure(7.0, 3.6 + 0.22 * -(-n_lines // ncols))
    ax = fig.axes[0]
    for label, g in ts.groupby(hue, observed=True, sort=True):
        ax.step(g["t"].to_numpy(float), g[value].to_numpy(float), where="post", label=str(label), linewidth=1)
    ax.set_xlabel("time (s)")
    ax.set_ylabel(value.replace("_", " ") + (" (tasks)" if value != "utilisation" else ""))
    ax.set_title(title or value.replace("_", " "), fontsize="medium")
    ax.grid(alpha=0.3)
    fig.legend(fontsize="small", loc="outside lower center", ncols=ncols)
    return _finish(fig, save)
