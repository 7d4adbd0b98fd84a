"""The ``mecsim compare``, ``mecsim train-rl`` and ``mecsim reproduce`` commands.

Standalone click commands, registered on the main group by ``mecsim.cli``
(``main.add_command(compare)``, ...); ``python -m mecsim.compare_cli compare|train-rl|reproduce``
runs them without it. Errors in the input (unknown policy, bad scenario, bad option) are one
line on stderr with exit code 2, as for every mecsim command.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from mecsim.cli_common import _guard, _parse_assignments, executor_options, rl_options


def _progress(flag: bool | None) -> bool:
    return sys.stderr.isatty() if flag is None else flag


def _print_comparison(cmp: Any) -> None:
    ci = cmp.settings.get("ci", 0.95)
    click.echo(
        f"\n{cmp.scenario}: {len(cmp.seeds)} seeds, {cmp.settings['duration_s']:g} s per run "
        f"(latency in s, {ci:.0%} intervals across seeds)"
    )
    click.echo(cmp.markdown())
    for note in cmp.notes:
        click.echo(f"note: {note}", err=True)


def _rl_models(items: tuple[str, ...]) -> tuple[str | None, dict[str, str]]:
    """``--rl-model PATH`` (any scenario) or ``--rl-model SCENARIO=PATH`` (repeatable)."""
    from mecsim.study import CompareError

    single, per = None, {}
    for item in items:
        name, sep, path = item.partition("=")
        if sep:
            if not name.strip() or not path.strip():
                raise CompareError(f"--rl-model {item!r} is not PATH or SCENARIO=PATH")
            per[name.strip()] = path.strip()
        elif single is None:
            single = item
        else:
            raise CompareError("give one --rl-model PATH, or one SCENARIO=PATH per scenario")
    return single, per


@click.command()
@click.argument("scenario")
@click.option(
    "--policies",
    "-p",
    default=None,
    metavar="P1,P2,...",
    help="Policies to compare, comma-separated: registered names, package.module:Object, "
    "and rl (the RL baseline). Default: qubo-sa,greedy,least-loaded,round-robin,random "
    "(a study file names its own).",
)
@click.option(
    "--seeds",
    type=click.IntRange(min=1),
    default=None,
    help="Seeds per policy: 0..K-1 (default 10, or the study's).",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Simulated seconds per run (overrides duration_s).",
)
@click.option("--warmup", type=click.FloatRange(min=0), default=None, help="Overrides warmup_s.")
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="FIELD=VALUE",
    help="Scenario override for every run (repeatable).",
)
@click.option(
    "--vary",
    multiple=True,
    metavar="FIELD=V1,V2,...",
    help="Also sweep one field over these values (repeatable, one field at a time), e.g. "
    "--vary devices.0.count=4,8,12 --vary devices.0.arrivals.rate_per_s=0.05,0.1.",
)
@click.option(
    "--vary-seeds",
    type=click.IntRange(min=1),
    default=None,
    help="Seeds per varied point (the first ones; default: all).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Output folder (default: runs/compare-<scenario>; a study: runs/<study name>).",
)
@executor_options
@rl_options(
    "[SCENARIO=]PATH",
    "Model of the rl policy (default: train one here).",
    "Training decisions when the rl model is trained here (default 20000).",
)
@click.option(
    "--reference", default=None, help="Policy the paired table compares against (default: the first)."
)
@click.option("--quick", is_flag=True, help="A study file: use its quick settings.")
@click.option("--figures/--no-figures", default=True, show_default=True, help="Write the figures.")
@click.option(
    "--progress/--no-progress", default=None, help="Progress bars (default: on when stderr is a terminal)."
)
@_guard
def compare(
    scenario: str,
    policies: str | None,
    seeds: int | None,
    duration: float | None,
    warmup: float | None,
    sets: tuple[str, ...],
    vary: tuple[str, ...],
    vary_seeds: int | None,
    out_dir: str | None,
    workers: int | None,
    scheduler: str | None,
    rl_model: tuple[str, ...],
    rl_steps: int | None,
    reference: str | None,
    quick: bool,
    figures: bool,
    progress: bool | None,
) -> None:
    """Compare policies on the same seeds of SCENARIO (a registered name or a YAML file), or run
    a study file (scenarios/studies/*.yaml); write tables, figures and report.md."""
    from mecsim.study import DEFAULT_POLICIES, DEFAULT_RL_STEPS, CompareError, is_study_file, run_study
    from mecsim.study import compare as run_compare

    single, per = _rl_models(rl_model)
    if is_study_file(scenario):
        ignored = [
            name
            for name, v in (
                ("--policies", policies),
                ("--duration", duration),
                ("--warmup", warmup),
                ("--set", sets),
                ("--vary", vary),
                ("--reference", reference),
            )
            if v
        ]
        if ignored:
            raise CompareError(f"{', '.join(ignored)}: a study file sets these itself; edit the file")
        if single is not None:
            raise CompareError("with a study file give --rl-model SCENARIO=PATH")
        from mecsim.study import load_study

        name = load_study(scenario)["name"]
        out = Path(out_dir) if out_dir else Path("runs") / name
        st = run_study(
            scenario,
            out,
            quick=quick,
            seeds=seeds,
            workers=workers,
            scheduler=scheduler,
            rl_models=per,
            rl_steps=rl_steps,
            figures=figures,
            progress=_progress(progress),
            command=f"mecsim compare {scenario}" + (" --quick" if quick else ""),
        )
        for cmp in st.comparisons:
            _print_comparison(cmp)
        click.echo(f"\nwrote {st.report}")
        _exit_on_failures(st.comparisons)
        return
    if quick:
        raise CompareError("--quick applies to study files only; use --duration and --seeds")
    if per:
        raise CompareError("--rl-model SCENARIO=PATH is for study files; give --rl-model PATH")
    overrides = _parse_assignments(sets, "--set")
    from mecsim.scenario import load_scenario

    sc = load_scenario(scenario, **overrides)
    out = Path(out_dir) if out_dir else Path("runs") / f"compare-{sc.name}"
    cmp = run_compare(
        scenario,
        policies or ",".join(DEFAULT_POLICIES),
        seeds=seeds or 10,
        out_dir=out,
        duration_s=duration,
        warmup_s=warmup,
        overrides=overrides,
        vary=list(vary),
        vary_seeds=vary_seeds,
        workers=workers,
        scheduler=scheduler,
        rl_model=single,
        rl_steps=rl_steps or DEFAULT_RL_STEPS,
        reference=reference,
        figures=figures,
        progress=_progress(progress),
    )
    _print_comparison(cmp)
    click.echo(f"\nwrote {out / 'report.md'} and {len(cmp.files)} files in {out}")
    _exit_on_failures([cmp])


def _exit_on_failures(comparisons: list[Any]) -> None:
    failed = [f for c in comparisons for f in c.failed]
    if failed:
        click.echo(f"mecsim: {len(failed)} run(s) failed (see the notes above and the report)", err=True)
        sys.exit(1)


@click.command(name="train-rl")
@click.argument("scenario")
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=20_000,
    show_default=True,
    help="Training decisions (environment steps, one per task).",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False),
    required=True,
    help="The model file to write (MODEL.zip).",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Training seed (same seed, same model).",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Simulated seconds per training run (overrides duration_s).",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="FIELD=VALUE",
    help="Scenario override for the training runs (repeatable).",
)
@click.option(
    "--bandwidth",
    type=click.Choice(["equal", "sum", "minmax"]),
    default="equal",
    show_default=True,
    help="Bandwidth rule of the decided tasks.",
)
@click.option(
    "--hp",
    "hps",
    multiple=True,
    metavar="KEY=VALUE",
    help="MaskablePPO setting over the defaults (repeatable), e.g. --hp learning_rate=3e-4.",
)
@click.option(
    "--eval-seeds",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="After training, compare the model with greedy on seeds 0..K-1 (0: skip).",
)
@click.option(
    "--progress/--no-progress", default=None, help="Progress bar (default: on when stderr is a terminal)."
)
@_guard
def train_rl(
    scenario: str,
    steps: int,
    out_path: str,
    seed: int,
    duration: float | None,
    sets: tuple[str, ...],
    bandwidth: str,
    hps: tuple[str, ...],
    eval_seeds: int,
    progress: bool | None,
) -> None:
    """Train the RL baseline (MaskablePPO) on SCENARIO and save it to --out; use it with
    `mecsim run SCENARIO --policy rl --param model=MODEL.zip`."""
    from mecsim.rl.policy import import_sb3
    from mecsim.rl.train import train_rl as train
    from mecsim.scenario import load_scenario

    overrides = _parse_assignments(sets, "--set")
    if duration is not None:
        overrides["duration_s"] = duration
    sc = load_scenario(scenario, **overrides)  # a bad scenario: exit 2 before importing torch
    import_sb3()
    rep = train(
        scenario,
        steps,
        out_path,
        seed=seed,
        overrides=overrides,
        bandwidth=bandwidth,
        hyperparameters=_parse_assignments(hps, "--hp"),
        progress=_progress(progress),
    )
    click.echo(
        f"trained MaskablePPO on {sc.name} for {rep.steps} decisions ({rep.episodes} runs) in "
        f"{rep.wall_s:.1f} s; wrote {rep.path} (digest {rep.digest})"
    )
    if rep.episode_rewards:
        first = rep.episode_rewards[: min(3, len(rep.episode_rewards))]
        last = rep.episode_rewards[-min(3, len(rep.episode_rewards)) :]
        click.echo(
            f"episode return: first runs {sum(first) / len(first):.4g}, last runs {sum(last) / len(last):.4g}"
        )
    if eval_seeds:
        from mecsim.api import simulate

        rows = []
        for s in range(eval_seeds):
            rl = simulate(
                sc, policy="mecsim.rl.policy:RLPolicy", seed=s, policy_params={"model": str(rep.path)}
            ).summary["latency_mean_s"]
            gr = simulate(sc, policy="greedy", seed=s).summary["latency_mean_s"]
            rows.append((s, rl, gr))
        click.echo(
            "mean latency (s) on seeds "
            + ", ".join(
                f"{s}: rl {a:.3g} / greedy {b:.3g}" if a is not None and b is not None else f"{s}: -"
                for s, a, b in rows
            )
        )


@click.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default="runs/reproduce",
    show_default=True,
    help="Output folder.",
)
@click.option(
    "--quick",
    is_flag=True,
    help="A first look in minutes: the study's quick settings "
    "(fewer seeds and regimes, shorter runs, a short RL training).",
)
@click.option(
    "--study",
    "study",
    type=click.Path(dir_okay=False),
    default=None,
    help="Another study file (default: scenarios/studies/regimes.yaml).",
)
@click.option(
    "--seeds", type=click.IntRange(min=1), default=None, help="Seeds per policy (default: the study's)."
)
@executor_options
@rl_options(
    "SCENARIO=PATH",
    "A trained model for a scenario's rl policy (default: train one).",
    "Training decisions of the RL models trained here.",
)
@click.option("--figures/--no-figures", default=True, show_default=True, help="Write the figures.")
@click.option(
    "--progress/--no-progress", default=None, help="Progress bars (default: on when stderr is a terminal)."
)
@_guard
def reproduce(
    out_dir: str,
    quick: bool,
    study: str | None,
    seeds: int | None,
    workers: int | None,
    scheduler: str | None,
    rl_model: tuple[str, ...],
    rl_steps: int | None,
    figures: bool,
    progress: bool | None,
) -> None:
    """Run the regime study (scenarios/studies/regimes.yaml): regimes where each decision matters
    plus paper-small-v1 and paper-medium-v1; the hybrid against RL, the heuristics and its own
    ablations, decision time free and charged; tables, figures and report.md in --out."""
    from mecsim.study import CompareError
    from mecsim.study import reproduce as run

    single, per = _rl_models(rl_model)
    if single is not None:
        raise CompareError("--rl-model takes SCENARIO=PATH here (one model per scenario)")
    st = run(
        out_dir,
        quick=quick,
        study=study,
        seeds=seeds,
        workers=workers,
        scheduler=scheduler,
        rl_models=per,
        rl_steps=rl_steps,
        figures=figures,
        progress=_progress(progress),
    )
    for cmp in st.comparisons:
        _print_comparison(cmp)
    click.echo(f"\nwrote {st.report}")
    _exit_on_failures(st.comparisons)


@click.group()
def _standalone() -> None:
    """mecsim compare, train-rl and reproduce (standalone entry point)."""


_standalone.add_command(compare)
_standalone.add_command(train_rl)
_standalone.add_command(reproduce)

if __name__ == "__main__":  # pragma: no cover
    _standalone()
