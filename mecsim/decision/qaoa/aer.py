"""qiskit-aer and primitives: the estimator path, Aer sampling, circuit metrics on any target."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import dimod
import numpy as np

try:  # the qaoa extra (see _base._require_qiskit)
    from qiskit import QuantumCircuit, transpile
    from qiskit.transpiler import CouplingMap
    from qiskit_aer import AerSimulator
    from qiskit_aer.noise import NoiseModel, depolarizing_error
    from qiskit_aer.primitives import EstimatorV2, SamplerV2
except ImportError:  # pragma: no cover - exercised only without the extra
    pass

from mecsim.decision.qaoa._base import _TARGETS, BASIS_GATES, _require_qiskit
from mecsim.decision.qaoa.problem import _build_problem, _Problem, _resolve_mixer


def _param_values(circuit: QuantumCircuit, gamma: Sequence[float], beta: Sequence[float]) -> list[float]:
    """Values for ``circuit.parameters`` (named ``γ[k]`` and ``β[k]`` by qaoa_ansatz)."""
    values = {f"γ[{k}]": float(g) for k, g in enumerate(gamma)}
    values.update({f"β[{k}]": float(b) for k, b in enumerate(beta)})
    return [values[prm.name] for prm in circuit.parameters]


def _backend_options(method: str, mps_max_bond: int | None, threads: int = 1) -> dict[str, Any]:
    """AerSimulator options: the method, its thread count and a bond cap for MPS."""
    options: dict[str, Any] = {"method": method, "max_parallel_threads": int(threads)}
    if method == "matrix_product_state" and mps_max_bond is not None:
        options["matrix_product_state_max_bond_dimension"] = int(mps_max_bond)
    return options


class _AerEstimatorPath:
    """``<C>`` from qiskit-aer's EstimatorV2 on the transpiled qaoa_ansatz circuit."""

    def __init__(
        self,
        prob: _Problem,
        p: int,
        seed: int,
        method: str,
        mps_max_bond: int | None = None,
        threads: int = 1,
    ) -> None:
        self.prob = prob
        options = _backend_options(method, mps_max_bond, threads)
        sim = AerSimulator(**options)
        self.circuit = transpile(prob.circuit(p), backend=sim, seed_transpiler=seed)
        op = prob.cost_operator()
        layout = self.circuit.layout
        self.observable = op if layout is None else op.apply_layout(layout)
        self.estimator = EstimatorV2(
            options={
                "default_precision": 0.0,
                "backend_options": options,
                "run_options": {"seed_simulator": seed},
            }
        )

    def expectation(self, gamma: Sequence[float], beta: Sequence[float]) -> float:
        values = _param_values(self.circuit, gamma, beta)
        result = self.estimator.run([(self.circuit, self.observable, values)]).result()
        ev = float(np.asarray(result[0].data.evs).reshape(-1)[0])
        return self.prob.c0 + self.prob.scale * ev


def _noise_model(spec: Any) -> NoiseModel | None:
    """An Aer NoiseModel, or ``"depolarizing:<p1>,<p2>"`` (1q on sx/x, 2q on cx)."""
    if spec is None or isinstance(spec, NoiseModel):
        return spec
    if isinstance(spec, str) and spec.startswith("depolarizing:"):
        try:
            p1, p2 = (float(x) for x in spec.split(":", 1)[1].split(","))
        except ValueError:
            raise ValueError(f"noise_model {spec!r} is not of the form 'depolarizing:<p1>,<p2>'") from None
        if not (0.0 <= p1 <= 1.0 and 0.0 <= p2 <= 1.0):
            raise ValueError(f"depolarizing probabilities must be in [0, 1], got {p1}, {p2}")
        model = NoiseModel(basis_gates=list(BASIS_GATES))
        if p1 > 0:
            model.add_all_qubit_quantum_error(depolarizing_error(p1, 1), ["sx", "x"])
        if p2 > 0:
            model.add_all_qubit_quantum_error(depolarizing_error(p2, 2), ["cx"])
        return model
    raise ValueError(f"noise_model must be an Aer NoiseModel or 'depolarizing:<p1>,<p2>', got {spec!r}")


