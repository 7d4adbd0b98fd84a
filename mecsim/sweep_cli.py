"""The ``mecsim sweep`` and ``mecsim report`` commands.

Both are standalone click commands, registered on the main group by ``mecsim.cli``; until then
(or without the main group) ``python -m mecsim.sweep_cli sweep|report ...`` runs them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mecsim.cli_common import _guard, executor_options


@click.command()
@click.argument("sweep_file")
@executor_options
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Output folder (default: runs/<sweep name>).",
)
@click.option(
    "--max-runs",
    type=click.IntRange(min=0),
    default=None,
    help="Run at most N of the pending runs, then stop (a later call resumes).",
)
@click.option(
    "--progress/--no-progress", default=None, help="Progress bar (default: on when stderr is a terminal)."
)
@_guard
def sweep(
    sweep_file: str,
    scheduler: str | None,
    workers: int | None,
    out_dir: str | None,
    max_runs: int | None,
    progress: bool | None,
) -> None:
    """Run the sweep in SWEEP_FILE (on Dask); finished runs of an earlier call are skipped.

    Each table is one Parquet dataset, OUT/<table>/run_id=<id>/ (tasks, epochs, servers, faults);
    each run's summary and scenario are in OUT/runs/run_id=<id>/, the catalogue in
    OUT/catalogue.parquet (and .csv). --workers 1 runs serially in this process.
    Exit code 1 when some runs failed (their one-line errors are printed and in the catalogue).
    """
    from mecsim.study import DONE, FAILED, load_sweep_spec, run_sweep

    spec = load_sweep_spec(sweep_file)
    out = Path(out_dir) if out_dir else Path("runs") / spec.name
    if progress is None:
        progress = sys.stderr.isatty()
    cat = run_sweep(spec, out, scheduler=scheduler, workers=workers, progress=progress, max_runs=max_runs)
    n = len(cat)
    done = int((cat["status"] == DONE).sum())
    failed = cat[cat["status"] == FAILED]
    pending = n - done - len(failed)
    click.echo(f"sweep {spec.name}: {n} runs: {done} done, {len(failed)} failed, {pending} pending")
    click.echo(f"catalogue: {out / 'catalogue.parquet'}")
    for row in failed.head(20).itertuples(index=False):
        click.echo(
            f"failed {row.run_id} ({row.policy}, seed {row.seed}, overrides {row.overrides}): {row.error}",
            err=True,
        )
    if len(failed) > 20:
        click.echo(f"... and {len(failed) - 20} more failed runs (see the catalogue)", err=True)
    if len(failed):
        sys.exit(1)


@click.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option(
    "--by",
    default=None,
    metavar="COLS",
    help="Comma-separated grouping columns (default: policy and the overrides that vary).",
)
@click.option(
    "--ci",
    type=click.FloatRange(min=0, max=1, min_open=True, max_open=True),
    default=0.95,
    show_default=True,
    help="Confidence level of the latency intervals across seeds.",
)
@click.option(
    "--dt",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Grid step of the queue plot in seconds (default: duration / 200).",
)
@click.option("--figures/--no-figures", default=True, show_default=True, help="Write the figures.")
@_guard
def report(directory: str, by: str | None, ci: float, dt: float | None, figures: bool) -> None:
    """Write tables (CSV, Markdown) and figures (PNG, PDF) for a finished sweep or a run folder
    into DIRECTORY/report/, and print the latency table."""
    from mecsim.analysis import to_markdown, write_report

    keys = [k.strip() for k in by.split(",") if k.strip()] if by else None
    rep = write_report(directory, by=keys, ci=ci, dt=dt, figures=figures)
    click.echo(f"latency by {', '.join(rep['by'])} (s; {ci:.0%} intervals across seeds):")
    click.echo(to_markdown(rep["latency"]))
    if rep["figures_skipped"]:
        click.echo(f"figures skipped: {rep['figures_skipped']}", err=True)
    click.echo(f"wrote {len(rep['files'])} files to {Path(directory) / 'report'}")


@click.group()
def _standalone() -> None:
    """mecsim sweep and report (standalone entry point)."""


_standalone.add_command(sweep)
_standalone.add_command(report)

if __name__ == "__main__":  # pragma: no cover
    _standalone()
