"""The hybrid decision policies: convex bandwidth preallocation, then server selection as a QUBO.

Per epoch, :class:`QuboPolicy`

1. splits the uplink budget among the tasks that have a server by its bandwidth rule
   (:func:`mecsim.decision.bandwidth.allocate_rule`; equal shares with an ideal radio); tasks the
   rule leaves waiting (``srpt-<k>``, ``completion``) are deferred, and the next steps see only
   the admitted ones;
2. builds the selection QUBO (:func:`mecsim.decision.qubo.build_selection_qubo`), optionally
   with the future-priced linear terms ``future_weight x F`` (:mod:`mecsim.decision.future`);
3. samples it with a dimod sampler (seeded from the policy's random stream); SA gets the
   model's spin form as arrays and returns arrays
   (:meth:`~mecsim.decision.solvers.FastSimulatedAnnealingSampler.sample_ising_arrays`: the
   library's anneal on the inputs its ``sample`` would build, without the dimod objects);
4. decodes the lowest-energy distinct reads (``candidates``, default all 8 SA reads), repairing
   broken one-hots greedily;
5. optionally polishes each with a local search (move one task / swap two) and keeps the
   assignment with the lowest objective;
6. on any solver failure, an empty sample set or a time-out, asks the fallback policy instead and
   records why.

Steps 4-5 are part of the policy, not of the sampler: they are recorded in ``Decision.info``
(``feasible_before_repair``, ``repairs`` and ``best_energy`` of the lowest-energy read,
``local_search_moves`` of the chosen one) so the epochs table shows how much of the answer came
from the annealer and how much from post-processing. Measured (``tests/benchmarks/decision.py``):
the local search does most of the work. The best raw SA read is a median 0.9-4.4% above the
optimum (10x4 to 60x8); the polished answer was optimal in all 600 benchmark epochs, while
cheapest insertion followed by the same local search, with no sampler at all, was optimal in
94.5-98% of them (never more than 0.23% off).

Registered presets: ``qubo-sa``, ``qubo-tabu``, ``qubo-exact`` (tiny epochs only; larger ones
fall back, recorded), ``qubo-milp`` (the exact linearised MILP as a sampler, with the one-hot
groups as constraints; slow beyond a few dozen variables, hence its default time limit).

Example:
    >>> import numpy as np
    >>> from mecsim.policies.qubo import QuboPolicy
    >>> from mecsim.testing import random_epoch_state
    >>> policy = QuboPolicy(solver="sa", bandwidth="equal")  # every task admitted
    >>> policy.reset(np.random.default_rng(7))
    >>> d = policy.decide(random_epoch_state(6, 3, seed=2))
    >>> d.info["fallback"] is None, d.info["variables"]
    (True, 18)
"""

from __future__ import annotations

import time
from typing import Any

import dimod
import numpy as np

from mecsim.decision.bandwidth import (
    BANDWIDTH_RULES,
    HeldBandwidth,
    InfeasibleBandwidthError,
    allocate_rule,
    check_rule,
)
from mecsim.decision.exact import solve_selection_exact
from mecsim.decision.future import DEFAULT_RHO_MAX, DEFAULT_WINDOW_S, ArrivalEstimator, future_cost
from mecsim.decision.qubo import (
    DEFAULT_PENALTY_SCALE,
    SelectionQUBO,
    build_selection_qubo,
    polish_reads,
)
from mecsim.decision.solvers import ConfiguredSampler, get_sampler
from mecsim.errors import PolicyError
from mecsim.policies.base import BasePolicy, make_policy
from mecsim.registry import POLICIES
from mecsim.state import DEFER, Decision, EpochState

__all__ = ["BANDWIDTH_OBJECTIVES", "INFO_KEYS", "QuboPolicy"]

#: Bandwidth rules of the hybrid's first stage (:func:`mecsim.decision.bandwidth.allocate_rule`;
#: also ``srpt-<k>``). The old name is kept for the three convex objectives' callers.
BANDWIDTH_OBJECTIVES = BANDWIDTH_RULES