def _aer_sample(
    prob: _Problem,
    p: int,
    gamma: Sequence[float],
    beta: Sequence[float],
    shots: int,
    seed_transpiler: int,
    seed_simulator: int,
    method: str,
    noise: NoiseModel | None,
    mps_max_bond: int | None = None,
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Sample the bound circuit on Aer: (distinct qubit-bit rows, counts)."""
    qc = prob.circuit(p)
    qc.measure_all()
    qc = qc.assign_parameters(dict(zip(qc.parameters, _param_values(qc, gamma, beta), strict=True)))
    options = _backend_options(method, mps_max_bond, threads)
    if noise is not None:
        options["noise_model"] = noise
        tqc = transpile(
            qc, basis_gates=list(BASIS_GATES), optimization_level=1, seed_transpiler=seed_transpiler
        )
    else:
        tqc = transpile(qc, backend=AerSimulator(**options), seed_transpiler=seed_transpiler)
    sampler = SamplerV2(seed=seed_simulator, options={"backend_options": options})
    counts = sampler.run([tqc], shots=shots).result()[0].data.meas.get_counts()
    keys = list(counts)
    n = prob.n
    bits = np.array([[int(k[n - 1 - q]) for q in range(n)] for k in keys], dtype=np.int8)
    return bits.reshape(len(keys), n), np.array([counts[k] for k in keys], dtype=np.int64)


def _structure_key(prob: _Problem) -> tuple[Any, ...]:
    h, j, _ = prob.ising()
    return (
        prob.n,
        tuple(np.flatnonzero(h).tolist()),
        tuple(sorted(j)),
        prob.mixer,
        prob.topology,
        tuple(tuple(g) for g in prob.groups),
        tuple(r.warm is not None for r in prob.registers),
    )


#: (structure, p, target, seed) -> (depth, two-qubit gates, qubits); least recently used first.
_METRICS_CACHE: OrderedDict[tuple[Any, ...], tuple[int, int, int]] = OrderedDict()
_METRICS_CACHE_SIZE = 256


def _transpiled_metrics(prob: _Problem, p: int, target: str, seed: int) -> tuple[int, int, int]:
    qc = prob.circuit(p)
    coupling = CouplingMap.from_line(prob.n) if target == "linear" and prob.n > 1 else None
    tqc = transpile(
        qc,
        basis_gates=list(BASIS_GATES),
        coupling_map=coupling,
        optimization_level=1,
        seed_transpiler=seed,
    )
    twoq = sum(1 for inst in tqc.data if inst.operation.num_qubits == 2)
    return int(tqc.depth()), int(twoq), int(tqc.num_qubits)


def _metrics(prob: _Problem, p: int, target: str, seed: int = 0) -> dict[str, Any]:
    if target not in _TARGETS:
        raise ValueError(f"target must be one of {_TARGETS}, got {target!r}")
    # the circuit's shape depends on which terms exist, not on their values: cache per structure
    key = (_structure_key(prob), p, target, seed)
    if key in _METRICS_CACHE:
        _METRICS_CACHE.move_to_end(key)
    else:
        _METRICS_CACHE[key] = _transpiled_metrics(prob, p, target, seed)
        while len(_METRICS_CACHE) > _METRICS_CACHE_SIZE:
            _METRICS_CACHE.popitem(last=False)
    depth, twoq, nq = _METRICS_CACHE[key]
    return {
        "circuit_depth": depth,
        "two_qubit_gates": twoq,
        "num_qubits": nq,
        "target": f"{target}, basis {list(BASIS_GATES)}, optimization_level=1",
    }


def _device_metrics(prob: _Problem, p: int, device: Any, spec: Any) -> dict[str, Any]:
    """Depth, two-qubit gates and duration on a device's Target (cached per structure)."""
    from mecsim.decision.hardware import device_metrics

    key = (_structure_key(prob), p, "device", getattr(device, "name", id(device)))
    if key in _METRICS_CACHE:
        _METRICS_CACHE.move_to_end(key)
        return dict(_METRICS_CACHE[key])  # type: ignore[arg-type]
    qc = prob.circuit(p)
    qc.measure_all()
    m = device_metrics(qc, device, 0)
    out = {k: v for k, v in m.items() if k != "transpiled"}
    out["num_qubits"] = prob.n
    _METRICS_CACHE[key] = out  # type: ignore[assignment]
    while len(_METRICS_CACHE) > _METRICS_CACHE_SIZE:
        _METRICS_CACHE.popitem(last=False)
    return dict(out)


def _counts_to_bits(
    counts: Mapping[str, int], circuit: QuantumCircuit, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Measured bit strings (``meas`` register of ``measure_all``) as qubit rows of the problem.

    ``measure_all`` measures the virtual qubits in order into ``meas[0..n-1]``, and a transpiled
    circuit keeps that classical mapping, so bit ``q`` (from the right) is problem qubit ``q``.
    """
    keys = list(counts)
    bits = np.array([[int(k[len(k) - 1 - q]) for q in range(n)] for k in keys], dtype=np.int8)
    return bits.reshape(len(keys), n), np.array([counts[k] for k in keys], dtype=np.int64)


def circuit_metrics(
    bqm: dimod.BinaryQuadraticModel,
    p: int = 1,
    mixer: str = "auto",
    one_hot: Sequence[Sequence[Hashable]] | None = None,
    target: str = "all-to-all",
    *,
    xy_topology: str = "ring",
    seed: int = 0,
) -> dict[str, Any]:
    """Depth and two-qubit gate count of the QAOA circuit after transpiling to a generic target.

    The target is the basis ``['rz', 'sx', 'x', 'cx']`` with either all-to-all coupling (no
    routing) or a linear chain (``target="linear"``, SWAPs inserted by qiskit's router),
    qiskit ``transpile`` at optimization_level 1. Results are cached per structure (which terms
    are non-zero), since the values of the coefficients do not change the circuit's shape.

    Args:
        bqm: the problem.
        p: QAOA layers.
        mixer: ``"auto"``, ``"x"`` or ``"xy"``.
        one_hot: one-hot groups (needed for ``"xy"``).
        target: ``"all-to-all"`` or ``"linear"``.
        xy_topology: ``"ring"`` or ``"complete"``.
        seed: transpiler seed.

    Returns:
        ``{"circuit_depth", "two_qubit_gates", "num_qubits", "target"}``.

    Example:
        >>> import dimod
        >>> bqm = dimod.BinaryQuadraticModel({0: 1.0, 1: -1.0}, {(0, 1): 0.5}, 0.0, "BINARY")
        >>> circuit_metrics(bqm, p=1)["two_qubit_gates"]
        2
    """
    _require_qiskit()
    resolved = _resolve_mixer(mixer, one_hot)
    prob = _build_problem(bqm, resolved, one_hot, xy_topology)
    return _metrics(prob, p, target, seed)
