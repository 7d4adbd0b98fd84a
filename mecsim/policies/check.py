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
from mecsim.state import DEFER, Decision
from mecsim.testing import random_epoch_state


def _fail(check: str, msg: str) -> PolicyError:
    return PolicyError(f"check_policy [{check}]: {msg}")


def check_policy(policy: Any, scenario: Any = "smoke-v1", *, seed: int = 0,
                 sizes: tuple[int, ...] = (0, 1, 5, 12), servers: tuple[int, ...] = (3, 4),
                 simulate_s: float = 20.0, **params: Any) -> dict[str, Any]:
    """Check a policy against the decision interface, then run it in a short simulation.

    Checks: ``decide`` returns a :class:`~mecsim.state.Decision` of the right shapes for
    epochs of several sizes (including an empty one); it only sends tasks to feasible servers;
    dispatched tasks get at least ``min_bandwidth_hz`` and the shares fit the budget; given the
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
                    pol.bind({"server_names": state.server_names, "models": set(state.model),
                              "scenario": None})
                if hasattr(pol, "reset"):
                    pol.reset(np.random.default_rng(seed))
                try:
                    dec = pol.decide(state)
                except PolicyError:
                    raise
                except Exception as exc:
                    raise _fail("decide", f"raised {type(exc).__name__}: {exc} "
                                f"(n={n}, m={m})") from exc
                decisions.append(dec)
            dec = decisions[0]
            if not isinstance(dec, Decision):
                raise _fail("type", f"decide returned {type(dec).__name__}, not Decision")
            if dec.server.shape != (n,) or dec.bandwidth_hz.shape != (n,):
                raise _fail("shape", f"expected ({n},) arrays, got server {dec.server.shape}, "
                            f"bandwidth {dec.bandwidth_hz.shape}")
            go = dec.server >= 0
            if ((dec.server < DEFER) | (dec.server >= m)).any():
                raise _fail("range", f"server indices out of range: {dec.server.tolist()}")
            if go.any() and not state.feasible[np.flatnonzero(go), dec.server[go]].all():
                raise _fail("feasible", "a task was sent to a server that cannot run it")
            bw = dec.bandwidth_hz[go]
            if go.any() and (bw < state.min_bandwidth_hz * (1 - 1e-9)).any():
                raise _fail("bandwidth", "a dispatched task got less than min_bandwidth_hz")
            if bw.sum() > state.bandwidth_budget_hz * (1 + 1e-9):
                raise _fail("bandwidth", f"shares sum to {bw.sum():g} Hz > budget "
                            f"{state.bandwidth_budget_hz:g} Hz")
            other = decisions[1]
            if not (np.array_equal(dec.server, other.server)
                    and np.allclose(dec.bandwidth_hz, other.bandwidth_hz, rtol=1e-12, atol=0)):
                raise _fail("reproducible", "two fresh copies given the same random stream "
                            "decided differently (use the rng given to reset(), not global state)")
            report["checks"].append({"n": n, "m": m, "dispatched": int(go.sum())})
    if scenario is not None:
        from mecsim.api import simulate

        res = simulate(scenario, policy=make_policy(policy, **params), seed=seed,
                       duration_s=simulate_s, warmup_s=0)
        s = res.summary
        total = s["tasks_completed"] + s["tasks_dropped"] + s["tasks_in_flight"]
        if total != s["tasks_generated"]:
            raise _fail("conservation", f"{s['tasks_generated']} tasks generated, {total} "
                        "accounted for")
        report["simulation"] = {k: s[k] for k in ("tasks_generated", "tasks_completed",
                                                  "latency_mean_s")}
    report["ok"] = True
    return report
