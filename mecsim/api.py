"""The one-call entry point: :func:`simulate`."""

from __future__ import annotations

import os
from typing import Any

from mecsim.engine import Simulation
from mecsim.errors import MecsimError, RunError, RunInterrupted
from mecsim.results import Result, collect
from mecsim.scenario import Scenario, load_scenario


def simulate(
    scenario: str | os.PathLike[str] | dict[str, Any] | Scenario,
    policy: Any = None,
    seed: int | None = None,
    *,
    policy_params: dict[str, Any] | None = None,
    progress: bool = False,
    stream_to: str | os.PathLike[str] | None = None,
    chunk_rows: int = 50_000,
    **overrides: Any,
) -> Result:
    """Run one simulation and return its :class:`~mecsim.results.Result`.

    Args:
        scenario: a registered name (``"paper-small-v1"``), a YAML path, a dict or a Scenario.
        policy: a registered name, ``"package.module:Object"``, a policy object/class/function,
            or a dict ``{"name": ..., "params": {...}}``; default: the scenario's ``policy``.
        seed: the run seed (default: the scenario's ``seed``).
        policy_params: parameters for building the policy (default: the scenario's, when the
            policy is the scenario's).
        progress: show a progress bar over simulated time.
        stream_to: a folder: stream the tables to Parquet files there as the run goes (memory
            stays flat however long the run), then write summary.json and scenario.yaml, as
            :meth:`Result.save` would. The result is a :class:`~mecsim.results.StreamedResult`
            whose ``tasks``, ``epochs`` and ``servers`` load from the files on first access. A run
            that stops early (error, Ctrl-C) still closes the files, marked ``complete: false``.
        chunk_rows: with ``stream_to``, rows written per flush of the tasks and servers tables.
        **overrides: scenario field overrides, dotted or with double underscores:
            ``duration_s=60``, ``radio__bandwidth_hz=10e6``, ``**{"servers.0.slots": 2}``.

    Returns:
        Result with ``tasks``, ``epochs``, ``servers`` DataFrames and a ``summary`` dict
        (a :class:`~mecsim.results.StreamedResult` with ``stream_to``).

    Example:
        >>> import mecsim
        >>> r = mecsim.simulate("smoke-v1", policy="round-robin", seed=1, duration_s=30)
        >>> r.summary["tasks_generated"] == len(r.tasks)
        True
    """
    from mecsim.policies import make_policy

    sc = load_scenario(scenario, **overrides)
    if isinstance(policy, dict):  # {"name": ..., "params": {...}} as in a scenario file
        from mecsim.errors import PolicyError

        extra = set(policy) - {"name", "params"}
        if "name" not in policy or extra:
            raise PolicyError(
                f"a policy given as a dict needs 'name' (and optional 'params'), got {sorted(policy)}"
            )
        policy, policy_params = policy["name"], dict(policy.get("params") or {})
    if policy is None:
        pol = make_policy(
            sc.policy.name, **(policy_params if policy_params is not None else sc.policy.params)
        )
    elif isinstance(policy, str) or isinstance(policy, type) or policy_params:
        params = policy_params
        if params is None:
            params = sc.policy.params if policy == sc.policy.name else {}
        pol = make_policy(policy, **params)
    else:
        pol = make_policy(policy)
    if hasattr(pol, "bind"):
        pol.bind(
            {
                "server_names": tuple(s.name for s in sc.servers),
                "models": {m for s in sc.servers for m in s.models},
                "scenario": sc,
            }
        )
    sim = Simulation(
        sc,
        pol,
        sc.seed if seed is None else seed,
        progress=progress,
        stream_to=stream_to,
        chunk_rows=chunk_rows,
    )
    try:
        sim.run()
    except KeyboardInterrupt:
        raise RunInterrupted(f"run interrupted at t={sim.env.now:.6g} s", _partial(sim)) from None
    except MecsimError as exc:
        exc.result = _partial(sim)  # type: ignore[attr-defined]
        raise
    except Exception as exc:
        name = getattr(pol, "name", type(pol).__name__)
        raise RunError(
            f"run stopped at t={sim.env.now:.6g} s: policy {name!r} or a plug-in raised "
            f"{type(exc).__name__}: {exc}",
            _partial(sim),
        ) from exc
    return collect(sim)


def _partial(sim: Simulation) -> Result | None:
    """What was simulated before a stop, marked incomplete (None if that fails too)."""
    try:
        return collect(sim)
    except Exception:  # pragma: no cover - best effort while already failing
        return None