#: Default bandwidth rule of the hybrid per uplink mode, chosen by measurement
#: (``tests/benchmarks/future_cost.py
#: --part bandwidth``, qubo-sa, 8 paired seeds x 1200 s, mean latency against ``equal``, 95%
#: t-interval, preallocated uplink, with the default future weight): on radio-limited-v1
#: ``completion`` -3.4% [-6.1, -0.8], ``srpt-2`` -3.0% [-3.9, -2.0], ``sum`` +18.3% [+15.7, +21.0];
#: on issue 15's variant ``completion`` -0.4% [-4.3, +3.4], ``srpt-2`` -1.2% [-2.6, +0.3], ``sum``
#: +17.2% [+11.4, +23.0] (every rule: README). ``completion`` rather than
#: ``srpt-2`` because it admits everybody when uploads are short: on paper-medium-v1 (3 seeds x
#: 600 s) ``srpt-2`` is +9.8% [-2.0, +21.6] against equal and ``completion`` -0.5% [-2.5, +1.4].
#: With ``radio.uplink_mode: reallocated`` the shares are re-split at every upload end, so no rule
#: needs to hold bandwidth back, and the uplink is power-limited at the cell edge (the rate hardly
#: grows with the share): ``pf`` -1.0% [-1.4, -0.7] on radio-limited-v1 and -0.6% [-0.8, -0.4] on
#: issue 15's variant, while ``completion`` is +7.7% [+2.0, +13.4] and +1.8% [-0.1, +3.6].
AUTO_BANDWIDTH = {"preallocated": "completion", "reallocated": "pf"}

#: ``"auto"``: :data:`AUTO_BANDWIDTH` for the scenario's uplink mode (``completion`` when the
#: policy is used without a scenario).
DEFAULT_BANDWIDTH = "auto"

#: Default weight of the future-priced objective (:mod:`mecsim.decision.future`), chosen by
#: measurement (``tests/benchmarks/future_cost.py --part future`` and ``--part medium``, 8 paired
#: seeds): 0.3 has the lowest mean latency of the weights 0, 0.1, 0.3, 1 on paper-small-v1 at 0.11
#: and 0.14 requests/s per device and on paper-medium-v1 (it lengthens the p99 tail: README).
DEFAULT_FUTURE_WEIGHT = 0.3

#: The keys every decision's ``info`` has (plus ``milp_objective`` and ``gap`` with a reference).
INFO_KEYS = (
    "solver",
    "variables",
    "interactions",
    "solve_wall_s",
    "best_energy",
    "objective",
    "feasible_before_repair",
    "repairs",
    "local_search_moves",
    "fallback",
    "solver_error",
    "bandwidth_rule",
    "n_deferred_by_rule",
    "future_cost",
)

#: Lowest-energy distinct reads decoded and polished per epoch (see ``QuboPolicy``); chosen with
#: ``tests/benchmarks/decision.py``.
DEFAULT_CANDIDATES = 8

#: Default wall-clock limit of the ``qubo-milp`` preset (s): the linearised MILP's LP relaxation
#: is weak, so HiGHS may branch for a long time beyond a few dozen variables; at the limit it
#: returns its incumbent.
MILP_PRESET_TIME_LIMIT_S = 5.0


def _one_line(exc: BaseException) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= 300 else text[:297] + "..."


