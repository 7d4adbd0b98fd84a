"""The QAOA sampler: a dimod Sampler that runs the pieces of this subpackage."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import dimod
import numpy as np

from mecsim.errors import SolverError

try:  # the qaoa extra (see _base._require_qiskit)
    from qiskit_aer.noise import NoiseModel
    from qiskit_aer.primitives import SamplerV2
except ImportError:  # pragma: no cover - exercised only without the extra
    pass

from mecsim.decision.qaoa._base import (
    _EXPECTATION_PATHS,
    _MIXERS,
    _MODES,
    _OBJECTIVES,
    _SAMPLING,
    _STARTS,
    _TARGETS,
    _TOPOLOGIES,
    AER_STATEVECTOR_MAX_QUBITS,
    BASIS_GATES,
    DEFAULT_DT,
    FAST_MAX_LOG2_DIM,
    _require_qiskit,
)
from mecsim.decision.qaoa.aer import (
    _aer_sample,
    _AerEstimatorPath,
    _backend_options,
    _counts_to_bits,
    _device_metrics,
    _metrics,
    _noise_model,
    _param_values,
)
from mecsim.decision.qaoa.fast import _FastSimulator, _single_threaded_blas
from mecsim.decision.qaoa.problem import (
    _apply_warm_start,
    _build_problem,
    _resolve_mixer,
    greedy_one_hot_solution,
)
from mecsim.decision.qaoa.schedules import _angles_from, _optimise, fixed_angle_schedule, interp_angles


def _int_seed(ss: np.random.SeedSequence) -> int:
    return int(ss.generate_state(1, np.uint32)[0])


class QAOASampler(dimod.Sampler):
    """QAOA on a simulated gate-model device, as a dimod Sampler.

    Every constructor argument is a default that a ``sample`` keyword of the same name overrides
    for one call (except ``seed``'s sequence, ``max_qubits``, ``fast_max_log2_dim`` and
    ``aer_statevector_max_qubits``).

    Limits (measured on a 2-core machine, see tests/benchmarks/qaoa.py): the numpy fast path
    takes a simulated dimension up to ``2**fast_max_log2_dim`` -- ``2^n`` for the X mixer, the
    product of the group sizes (times 2 per free variable) for the XY mixer, so 10 tasks x 4
    servers (40 qubits, 4^10 states) is still fast. One evaluation costs ~0.1 ms (XY, <= 1k
    states), 2.5 ms (X, 16 qubits) and 45-55 ms (X, 20 qubits; 25-30 ms in single precision,
    ``fast_precision``) at p = 2. Beyond the fast path the
    angles are optimised on Aer's EstimatorV2 (about 1-2 s per evaluation at 20 qubits, with
    ``mps_max_bond`` truncation above ``aer_statevector_max_qubits``): use ``mode="fixed"`` or
    warm starts with a small ``maxiter`` there. While it runs, the fast path holds OpenBLAS at
    one thread (process-wide; restored afterwards) because threaded thin matrix products were
    several times slower on a shared machine.

    Args:
        p: QAOA layers.
        shots: measurements of the final circuit.
        mixer: ``"auto"`` (``"xy"`` when ``one_hot`` is given, else ``"x"``), ``"x"`` or ``"xy"``.
        mode: ``"optimize"`` (scipy loop over the angles) or ``"fixed"`` (no loop: the given
            ``initial_angles``, else :func:`fixed_angle_schedule`).
        optimizer: a ``scipy.optimize.minimize`` method; COBYLA by default.
        maxiter: most objective evaluations in ``"optimize"`` mode.
        expectation: ``"auto"`` (fast when the simulated dimension is at most
            ``2**fast_max_log2_dim``), ``"fast"`` or ``"estimator"``.
        sampling: ``"auto"`` (fast statevector unless a noise model is given or the fast path is
            out of reach), ``"fast"`` or ``"aer"``.
        start: start of the optimisation without ``initial_angles``: ``"ramp"`` (the fixed
            schedule), ``"interp"`` (optimise p = 1, 2, ... in turn, INTERP between levels,
            ``maxiter`` shared) or ``"random"`` (``gamma`` uniform in (0, dt), ``beta`` in
            (-dt, 0), from the seed).
        dt: ramp step of the fixed schedule (default :data:`DEFAULT_DT` of the mixer).
        rhobeg: initial step of COBYLA (radians).
        xy_topology: ``"ring"`` or ``"complete"`` pairs in each one-hot group.
        target: ``"all-to-all"``, ``"linear"``, a real device's ``Target`` as ``"fake:<Name>"``
            (qiskit-ibm-runtime's fake devices, e.g. ``"fake:FakeSherbrooke"``) or a qiskit
            ``BackendV2``, or None (skip the transpile for metrics). With a device the metrics
            also give ``circuit_duration_s`` and ``qpu_time_s`` (:mod:`mecsim.decision.hardware`:
            ``evaluations + 1`` jobs of ``shots``, or one job with fixed angles).
        noise_model: an Aer NoiseModel, ``"depolarizing:<p1>,<p2>"``, or ``"backend"`` (the
            device target's own noise, ``AerSimulator.from_backend``); applies to the final
            shots only (sampled on Aer); the angles are optimised noiselessly.
        primitive: any qiskit ``SamplerV2`` (e.g. a runtime primitive on a device, or qiskit's
            local ``StatevectorSampler``) that draws the final shots instead of the simulators
            (``sampling="primitive"``, chosen automatically when one is given). The circuit is
            transpiled to the device target when one is set.
        job_latency_s: per-job overhead of the QPU time model.
        aer_method: Aer simulation method for Aer paths; ``"auto"`` = statevector up to
            ``aer_statevector_max_qubits``, matrix_product_state above (``"automatic"`` with
            noise).
        mps_max_bond: bond-dimension cap of matrix_product_state (None: exact, which is slow on
            these non-local circuits: 340 s for one sampling at 32 qubits).
        aer_threads: Aer's ``max_parallel_threads`` (0 = all cores). 1 by default: on the shared
            2-core machine Aer's OpenMP threads made one 16-qubit estimator evaluation 1.2-2.6 s
            instead of 0.08-0.13 s on one thread.
        objective: what the optimiser minimises: ``"expectation"`` (``<C>``) or ``"cvar"``, the
            mean of the lowest ``cvar_alpha`` share of the outcome distribution (Barkoutsos et
            al., Quantum 4, 256, 2020): it rewards concentrating some probability on good states
            rather than moving the mean, which is what a best-of-shots decision needs. Exact on
            the fast path; the estimator path takes only ``"expectation"``.
        cvar_alpha: the CVaR share, in (0, 1].
        warm_start_weight: with a ``warm_start`` solution, the probability each register puts
            *off* the solution at the start (see :func:`_apply_warm_start`).
        classical_start: ``"greedy"`` to warm-start every call from
            :func:`greedy_one_hot_solution` when no ``warm_start`` is given; None (default) for
            the uniform start.
        fast_precision: state precision of the fast path inside the optimisation loop:
            ``"double"`` (complex128), ``"single"`` (complex64: about 1.8x faster at 20 qubits,
            ``<C>`` within ~1e-6 of the cost scale of double, see
            :class:`~mecsim.decision.qaoa.fast._FastSimulator`) or ``"auto"`` (single from
            2^16 simulated states in ``"optimize"`` mode, double below). The final state, its
            shots and ``info["final_expectation"]`` are always computed in double precision;
            ``info["fast_precision"]`` records the loop's.
        seed: one integer seed for everything (optimizer start, shots, transpiler, Aer). A
            sampler built with a seed gives a reproducible sequence of calls (each call draws its
            own seed from it, recorded as ``info["seed"]``); ``sample(seed=...)`` replays one.
        max_qubits: larger BQMs are refused with :class:`~mecsim.errors.SolverError`.
        fast_max_log2_dim: largest log2 dimension for the numpy path.
        aer_statevector_max_qubits: above this, Aer uses matrix_product_state.

    Example:
        >>> import dimod
        >>> bqm = dimod.BinaryQuadraticModel.from_qubo({(0, 0): -1, (1, 1): -1, (0, 1): 2})
        >>> ss = QAOASampler(p=2, seed=3).sample(bqm, one_hot=[[0, 1]])
        >>> int(sum(ss.first.sample.values())), ss.info["feasible_fraction"]
        (1, 1.0)
    """

    def __init__(
        self,
        p: int = 2,
        shots: int = 1024,
        mixer: str = "auto",
        mode: str = "optimize",
        optimizer: str = "COBYLA",
        maxiter: int = 100,
        expectation: str = "auto",
        sampling: str = "auto",
        start: str = "ramp",
        dt: float | None = None,
        rhobeg: float = 0.2,
        xy_topology: str = "ring",
        target: str | None = "all-to-all",
        noise_model: Any = None,
        primitive: Any = None,
        job_latency_s: float = 1.0,
        aer_method: str = "auto",
        mps_max_bond: int | None = 32,
        aer_threads: int = 1,
        objective: str = "expectation",
        cvar_alpha: float = 0.25,
        warm_start_weight: float = 0.3,
        classical_start: str | None = None,
        fast_precision: str = "auto",
        seed: int | None = None,
        max_qubits: int = 32,
        fast_max_log2_dim: int = FAST_MAX_LOG2_DIM,
        aer_statevector_max_qubits: int = AER_STATEVECTOR_MAX_QUBITS,
    ) -> None:
        _require_qiskit()
        if max_qubits < 1:
            raise ValueError(f"max_qubits must be >= 1, got {max_qubits}")
        self._defaults: dict[str, Any] = {
            "p": p,
            "shots": shots,
            "mixer": mixer,
            "mode": mode,
            "optimizer": optimizer,
            "maxiter": maxiter,
            "expectation": expectation,
            "sampling": sampling,
            "start": start,
            "dt": dt,
            "rhobeg": rhobeg,
            "xy_topology": xy_topology,
            "target": target,
            "noise_model": noise_model,
            "primitive": primitive,
            "job_latency_s": job_latency_s,
            "aer_method": aer_method,
            "mps_max_bond": mps_max_bond,
            "aer_threads": aer_threads,
            "objective": objective,
            "cvar_alpha": cvar_alpha,
            "warm_start_weight": warm_start_weight,
            "classical_start": classical_start,
            "fast_precision": fast_precision,
        }
        self._check(self._defaults)
        if noise_model != "backend":
            _noise_model(noise_model)  # validate early
        self.max_qubits = int(max_qubits)
        self.fast_max_log2_dim = int(fast_max_log2_dim)
        self.aer_statevector_max_qubits = int(aer_statevector_max_qubits)
        self._seedseq = np.random.SeedSequence(seed)
        self.seed = seed
        self._parameters = {name: [] for name in self._defaults}
        self._parameters.update({"one_hot": [], "initial_angles": [], "warm_start": [], "seed": []})
        self._properties = {
            "max_qubits": self.max_qubits,
            "fast_max_log2_dim": self.fast_max_log2_dim,
            "aer_statevector_max_qubits": self.aer_statevector_max_qubits,
            "mixers": _MIXERS,
            "modes": _MODES,
            "expectation_paths": _EXPECTATION_PATHS,
            "sampling_methods": _SAMPLING,
            "basis_gates": BASIS_GATES,
            "defaults": dict(self._defaults),
        }

    @property
    def parameters(self) -> dict[str, list[str]]:
        """Keyword arguments ``sample`` accepts (dimod convention)."""
        return self._parameters

    @property
    def properties(self) -> dict[str, Any]:
        """What the sampler can take: ``max_qubits`` and the limits of each path."""
        return self._properties

    @staticmethod
    def _check(o: Mapping[str, Any]) -> None:
        if not isinstance(o["p"], (int, np.integer)) or o["p"] < 1:
            raise ValueError(f"p must be an integer >= 1, got {o['p']!r}")
        if not isinstance(o["shots"], (int, np.integer)) or o["shots"] < 1:
            raise ValueError(f"shots must be an integer >= 1, got {o['shots']!r}")
        if not isinstance(o["maxiter"], (int, np.integer)) or o["maxiter"] < 1:
            raise ValueError(f"maxiter must be an integer >= 1, got {o['maxiter']!r}")
        for name, allowed in (
            ("mixer", _MIXERS),
            ("mode", _MODES),
            ("expectation", _EXPECTATION_PATHS),
            ("sampling", _SAMPLING),
            ("start", _STARTS),
            ("xy_topology", _TOPOLOGIES),
            ("objective", _OBJECTIVES),
        ):
            if o[name] not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {o[name]!r}")
        if isinstance(o["target"], str) and o["target"].startswith("fake:"):
            pass  # resolved (and checked) by mecsim.decision.hardware.get_backend
        elif o["target"] is not None and not isinstance(o["target"], str) and hasattr(o["target"], "target"):
            pass  # a BackendV2
        elif o["target"] is not None and o["target"] not in _TARGETS:
            raise ValueError(f"target must be one of {_TARGETS} or None, got {o['target']!r}")
        if not isinstance(o["aer_threads"], (int, np.integer)) or o["aer_threads"] < 0:
            raise ValueError(f"aer_threads must be an integer >= 0, got {o['aer_threads']!r}")
        if not isinstance(o["optimizer"], str):
            raise ValueError(
                f"optimizer must be a scipy.optimize.minimize method name, got {o['optimizer']!r}"
            )
        if o["dt"] is not None and not o["dt"] > 0:
            raise ValueError(f"dt must be > 0, got {o['dt']!r}")
        if not o["rhobeg"] > 0:
            raise ValueError(f"rhobeg must be > 0, got {o['rhobeg']!r}")
        if not 0.0 < float(o["cvar_alpha"]) <= 1.0:
            raise ValueError(f"cvar_alpha must be in (0, 1], got {o['cvar_alpha']!r}")
        if o["fast_precision"] not in ("auto", "double", "single"):
            raise ValueError(
                f"fast_precision must be 'auto', 'double' or 'single', got {o['fast_precision']!r}"
            )
        if o["classical_start"] not in (None, "greedy"):
            raise ValueError(f"classical_start must be None or 'greedy', got {o['classical_start']!r}")
        if not 0.0 < float(o["warm_start_weight"]) < 1.0:
            raise ValueError(f"warm_start_weight must be in (0, 1), got {o['warm_start_weight']!r}")

    def sample(self, bqm: dimod.BinaryQuadraticModel, **kwargs: Any) -> dimod.SampleSet:
        """Run QAOA on ``bqm`` and return the measured shots.

        Args:
            bqm: a BINARY or SPIN BQM with at most ``max_qubits`` variables.
            **kwargs: any constructor default (``p``, ``shots``, ``mixer``, ...) plus
                ``one_hot`` (list of label lists, each with exactly one 1), ``initial_angles``
                (``{"gamma": [...], "beta": [...]}`` or ``[gamma..., beta...]``; another number of
                layers is resampled with :func:`interp_angles`), ``warm_start`` (a classical
                solution ``{label: value}`` to start from, see ``warm_start_weight``) and ``seed``.

        Returns:
            One row per distinct measured sample with its BQM energy and ``num_occurrences``.
            ``info`` holds: ``p``, ``shots``, ``mixer`` (resolved), ``xy_topology``, ``mode``,
            ``method`` (how the shots were drawn: ``"fast-statevector"`` or
            ``"aer-<method>[-noisy]"``), ``expectation_path`` (``"fast"``/``"estimator"``),
            ``optimizer`` (None in fixed mode), ``evaluations`` (objective calls),
            ``final_expectation`` (noiseless ``<E>`` in BQM units at the final angles) and
            ``final_expectation_source`` (``"exact"``, or ``"shots"`` for fixed angles on the
            estimator path), ``angles`` (``{"gamma", "beta"}`` on the normalised cost: pass them
            back as ``initial_angles``), ``cost_scale``, ``num_qubits``, ``best_energy``,
            ``p_best`` (probability of the best sample: exact on the fast path, its shot share
            on Aer), ``feasible_fraction`` (share of shots with every one-hot group satisfied;
            only with ``one_hot``), ``circuit_depth``, ``two_qubit_gates`` and ``target`` (None
            when ``target=None``), ``seed`` (replays the call) and ``wall_s``.

        Raises:
            SolverError: the BQM has more than ``max_qubits`` variables, or the requested path
                cannot take it.
            ValueError: a bad keyword value.
        """
        t0 = time.perf_counter()
        kwargs = self.remove_unknown_kwargs(**kwargs)
        one_hot = kwargs.pop("one_hot", None)
        initial = kwargs.pop("initial_angles", None)
        warm = kwargs.pop("warm_start", None)
        seed = kwargs.pop("seed", None)
        o = {**self._defaults, **kwargs}
        self._check(o)
        if seed is None:
            seed = _int_seed(self._seedseq.spawn(1)[0])
        seed = int(seed)
        ss_start, ss_shots, ss_tr, ss_sim = np.random.SeedSequence(seed).spawn(4)

        n = bqm.num_variables
        if n > self.max_qubits:
            raise SolverError(
                f"QAOA sampler refuses a BQM of {n} variables (qubits): the limit is "
                f"max_qubits={self.max_qubits}"
            )
        mixer = _resolve_mixer(o["mixer"], one_hot)
        if n == 0:
            return self._empty(bqm, o, mixer, seed, t0)
        prob = _build_problem(bqm, mixer, one_hot, o["xy_topology"])
        if warm is None and o["classical_start"] == "greedy":
            warm = greedy_one_hot_solution(bqm, one_hot)
            if bqm.vartype is dimod.SPIN:
                warm = {v: 2 * x - 1 for v, x in warm.items()}
        if warm is not None:
            if bqm.vartype is dimod.SPIN:
                warm = {v: (int(x) + 1) // 2 for v, x in dict(warm).items()}
            _apply_warm_start(prob, warm, float(o["warm_start_weight"]))
        p = int(o["p"])
        fast_ok = prob.log2_dim <= self.fast_max_log2_dim + 1e-9
        path = o["expectation"]
        if path == "auto":
            path = "fast" if fast_ok else "estimator"
        device = None
        if o["target"] is not None and not (isinstance(o["target"], str) and o["target"] in _TARGETS):
            from mecsim.decision.hardware import get_backend

            device = get_backend(o["target"])
        if o["noise_model"] == "backend":
            if device is None:
                raise ValueError("noise_model='backend' needs a device target ('fake:<Name>' or a BackendV2)")
            noise = "backend"
        else:
            noise = _noise_model(o["noise_model"])
        sampling = o["sampling"]
        if o["primitive"] is not None and sampling in ("auto", "primitive"):
            sampling = "primitive"
        elif sampling == "primitive":
            raise ValueError("sampling='primitive' needs primitive=<a qiskit SamplerV2>")
        if sampling == "auto":
            sampling = "fast" if fast_ok and noise is None else "aer"
        if noise is not None and sampling == "fast":
            raise ValueError("a noise_model needs sampling='aer' (or 'auto')")
        if not fast_ok and "fast" in (path, sampling):
            raise SolverError(
                f"the fast path simulates 2^{prob.log2_dim:.1f} amplitudes for this BQM "
                f"({n} qubits, mixer {mixer!r}); the limit is 2^{self.fast_max_log2_dim} "
                "(fast_max_log2_dim): use expectation='estimator' and sampling='aer'"
            )
        aer_method = o["aer_method"]
        if aer_method == "auto":
            if noise is not None:
                aer_method = "automatic"
            elif n <= self.aer_statevector_max_qubits:
                aer_method = "statevector"
            else:
                aer_method = "matrix_product_state"

        precision = o["fast_precision"]
        if precision == "auto":
            single = path == "fast" and o["mode"] == "optimize" and prob.log2_dim >= 16 - 1e-9
            precision = "single" if single else "double"
        if path != "fast":
            precision = None
        dtype = np.complex64 if precision == "single" else np.complex128
        fast = _FastSimulator(prob, dtype) if (path == "fast" or sampling == "fast") else None
        if o["objective"] == "cvar" and path != "fast":
            raise ValueError("objective='cvar' needs the fast expectation path (expectation='fast'/'auto')")
        if path == "fast":
            assert fast is not None
            if o["objective"] == "cvar":
                alpha = float(o["cvar_alpha"])

                def evaluate(g: Sequence[float], b: Sequence[float]) -> float:
                    return fast.cvar(g, b, alpha)
            else:
                evaluate = fast.expectation
        else:
            est = _AerEstimatorPath(
                prob, p, _int_seed(ss_tr), aer_method, o["mps_max_bond"], o["aer_threads"]
            )
            evaluate = est.expectation

        dt = o["dt"] if o["dt"] is not None else DEFAULT_DT[mixer]
        evaluations = 0
        if initial is not None:
            g0, b0 = _angles_from(initial)
            angles = interp_angles(g0, b0, p)
        elif o["mode"] == "optimize" and o["start"] == "random":
            rng = np.random.default_rng(ss_start)
            # the ramp's signs (gamma > 0, beta < 0), random magnitudes up to dt
            angles = {
                "gamma": rng.uniform(0.0, dt, p).tolist(),
                "beta": (-rng.uniform(0.0, dt, p)).tolist(),
            }
        else:
            angles = fixed_angle_schedule(p, dt)

        if o["mode"] == "fixed":
            gamma, beta = np.array(angles["gamma"]), np.array(angles["beta"])
            expectation = None
        elif o["start"] == "interp" and initial is None and p > 1:
            budget = int(o["maxiter"])
            layer = fixed_angle_schedule(1, dt)
            gamma, beta = np.array(layer["gamma"]), np.array(layer["beta"])
            for q in range(1, p + 1):
                if q > 1:
                    nxt = interp_angles(gamma, beta, q)
                    gamma, beta = np.array(nxt["gamma"]), np.array(nxt["beta"])
                share = budget // (p - q + 1)
                if share < 1:  # budget spent: lift the angles without optimising
                    expectation = None
                    continue
                gamma, beta, expectation, used = _optimise(
                    evaluate, gamma, beta, o["optimizer"], share, o["rhobeg"]
                )
                budget -= used
                evaluations += used
        else:
            gamma, beta, expectation, evaluations = _optimise(
                evaluate,
                np.array(angles["gamma"]),
                np.array(angles["beta"]),
                o["optimizer"],
                int(o["maxiter"]),
                o["rhobeg"],
            )

        shots = int(o["shots"])
        p_state: np.ndarray | None = None
        objective_value = expectation
        if fast is not None and fast.dtype == np.complex64:
            # the loop ran in single precision: the final state and <C> in double (the single
            # precision buffers are released first)
            fast = None
            fast = _FastSimulator(prob)
            expectation = None
        if o["objective"] == "cvar":
            expectation = None  # the optimiser's value is the CVaR; <E> is computed below
        if sampling == "fast":
            assert fast is not None
            probs = fast.probabilities(gamma, beta)
            if expectation is None:
                with _single_threaded_blas():
                    expectation = float(probs @ fast.cost)
            probs = probs / probs.sum()
            counts_all = np.random.default_rng(ss_shots).multinomial(shots, probs)
            idx = np.flatnonzero(counts_all)
            bits, counts = fast.bits_of(idx), counts_all[idx]
            p_state = probs[idx]
            method = "fast-statevector"
        else:
            if expectation is None and path == "fast":
                assert fast is not None
                expectation = fast.expectation(gamma, beta)
            if sampling == "primitive" or noise == "backend":
                from mecsim.decision.hardware import device_metrics

                qc = prob.circuit(p)
                qc.measure_all()
                values = _param_values(qc, gamma, beta)
                qc = qc.assign_parameters(dict(zip(qc.parameters, values, strict=True)))
                if device is not None:
                    qc = device_metrics(qc, device, _int_seed(ss_tr))["transpiled"]
                if sampling == "primitive":
                    runner, method = o["primitive"], f"primitive-{type(o['primitive']).__name__}"
                else:
                    runner = SamplerV2(
                        seed=_int_seed(ss_sim),
                        options={
                            "backend_options": {
                                **_backend_options("automatic", None, o["aer_threads"]),
                                "noise_model": NoiseModel.from_backend(device),
                            }
                        },
                    )
                    method = f"aer-noisy-{getattr(device, 'name', 'device')}"
                counts_map = runner.run([qc], shots=shots).result()[0].data.meas.get_counts()
                bits, counts = _counts_to_bits(counts_map, qc, prob.n)
            else:
                bits, counts = _aer_sample(
                    prob,
                    p,
                    gamma,
                    beta,
                    shots,
                    _int_seed(ss_tr),
                    _int_seed(ss_sim),
                    aer_method,
                    noise,
                    o["mps_max_bond"],
                    o["aer_threads"],
                )
                method = f"aer-{aer_method}" + ("-noisy" if noise is not None else "")

        # qubit order -> the BQM's variable order and vartype
        pos = {v: q for q, v in enumerate(prob.order)}
        labels = list(bqm.variables)
        samples = bits[:, [pos[v] for v in labels]]
        if bqm.vartype is dimod.SPIN:
            samples = 2 * samples - 1
        energies = bqm.energies((samples, labels))
        best = int(np.argmin(energies))
        exact = expectation is not None
        if expectation is None:  # fixed angles on the estimator path: no circuit run just for it
            expectation = float(energies @ counts / counts.sum())
        info: dict[str, Any] = {
            "p": p,
            "shots": shots,
            "mixer": mixer,
            "xy_topology": o["xy_topology"] if mixer == "xy" else None,
            "mode": o["mode"],
            "method": method,
            "expectation_path": path,
            "fast_precision": precision,
            "optimizer": o["optimizer"] if o["mode"] == "optimize" else None,
            "evaluations": evaluations,
            "final_expectation": float(expectation),
            "final_expectation_source": "exact" if exact else "shots",
            "objective": o["objective"],
            "cvar_alpha": float(o["cvar_alpha"]) if o["objective"] == "cvar" else None,
            "final_objective": float(objective_value) if objective_value is not None else None,
            "warm_start": warm is not None,
            "angles": {"gamma": [float(x) for x in gamma], "beta": [float(x) for x in beta]},
            "cost_scale": prob.scale,
            "num_qubits": n,
            "best_energy": float(energies[best]),
            "p_best": float(p_state[best]) if p_state is not None else float(counts[best] / shots),
            "seed": seed,
        }
        if one_hot:
            info["feasible_fraction"] = float(counts[prob.is_feasible(bits)].sum() / shots)
        if device is not None:
            info.update(_device_metrics(prob, p, device, o["target"]))
            from mecsim.decision.hardware import QPUTimeModel

            model = QPUTimeModel.from_backend(device, info["circuit_duration_s"], float(o["job_latency_s"]))
            info["qpu_time_s"] = model.time_s(shots, jobs=evaluations + 1)
        elif o["target"] is not None:
            # transpiler seed 0 for the reported metrics: comparable between calls, and cached
            info.update(_metrics(prob, p, o["target"], 0))
        else:
            info.update({"circuit_depth": None, "two_qubit_gates": None, "target": None})
        info["wall_s"] = time.perf_counter() - t0
        return dimod.SampleSet.from_samples(
            (samples, labels),
            vartype=bqm.vartype,
            energy=energies,
            num_occurrences=counts,
            info=info,
        )

    def _empty(
        self, bqm: dimod.BinaryQuadraticModel, o: Mapping[str, Any], mixer: str, seed: int, t0: float
    ) -> dimod.SampleSet:
        """A BQM without variables: one empty sample with the offset as energy."""
        info = {
            "p": int(o["p"]),
            "shots": int(o["shots"]),
            "mixer": mixer,
            "mode": o["mode"],
            "method": "none",
            "expectation_path": None,
            "optimizer": None,
            "evaluations": 0,
            "final_expectation": float(bqm.offset),
            "angles": {"gamma": [], "beta": []},
            "cost_scale": 1.0,
            "num_qubits": 0,
            "best_energy": float(bqm.offset),
            "p_best": 1.0,
            "circuit_depth": 0,
            "two_qubit_gates": 0,
            "target": o["target"],
            "seed": seed,
            "wall_s": time.perf_counter() - t0,
        }
        return dimod.SampleSet.from_samples(
            (np.zeros((1, 0), dtype=np.int8), []),
            vartype=bqm.vartype,
            energy=[float(bqm.offset)],
            num_occurrences=[int(o["shots"])],
            info=info,
        )


def _make_qaoa_sampler(**params: Any) -> QAOASampler:
    """Factory for the solver registry: QAOA (numpy fast path + qiskit-aer) as a dimod Sampler.

    Raises:
        MissingExtraError: qiskit or qiskit-aer is not installed (``pip install 'mecsim[qaoa]'``).
    """
    _require_qiskit()
    return QAOASampler(**params)
