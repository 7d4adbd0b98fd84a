"""The ``mecsim`` command line.

Every error mecsim raises on purpose (bad scenario, unknown policy, ...) is printed as one line
on stderr with exit code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from mecsim.cli_common import _guard, _parse_assignments
from mecsim.errors import MecsimError, ScenarioError


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}{unit}"
    return f"{v}{unit}"


def summary_table(s: dict[str, Any]) -> str:
    """A short human-readable summary of a run."""
    rows = [
        ("scenario", f"{s['scenario']} (seed {s['seed']}, policy {s['policy']})"),
        (
            "tasks",
            f"{s['tasks_generated']} generated: {s['tasks_completed']} completed, "
            f"{s['tasks_dropped']} dropped, {s['tasks_in_flight']} in flight at the end",
        ),
        (
            "latency (s)",
            f"mean {_fmt(s['latency_mean_s'])}  p50 {_fmt(s['latency_p50_s'])}  "
            f"p95 {_fmt(s['latency_p95_s'])}  p99 {_fmt(s['latency_p99_s'])}  "
            f"(n={s['latency_n']}, {s['latency_basis']})",
        ),
        ("deadline miss rate", _fmt(s["deadline_miss_rate"])),
        ("throughput", _fmt(s["throughput_per_s"], " tasks/s")),
        ("utilisation", "  ".join(f"{k} {v:.1%}" for k, v in s["utilisation"].items())),
        ("decision time", f"{_fmt(s['decision_wall_s_total'])} s wall over {s['epochs']} epochs"),
        ("run time", f"{_fmt(s['run_wall_s'])} s wall"),
    ]
    if "mean_batch_size" in s:  # runs with the GPU-server model (batching, residency, adapters)
        cold = s.get("cold_start_rate")
        rows.insert(
            -2,
            (
                "GPU model",
                f"cold starts {'-' if cold is None else f'{cold:.1%}'}  mean batch "
                f"{_fmt(s['mean_batch_size'])} over {s['batches']} batches"
                + (f"  {s['loads']} weight loads" if "loads" in s else ""),
            ),
        )
    w = max(len(r[0]) for r in rows)
    return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mecsim")
def main() -> None:
    """mecsim: simulate AIGC offloading in mobile edge computing networks."""


@main.command()
@click.argument("scenario")
@click.option(
    "--policy",
    "-p",
    default=None,
    help="Registered policy or package.module:Object (default: the scenario's).",
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="Policy parameter (repeatable), e.g. --param solver=tabu.",
)
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Run seed (default: the scenario's).")
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Simulated seconds (overrides duration_s).",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="FIELD=VALUE",
    help="Scenario override (repeatable), e.g. --set radio.bandwidth_hz=10e6.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(),
    default=None,
    help="Write tasks/epochs/servers Parquet, summary.json and scenario.yaml here.",
)
@click.option(
    "--stream",
    is_flag=True,
    help="Write the tables to --out as the run goes, so memory stays flat on long runs (needs --out).",
)
@click.option(
    "--vs",
    "vs",
    default=None,
    metavar="P1,P2,...",
    help="Also run these policies on the same tasks and channels (same seed), show what "
    "the main policy decided and compare them task by task, e.g. --vs greedy,least-loaded.",
)
@click.option(
    "--progress/--no-progress", default=None, help="Progress bar (default: on when stderr is a terminal)."
)
@_guard
def run(
    scenario: str,
    policy: str | None,
    params: tuple[str, ...],
    seed: int | None,
    duration: float | None,
    sets: tuple[str, ...],
    out_dir: str | None,
    stream: bool,
    vs: str | None,
    progress: bool | None,
) -> None:
    """Run SCENARIO (a registered name or a YAML file) and print a summary.

    ``--seed N`` and ``--set seed=N`` both set the run seed (``--seed`` wins when both are given).
    The scenario, its trace files and ``--out`` are checked before anything is simulated. With
    ``--vs``, the other policies run after the main one (``--param`` applies to the main one only;
    ``--out`` holds the main run)."""
    from mecsim.api import simulate
    from mecsim.arrivals import check_traces
    from mecsim.cli_common import check_out_dir
    from mecsim.scenario import load_scenario

    if stream and not out_dir:
        raise MecsimError("--stream needs --out DIR")
    overrides = _parse_assignments(sets, "--set")
    if duration is not None:
        overrides["duration_s"] = duration
    pparams = _parse_assignments(params, "--param") if params else None
    if progress is None:
        progress = sys.stderr.isatty()
    sc = load_scenario(scenario, **overrides)  # --set seed=N lands in the scenario's seed
    check_traces(sc)
    others = [p.strip() for p in vs.split(",") if p.strip()] if vs is not None else []
    if vs is not None and not others:
        raise MecsimError("--vs: name at least one policy, e.g. --vs greedy")
    if others:
        from mecsim.policies import make_policy

        for name in others:  # unknown names fail now, before anything is simulated
            make_policy(name)
    if out_dir:
        check_out_dir(out_dir)
    try:
        res = simulate(
            sc,
            policy=policy,
            seed=seed,
            policy_params=pparams,
            progress=progress,
            stream_to=out_dir if stream else None,
        )
    except (MecsimError, KeyboardInterrupt) as exc:
        partial = getattr(exc, "result", None)
        if out_dir and partial is not None:
            path = partial.save(out_dir)
            click.echo(
                f"mecsim: the run stopped early; wrote what was simulated (complete: false) to {path}",
                err=True,
            )
        raise
    click.echo(summary_table(res.summary))
    if out_dir:
        path = res.save(out_dir)
        click.echo(f"wrote {path}/{{tasks,epochs,servers}}.parquet, summary.json, scenario.yaml")
    if others:
        from mecsim.glance import comparison_text, decisions_text

        click.echo("")
        click.echo(decisions_text(res))
        runs = [res] + [simulate(sc, policy=name, seed=seed, progress=progress) for name in others]
        click.echo("")
        click.echo(comparison_text(runs))


@main.command()
@click.argument("files", nargs=-1, required=True)
@_guard
def validate(files: tuple[str, ...]) -> None:
    """Validate scenario FILES (or registered names) and the trace files they name; exit 2 at the
    first invalid one."""
    from pathlib import Path

    from mecsim.arrivals import check_traces
    from mecsim.scenario import load_scenario

    for f in files:
        try:
            sc = load_scenario(f)
            rows = check_traces(sc)
        except ScenarioError as exc:
            if f in str(exc) or str(Path(f)) in str(exc):  # the message names the file already
                raise
            raise ScenarioError(f"{f}: {exc}") from None
        trace = f", {rows} trace rows" if rows else ""
        click.echo(
            f"{f}: ok ({sc.name}: {sc.n_devices} devices, {len(sc.servers)} servers, "
            f"{sc.duration_s:g} s{trace})"
        )


@main.command(name="list")
@_guard
def list_() -> None:
    """List the registered scenarios, policies and solvers."""
    from mecsim.registry import POLICIES, SOLVERS  # built-in names are listed without importing them
    from mecsim.scenario import data_dir, registered_scenarios

    click.echo("scenarios:")
    root = data_dir("scenarios")
    for name, path in registered_scenarios().items():
        rel = path.relative_to(root) if path.is_relative_to(root) else path
        click.echo(f"  {name:<20} {rel}")
    click.echo("policies:")
    for name, doc in POLICIES.describe().items():
        click.echo(f"  {name:<20} {doc}")
    click.echo("solvers:")
    for name, doc in SOLVERS.describe().items():
        click.echo(f"  {name:<20} {doc}")


def _register_subcommands() -> None:
    """Commands that live in their own modules (each imports its heavy parts lazily)."""
    from mecsim.compare_cli import compare, reproduce, train_rl
    from mecsim.sweep_cli import report, sweep

    for cmd in (sweep, report, compare, train_rl, reproduce):
        main.add_command(cmd)


_register_subcommands()

if __name__ == "__main__":  # pragma: no cover
    main()