class QuboPolicy(BasePolicy):
    """Hybrid policy: bandwidth by convex optimisation, servers by a QUBO sampler.

    Args:
        solver: a registered solver name (``"sa"``, ``"tabu"``, ``"exact"``, ``"milp"``),
            ``"package.module:Object"``, or a :class:`dimod.Sampler` instance.
        solver_params: sampling parameters for every call (e.g. ``{"num_reads": 16}``).
        bandwidth: the bandwidth rule, any of :data:`~mecsim.decision.bandwidth.BANDWIDTH_RULES`
            or ``"srpt-<k>"`` (:func:`~mecsim.decision.bandwidth.allocate_rule`), or ``"auto"``
            (the default): the rule measured best for the scenario's ``radio.uplink_mode``
            (:data:`AUTO_BANDWIDTH`: ``completion`` preallocated, ``pf`` reallocated; resolved
            in :meth:`bind`, ``completion`` without a scenario). Tasks a rule leaves without a share
            (``srpt-<k>``, ``completion``) are deferred to a later epoch and the QUBO places only
            the admitted ones; ``completion`` also sees the shares the policy handed out earlier
            (:class:`~mecsim.decision.bandwidth.HeldBandwidth`). With an ideal radio the split is
            equal (uploads take no time anyway). ``info`` records ``bandwidth_rule`` and
            ``n_deferred_by_rule``.
        future_weight: weight ``V`` of the future-priced objective: the QUBO's linear terms get
            ``V F_ij`` (:func:`~mecsim.decision.future.future_cost`: the expected extra waiting
            of server ``j``'s future arrivals, with rates measured from the policy's own
            dispatches by :class:`~mecsim.decision.future.ArrivalEstimator`). 0 is the myopic
            QUBO; the default :data:`DEFAULT_FUTURE_WEIGHT` is chosen by measurement.
            ``info["future_cost"]`` records ``sum V F`` of the chosen assignment (part of
            ``objective``).
        future_window_s: the estimator's sliding window (s).
        future_rho_max: the cap on a server's measured load in ``1 / (1 - rho)``.
        penalty: ``"auto"`` (``penalty_scale`` times the safe bound) or the one-hot weight.
        penalty_scale: fraction of the safe bound with ``penalty="auto"``.
        local_search: polish the decoded assignments with :func:`~mecsim.decision.qubo.local_search`.
        candidates: how many of the lowest-energy distinct reads are decoded (repaired) and
            polished; the one with the lowest objective is the decision. Below the safe penalty
            the energy order of repaired reads is only a hint, and the local search ends in
            different local optima from different reads, so a few starts are worth it.
        reference: also solve the selection exactly (:func:`~mecsim.decision.exact.solve_selection_exact`)
            and record ``milp_objective`` and ``gap = (objective - milp) / milp``.
        fallback: policy used when the solver fails, returns nothing or runs over
            ``time_budget_s`` (any spec :func:`~mecsim.policies.base.make_policy` takes).
        time_budget_s: wall-clock budget of one solve (s); a slower solve counts as a time-out.
            Samplers that declare ``time_limit`` are also given it, so they stop near it.
        max_variables: larger QUBOs are not sent to the solver; the fallback decides instead.
        decompose: solve QUBOs larger than this many variables in groups of tasks (oldest first),
            each group's QUBO with the groups already placed folded into its linear terms
            (exact: their congestion with the group's tasks is a constant per (task, server));
            ``"auto"`` uses the sampler's ``properties["max_qubits"]`` when it has one;
            None never decomposes (too large then means the solver refuses: fallback).
        warm_start: pass the previous epoch's ``sampleset.info["angles"]`` as ``initial_angles``
            to samplers that take it (QAOA), so each epoch starts from the last optimum.
        batch_weight: with the GPU-server model on (batching or residency; the state carries its
            fields), the throughput credit of a batch pair in the QUBO: the number of later tasks
            assumed to wait behind it, which gain the GPU time the batch saves
            (:func:`~mecsim.decision.qubo.add_gpu_terms`). 0 (the default) prices the epoch's
            own tasks only; without the GPU-server model it has no effect.
        name: the policy's name (defaults to ``"qubo-<solver>"``).

    Raises:
        PolicyError: a bad parameter value.
        SolverError: the solver cannot be found or does not take ``solver_params``.
    """

    def __init__(
        self,
        solver: str | dimod.Sampler = "sa",
        solver_params: dict[str, Any] | None = None,
        bandwidth: str = DEFAULT_BANDWIDTH,
        future_weight: float = DEFAULT_FUTURE_WEIGHT,
        future_window_s: float = DEFAULT_WINDOW_S,
        future_rho_max: float = DEFAULT_RHO_MAX,
        penalty: str | float = "auto",
        penalty_scale: float = DEFAULT_PENALTY_SCALE,
        local_search: bool = True,
        candidates: int = DEFAULT_CANDIDATES,
        reference: bool = False,
        fallback: Any = "greedy",
        time_budget_s: float | None = None,
        max_variables: int | None = None,
        decompose: int | str | None = "auto",
        warm_start: bool = True,
        batch_weight: float = 0.0,
        name: str | None = None,
    ) -> None:
        super().__init__()
        try:
            if bandwidth != "auto":
                check_rule(bandwidth)
        except InfeasibleBandwidthError:
            raise PolicyError(
                f"bandwidth: unknown rule {bandwidth!r}; use one of {', '.join(BANDWIDTH_RULES)} "
                "(or srpt-<k>)"
            ) from None
        if not (np.isfinite(future_weight) and future_weight >= 0):
            raise PolicyError(f"future_weight must be a finite number >= 0, got {future_weight!r}")
        if not (np.isfinite(future_window_s) and future_window_s > 0):
            raise PolicyError(f"future_window_s must be positive, got {future_window_s!r}")
        if not 0 <= future_rho_max < 1:
            raise PolicyError(f"future_rho_max must be in [0, 1), got {future_rho_max!r}")
        if isinstance(penalty, str):
            if penalty != "auto":
                raise PolicyError(f"penalty must be 'auto' or a number, got {penalty!r}")
        elif not (np.isfinite(penalty) and penalty >= 0):
            raise PolicyError(f"penalty must be a finite number >= 0, got {penalty!r}")
        if not (np.isfinite(penalty_scale) and penalty_scale > 0):
            raise PolicyError(f"penalty_scale must be positive, got {penalty_scale!r}")
        if not (int(candidates) == candidates and candidates >= 1):
            raise PolicyError(f"candidates must be an integer >= 1, got {candidates!r}")
        if time_budget_s is not None and not time_budget_s >= 0:
            raise PolicyError(f"time_budget_s must be >= 0 seconds or None, got {time_budget_s!r}")
        if max_variables is not None and not (int(max_variables) == max_variables and max_variables >= 0):
            raise PolicyError(f"max_variables must be a non-negative integer or None, got {max_variables!r}")
        self.solver = solver
        self.solver_label = solver if isinstance(solver, str) else type(solver).__name__
        self.solver_params = dict(solver_params or {})
        self.sampler = get_sampler(solver, **self.solver_params)
        # Samplers that anneal the spin form given as arrays (SA) skip building the BQM.
        child = self.sampler
        while isinstance(child, ConfiguredSampler):
            child = child.children[0]
        self._ising_path = hasattr(child, "sample_ising_arrays")
        self.bandwidth_param = bandwidth
        self.bandwidth = AUTO_BANDWIDTH["preallocated"] if bandwidth == "auto" else bandwidth
        self.future_weight = float(future_weight)
        self.future_window_s = float(future_window_s)
        self.future_rho_max = float(future_rho_max)
        self.epoch_s = 0.0
        self.budget_hz: float | None = None
        self.held: HeldBandwidth | None = None
        self.arrivals: ArrivalEstimator | None = None
        self.penalty = penalty
        self.penalty_scale = float(penalty_scale)
        self.local_search = bool(local_search)
        self.candidates = int(candidates)
        self.reference = bool(reference)
        self.fallback = fallback
        self.time_budget_s = time_budget_s
        self.max_variables = max_variables
        if (
            decompose is not None
            and decompose != "auto"
            and not (int(decompose) == decompose and decompose >= 1)
        ):
            raise PolicyError(f"decompose must be 'auto', None or an integer >= 1, got {decompose!r}")
        self.decompose = decompose
        self.warm_start = bool(warm_start)
        if not (np.isfinite(batch_weight) and batch_weight >= 0):
            raise PolicyError(f"batch_weight must be a finite number >= 0, got {batch_weight!r}")
        self.batch_weight = float(batch_weight)
        self.name = name or f"qubo-{self.solver_label}"
        self._fallback_policy: Any = None
        self._angles: Any = None

    def reset(self, rng: np.random.Generator) -> None:
        """Start a run with the policy's own random stream (the fallback shares it)."""
        super().reset(rng)
        self._angles = None
        # The completion rule's record of the shares handed out; the future cost's rate estimate.
        track = self.bandwidth == "completion" and self.budget_hz is not None
        self.held = HeldBandwidth(self.budget_hz) if track else None
        self.arrivals = None
        if self._fallback_policy is not None and hasattr(self._fallback_policy, "reset"):
            self._fallback_policy.reset(rng)

    def bind(self, info: dict[str, Any]) -> None:
        """Remember the epoch length and the uplink budget (the ``completion`` rule models them)."""
        sc = info.get("scenario")
        self.epoch_s = float(sc.epoch.length_s) if sc is not None else 0.0
        self.budget_hz = float(sc.radio.bandwidth_hz) if sc is not None else None
        if self.bandwidth_param == "auto":
            mode = getattr(sc.radio, "uplink_mode", "preallocated") if sc is not None else "preallocated"
            self.bandwidth = AUTO_BANDWIDTH[mode]

    # ------------------------------------------------------------------------------------------
    def allocate(self, state: EpochState, placeable: np.ndarray) -> np.ndarray:
        """Bandwidth shares by the policy's rule among the tasks that have a server, 0 for the
        rest; a rule that defers (``srpt-<k>``, ``completion``) also gives 0 to the tasks it
        leaves waiting."""
        bw = np.zeros(state.n_tasks)
        k = int(placeable.sum())
        if k == 0:
            return bw
        if self.bandwidth == "equal" or state.ideal_radio:
            bw[placeable] = state.bandwidth_budget_hz / k
            return bw
        lanes = self.held.lanes(state.now, state.bandwidth_budget_hz) if self.held is not None else ((), ())
        bw[placeable] = allocate_rule(
            self.bandwidth,
            state.input_bits[placeable],
            state.snr_per_hz[placeable],
            state.bandwidth_budget_hz,
            state.min_bandwidth_hz,
            self.epoch_s,
            *lanes,
        )
        return bw

    def decide(self, state: EpochState) -> Decision:
        """Bandwidth by the rule, then QUBO server selection of the admitted tasks (module docstring)."""
        n = state.n_tasks
        usable = np.asarray(state.feasible, bool) & np.asarray(state.server_up, bool)[None, :]
        placeable = usable.any(axis=1)  # the same tasks build_selection_qubo gives variables
        bw = self.allocate(state, placeable) if n else np.zeros(0)
        admitted = placeable & ((bw > 0) | bool(state.ideal_radio))
        waiting = placeable & ~admitted
        if waiting.any():  # the rule left some tasks waiting: select servers for the others only
            from mecsim.policies.heuristics import _rows

            idx = np.flatnonzero(admitted)
            sub = self._select(_rows(state, idx), bw[idx])
            server = np.full(n, DEFER, dtype=np.int64)
            server[idx] = sub.server
            sub_bw = np.zeros(n)
            sub_bw[idx] = sub.bandwidth_hz
            decision = Decision(sub_bw, server, dict(sub.info))
        else:
            decision = self._select(state, bw)
        decision.info["bandwidth_rule"] = self.bandwidth
        decision.info["n_deferred_by_rule"] = int(waiting.sum())
        self._record(state, decision)
        return decision

    def _record(self, state: EpochState, decision: Decision) -> None:
        """Update the held-share record and the arrival estimator with what was dispatched."""
        go = decision.server >= 0
        if self.held is not None and not state.ideal_radio:
            sent = np.where(go, decision.bandwidth_hz, 0.0)
            self.held.add(state.now, state.upload_s(sent), sent)
        if self.future_weight > 0 and state.n_tasks:
            if self.arrivals is None or self.arrivals.m != state.n_servers:
                self.arrivals = ArrivalEstimator(state.n_servers, self.future_window_s)
            srv = decision.server
            work = np.zeros(state.n_tasks)
            if go.any():
                i = np.flatnonzero(go)
                work[i] = state.service_s[i, srv[i]] / np.maximum(state.slots[srv[i]], 1)
            self.arrivals.record(state.now, srv, work)

    def future_costs(self, state: EpochState) -> np.ndarray | None:
        """``V F`` for the epoch (:func:`~mecsim.decision.future.future_cost` at the measured
        rates), or None when the weight is 0 or nothing has been measured yet."""
        if self.future_weight <= 0 or self.arrivals is None or self.arrivals.m != state.n_servers:
            return None
        lam, rho = self.arrivals.rates(state.now)
        if not lam.any():
            return None
        usable = np.asarray(state.feasible, bool) & np.asarray(state.server_up, bool)[None, :]
        service = np.where(usable, np.asarray(state.service_s, dtype=float), np.inf)
        f = future_cost(service, state.slots, state.backlog_s, lam, rho, self.future_rho_max)
        return np.where(usable, self.future_weight * f, 0.0)

    def _select(self, state: EpochState, bw: np.ndarray) -> Decision:
        """QUBO server selection of the epoch's tasks with the shares ``bw`` (module docstring)."""
        n = state.n_tasks
        info: dict[str, Any] = {
            "solver": self.solver_label,
            "variables": 0,
            "interactions": 0,
            "solve_wall_s": 0.0,
            "best_energy": float("nan"),
            "objective": 0.0,
            "feasible_before_repair": True,
            "repairs": 0,
            "local_search_moves": 0,
            "fallback": None,
            "solver_error": None,
            "bandwidth_rule": self.bandwidth,
            "n_deferred_by_rule": 0,
            "future_cost": 0.0,
        }
        if self.reference:
            info.update(milp_objective=0.0, gap=0.0)
        if n == 0:
            return Decision(np.zeros(0), np.zeros(0, dtype=np.int64), info)

        fut = self.future_costs(state)
        q = build_selection_qubo(
            state,
            bw,
            penalty=self.penalty,
            penalty_scale=self.penalty_scale,
            batch_weight=self.batch_weight,
            future_cost=fut,
        )
        info["variables"] = q.n_variables
        info["interactions"] = q.n_interactions
        # One draw per epoch whatever happens, so the stream does not depend on the solver.
        seed = int(self.rng.integers(2**31 - 1))

        if q.n_variables == 0:  # nobody can be placed: nothing to solve
            return Decision(bw, np.full(n, DEFER, dtype=np.int64), info)

        reads: list[np.ndarray] = []
        error: str | None = None
        if self.max_variables is not None and q.n_variables > self.max_variables:
            error = (
                f"SolverError: the QUBO has {q.n_variables} variables, more than "
                f"max_variables={self.max_variables}"
            )
        else:
            limit = self._group_limit()
            if limit is not None and q.n_variables > limit:
                reads, error = self._solve_in_groups(q, seed, info, limit)
            else:
                reads, error = self._solve(q, seed, info)
        if not reads:
            return self._fall_back(state, q, bw, info, error)

        # The local search from each distinct read; the lowest objective wins (ties: the
        # lower-energy read).
        server, moves, info["objective"] = polish_reads(q, reads, self.local_search)
        info["local_search_moves"] = int(moves)
        if fut is not None:
            placed = np.flatnonzero(server >= 0)
            info["future_cost"] = float(fut[placed, server[placed]].sum())
        if self.reference:
            self._add_reference(q, info)
        return Decision(bw, server, info)

    def _solve(
        self, q: SelectionQUBO, seed: int, info: dict[str, Any]
    ) -> tuple[list[np.ndarray], str | None]:
        """Sample and decode; ``(repaired reads, None)`` or ``([], why it failed)``.

        ``best_energy``, ``feasible_before_repair`` and ``repairs`` in ``info`` describe the
        lowest-energy read: they measure the sampler, whichever read the decision comes from.
        """
        params = self.sampler.parameters
        kwargs: dict[str, Any] = {}
        if "seed" in params:
            kwargs["seed"] = seed
        if "one_hot" in params:  # constraint-aware samplers (MILPSampler) get the groups
            kwargs["one_hot"] = [g for g in q.one_hot if g]
        if "time_limit" in params and self.time_budget_s and "time_limit" not in self.solver_params:
            kwargs["time_limit"] = float(self.time_budget_s)
        if self.warm_start and self._angles is not None and "initial_angles" in params:
            kwargs["initial_angles"] = self._angles
        start = time.perf_counter()
        try:
            # Samplers with an array path (SA: FastSimulatedAnnealingSampler) give the samples
            # of their sample set without building it, from the spin form of the model when
            # they take it (then no BQM is built either); the others give the set.
            arrays = None
            if self._ising_path:
                spins = self.sampler.sample_ising_arrays(q.ising(), **kwargs)
                if spins is not None:
                    arrays = ((spins[0] + 1) // 2, spins[1], spins[2])
            if arrays is None:
                as_arrays = getattr(self.sampler, "sample_arrays", None)
                arrays = as_arrays(q.bqm, **kwargs) if as_arrays is not None else None
            if arrays is None:
                sampleset = self.sampler.sample(q.bqm, **kwargs)
                sampleset.resolve()  # some samplers return futures: wait inside the timed region
                wall = time.perf_counter() - start
                self._record_sampler_info(sampleset.info, info)
                n_reads = len(sampleset)
            else:
                wall = time.perf_counter() - start
                self._record_sampler_info(arrays[2], info)
                n_reads = len(arrays[0])
            info["solve_wall_s"] = wall
            if n_reads == 0:
                return [], "SolverError: the sampler returned an empty sample set"
            if self.time_budget_s is not None and wall > self.time_budget_s:
                return [], (
                    f"TimeoutError: the solve took {wall:.4g} s, over time_budget_s={self.time_budget_s:g}"
                )
            if arrays is None:
                decoded = q.decode_reads(sampleset, limit=self.candidates)
            else:
                decoded = q.decode_arrays(arrays[0], arrays[1], limit=self.candidates)
        except Exception as exc:  # any solver failure falls back, recorded, never raised
            info["solve_wall_s"] = time.perf_counter() - start
            return [], _one_line(exc)
        dinfo = decoded[0][1]
        info["best_energy"] = float(dinfo["best_energy"])
        info["feasible_before_repair"] = bool(dinfo["feasible_before_repair"])
        info["repairs"] = int(dinfo["repairs"])
        return [server for server, _ in decoded], None

    def _group_limit(self) -> int | None:
        if self.decompose is None:
            return None
        if self.decompose == "auto":
            props = getattr(self.sampler, "properties", {}) or {}
            limit = props.get("max_qubits")
            return int(limit) if limit else None
        return int(self.decompose)

    #: scalar entries of ``sampleset.info`` copied to the epochs table as ``sampler_<key>``
    SAMPLER_INFO_KEYS = (
        "p",
        "mixer",
        "mode",
        "method",
        "expectation_path",
        "evaluations",
        "final_expectation",
        "p_best",
        "feasible_fraction",
        "circuit_depth",
        "two_qubit_gates",
        "shots",
        "status",
        "optimal",
        "mip_gap",
        "circuit_duration_s",
        "qpu_time_s",
        "objective",
        "rounds",
    )
    #: of those, summed over the subproblems of a decomposed epoch (run one after the other)
    SAMPLER_SUMMED_KEYS = (
        "evaluations",
        "circuit_depth",
        "two_qubit_gates",
        "circuit_duration_s",
        "qpu_time_s",
    )

    def _record_sampler_info(self, sampler_info: dict[str, Any] | None, info: dict[str, Any]) -> None:
        """Copy the scalar entries of a sample set's ``info`` named in :attr:`SAMPLER_INFO_KEYS`."""
        sinfo = sampler_info or {}
        if self.warm_start and "angles" in sinfo and sinfo.get("mode", "optimize") != "fixed":
            self._angles = sinfo["angles"]
        for key in self.SAMPLER_INFO_KEYS:
            if key not in sinfo:  # (SA's info has none of them)
                continue
            val = sinfo[key]
            if isinstance(val, bool | int | float | str | np.integer | np.floating | np.bool_):
                old = info.get(f"sampler_{key}")
                # over several subproblems keep the totals of counts and times, the last of the rest
                summed = key in self.SAMPLER_SUMMED_KEYS
                if summed and isinstance(old, int | float | np.integer | np.floating):
                    val = old + val
                info[f"sampler_{key}"] = val.item() if isinstance(val, np.generic) else val

    def _solve_in_groups(
        self, q: SelectionQUBO, seed: int, info: dict[str, Any], limit: int
    ) -> tuple[list[np.ndarray], str | None]:
        """Solve a QUBO too large for the sampler as a sequence of smaller ones.

        Tasks (oldest first) are grouped so that each group has at most ``limit`` variables. A
        group's BQM is the full BQM with every other variable fixed: tasks already placed at
        their server, later tasks nowhere. Fixing adds each placed task's congestion with the
        group's tasks to the group's linear terms, so each subproblem is exact given the
        earlier decisions (a sequential, not a joint, optimum). Broken one-hots are repaired by
        cheapest insertion against the tasks placed so far.
        """
        sizes = np.array([len(g) for g in q.one_hot])
        if (sizes > limit).any():
            i = int(np.argmax(sizes > limit))
            return [], (
                f"SolverError: task {i} alone has {int(sizes[i])} variables, more than the "
                f"sampler's limit of {limit}"
            )
        groups: list[list[int]] = [[]]
        used = 0
        for i in np.flatnonzero(q.placeable):
            if used + sizes[i] > limit:
                groups.append([])
                used = 0
            groups[-1].append(int(i))
            used += int(sizes[i])
        server = np.where(q.placeable, -1, DEFER).astype(np.int64)
        params = self.sampler.parameters
        repairs, feasible, total_wall = 0, True, 0.0
        info["subproblems"] = len(groups)
        for g, tasks in enumerate(groups):
            in_group = set(tasks)
            fixed = {}
            for v in q.bqm.variables:
                if v[0] not in in_group:
                    fixed[v] = 1 if server[v[0]] == v[1] else 0
            sub = q.bqm.copy()
            sub.fix_variables(fixed)
            kwargs: dict[str, Any] = {}
            if "seed" in params:
                kwargs["seed"] = (seed + 7919 * g) % (2**31 - 1)
            if "one_hot" in params:
                kwargs["one_hot"] = [list(q.one_hot[i]) for i in tasks]
            if self.warm_start and self._angles is not None and "initial_angles" in params:
                kwargs["initial_angles"] = self._angles
            start = time.perf_counter()
            try:
                ss = self.sampler.sample(sub, **kwargs)
                ss.resolve()
                total_wall += time.perf_counter() - start
                if len(ss) == 0:
                    return [], f"SolverError: the sampler returned an empty sample set (group {g})"
                self._record_sampler_info(getattr(ss, "info", None), info)
                best = ss.first.sample
            except Exception as exc:
                info["solve_wall_s"] = total_wall + time.perf_counter() - start
                return [], _one_line(exc)
            broken = []
            for i in tasks:
                ones = [v[1] for v in q.one_hot[i] if best.get(v, 0) == 1]
                if len(ones) == 1:
                    server[i] = ones[0]
                else:
                    broken.append(i)
            if broken:
                feasible = False
                repairs += len(broken)
                q._insert_greedily(server, np.array(broken, dtype=np.int64))
        info["solve_wall_s"] = total_wall
        if self.time_budget_s is not None and total_wall > self.time_budget_s:
            return [], (
                f"TimeoutError: the solve took {total_wall:.4g} s, over time_budget_s={self.time_budget_s:g}"
            )
        x = {v: int(server[v[0]] == v[1]) for v in q.bqm.variables}
        info["best_energy"] = float(q.bqm.energy(x))
        info["feasible_before_repair"] = feasible
        info["repairs"] = repairs
        return [server], None

    def _fall_back(
        self, state: EpochState, q: SelectionQUBO, bw: np.ndarray, info: dict[str, Any], error: str | None
    ) -> Decision:
        """Let the fallback policy decide; if even that fails, cheapest insertion on ``q``."""
        info["solver_error"] = error
        info["feasible_before_repair"] = None
        try:
            if self._fallback_policy is None:
                self._fallback_policy = make_policy(self.fallback)
                if hasattr(self._fallback_policy, "reset"):
                    self._fallback_policy.reset(self.rng)
            decision = self._fallback_policy.decide(state)
            info["fallback"] = str(getattr(self._fallback_policy, "name", self.fallback))
            fb_bw = np.asarray(decision.bandwidth_hz, dtype=float)
            fb_server = np.asarray(decision.server, dtype=np.int64)
        except Exception as exc:  # the fallback must not take the run down either
            info["solver_error"] = f"{error}; fallback {self.fallback!r} failed: {_one_line(exc)}"
            info["fallback"] = "cheapest-insertion"
            fb_bw, fb_server = bw, q.greedy_assignment()
        q_eval = q
        if not np.array_equal(fb_bw, bw):
            try:  # judge the fallback's assignment with its own bandwidth
                q_eval = build_selection_qubo(
                    state,
                    fb_bw,
                    penalty=0.0,
                    batch_weight=self.batch_weight,
                    future_cost=self.future_costs(state),
                )
            except ValueError:
                q_eval = None
        try:
            info["objective"] = q_eval.objective(fb_server) if q_eval is not None else float("nan")
        except ValueError:  # e.g. the fallback deferred or dropped a placeable task
            info["objective"] = float("nan")
        if self.reference:
            if q_eval is not None:
                self._add_reference(q_eval, info)
            else:
                info.update(milp_objective=float("nan"), gap=float("nan"))
        return Decision(fb_bw, fb_server, info)

    @staticmethod
    def _add_reference(q: SelectionQUBO, info: dict[str, Any]) -> None:
        try:
            _, best, _ = solve_selection_exact(q)
        except Exception:  # a reference that cannot be computed is recorded as missing
            info.update(milp_objective=float("nan"), gap=float("nan"))
            return
        obj = info["objective"]
        info["milp_objective"] = float(best)
        info["gap"] = float((obj - best) / best) if best > 0 else 0.0


def _preset(solver: str, defaults: dict[str, Any] | None = None):
    def factory(**params: Any) -> QuboPolicy:
        chosen = params.pop("solver", solver)  # a preset's solver can still be swapped
        if defaults and chosen == solver:
            params["solver_params"] = {**defaults, **(params.get("solver_params") or {})}
        params.setdefault("name", f"qubo-{chosen}" if ":" not in str(chosen) else "qubo")
        return QuboPolicy(solver=chosen, **params)

    factory.__name__ = f"qubo_{solver}"
    return factory


POLICIES.register("qubo", "hybrid with any solver: params solver=<registered or package.module:Object>")(
    QuboPolicy
)
POLICIES.register("qubo-sa", "hybrid: convex bandwidth + QUBO server selection by simulated annealing")(
    _preset("sa")
)
POLICIES.register("qubo-tabu", "hybrid: convex bandwidth + QUBO server selection by tabu search")(
    _preset("tabu")
)
POLICIES.register("qubo-exact", "hybrid with brute-force QUBO solving (<= 20 variables, else fallback)")(
    _preset("exact")
)
POLICIES.register("qubo-milp", "hybrid with the exact linearised MILP (HiGHS) as the QUBO solver")(
    _preset("milp", {"time_limit": MILP_PRESET_TIME_LIMIT_S})
)
