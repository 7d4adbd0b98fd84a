"""Figures for latency studies: CDFs, per-seed spread, latency breakdown, queues over time.

Every function returns a :class:`matplotlib.figure.Figure` and, with ``save="path/stem"``, also
writes ``stem.png`` and ``stem.pdf``. Figures are built on matplotlib's Agg canvas directly,
without pyplot, so nothing here changes the backend of a notebook or a GUI session and no
window ever opens. matplotlib is imported only when a figure is made (the ``plots`` extra).

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

from mecsim.errors import MissingExtraError

__all__ = ["latency_cdf", "seed_spread", "breakdown_bars", "queue_plot", "save_figure", "close",
           "group_label"]


def _figure(width: float = 6.4, height: float = 4.0) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingExtraError("matplotlib", "plots") from None
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)  # attaches itself: savefig works without pyplot
    return fig


def save_figure(fig: Any, path: str | os.PathLike[str], formats: Sequence[str] = ("png", "pdf"),
                dpi: int = 150) -> list[Path]:
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


def latency_cdf(tasks: pd.DataFrame, by: str | Iterable[str] | None = ("policy",),
                warmup_s: float | None = None, log_x: bool = False,
                save: str | os.PathLike[str] | None = None) -> Any:
    """Empirical CDF of the latency per group, pooled over seeds (the completed tasks that
    arrived after the warm-up, as in :func:`mecsim.analysis.latency_stats`)."""
    from mecsim.analysis import _task_masks

    keys = _keys(by)
    used = _task_masks(tasks, warmup_s)["used"]
    df = tasks.loc[used, [*keys, "latency"]]
    fig = _figure()
    ax = fig.add_subplot()
    for label, g in _groups(df, keys):
        x = np.sort(g["latency"].to_numpy(float))
        if len(x) == 0:
            continue
        y = np.arange(1, len(x) + 1) / len(x)
        ax.step(x, y, where="post", label=f"{label} (n={len(x)})")
    ax.set_xlabel("latency (s)")
    ax.set_ylabel("fraction of tasks")
    ax.set_ylim(0, 1.01)
    if log_x:
        ax.set_xscale("log")
    ax.grid(alpha=0.3)
    if keys:
        ax.legend(fontsize="small")
    ax.set_title("latency CDF")
    return _finish(fig, save)


def seed_spread(data: pd.DataFrame, by: str | Iterable[str] | None = ("policy",),
                stat: str = "mean_s", save: str | os.PathLike[str] | None = None) -> Any:
    """One statistic per seed, as a box per group with the seeds drawn over it.

    Args:
        data: a tasks table (the per-seed statistic is computed) or a summaries table.
        by: the grouping columns.
        stat: ``mean_s``, ``p50_s``, ``p95_s``, ``p99_s`` or ``miss_rate``.
        save: path stem to write PNG and PDF.
    """
    from mecsim.analysis import _per_seed_from_summaries, per_seed_stats

    keys = _keys(by)
    if "latency" in data.columns and "status" in data.columns:
        per = per_seed_stats(data, keys)
    else:
        per = _per_seed_from_summaries(data, keys)
    if stat not in per.columns:
        raise ValueError(f"stat must be one of mean_s, p50_s, p95_s, p99_s, miss_rate; got {stat!r}")
    groups = _groups(per, keys)
    # Horizontal boxes: group labels can be long, and they read best on the left.
    fig = _figure(6.4, max(2.5, 0.45 * len(groups) + 1.5))
    ax = fig.add_subplot()
    values = [g[stat].dropna().to_numpy(float) for _, g in groups]
    ax.boxplot(values, tick_labels=[lbl for lbl, _ in groups], showfliers=False,
               orientation="horizontal")
    for i, v in enumerate(values, start=1):
        # Spread the seeds evenly across the box: deterministic, no random jitter.
        off = np.linspace(-0.15, 0.15, len(v)) if len(v) > 1 else np.zeros(len(v))
        ax.plot(v, i + off, "o", alpha=0.7, markersize=4, color="black")
    ax.invert_yaxis()
    unit = "" if stat == "miss_rate" else " (s)"
    ax.set_xlabel(f"{stat.removesuffix('_s')} per seed{unit}")
    ax.set_title(f"{stat.removesuffix('_s')} latency across seeds (one dot per seed)" if unit else
                 "deadline-miss rate across seeds (one dot per seed)")
    ax.grid(alpha=0.3, axis="x")
    return _finish(fig, save)


def breakdown_bars(data: pd.DataFrame, by: str | Iterable[str] | None = ("policy",),
                   save: str | os.PathLike[str] | None = None) -> Any:
    """Mean latency per group as stacked bars of its stages (wait, upload, backhaul, queue,
    inference, return).

    Args:
        data: a tasks table, or the output of :func:`mecsim.analysis.mean_breakdown`.
        by: the grouping columns.
        save: path stem to write PNG and PDF.
    """
    from mecsim.analysis import STAGES, mean_breakdown

    keys = _keys(by)
    means = data if set(STAGES) <= set(data.columns) and "t_arrival" not in data.columns else (
        mean_breakdown(data, keys))
    labels = [lbl for lbl, _ in _groups(means, keys)] if keys else ["all"]
    fig = _figure(6.4, max(2.5, 0.5 * len(labels) + 1.5))
    ax = fig.add_subplot()
    left = np.zeros(len(means))
    y = np.arange(len(means))
    for stage in STAGES:
        w = means[stage].fillna(0.0).to_numpy(float)
        ax.barh(y, w, left=left, label=stage)
        left += w
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel("mean time (s)")
    ax.set_title("where the latency goes")
    fig.legend(fontsize="small", ncols=len(STAGES), loc="outside lower center")
    ax.grid(alpha=0.3, axis="x")
    return _finish(fig, save)


def queue_plot(ts: pd.DataFrame, value: str = "queue_len", hue: str = "server",
               title: str | None = None, save: str | os.PathLike[str] | None = None) -> Any:
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
    fig = _figure(7.0, 3.6 + 0.22 * -(-n_lines // ncols))
    ax = fig.add_subplot()
    for label, g in ts.groupby(hue, observed=True, sort=True):
        ax.step(g["t"].to_numpy(float), g[value].to_numpy(float), where="post", label=str(label),
                linewidth=1)
    ax.set_xlabel("time (s)")
    ax.set_ylabel(value.replace("_", " "))
    ax.set_title(title or value.replace("_", " "))
    ax.grid(alpha=0.3)
    fig.legend(fontsize="small", loc="outside lower center", ncols=ncols)
    return _finish(fig, save)
