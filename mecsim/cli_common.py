"""Helpers shared by the command modules (cli, sweep_cli, compare_cli).

Kept apart from :mod:`mecsim.cli` so that the command modules never import the main group
(which imports them): ``python -m mecsim.cli`` would otherwise import itself twice.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click
import yaml

from mecsim.errors import MecsimError, ScenarioError


def _parse_assignments(items: tuple[str, ...], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ScenarioError(f"{what} {item!r} is not of the form key=value")
        from mecsim.scenario import load_yaml_text

        try:
            out[key.strip()] = load_yaml_text(raw) if raw.strip() else None
        except yaml.YAMLError:
            out[key.strip()] = raw
    return out


def check_out_dir(out_dir: str) -> None:
    """Check that ``out_dir`` can be created and written to, before a run starts: it is created
    (with its parents) and a probe file is written and removed. Raises one-line MecsimError."""
    import os
    import tempfile
    from pathlib import Path

    p = Path(out_dir)
    for parent in [p, *p.parents]:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise MecsimError(f"--out {out_dir}: {parent} exists and is not a folder")
            break
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".mecsim-probe-", dir=p)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise MecsimError(
            f"--out {out_dir}: cannot write there ({exc.strerror or type(exc).__name__})"
        ) from None


def _guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn mecsim errors into one line and exit code 2."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = bool(kwargs.pop("debug", False))
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            click.echo("mecsim: interrupted", err=True)
            sys.exit(130)
        except MecsimError as exc:
            if debug:
                raise
            click.echo(f"mecsim: error: {' '.join(str(exc).split())}", err=True)
            sys.exit(2)
        except Exception as exc:  # a bug or a user's plug-in failing: still one line
            if debug:
                raise
            click.echo(
                f"mecsim: unexpected error: {type(exc).__name__}: "
                f"{' '.join(str(exc).split())} (rerun with --debug for the traceback)",
                err=True,
            )
            sys.exit(1)

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return click.option("--debug", is_flag=True, help="Show tracebacks.")(wrapper)


def executor_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--workers`` and ``--scheduler``: where the runs go (see :class:`mecsim.study.Executor`),
    the same for ``compare``, ``reproduce`` and ``sweep``."""
    fn = click.option(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="Address of a running Dask scheduler (e.g. tcp://host:8786) instead of a local cluster.",
    )(fn)
    return click.option(
        "--workers",
        type=click.IntRange(min=1),
        default=None,
        help="1: serially in this process; N: worker processes of an embedded local Dask cluster "
        "(default: one per core).",
    )(fn)


def rl_options(model_metavar: str, model_help: str, steps_help: str) -> Callable[..., Any]:
    """``--rl-model`` and ``--rl-steps`` of the commands that train the RL baseline."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn = click.option("--rl-steps", type=click.IntRange(min=1), default=None, help=steps_help)(fn)
        return click.option("--rl-model", "rl_model", multiple=True, metavar=model_metavar, help=model_help)(
            fn
        )

    return deco
