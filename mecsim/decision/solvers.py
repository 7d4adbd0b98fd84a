"""QUBO solvers behind dimod's Sampler interface: registered presets and a conformance check.

Every solver is a :class:`dimod.Sampler`: ``sample(bqm, **params) -> SampleSet``. Registered
names (in :data:`mecsim.registry.SOLVERS`):

========  ===================================================================================
``sa``    simulated annealing, :class:`dwave.samplers.SimulatedAnnealingSampler`
          (dwave-neal's sampler is the same class), with the defaults in :data:`SA_DEFAULTS`
``tabu``  :class:`dwave.samplers.TabuSampler`, defaults in :data:`TABU_DEFAULTS`
``exact`` :class:`dimod.ExactSolver` that refuses more than :data:`EXACT_MAX_VARIABLES`
          variables (brute force over ``2^N`` states)
``milp``  :class:`mecsim.decision.milp.MILPSampler` (exact, via HiGHS)
========  ===================================================================================

Two more: ``sa-standalone`` is SA that needs no repair or local search (per-group one-hot
penalties with a penalty-method loop, :class:`mecsim.decision.penalty.GroupPenaltyComposite`,
defaults in :data:`SA_STANDALONE_DEFAULTS`); ``random-feasible``
(:class:`mecsim.decision.null.RandomFeasibleSampler`) draws uniform random one-hot feasible
assignments, the null model every solver is measured against.

A user's sampler is named ``"package.module:Object"``: a class is instantiated without
arguments, a sampler instance is used as is. Parameters given to :func:`get_sampler` (a
scenario's ``solver_params``) are always *sampling* parameters, applied to every ``sample`` call
and checked against the sampler's declared ``parameters`` up front.

Example:
    >>> import dimod
    >>> from mecsim.decision.solvers import get_sampler
    >>> sampler = get_sampler("sa", num_reads=4)
    >>> bqm = dimod.BinaryQuadraticModel({"a": -1.0}, {}, 0.0, "BINARY")
    >>> float(sampler.sample(bqm, seed=1).first.energy)
    -1.0
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from numbers import Integral
from typing import Any

import dimod
import dimod.testing
import numpy as np
from dwave.samplers import SimulatedAnnealingSampler, TabuSampler

from mecsim.decision.milp import MILPSampler
from mecsim.decision.null import RandomFeasibleSampler
from mecsim.decision.penalty import GroupPenaltyComposite
from mecsim.errors import SolverError
from mecsim.registry import SOLVERS

try:  # the annealer behind SimulatedAnnealingSampler.sample (pinned: pyproject.toml)
    from dwave.samplers.sa.simulated_annealing import simulated_annealing as _simulated_annealing
except ImportError:  # another layout: every call takes the library's own path
    _simulated_annealing = None

__all__ = [
    "EXACT_MAX_VARIABLES",
    "SA_DEFAULTS",
    "SA_STANDALONE_DEFAULTS",
    "SA_STANDALONE_PENALTY",
    "TABU_DEFAULTS",
    "BoundedExactSolver",
    "ConfiguredSampler",
    "FastSimulatedAnnealingSampler",
    "check_sampler",
    "fast_beta_range",
    "get_sampler",
]

#: Sampling defaults of ``"sa"``, chosen with ``tests/benchmarks/decision.py`` (see its
#: docstring): a few short anneals are enough because the policy repairs and polishes the best
#: reads with a local search (8 reads = 8 starts); longer schedules cost time without changing
#: the polished result (16 reads x 100 sweeps and 8 x 500 were no better).
SA_DEFAULTS: dict[str, Any] = {"num_reads": 8, "num_sweeps": 200}

#: Sampling defaults of ``"sa-standalone"``: SA whose own best feasible read is the decision (no
#: repair, no local search). Chosen with ``tests/benchmarks/decision.py`` (SA-alone section): 16
#: reads x 1000 sweeps with per-group penalties starting at half their safe weight, raised 1.35x
#: per round while the best read breaks a group (at most 4 rounds) gave median / p95 gaps of
#: 0.32 / 1.13% (30x6) and 0.62 / 1.17% (60x8) with every model hosted, 0.35 / 0.92% and
#: 0.37 / 0.76% with 60% hosted (12 epochs each, ``--quick``), where plain SA at its defaults is
#: 2.3-8.4% median, and 1.7-5.9% even at 16 x 1000.
SA_STANDALONE_DEFAULTS: dict[str, Any] = {"num_reads": 16, "num_sweeps": 1000}

#: ``GroupPenaltyComposite`` settings of ``"sa-standalone"``: (scale, rounds, growth).
SA_STANDALONE_PENALTY: tuple[float, int, float] = (0.5, 4, 1.35)

#: Sampling defaults of ``"tabu"``: one read stopped after 3 restarts, which keeps a seeded run
#: reproducible (a search cut by its ``timeout``, dwave-samplers' default of 20 ms, ends wherever
#: the clock stops it). The 1 s timeout (in milliseconds) is only a safety cap; 3 restarts take
#: about 6 / 9 / 28 ms at 10x4 / 30x6 / 60x8, and more restarts did not lower the energy there.
TABU_DEFAULTS: dict[str, Any] = {"num_reads": 1, "num_restarts": 3, "timeout": 1000}

#: Largest problem ``"exact"`` accepts: ``2^20`` states is about a second and 100 MB.
EXACT_MAX_VARIABLES = 20


class ConfiguredSampler(dimod.ComposedSampler):
    """A sampler with default sampling parameters (call-time keywords still win).

    Args:
        child: the sampler that does the work.
        defaults: keyword arguments for every ``child.sample`` call; each must be one of
            ``child.parameters``.
        name: label used in messages.

    Raises:
        SolverError: a default is not a parameter the child declares.
    """

    def __init__(self, child: dimod.Sampler, defaults: Mapping[str, Any], name: str | None = None) -> None:
        self.name = name or type(child).__name__
        unknown = sorted(set(defaults) - set(child.parameters))
        if unknown:
            raise SolverError(
                f"solver {self.name!r} has no parameter(s) {', '.join(unknown)}; "
                f"it takes: {', '.join(sorted(child.parameters)) or 'none'}"
            )
        self._child = child
        self.defaults = dict(defaults)

    @property
    def children(self) -> list[dimod.Sampler]:
        return [self._child]

    @property
    def parameters(self) -> dict[str, Any]:
        return dict(self._child.parameters)

    @property
    def properties(self) -> dict[str, Any]:
        return {"child_properties": dict(self._child.properties), "defaults": dict(self.defaults)}

    def sample(self, bqm: dimod.BinaryQuadraticModel, **parameters: Any) -> dimod.SampleSet:
        """Sample with the defaults, overridden by ``parameters``."""
        return self._child.sample(bqm, **{**self.defaults, **parameters})

    def sample_arrays(
        self, bqm: dimod.BinaryQuadraticModel, **parameters: Any
    ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]] | None:
        """The child's ``sample_arrays`` with the defaults (see
        :meth:`FastSimulatedAnnealingSampler.sample_arrays`); None when it has none."""
        fast = getattr(self._child, "sample_arrays", None)
        return None if fast is None else fast(bqm, **{**self.defaults, **parameters})

    def sample_ising_arrays(
        self, ising: tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray], float], **parameters: Any
    ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]] | None:
        """The child's ``sample_ising_arrays`` with the defaults (see
        :meth:`FastSimulatedAnnealingSampler.sample_ising_arrays`); None when it has none."""
        fast = getattr(self._child, "sample_ising_arrays", None)
        return None if fast is None else fast(ising, **{**self.defaults, **parameters})

    def __repr__(self) -> str:
        return f"<ConfiguredSampler {self.name!r} {self.defaults}>"


def fast_beta_range(bqm: dimod.BinaryQuadraticModel, excitation_rate: float = 0.01) -> list[float]:
    """dwave-samplers' default annealing temperature rule, vectorised with numpy.

    Same rule as ``dwave.samplers.sa.sampler.default_beta_range`` (in the Ising form of the
    model): the hot end lets the largest possible flip through with probability 1/2,
    ``beta_hot = ln 2 / (2 max_i (|h_i| + sum_j |J_ij|))``; the cold end makes a flip against the
    smallest non-zero bias of any spin unlikely, ``beta_cold = ln(k / rate) / (2 b_min)`` with
    ``k`` the number of spins whose smallest bias is ``b_min``. The library computes it with
    Python loops over the interactions, which takes longer than the anneal itself on the
    selection QUBO (about 3 ms of an 8 ms call at 30 x 6); this takes about 0.1 ms.

    Args:
        bqm: the model (either vartype).
        excitation_rate: targeted single-spin excitation rate at the cold end.

    Returns:
        ``[beta_hot, beta_cold]``.
    """
    spin = bqm if bqm.vartype is dimod.SPIN else bqm.change_vartype(dimod.SPIN, inplace=False)
    h, (row, col, j), _ = spin.to_numpy_vectors()
    return _beta_range(h, row, col, j, excitation_rate)


def _beta_range(
    h: np.ndarray, row: np.ndarray, col: np.ndarray, j: np.ndarray, excitation_rate: float = 0.01
) -> list[float]:
    """:func:`fast_beta_range` of the Ising model ``(h, (row, col, j))``."""
    h, j = np.abs(np.asarray(h, float)), np.abs(np.asarray(j, float))
    total = h.copy()
    np.add.at(total, row, j)
    np.add.at(total, col, j)
    smallest = np.where(h > 0, h, np.inf)
    nz = j > 0
    np.minimum.at(smallest, row[nz], j[nz])
    np.minimum.at(smallest, col[nz], j[nz])
    smallest = smallest[np.isfinite(smallest)]
    if smallest.size == 0:  # all biases zero: nothing to anneal, any range will do
        return [0.1, 1.0]
    hot = float(np.log(2.0) / (2.0 * total.max()))
    b_min = float(smallest.min())
    count = int(np.count_nonzero(smallest == b_min))
    cold = float(np.log(count / excitation_rate) / (2.0 * b_min))
    return [hot, max(cold, hot)]


#: Parameters of :meth:`FastSimulatedAnnealingSampler.sample` its array path handles itself
#: (with the values it checks in ``_array_args``); any other call goes to the library's method.
_ARRAY_PATH_KEYS = frozenset(
    {
        "beta_range",
        "num_reads",
        "num_sweeps",
        "num_sweeps_per_beta",
        "beta_schedule_type",
        "seed",
        "interrupt_function",
        "beta_schedule",
        "initial_states",
        "initial_states_generator",
        "randomize_order",
        "proposal_acceptance_criteria",
    }
)


class FastSimulatedAnnealingSampler(SimulatedAnnealingSampler):
    """:class:`dwave.samplers.SimulatedAnnealingSampler` with less Python around the same anneal.

    * The default temperature range comes from :func:`fast_beta_range` (same rule, numpy speed).
    * :meth:`sample_arrays` runs the library's annealer (``dwave.samplers.sa.simulated_annealing``,
      the function its ``sample`` calls) on the same inputs that ``sample`` would give it, built
      with numpy: the Ising form of the model converted once, the random initial states drawn as
      the library draws them (``RandomState(seed).choice([-1, 1], (num_reads, n))``, from one
      re-seeded generator instead of a new one per call, which is what costs), and no
      intermediate sample sets. Its samples and energies are exactly those of
      ``SimulatedAnnealingSampler().sample`` with the same seed, parameters and ``beta_range``
      (tests/test_solvers.py checks this; the direct call is why pyproject.toml pins
      dwave-samplers to 1.8.x). On the selection QUBOs of paper-medium-v1 (3 to 42 variables)
      it takes about a third of the library's call, most of it the anneal itself.
    * :meth:`sample` wraps :meth:`sample_arrays` into the :class:`dimod.SampleSet` the library
      would return; calls the array path does not handle (initial states given, a custom
      schedule, an interrupt function, no seed, an empty model, values the library would
      reject) go to the library's ``sample`` unchanged.
    """

    def sample(self, bqm: dimod.BinaryQuadraticModel, **parameters: Any) -> dimod.SampleSet:
        """Anneal; see :meth:`dwave.samplers.SimulatedAnnealingSampler.sample`."""
        out = self._anneal(bqm, parameters)
        if out is None:
            if (
                parameters.get("beta_range") is None
                and parameters.get("beta_schedule_type", "geometric") != "custom"
            ):
                parameters["beta_range"] = fast_beta_range(bqm)
            return super().sample(bqm, **parameters)
        samples, energies, variables, _, info = out
        if bqm.vartype is dimod.BINARY:
            samples = (samples + 1) // 2  # as SampleSet.change_vartype does
        return dimod.SampleSet.from_samples((samples, variables), bqm.vartype, energies, info=info)

    def sample_arrays(
        self, bqm: dimod.BinaryQuadraticModel, **parameters: Any
    ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]] | None:
        """The samples of :meth:`sample` as arrays, or None where only the library's path applies.

        Returns:
            ``(samples, energies, info)``: ``num_reads x n`` int8 values in the model's vartype,
            columns in the order of ``bqm.variables``; their energies; the ``info`` that the
            sample set would carry. None for the calls :meth:`sample` hands to the library.
        """
        out = self._anneal(bqm, parameters)
        if out is None:
            return None
        samples, energies, _, column_of, info = out
        if column_of is not None:
            samples = samples[:, column_of]
        if bqm.vartype is dimod.BINARY:
            samples = (samples + 1) // 2
        return samples, energies, info

    def sample_ising_arrays(
        self,
        ising: tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray], float],
        **parameters: Any,
    ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]] | None:
        """:meth:`sample_arrays` of a model given in spin form, as arrays.

        Args:
            ising: ``(h, (row, col, J), offset)`` exactly as
                ``bqm.change_vartype("SPIN").to_numpy_vectors()`` gives them for a model whose
                labels are in sorted order (e.g. :meth:`mecsim.decision.qubo.SelectionQUBO.ising`).
            **parameters: as for :meth:`sample`.

        Returns:
            ``(spin samples, energies, info)``, columns in the order of ``h``: what
            :meth:`sample_arrays` returns for that model before the change back to its vartype;
            None for the calls :meth:`sample` hands to the library.
        """
        h, (row, col, quad), offset = ising
        args = self._array_args(len(h), parameters)
        if args is None:
            return None
        samples, energies, info = self._run(args, h, row, col, quad, offset, None, time.perf_counter_ns())
        return samples, energies, info

    def _array_args(self, n_variables: int, p: dict[str, Any]) -> dict[str, Any] | None:
        """The annealer's arguments from ``sample``'s parameters, or None (library path)."""
        if _simulated_annealing is None or not set(p) <= _ARRAY_PATH_KEYS or n_variables == 0:
            return None
        if any(p.get(k) is not None for k in ("interrupt_function", "beta_schedule", "initial_states")):
            return None
        seed = p.get("seed")
        reads = p.get("num_reads")
        reads = 1 if reads is None else reads
        sweeps = p.get("num_sweeps")
        sweeps = 1000 if sweeps is None else sweeps
        per_beta = p.get("num_sweeps_per_beta", 1)
        kind = p.get("beta_schedule_type", "geometric")
        order = p.get("randomize_order", False)
        rule = p.get("proposal_acceptance_criteria", "Metropolis")
        integral = (
            isinstance(v, Integral) and not isinstance(v, bool) for v in (seed, reads, sweeps, per_beta)
        )
        if not all(integral) or p.get("initial_states_generator", "random") != "random":
            return None
        if not (0 <= seed < 2**31 and reads >= 1 and per_beta >= 1 and sweeps >= per_beta):
            return None
        if sweeps % per_beta or kind not in ("geometric", "linear") or not isinstance(order, bool):
            return None
        if rule not in ("Metropolis", "Gibbs"):
            return None
        rng = p.get("beta_range")
        if rng is not None:
            if len(rng) != 2 or min(rng) < 0 or (kind == "geometric" and min(rng) <= 0):
                return None
        return {
            "seed": int(seed),
            "reads": int(reads),
            "betas": int(sweeps // per_beta),
            "per_beta": int(per_beta),
            "kind": kind,
            "beta_range": rng,
            "randomize_order": order,
            "rule": rule,
        }

    def _anneal(
        self, bqm: dimod.BinaryQuadraticModel, parameters: dict[str, Any]
    ) -> tuple[np.ndarray, np.ndarray, list[Any], np.ndarray | None, dict[str, Any]] | None:
        """Spin samples, energies, their variable order, the column of each of ``bqm.variables``
        in it (None: the same order) and the info, as the library's ``sample`` gets them."""
        args = self._array_args(bqm.num_variables, parameters)
        if args is None:
            return None
        start = time.perf_counter_ns()
        spin = bqm if bqm.vartype is dimod.SPIN else bqm.change_vartype(dimod.SPIN, inplace=False)
        labels = list(spin.variables)
        n = len(labels)
        # The library anneals in the order of its initial-state sample set, whose labels dimod
        # sorts when they can be sorted (SampleSet.from_samples, sort_labels=True).
        column_of = None
        try:
            variables = sorted(labels)  # labels are distinct: the same order as dimod's sort
        except TypeError:
            variables = labels
        if variables != labels:
            reindex = sorted(range(n), key=labels.__getitem__)
            column_of = np.argsort(np.asarray(reindex))  # sorted column of each bqm variable
        if column_of is not None:
            h, (row, col, quad), offset = spin.to_numpy_vectors(variable_order=list(variables))
            # fast_beta_range(bqm) works on the unsorted arrays: keep its sums in that order
            beta = fast_beta_range(spin) if args["beta_range"] is None else None
            samples, energies, info = self._run(args, h, row, col, quad, offset, reindex, start, beta)
        else:
            h, (row, col, quad), offset = spin.to_numpy_vectors()
            samples, energies, info = self._run(args, h, row, col, quad, offset, None, start)
        return samples, energies, list(variables), column_of, info

    def _run(
        self,
        args: dict[str, Any],
        h: np.ndarray,
        row: np.ndarray,
        col: np.ndarray,
        quad: np.ndarray,
        offset: float,
        reindex: list[int] | None,
        start: int,
        beta_range: list[float] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """Initial states, schedule and the annealer on the Ising arrays (variables in the order
        of ``h``; ``reindex``: the model's column of each, when that order is not the model's)."""
        rs = getattr(_THREAD_LOCAL, "rs", None)
        if rs is None:
            rs = _THREAD_LOCAL.rs = np.random.RandomState()
        rs.seed(args["seed"])  # the same legacy seeding as RandomState(seed)
        # RandomState.choice(values, size) draws randint(0, len(values), size) (a frozen stream)
        states = _SPIN_VALUES[rs.randint(0, 2, size=(args["reads"], len(h)))]
        if reindex is not None:  # drawn in the model's order, annealed in sorted order
            states = np.ascontiguousarray(states[:, reindex])
        if args["beta_range"] is not None:
            beta_range = args["beta_range"]
        elif beta_range is None:
            beta_range = _beta_range(h, row, col, quad)
        if args["betas"] == 1:
            schedule = np.array([beta_range[-1]], dtype=float)
        elif args["kind"] == "linear":
            schedule = np.linspace(*beta_range, num=args["betas"])
        else:
            schedule = _geomspace(beta_range[0], beta_range[1], args["betas"])
        t_sample = time.perf_counter_ns()
        samples, energies = _simulated_annealing(
            args["reads"],
            h,
            row,
            col,
            quad,
            args["per_beta"],
            schedule,
            args["seed"],
            states,
            args["randomize_order"],
            args["rule"],
            None,
        )
        t_post = time.perf_counter_ns()
        info: dict[str, Any] = {
            "beta_range": beta_range,
            "beta_schedule_type": args["kind"],
            "timing": {
                "preprocessing_ns": t_sample - start,
                "sampling_ns": t_post - t_sample,
                "postprocessing_ns": time.perf_counter_ns() - t_post,
            },
        }
        return samples, energies + offset, info


def _geomspace(start: float, stop: float, num: int) -> np.ndarray:
    """``np.geomspace(start, stop, num)`` for ``0 < start``, ``0 < stop``, ``num >= 2``, in the
    same operations (log10 ends, a linspace of ``num`` points with its end set, powers of 10, the
    ends set back) without the generic overhead (tests compare it with numpy's)."""
    lo, hi = np.log10(float(start)), np.log10(float(stop))
    y = np.arange(num, dtype=float) * ((hi - lo) / (num - 1)) + lo
    y[-1] = hi
    out = np.power(10.0, y)
    out[0], out[-1] = start, stop
    return out


#: One re-seedable RandomState per thread for the initial states (re-seeded at every call, so it
#: can be shared by every sampler; kept out of the samplers so that they still pickle).
_THREAD_LOCAL = threading.local()

#: The spin values in the order the library's random initial states draw from.
_SPIN_VALUES = np.array([-1, 1], dtype=np.int8)


class BoundedExactSolver(dimod.ExactSolver):
    """:class:`dimod.ExactSolver` that says no, clearly, to problems it cannot enumerate.

    Args:
        max_variables: the largest number of variables accepted.
    """

    def __init__(self, max_variables: int = EXACT_MAX_VARIABLES) -> None:
        super().__init__()
        self.max_variables = int(max_variables)
        self.properties = {"max_variables": self.max_variables}

    def sample(self, bqm: dimod.BinaryQuadraticModel, **kwargs: Any) -> dimod.SampleSet:
        """All ``2^N`` states, lowest energy first.

        Raises:
            SolverError: the model has more than ``max_variables`` variables.
        """
        n = bqm.num_variables
        if n > self.max_variables:
            raise SolverError(
                f"exact solver refuses a problem with {n} variables: its limit is "
                f"{self.max_variables} (it enumerates 2^N states); use 'milp' for an exact answer"
            )
        return super().sample(bqm, **kwargs)


def _with_defaults(
    child: dimod.Sampler, base: Mapping[str, Any], params: Mapping[str, Any], name: str
) -> ConfiguredSampler:
    return ConfiguredSampler(child, {**base, **params}, name=name)


@SOLVERS.register("sa", "simulated annealing (dwave-samplers), few short anneals")
def _make_sa(**params: Any) -> dimod.Sampler:
    """:class:`FastSimulatedAnnealingSampler` with :data:`SA_DEFAULTS` (``params`` override)."""
    return _with_defaults(FastSimulatedAnnealingSampler(), SA_DEFAULTS, params, "sa")


@SOLVERS.register("sa-standalone", "SA with per-task one-hot penalties: no repair or local search needed")
def _make_sa_standalone(**params: Any) -> dimod.Sampler:
    """SA in a :class:`~mecsim.decision.penalty.GroupPenaltyComposite` (:data:`SA_STANDALONE_PENALTY`)
    with :data:`SA_STANDALONE_DEFAULTS` (``params`` override)."""
    scale, rounds, growth = SA_STANDALONE_PENALTY
    composite = GroupPenaltyComposite(FastSimulatedAnnealingSampler(), scale, rounds, growth)
    return _with_defaults(composite, SA_STANDALONE_DEFAULTS, params, "sa-standalone")


@SOLVERS.register("tabu", "tabu search (dwave-samplers)")
def _make_tabu(**params: Any) -> dimod.Sampler:
    """:class:`dwave.samplers.TabuSampler` with :data:`TABU_DEFAULTS` (``params`` override)."""
    return _with_defaults(TabuSampler(), TABU_DEFAULTS, params, "tabu")


@SOLVERS.register("exact", f"brute force (dimod.ExactSolver), at most {EXACT_MAX_VARIABLES} variables")
def _make_exact(max_variables: int = EXACT_MAX_VARIABLES, **params: Any) -> dimod.Sampler:
    """:class:`BoundedExactSolver`; ``max_variables`` is the one construction parameter."""
    solver = BoundedExactSolver(max_variables)
    return _with_defaults(solver, {}, params, "exact") if params else solver


@SOLVERS.register("qaoa", "QAOA: qiskit circuits, numpy statevector fast path, qiskit-aer (extra 'qaoa')")
def _qaoa(**params: Any) -> dimod.Sampler:
    # imported here: qiskit is an optional extra and heavy to import
    from mecsim.decision.qaoa import _make_qaoa_sampler

    return _make_qaoa_sampler(**params)


@SOLVERS.register("milp", "exact MILP linearisation solved by HiGHS (scipy)")
def _make_milp(**params: Any) -> dimod.Sampler:
    """:class:`~mecsim.decision.milp.MILPSampler`, e.g. ``time_limit`` as a default."""
    return _with_defaults(MILPSampler(), {}, params, "milp") if params else MILPSampler()


@SOLVERS.register("random-feasible", "null model: uniform random one-hot feasible assignments")
def _make_random_feasible(**params: Any) -> dimod.Sampler:
    """:class:`~mecsim.decision.null.RandomFeasibleSampler`; ``num_reads`` (or ``shots``) as a default."""
    sampler = RandomFeasibleSampler()
    return _with_defaults(sampler, {}, params, "random-feasible") if params else sampler


def get_sampler(spec: str | dimod.Sampler | type, **params: Any) -> dimod.Sampler:
    """A ready sampler from a registered name, ``"package.module:Object"``, a class or an instance.

    Args:
        spec: what to build.
        **params: sampling parameters applied to every call (checked against ``parameters``).

    Raises:
        SolverError: unknown name, import failure, a parameter the sampler does not declare, or an
            object that is not a :class:`dimod.Sampler`.
    """
    if isinstance(spec, str) and spec in SOLVERS.names():
        return SOLVERS.make(spec, **params)
    obj: Any = SOLVERS.resolve(spec) if isinstance(spec, str) else spec
    if isinstance(obj, type) or (callable(obj) and not isinstance(obj, dimod.Sampler)):
        try:
            obj = obj()
        except Exception as exc:
            raise SolverError(f"cannot build solver {spec!r}: {exc}") from exc
    if not isinstance(obj, dimod.Sampler):
        raise SolverError(f"{spec!r} is not a dimod.Sampler (got {type(obj).__name__})")
    return ConfiguredSampler(obj, params, name=str(spec)) if params else obj


def _check_bqms() -> list[tuple[str, dimod.BinaryQuadraticModel]]:
    """Small models covering label types, both vartypes and an offset."""
    rng = np.random.default_rng(20240611)
    out = []
    lin = {(0, 1): -1.0, (0, 2): 0.5, (1, 1): 2.0, (1, 2): -0.25}
    quad = {((0, 1), (0, 2)): 3.0, ((0, 1), (1, 1)): -1.5, ((1, 1), (1, 2)): 0.75}
    out.append(("binary model with tuple labels", dimod.BinaryQuadraticModel(lin, quad, 2.5, "BINARY")))
    h = {v: float(rng.normal()) for v in "abcde"}
    j = {(u, v): float(rng.normal()) for k, u in enumerate("abcde") for v in "abcde"[k + 1 :]}
    out.append(("spin model with str labels", dimod.BinaryQuadraticModel(h, j, -1.0, "SPIN")))
    out.append(("one-variable model", dimod.BinaryQuadraticModel({"x": 4.0}, {}, 0.0, "BINARY")))
    return out


def _fail(name: str, check: str, detail: str) -> SolverError:
    return SolverError(f"sampler {name} failed the {check!r} check: {detail}")


def check_sampler(
    sampler: dimod.Sampler,
    *,
    name: str | None = None,
    sample_params: Mapping[str, Any] | None = None,
) -> None:
    """Conformance checks any sampler used by mecsim should pass; users can run them on theirs.

    Checks, in order:

    1. ``api``: dimod's :func:`dimod.testing.assert_sampler_api` (a :class:`dimod.Sampler` with
       ``sample``, ``sample_ising``, ``sample_qubo`` and mapping ``parameters``/``properties``).
    2. ``empty``: an empty model gives a SampleSet with no variables, and any samples it has carry
       the offset as their energy.
    3. ``energies``: on small models (tuple and str labels, BINARY and SPIN, an offset) the result
       is a non-empty SampleSet over exactly the model's variables, in its vartype, with energies
       that match the model (:func:`dimod.testing.assert_sampleset_energies`).
    4. ``seed``: if the sampler declares ``seed``, two calls with the same seed give the same
       samples.

    Args:
        sampler: the sampler to check.
        name: label for messages (default: its class name).
        sample_params: extra keyword arguments for every ``sample`` call (e.g. to keep it short).

    Raises:
        SolverError: naming the first check that failed and why.
    """
    name = name or type(sampler).__name__
    params = dict(sample_params or {})
    try:
        dimod.testing.assert_sampler_api(sampler)
    except AssertionError as exc:
        raise _fail(name, "api", str(exc)) from None

    def run(bqm: dimod.BinaryQuadraticModel, check: str, **extra: Any) -> dimod.SampleSet:
        try:
            ss = sampler.sample(bqm, **params, **extra)
        except Exception as exc:
            raise _fail(name, check, f"sample() raised {type(exc).__name__}: {exc}") from exc
        if not isinstance(ss, dimod.SampleSet):
            raise _fail(name, check, f"sample() returned {type(ss).__name__}, not a dimod.SampleSet")
        return ss

    empty = dimod.BinaryQuadraticModel({}, {}, 1.5, "BINARY")
    ss = run(empty, "empty")
    if len(ss.variables) != 0:
        raise _fail(name, "empty", f"an empty model came back with variables {list(ss.variables)}")
    if len(ss) and not np.allclose(ss.record.energy, 1.5):
        raise _fail(name, "empty", f"energies {ss.record.energy.tolist()} but the offset is 1.5")

    for what, bqm in _check_bqms():
        ss = run(bqm, "energies")
        if len(ss) == 0:
            raise _fail(name, "energies", f"no samples for a {what}")
        if set(ss.variables) != set(bqm.variables):
            raise _fail(
                name,
                "energies",
                f"variables {sorted(map(str, ss.variables))} for a {what} "
                f"over {sorted(map(str, bqm.variables))}",
            )
        if ss.vartype is not bqm.vartype:
            raise _fail(name, "energies", f"vartype {ss.vartype.name} for a {bqm.vartype.name} {what}")
        try:
            dimod.testing.assert_sampleset_energies(ss, bqm, precision=6)
        except AssertionError as exc:
            raise _fail(name, "energies", f"{what}: {exc}") from None

    if "seed" in sampler.parameters:
        bqm = _check_bqms()[1][1]
        a = run(bqm, "seed", seed=12345)
        b = run(bqm, "seed", seed=12345)
        order = list(bqm.variables)
        sa = a.record.sample[:, [a.variables.index(v) for v in order]]
        sb = b.record.sample[:, [b.variables.index(v) for v in order]]
        if sa.shape != sb.shape or not (sa == sb).all():
            raise _fail(name, "seed", "two calls with seed=12345 gave different samples")
