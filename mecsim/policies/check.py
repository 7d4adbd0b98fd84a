"""``check_policy``: conformance checks that users can run on their own policy.

Example:
    >>> from mecsim.policies import check_policy
    >>> report = check_policy("greedy")
    >>> report["ok"]
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mecsim.errors import PolicyError
from mecsim.state import validate_decision
from mecsim.testing import random_epoch_state


def _fail(check: str, msg: str) -> PolicyError:
    return PolicyError(f"check_policy [{check}]: {msg}")


def check_policy(
    policy: Any,
    scenario: Any = "smoke-v1",
    *,
    seed: int = 0,
    sizes: tuple[int, ...] = (0, 1, 5, 12),
    servers: tuple[int, ...] = (3, 4),
    simulate_s: float = 20.0,
    **params: Any,
) -> dict[str, Any]:
    """Check a policy against the decision interface, then run it in a short simulation.

    Checks: for epochs of several sizes (including an empty one), each decision passes
    :func:`~mecsim.state.validate_decision`, the rules the engine applies at every epoch (a
    :class:`~mecsim.state.Decision` of the right shapes, tasks only on feasible servers,
    dispatched tasks with at least ``min_bandwidth_hz`` and shares within the budget); given the
    same random stream it decides the same (reproducibility); and a short run of ``scenario``
    accounts for every task.

    Args:
        policy: a registered name, ``"package.module:Object"``, a class, an instance or a function.
        scenario: scenario for the short run (None to skip it).
        seed: seed for the random states and the run.
        sizes: numbers of tasks per test epoch.
        servers: numbers of servers of the test epochs (all hosting every model for the first,
            60% of the pairs for the others); e.g. ``(2,)`` for a model trained on two servers.
        simulate_s: simulated seconds of the short run.
        **params: parameters for building the policy.

    Returns:
        A report dict with ``ok`` and what was checked.

    Raises:
        PolicyError: the first failing check, named.
    """
    from mecsim.policies.base import make_policy

    report: dict[str, Any] = {"checks": []}
    for k, n in enumerate(sizes):
        for m, hp in ((m, 1.0 if q == 0 else 0.6) for q, m in enumerate(servers)):
            state = random_epoch_state(n, m, seed=seed * 1000 + 10 * k + m, host_probability=hp)
            decisions = []
            for _ in range(2):
                pol = make_policy(policy, **params)
                if hasattr(pol, "bind"):
                    pol.bind(
                        {"server_names": state.server_names, "models": set(state.model), "scenario": None}
                    )
                if hasattr(pol, "reset"):
                    pol.reset(np.random.default_rng(seed))
                try:
                    dec = pol.decide(state)
                except PolicyError:
                    raise
                except Exception as exc:
                    raise _fail("decide", f"raised {type(exc).__name__}: {exc} (n={n}, m={m})") from exc
                decisions.append(dec)
            dec = decisions[0]
            try:
                validate_decision(dec, state, getattr(pol, "name", type(pol).__name__))
            except PolicyError as exc:
                raise _fail(getattr(exc, "check", "decision"), f"{exc} (n={n}, m={m})") from None
            go = dec.server >= 0
            other = decisions[1]
            if not (
                np.array_equal(dec.server, other.server)
                and np.allclose(dec.bandwidth_hz, other.bandwidth_hz, rtol=1e-12, atol=0)
            ):
                raise _fail(
                    "reproducible",
                    "two fresh copies given the same random stream "
                    "decided differently (use the rng given to reset(), not global state)",
                )
            report["checks"].append({"n": n, "m": m, "dispatched": int(go.sum())})
    if scenario is not None:
        from mecsim.api import simulate

        res = simulate(
            scenario, policy=make_policy(policy, **params), seed=seed, duration_s=simulate_s, warmup_s=0
        )
        s = res.summary
        total = s["tasks_completed"] + s["tasks_dropped"] + s["tasks_in_flight"]
        if total != s["tasks_generated"]:
            raise _fail("conservation", f"{s['tasks_generated']} tasks generated, {total} accounted for")
        report["simulation"] = {k: s[k] for k in ("tasks_generated", "tasks_completed", "latency_mean_s")}
    report["ok"] = True
    return report
