"""The figures of a comparison (written by :func:`mecsim.study.comparison.compare`): paired
differences against the reference, censored latency CDFs with a band across seeds, the stage
breakdown and the varied-parameter curves. Matplotlib is imported only here, when figures are
drawn (the ``plots`` extra)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from mecsim.analysis.report import _safe

__all__ = ["comparison_figures"]


def comparison_figures(
    tasks: pd.DataFrame,
    summ: pd.DataFrame,
    vary_stats: Mapping[str, pd.DataFrame],
    out: Path,
    order: Sequence[str],
    reference: str,
    heading: str,
    unstable: set[str],
    ci: float = 0.95,
) -> list[Path]:
    """The figures of a comparison (PNG and PDF): paired differences against the reference,
    the censored latency CDF with its band, where the latency goes, the spread of seed means of
    the stable policies, and each statistic against each varied field."""
    from mecsim.analysis import plots
    from mecsim.analysis.labels import axis_label

    files: list[Path] = []
    rank = {p: k for k, p in enumerate(order)}
    # Categorical policy in the given order: the figures' groups follow it.
    cat = pd.CategoricalDtype(
        sorted(set(tasks["policy"].astype(str)), key=lambda p: rank.get(p, 99)), ordered=True
    )
    ts = tasks.assign(policy=tasks["policy"].astype(str).astype(cat))
    s = summ.assign(policy=summ["policy"].astype(str).astype(cat))
    stable = s[~s["policy"].astype(str).isin(unstable)]
    left_out = f"; left out as unstable: {', '.join(sorted(unstable))}" if unstable else ""
    makers = [
        (
            "paired",
            lambda p: plots.paired_figure(
                s,
                reference,
                order=list(order),
                unstable=unstable,
                ci=ci,
                title=f"mean latency against {reference}\n{heading}",
                save=p,
            ),
        ),
        (
            "latency_cdf",
            lambda p: plots.latency_cdf(
                ts,
                by="policy",
                log_x=True,
                save=p,
                title=(f"latency CDF, dropped and unfinished censored (band: {ci:.0%} CI)\n{heading}"),
            ),
        ),
        (
            "breakdown",
            lambda p: plots.breakdown_bars(
                ts,
                by="policy",
                save=p,
                title=(
                    f"where the latency goes\n{heading}"
                    + (
                        f"; unstable, means grow with run length: {', '.join(sorted(unstable))}"
                        if unstable
                        else ""
                    )
                ),
            ),
        ),
    ]
    if not stable.empty:
        makers.append(
            (
                "seed_spread",
                lambda p: plots.seed_spread(
                    stable.assign(policy=stable["policy"].cat.remove_unused_categories()),
                    by="policy",
                    save=p,
                    title=f"mean latency per seed\n{heading}{left_out}",
                ),
            )
        )
    for name, make in makers:
        fig = make(out / name)
        plots.close(fig)
        files += [out / f"{name}.png", out / f"{name}.pdf"]
    for key, st in vary_stats.items():
        stem = out / f"vs_{_safe(key)}"
        seeds = int(st["n_seeds"].max()) if "n_seeds" in st.columns and len(st) else 0
        fig = plots.vary_figure(
            st,
            key,
            save=stem,
            title=(
                f"mean latency against {axis_label(key)}\n{heading.split(', seeds')[0]}, "
                f"{seeds} seeds per point"
            ),
        )
        plots.close(fig)
        files += [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    return files
