"""QAOA as a dimod Sampler: a BQM in, a SampleSet out, on qiskit circuits and qiskit-aer.

:class:`QAOASampler` turns a binary quadratic model into an Ising cost operator, builds the QAOA
circuit with qiskit's :func:`~qiskit.circuit.library.qaoa_ansatz`, optimises the ``2p`` angles
with scipy (COBYLA by default, a bounded number of evaluations) and samples the final circuit.

Two forms:

* ``mixer="x"``: the textbook transverse-field mixer ``sum_q X_q`` on the BQM as given
  (penalties included), started from ``|+>^n``.
* ``mixer="xy"``: constraint preserving (Hadfield et al. 2019; Wang et al., PRA 101 012320).
  The ``one_hot`` groups (exactly one variable of each is 1) get an XY mixer, ``(XX + YY) / 2``
  over neighbouring pairs of a ring (or of the complete graph), started from a W state; variables
  outside the groups keep an X mixer. Every shot is feasible, so one-hot penalty terms in the BQM
  are constant on the reachable states and may be left in.

Conventions (shared by the circuit and the numpy simulator, and tested to agree to 1e-8):

* Qubit ``q`` carries variable ``order[q]``: the one-hot groups first, each contiguous, then the
  other variables in the BQM's order. Measuring ``1`` on a qubit means the variable is 1 (for a
  SPIN BQM, +1); so ``x_q = (1 - Z_q) / 2``.
* The angles act on the *normalised* cost ``C_norm = (C - c0) / scale``, where ``c0`` is the
  Ising constant and ``scale`` the standard deviation of ``C`` over the uniform distribution on
  the states the mixer can reach (all bit strings for ``"x"``, all one-hot assignments of the
  groups for ``"xy"``). Angles therefore transfer between instances of one class (Brandao et al.,
  arXiv 1812.04170). One layer is ``exp(-i beta_k B) exp(-i gamma_k C_norm)``.
* The XY mixer layer is the product of the pair evolutions ``exp(-i beta (XX + YY) / 2)`` in
  ring order ``(0,1), (1,2), ..., (k-1,0)`` -- the first-order product formula that qiskit's
  circuit implements, not the exponential of the summed ring Hamiltonian (the pair terms do not
  commute). It is exactly constraint preserving all the same.

Expectation paths:

* ``"fast"``: a statevector simulated in numpy. The cost is diagonal, so a layer is a phase
  ``exp(-i gamma C(z))`` over a precomputed cost vector followed by the mixer. For the XY form the
  simulation runs in the feasible subspace only (a one-hot register of ``k`` qubits has ``k``
  states, not ``2^k``): 10 tasks x 4 servers is 40 qubits but a 4^10 = 1M-dimensional vector. The
  space is a product of small registers (free qubits in chunks of three). A mixer layer is one
  batched matrix product per register, ``(D / d, d) @ (d, d)`` read through a transposed view,
  which moves that register's axis last, so after a full layer the axes are back in order; the
  phase is built from the registers' small tables by outer products of long rows, with a few
  thousand complex exponentials instead of 2^n. Cost per layer: about (registers + 3) passes over
  the vector; measured ~50 ms per evaluation at 20 qubits and p = 2 on an idle core.
* ``"estimator"``: qiskit-aer's ``EstimatorV2`` on the transpiled ``qaoa_ansatz`` circuit with the
  cost ``SparsePauliOp`` (exact expectation values, ``precision=0``).

Example:
    >>> import dimod
    >>> from mecsim.decision.qaoa import QAOASampler
    >>> bqm = dimod.BinaryQuadraticModel({"a": -1.0, "b": 0.5}, {("a", "b"): 2.0}, 0.0, "BINARY")
    >>> ss = QAOASampler(p=1, shots=200, seed=1).sample(bqm)
    >>> ss.first.sample == {"a": 1, "b": 0}
    True
    >>> ss.info["mixer"], ss.info["expectation_path"], ss.info["method"]
    ('x', 'fast', 'fast-statevector')
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import dimod
import numpy as np
from scipy.optimize import minimize
from threadpoolctl import ThreadpoolController

from mecsim.errors import MissingExtraError, SolverError

try:  # the qaoa extra; this module stays importable without it (the factory reports it)
    from qiskit import QuantumCircuit, transpile
    from qiskit.circuit.library import qaoa_ansatz
    from qiskit.quantum_info import SparsePauliOp
    from qiskit.transpiler import CouplingMap
    from qiskit_aer import AerSimulator
    from qiskit_aer.noise import NoiseModel, depolarizing_error
    from qiskit_aer.primitives import EstimatorV2, SamplerV2

    _QISKIT_IMPORT_ERROR: ImportError | None = None
except ImportError as _exc:  # pragma: no cover - exercised only without the extra
    _QISKIT_IMPORT_ERROR = _exc

__all__ = [
    "BASIS_GATES",
    "DEFAULT_DT",
    "QAOASampler",
    "circuit_metrics",
    "fixed_angle_schedule",
    "greedy_one_hot_solution",
    "interp_angles",
]

#: Basis of the generic gate-model target used for reported depth and two-qubit gate counts.
BASIS_GATES: tuple[str, ...] = ("rz", "sx", "x", "cx")

#: Linear-ramp step ``dt`` per mixer for :func:`fixed_angle_schedule`, from a scan of dt = 0.2,
#: 0.4, ..., 3.0 on 21 random one-hot assignment QUBOs (3x2 to 4x4 tasks x servers, 3 seeds each,
#: p = 1..3, normalised cost; ``python tests/benchmarks/qaoa.py --scan-dt``): the value with the
#: highest mean probability of sampling the optimum. "xy": 1.0 (P(opt) 0.13-0.18, approximation
#: ratio 0.83-0.89); "x": 1.2 (P(opt) 0.015-0.026; the best dt grows with p, about 0.8 p).
DEFAULT_DT: dict[str, float] = {"x": 1.2, "xy": 1.0}

#: Largest log2 of the simulated dimension for the numpy fast path by default (2^24 amplitudes,
#: 256 MiB per complex vector; the simulation holds about four such vectors).
FAST_MAX_LOG2_DIM = 24

#: Largest qubit count sampled with Aer's statevector method by default; above it,
#: matrix_product_state with a bond cap. Measured here (1024 shots, p = 1, X mixer, assignment
#: QUBOs; ``tests/benchmarks/qaoa.py --aer-limits``): statevector 0.7 s at 20 qubits, 5.4 s at
#: 24, 43 s at 26, 130 s at 28; exact MPS (no cap) 1.5 s at 20, 49 s at 28, 340 s at 32 (the
#: congestion terms couple distant qubits); MPS with bond cap 16 / 32: 0.2 / 0.7 s at 28, 0.4 /
#: 1.4 s at 40 qubits (truncated: an approximation, about 0.5% error at bond 16 per
#: shared/REFERENCES.md).
AER_STATEVECTOR_MAX_QUBITS = 24

#: Smallest inner block of the fast path's phase construction (see :class:`_FastSimulator`).
_INNER_MIN_DIM = 1024

_MIXERS = ("auto", "x", "xy")
_MODES = ("optimize", "fixed")
_EXPECTATION_PATHS = ("auto", "fast", "estimator")
_SAMPLING = ("auto", "fast", "aer", "primitive")
_STARTS = ("ramp", "interp", "random")
_OBJECTIVES = ("expectation", "cvar")
_TOPOLOGIES = ("ring", "complete")
_TARGETS = ("all-to-all", "linear")


def _require_qiskit() -> None:
    if _QISKIT_IMPORT_ERROR is not None:
        raise MissingExtraError("qiskit", "qaoa") from _QISKIT_IMPORT_ERROR


# --------------------------------------------------------------------------------------------
# Angle schedules
# --------------------------------------------------------------------------------------------


def fixed_angle_schedule(p: int, dt: float | None = None, mixer: str = "x") -> dict[str, list[float]]:
    """Linear-ramp QAOA angles, a discretised annealing path.

    ``gamma_k = (k + 1/2) / p * dt`` and ``beta_k = -(1 - (k + 1/2) / p) * dt`` for k = 0..p-1,
    on the normalised cost (see the module docstring).

    Why ``beta < 0``: a layer is ``exp(-i beta B) exp(-i gamma C)`` (qiskit's convention) and the
    start state, ``|+>^n`` or a W state, is the *top* eigenstate of the mixer ``B``; a Trotterised
    anneal from the ground state of ``-B`` to the ground state of ``C`` therefore has
    ``beta = -(1 - s) dt``. (With a real start state, ``(gamma, beta)`` and ``(-gamma, -beta)``
    give the same expectation, so ``gamma < 0, beta > 0`` is the same schedule.) With positive
    betas the ramp was worse than random guessing in the ``--scan-dt`` benchmark.

    Args:
        p: number of layers (>= 1).
        dt: ramp step; default :data:`DEFAULT_DT` for the mixer.
        mixer: ``"x"`` or ``"xy"`` (selects the default ``dt``).

    Returns:
        ``{"gamma": [...], "beta": [...]}`` with p entries each.

    Example:
        >>> fixed_angle_schedule(2, dt=1.0)
        {'gamma': [0.25, 0.75], 'beta': [-0.75, -0.25]}
    """
    if p < 1:
        raise ValueError(f"p must be >= 1, got {p}")
    if dt is None:
        if mixer not in DEFAULT_DT:
            raise ValueError(f"mixer must be one of {sorted(DEFAULT_DT)}, got {mixer!r}")
        dt = DEFAULT_DT[mixer]
    t = (np.arange(p) + 0.5) / p
    return {"gamma": (t * dt).tolist(), "beta": (-(1.0 - t) * dt).tolist()}


def interp_angles(gamma: Sequence[float], beta: Sequence[float], p: int) -> dict[str, list[float]]:
    """Resample angles of q layers to p layers.

    For ``p = q + 1`` this is INTERP (Zhou et al., PRX 10, 021067, 2020):
    ``x'_i = (i-1)/q x_{i-1} + (q-i+1)/q x_i`` for i = 1..q+1 with ``x_0 = x_{q+1} = 0``.
    Otherwise the angles are linearly interpolated on the layer midpoints ``(k + 1/2) / q``.

    Args:
        gamma: q cost angles.
        beta: q mixer angles.
        p: number of layers wanted.

    Returns:
        ``{"gamma": [...], "beta": [...]}`` with p entries each.

    Example:
        >>> interp_angles([0.4], [0.6], 2)
        {'gamma': [0.4, 0.4], 'beta': [0.6, 0.6]}
    """
    g = np.asarray(gamma, dtype=float)
    b = np.asarray(beta, dtype=float)
    q = len(g)
    if q == 0 or len(b) != q:
        raise ValueError(f"need equal, non-zero numbers of gamma and beta angles, got {q}, {len(b)}")
    if p < 1:
        raise ValueError(f"p must be >= 1, got {p}")
    if p == q:
        return {"gamma": g.tolist(), "beta": b.tolist()}
    if p == q + 1:

        def up(x: np.ndarray) -> np.ndarray:
            padded = np.concatenate([[0.0], x, [0.0]])
            i = np.arange(1, q + 2)
            return (i - 1) / q * padded[i - 1] + (q - i + 1) / q * padded[i]

        return {"gamma": up(g).tolist(), "beta": up(b).tolist()}
    src = (np.arange(q) + 0.5) / q
    dst = (np.arange(p) + 0.5) / p
    return {"gamma": np.interp(dst, src, g).tolist(), "beta": np.interp(dst, src, b).tolist()}


def _angles_from(value: Any) -> tuple[np.ndarray, np.ndarray]:
    """Accept ``{"gamma": [...], "beta": [...]}`` or a flat ``[gamma..., beta...]``."""
    if isinstance(value, Mapping):
        if "gamma" not in value or "beta" not in value:
            raise ValueError(f"initial_angles mapping needs 'gamma' and 'beta' keys, got {list(value)}")
        g = np.asarray(value["gamma"], dtype=float).ravel()
        b = np.asarray(value["beta"], dtype=float).ravel()
    else:
        flat = np.asarray(value, dtype=float).ravel()
        if flat.size == 0 or flat.size % 2:
            raise ValueError(f"initial_angles must hold 2q numbers [gamma..., beta...], got {flat.size}")
        g, b = flat[: flat.size // 2], flat[flat.size // 2 :]
    if g.size != b.size or g.size == 0:
        raise ValueError(f"initial_angles need equal numbers of gammas and betas, got {g.size}, {b.size}")
    if not (np.all(np.isfinite(g)) and np.all(np.isfinite(b))):
        raise ValueError("initial_angles must be finite")
    return g, b


# --------------------------------------------------------------------------------------------
# Problem: BQM -> qubits, registers, cost tables
# --------------------------------------------------------------------------------------------


@dataclass
class _Register:
    """A block of qubits simulated together: its basis states and mixer.

    ``bits[s]`` is the assignment of the register's qubits in basis state ``s``. A ``"x"``
    register is a chunk of free qubits (all 2^c states, X mixer on each); a ``"xy"`` register is a
    one-hot group restricted to its k feasible states.
    """

    kind: str
    qubits: tuple[int, ...]
    bits: np.ndarray
    pairs: tuple[tuple[int, int], ...] = ()
    #: warm start: per qubit the amplitude of |1> ("x" registers) or per state the amplitude
    #: ("xy" registers); None for the uniform start
    warm: np.ndarray | None = None

    @property
    def dim(self) -> int:
        return int(self.bits.shape[0])

    def initial(self) -> np.ndarray:
        """Start state of the register: uniform (|+>^c or a W state) or the warm start."""
        if self.warm is None:
            return np.full(self.dim, 1.0 / math.sqrt(self.dim), dtype=complex)
        if self.kind == "xy":
            return self.warm.astype(complex)
        one = self.warm[None, :]
        amp = np.where(self.bits == 1, one, np.sqrt(1.0 - one**2))
        return np.prod(amp, axis=1).astype(complex)

    def mixer(self, beta: float) -> np.ndarray:
        """The register's mixer unitary ``U(beta)`` in its own basis (d x d)."""
        c, s = math.cos(beta), math.sin(beta)
        if self.kind == "x":
            rx = np.array([[c, -1j * s], [-1j * s, c]])
            u = np.ones((1, 1), dtype=complex)
            for _ in self.qubits:  # all factors equal, so the Kronecker order does not matter
                u = np.kron(u, rx)
            return u
        u = np.eye(self.dim, dtype=complex)
        for a, b in self.pairs:  # circuit order: the first pair acts first
            g = np.eye(self.dim, dtype=complex)
            g[a, a] = g[b, b] = c
            g[a, b] = g[b, a] = -1j * s
            u = g @ u
        return u


def _ring_pairs(k: int, topology: str) -> tuple[tuple[int, int], ...]:
    if k < 2:
        return ()
    if topology == "complete" or k == 2:
        return tuple((a, b) for a in range(k) for b in range(a + 1, k))
    return tuple((a, (a + 1) % k) for a in range(k))


@dataclass
class _Problem:
    """A BQM laid out on qubits, with everything both expectation paths need."""

    bqm: dimod.BinaryQuadraticModel
    order: list[Hashable]
    groups: list[list[int]]  # qubit indices of each one-hot group
    mixer: str
    topology: str
    lin: np.ndarray  # binary linear coefficients per qubit
    quad: np.ndarray  # symmetric, zero diagonal: E = off + lin.x + x.quad.x / 2
    offset: float
    registers: list[_Register] = field(default_factory=list)
    reg_lin: list[np.ndarray] = field(default_factory=list)
    reg_cross: list[list[tuple[int, np.ndarray]]] = field(default_factory=list)
    c0: float = 0.0
    scale: float = 1.0

    @property
    def n(self) -> int:
        return len(self.order)

    @property
    def log2_dim(self) -> float:
        return float(sum(math.log2(r.dim) for r in self.registers))

    def ising(self) -> tuple[np.ndarray, dict[tuple[int, int], float], float]:
        """Ising form on qubits with ``x_q = (1 - Z_q) / 2``: ``C = c + h.Z + sum J ZZ``."""
        q = np.triu(self.quad, 1)
        h = -self.lin / 2 - (q.sum(axis=0) + q.sum(axis=1)) / 4
        ii, jj = np.nonzero(q)
        j = {(int(a), int(b)): float(q[a, b]) / 4 for a, b in zip(ii, jj, strict=True)}
        c = self.offset + self.lin.sum() / 2 + q.sum() / 4
        return h, j, float(c)

    def cost_operator(self) -> SparsePauliOp:
        """The normalised cost ``(C - c0) / scale`` as a SparsePauliOp (no identity term)."""
        h, j, _ = self.ising()
        terms: list[tuple[str, list[int], float]] = [
            ("Z", [q], float(h[q]) / self.scale) for q in range(self.n) if h[q] != 0.0
        ]
        terms += [("ZZ", [a, b], v / self.scale) for (a, b), v in j.items()]
        if not terms:
            return SparsePauliOp.from_sparse_list([("Z", [0], 0.0)], self.n)
        return SparsePauliOp.from_sparse_list(terms, self.n)

    def mixer_operator(self) -> SparsePauliOp | None:
        """XY pair terms (ring order) plus X on free qubits; None for the default X mixer."""
        if self.mixer == "x":
            return None
        terms: list[tuple[str, list[int], float]] = []
        for reg in self.registers:
            if reg.kind == "xy":
                for a, b in reg.pairs:
                    qa, qb = reg.qubits[a], reg.qubits[b]
                    terms += [("XX", [qa, qb], 0.5), ("YY", [qa, qb], 0.5)]
            else:
                terms += [("X", [q], 1.0) for q in reg.qubits]
        if not terms:
            return SparsePauliOp.from_sparse_list([("X", [0], 0.0)], self.n)
        return SparsePauliOp.from_sparse_list(terms, self.n)

    def initial_circuit(self) -> QuantumCircuit:
        """|+> on X-mixer qubits, a W state on each one-hot group."""
        qc = QuantumCircuit(self.n)
        for reg in self.registers:
            if reg.kind == "x":
                if reg.warm is None:
                    qc.h(list(reg.qubits))
                else:
                    for q, a1 in zip(reg.qubits, reg.warm, strict=True):
                        qc.ry(2.0 * math.asin(float(a1)), q)
            else:
                _w_state(qc, list(reg.qubits), reg.warm)
        return qc

    def circuit(self, p: int) -> QuantumCircuit:
        """The parameterised QAOA circuit (parameters ``γ[k]``, ``β[k]``)."""
        return qaoa_ansatz(
            self.cost_operator(),
            reps=p,
            initial_state=self.initial_circuit(),
            mixer_operator=self.mixer_operator(),
        )

    def is_feasible(self, bits: np.ndarray) -> np.ndarray:
        """Row mask: every one-hot group has exactly one 1 (all True without groups)."""
        ok = np.ones(bits.shape[0], dtype=bool)
        for g in self.groups:
            ok &= bits[:, g].sum(axis=1) == 1
        return ok


def _w_state(qc: QuantumCircuit, qubits: list[int], amplitudes: np.ndarray | None = None) -> None:
    """Prepare ``sum_i a_i |0..1_i..0>`` on ``qubits`` (default ``a_i = 1 / sqrt(k)``: a W state).

    X on the first qubit, then for i = 0..k-2 keep amplitude ``a_i`` on qubit i and move the rest
    of the excitation to qubit i+1 with a controlled RY followed by a CNOT back:
    ``|10> -> cos t |10> + sin t |01>`` with ``cos t = a_i / sqrt(sum_{l >= i} a_l^2)``.
    Amplitudes are real and non-negative (a warm start uses unequal ones).
    """
    k = len(qubits)
    if k == 0:
        return
    a = np.full(k, 1.0 / math.sqrt(k)) if amplitudes is None else np.asarray(amplitudes, dtype=float)
    rest = np.sqrt(np.cumsum((a**2)[::-1])[::-1])  # rest[i] = sqrt(sum_{l >= i} a_l^2)
    qc.x(qubits[0])
    for i in range(k - 1):
        ratio = min(1.0, float(a[i] / rest[i])) if rest[i] > 0 else 1.0
        theta = 2.0 * math.acos(ratio)
        qc.cry(theta, qubits[i], qubits[i + 1])
        qc.cx(qubits[i + 1], qubits[i])


def greedy_one_hot_solution(
    bqm: dimod.BinaryQuadraticModel, one_hot: Sequence[Sequence[Hashable]] | None
) -> dict[Hashable, int]:
    """A classical start for warm-started QAOA, from the BQM alone: cheapest insertion.

    Every variable starts at 0; then, one group at a time, the (group, variable) whose setting to
    1 raises the energy least is fixed (for the selection QUBO this is the cheapest-insertion
    heuristic of :meth:`~mecsim.decision.qubo.SelectionQUBO.greedy_assignment`). Free variables
    are then set to 1 while that lowers the energy (single-flip descent).
    """
    binary = bqm if bqm.vartype is dimod.BINARY else bqm.change_vartype(dimod.BINARY, inplace=False)
    labels = list(binary.variables)
    pos = {v: k for k, v in enumerate(labels)}
    n = len(labels)
    lin, (row, col, val), _ = binary.to_numpy_vectors(variable_order=labels)
    quad = np.zeros((n, n))
    quad[row, col] += val
    quad[col, row] += val
    x = np.zeros(n)
    field_ = np.asarray(lin, dtype=float).copy()  # energy change of setting each variable to 1
    groups = [[pos[v] for v in g] for g in (one_hot or ()) if len(g)]
    left = list(range(len(groups)))
    while left:
        best = min(((field_[v], gi, v) for gi in left for v in groups[gi]), key=lambda t: t[0])
        _, gi, v = best
        x[v] = 1.0
        field_ += quad[v]
        left.remove(gi)
    grouped = {v for g in groups for v in g}
    free = [v for v in range(n) if v not in grouped]
    changed = True
    while changed and free:
        changed = False
        for v in free:
            delta = field_[v] if x[v] == 0 else -field_[v]
            if delta < -1e-12:
                field_ += quad[v] * (1.0 if x[v] == 0 else -1.0)
                x[v] = 1.0 - x[v]
                changed = True
    return {labels[k]: int(x[k]) for k in range(n)}


def _apply_warm_start(prob: _Problem, sample: Mapping[Hashable, Any], weight: float) -> None:
    """Start every register near a classical solution ``sample`` (Egger et al., Quantum 5, 479, 2021).

    A free qubit starts in ``RY(theta)|0>`` with ``P(1) = 1 - weight`` if the solution has it at 1,
    ``weight`` otherwise; a one-hot group starts with probability ``1 - weight`` on the solution's
    state and ``weight`` spread evenly over the others. ``weight = 1 - 1/k`` (or 1/2 for free
    qubits) is the uniform start; ``weight = 0`` is the solution itself (QAOA can then only move
    away from it by the mixer). The mixers stay the standard ones.
    """
    if not 0.0 < weight < 1.0:
        raise ValueError(f"warm_start_weight must be in (0, 1), got {weight!r}")
    try:
        bit = np.array([1 if int(sample[v]) > 0 else 0 for v in prob.order], dtype=np.int8)
    except KeyError as exc:
        raise ValueError(f"warm_start has no value for variable {exc.args[0]!r}") from None
    for reg in prob.registers:
        q = list(reg.qubits)
        if reg.kind == "x":
            reg.warm = np.where(bit[q] == 1, math.sqrt(1.0 - weight), math.sqrt(weight))
        else:
            on = np.flatnonzero(bit[q] == 1)
            k = reg.dim
            if on.size != 1:
                raise ValueError(f"warm_start breaks the one-hot group {[prob.order[x] for x in q]}")
            amp = np.full(k, math.sqrt(weight / (k - 1)) if k > 1 else 0.0)
            amp[on[0]] = math.sqrt(1.0 - weight) if k > 1 else 1.0
            reg.warm = amp


def _resolve_mixer(mixer: str, one_hot: Any) -> str:
    if mixer not in _MIXERS:
        raise ValueError(f"mixer must be one of {_MIXERS}, got {mixer!r}")
    if mixer == "auto":
        return "xy" if one_hot else "x"
    if mixer == "xy" and not one_hot:
        raise ValueError("mixer='xy' needs one_hot=[[labels...], ...] (groups with exactly one 1)")
    return mixer


def _build_problem(
    bqm: dimod.BinaryQuadraticModel,
    mixer: str,
    one_hot: Sequence[Sequence[Hashable]] | None,
    topology: str = "ring",
    chunk: int = 3,
) -> _Problem:
    """Lay a BQM out on qubits and registers (mixer already resolved to "x" or "xy")."""
    if topology not in _TOPOLOGIES:
        raise ValueError(f"xy_topology must be one of {_TOPOLOGIES}, got {topology!r}")
    variables = list(bqm.variables)
    known = set(variables)
    groups_lab: list[list[Hashable]] = []
    seen: set[Hashable] = set()
    for gi, group in enumerate(one_hot or ()):
        if isinstance(group, (str, bytes)) or not isinstance(group, Iterable):
            raise ValueError(f"one_hot[{gi}] must be a list of variable labels, got {group!r}")
        labels = list(group)
        if not labels:
            raise ValueError(f"one_hot[{gi}] is empty")
        for v in labels:
            if v not in known:
                raise ValueError(f"one_hot[{gi}] names {v!r}, which is not a variable of the BQM")
            if v in seen:
                raise ValueError(f"variable {v!r} appears in more than one one_hot group (or twice)")
            seen.add(v)
        groups_lab.append(labels)
    order = [v for g in groups_lab for v in g] + [v for v in variables if v not in seen]
    index = {v: q for q, v in enumerate(order)}
    n = len(order)

    binary = bqm if bqm.vartype is dimod.BINARY else bqm.change_vartype(dimod.BINARY, inplace=False)
    lin = np.zeros(n)
    quad = np.zeros((n, n))
    for v, bias in binary.linear.items():
        lin[index[v]] = bias
    for (u, v), bias in binary.quadratic.items():
        a, b = index[u], index[v]
        quad[a, b] += bias
        quad[b, a] += bias
    groups = [[index[v] for v in g] for g in groups_lab]
    prob = _Problem(binary, order, groups, mixer, topology, lin, quad, float(binary.offset))

    regs: list[_Register] = []
    if mixer == "xy":
        for g in groups:
            k = len(g)
            regs.append(_Register("xy", tuple(g), np.eye(k, dtype=np.int8), _ring_pairs(k, topology)))
        free = list(range(len(seen), n))
    else:
        free = list(range(n))
    # free qubits in chunks: fatter matrix products, fewer passes over the state (measured:
    # chunks of 2-3 qubits are 2.5x faster than single-qubit passes at 20 qubits)
    for start in range(0, len(free), chunk):
        qs = tuple(free[start : start + chunk])
        c = len(qs)
        bits = ((np.arange(1 << c)[:, None] >> np.arange(c)[None, :]) & 1).astype(np.int8)
        regs.append(_Register("x", qs, bits))
    prob.registers = regs
    _fill_tables(prob)
    return prob


def _fill_tables(prob: _Problem) -> None:
    """Per-register cost tables, the Ising constant and the normalising scale.

    ``C(s) = offset + sum_r lin_r[s_r] + sum_{r' < r} cross_{r'r}[s_r', s_r]``. The scale is the
    exact standard deviation of ``C`` when every register is uniform and independent (an ANOVA
    decomposition into main effects and pairwise interactions); for the X mixer it equals
    ``sqrt(sum h^2 + sum J^2)``.
    """
    regs = prob.registers
    reg_lin: list[np.ndarray] = []
    reg_cross: list[list[tuple[int, np.ndarray]]] = []
    for r, reg in enumerate(regs):
        b = reg.bits.astype(float)
        q = list(reg.qubits)
        sub = prob.quad[np.ix_(q, q)]
        reg_lin.append(b @ prob.lin[q] + 0.5 * np.einsum("si,ij,sj->s", b, sub, b))
        cross = []
        for rp in range(r):
            qp = list(regs[rp].qubits)
            block = prob.quad[np.ix_(qp, q)]
            if np.any(block):
                cross.append((rp, regs[rp].bits.astype(float) @ block @ b.T))
        reg_cross.append(cross)
    prob.reg_lin, prob.reg_cross = reg_lin, reg_cross

    mean = prob.offset + sum(t.mean() for t in reg_lin)
    main = [t - t.mean() for t in reg_lin]
    var = 0.0
    for r, cross in enumerate(reg_cross):
        for rp, m in cross:
            mean += m.mean()
            rows = m.mean(axis=1, keepdims=True)
            cols = m.mean(axis=0, keepdims=True)
            main[rp] = main[rp] + (rows[:, 0] - m.mean())
            main[r] = main[r] + (cols[0] - m.mean())
            var += float(np.mean((m - rows - cols + m.mean()) ** 2))
    var += sum(float(np.mean(t**2)) for t in main)
    _, _, c0 = prob.ising()
    prob.c0 = c0
    sd = math.sqrt(max(var, 0.0))
    prob.scale = sd if sd > 1e-12 * max(1.0, abs(mean)) else 1.0


# --------------------------------------------------------------------------------------------
# Fast path: statevector over the product of registers, in numpy
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """Run BLAS on one thread inside the block (the previous counts are restored after).

    The fast path's matrix products are thin (``(rows, d) @ (d, d)`` with d <= 8). OpenBLAS
    splits them over its threads anyway, and on this shared 2-core machine that made one
    16-qubit evaluation 7-20 ms instead of 1.5 ms (and 20 qubits 100-200 ms instead of ~50 ms).
    threadpoolctl sets every BLAS library loaded in the process (numpy's and scipy's each bring
    their own OpenBLAS); the setting is process-wide while the block runs. One
    :class:`threadpoolctl.ThreadpoolController` is kept (built at the first use, when numpy and
    scipy are loaded): ``threadpool_limits`` re-scans the loaded libraries on every call, 1.7 ms
    here against 0.015 ms, which mattered at thousands of evaluations per decision.
    """
    with _blas_controller().limit(limits=1, user_api="blas"):
        yield


@lru_cache(maxsize=1)
def _blas_controller() -> ThreadpoolController:
    return ThreadpoolController()


@lru_cache(maxsize=64)
def _block_rows(m: int, cap: int = 128) -> int:
    """Largest divisor of ``m`` not above ``cap``."""
    for r in range(min(cap, m), 0, -1):
        if m % r == 0:
            return r
    return 1


class _FastSimulator:
    """Exact QAOA statevector over the registers of a :class:`_Problem`.

    The flat index runs over the registers in order, the last one fastest. For the cost phase
    the registers are split into an *outer* block and an *inner* block (the trailing registers,
    at least :data:`_INNER_MIN_DIM` states or all of them): with the inner cost ``b``, the
    outer-outer interactions ``a`` and, per outer register r and state s, the row
    ``w[r, s] = exp(-i g (lin_r[s] + cross(r, inner)))`` over the inner block, the phase is
    ``a[o] * b[i] * prod_r w[r, s_r(o)][i]``, built by outer products of long rows: about two
    passes of complex multiplications over the vector and only ``sum_r d_r * D_inner``
    exponentials, instead of 2^n of them.

    Memory: the cost vector plus four complex vectors of ``dim`` entries.
    """

    def __init__(self, prob: _Problem) -> None:
        self.prob = prob
        self.regs = list(prob.registers)
        self.dims = [r.dim for r in self.regs]
        self.dim = int(np.prod(self.dims, dtype=np.int64)) if self.dims else 1
        self.cost = self._diagonal(prob.offset, prob.reg_lin, prob.reg_cross, add=True)
        init = np.ones(1, dtype=complex)
        for reg in self.regs:
            init = np.multiply.outer(init, reg.initial()).reshape(-1)
        self.init = init
        # split: the smallest trailing block of registers with at least _INNER_MIN_DIM states
        n_outer, inner_dim = len(self.regs), 1
        while n_outer > 0 and inner_dim < _INNER_MIN_DIM:
            n_outer -= 1
            inner_dim *= self.dims[n_outer]
        self.n_outer, self.inner_dim = n_outer, inner_dim
        self.outer_dim = self.dim // inner_dim
        inner = range(n_outer, len(self.regs))
        # inner block's own cost (additive, offset dropped: a global phase)
        self._inner_cost = self._diagonal(
            0.0,
            [prob.reg_lin[r] for r in inner],
            [[(rp - n_outer, m) for rp, m in prob.reg_cross[r] if rp >= n_outer] for r in inner],
            add=True,
        )
        # per outer register: lin_r[s] + its interactions with the inner block, (d_r, D_inner)
        self._outer_rows: list[np.ndarray] = []
        inner_shape = [self.dims[r] for r in inner]
        for r in range(n_outer):
            t = prob.reg_lin[r].reshape([-1] + [1] * len(inner_shape))
            for k, r2 in enumerate(inner):
                for rp, m in prob.reg_cross[r2]:
                    if rp == r:
                        shape = [1] * (1 + len(inner_shape))
                        shape[0], shape[1 + k] = m.shape
                        t = t + m.reshape(shape)
            t = np.broadcast_to(t, [self.dims[r], *inner_shape])
            self._outer_rows.append(np.ascontiguousarray(t).reshape(self.dims[r], inner_dim))
        self._outer_cross = [[(rp, m) for rp, m in prob.reg_cross[r] if rp < n_outer] for r in range(n_outer)]
        self._psi = np.empty(self.dim, dtype=complex)
        self._order: np.ndarray | None = None
        self._sorted_cost = np.zeros(0)
        self._tmp = np.empty(self.dim, dtype=complex)
        self._phase = np.empty(self.dim, dtype=complex)

    def _diagonal(
        self,
        start: complex | float,
        lin: list[np.ndarray],
        cross: list[list[tuple[int, np.ndarray]]],
        add: bool,
    ) -> np.ndarray:
        """Sum (or product) of register tables over the product space, flattened.

        Register r's contribution is a tensor that is broadcast (size 1) along the registers it
        does not interact with. Used for the cost vector (once) and for small blocks.
        """
        op = np.add if add else np.multiply
        out = np.asarray(start)
        for r, table in enumerate(lin):
            shape = [1] * (r + 1)
            shape[r] = table.shape[0]
            term = table.reshape(shape)
            for rp, m in cross[r]:
                mshape = [1] * (r + 1)
                mshape[rp], mshape[r] = m.shape
                term = op(term, m.reshape(mshape))
            out = op(out[..., None], term)
        return np.ascontiguousarray(out).reshape(-1)

    def phase(self, gamma: float) -> np.ndarray:
        """``exp(-i gamma C_norm(z))`` up to a global phase (a view of an internal buffer)."""
        g = gamma / self.prob.scale
        rows = np.exp(-1j * g * self._inner_cost)[None, :]
        for r, table in enumerate(self._outer_rows):
            w = np.exp(-1j * g * table)
            size = rows.shape[0] * w.shape[0]
            out = self._phase[: size * self.inner_dim].reshape(size, self.inner_dim)
            if r == self.n_outer - 1:
                np.multiply(
                    rows[:, None, :], w[None, :, :], out=out.reshape(rows.shape[0], -1, self.inner_dim)
                )
                rows = out
            else:
                rows = (rows[:, None, :] * w[None, :, :]).reshape(size, self.inner_dim)
        if self.n_outer == 0:
            self._phase[:] = rows[0]
            return self._phase
        ones = [np.ones(self.dims[r], dtype=complex) for r in range(self.n_outer)]
        cross = [[(rp, np.exp(-1j * g * m)) for rp, m in c] for c in self._outer_cross]
        if any(cross):
            outer = self._diagonal(1.0 + 0j, ones, cross, add=False)
            rows *= outer[:, None]
        return self._phase

    def _evolve(self, gamma: Sequence[float], beta: Sequence[float]) -> np.ndarray:
        """Run the circuit; returns a view of an internal buffer (call inside
        :func:`_single_threaded_blas`)."""
        psi, other = self._psi, self._tmp
        psi[:] = self.init
        for g, b in zip(gamma, beta, strict=True):
            psi *= self.phase(float(g))
            for reg in self.regs:
                d = reg.dim
                if d == 1:
                    continue
                # (d, rest)^T @ U^T: apply U to the leading register axis and move it last;
                # after every register has been visited the axis order is the original again.
                # Batched in blocks of rows (as fast as one product, fewer temporaries).
                rest = self.dim // d
                rows = _block_rows(rest)
                src = psi.reshape(d, rest // rows, rows).transpose(1, 2, 0)
                np.matmul(src, reg.mixer(float(b)).T, out=other.reshape(-1, rows, d))
                psi, other = other, psi
        return psi

    def state(self, gamma: Sequence[float], beta: Sequence[float]) -> np.ndarray:
        """The final state for the given angles (a fresh array)."""
        with _single_threaded_blas():
            return self._evolve(gamma, beta).copy()

    def probabilities(self, gamma: Sequence[float], beta: Sequence[float]) -> np.ndarray:
        """Born probabilities of the final state (a fresh array)."""
        with _single_threaded_blas():
            pr = np.abs(self._evolve(gamma, beta))
            pr *= pr
        return pr

    def expectation(self, gamma: Sequence[float], beta: Sequence[float]) -> float:
        """``<C>`` in BQM energy units."""
        with _single_threaded_blas():
            pr = np.abs(self._evolve(gamma, beta))
            pr *= pr
            return float(pr @ self.cost)

    def cvar(self, gamma: Sequence[float], beta: Sequence[float], alpha: float) -> float:
        """CVaR_alpha of the cost: the mean of the lowest ``alpha`` share of the distribution.

        Exact, from the Born probabilities (Barkoutsos et al., Quantum 4, 256, 2020): sort the
        states by cost, accumulate probability up to ``alpha`` (the boundary state counted in
        part). ``alpha = 1`` is ``<C>``.
        """
        if self._order is None:
            self._order = np.argsort(self.cost, kind="stable")
            self._sorted_cost = self.cost[self._order]
        with _single_threaded_blas():
            pr = np.abs(self._evolve(gamma, beta))
            pr *= pr
            pp = pr[self._order]
        cum = np.cumsum(pp)
        k = int(np.searchsorted(cum, alpha * cum[-1]))
        k = min(k, pp.size - 1)
        below = float(cum[k - 1]) if k > 0 else 0.0
        total = float(pp[:k] @ self._sorted_cost[:k])
        total += (alpha * cum[-1] - below) * float(self._sorted_cost[k])
        return total / (alpha * float(cum[-1]))

    def bits_of(self, flat_index: np.ndarray) -> np.ndarray:
        """Qubit assignments (rows) of flat basis indices."""
        out = np.zeros((len(flat_index), self.prob.n), dtype=np.int8)
        if not self.regs:
            return out
        parts = np.unravel_index(np.asarray(flat_index, dtype=np.int64), self.dims)
        for reg, s in zip(self.regs, parts, strict=True):
            out[:, list(reg.qubits)] = reg.bits[s]
        return out


# --------------------------------------------------------------------------------------------
# Estimator path and Aer sampling
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Circuit metrics
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# The sampler
# --------------------------------------------------------------------------------------------


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
    states), 2.5 ms (X, 16 qubits) and ~50 ms (X, 20 qubits) at p = 2. Beyond the fast path the
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

        fast = _FastSimulator(prob) if (path == "fast" or sampling == "fast") else None
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
                    runner = SamplerV2(seed=_int_seed(ss_sim), options={"backend_options": {
                        **_backend_options("automatic", None, o["aer_threads"]),
                        "noise_model": NoiseModel.from_backend(device)}})
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


class _Budget(Exception):
    """Raised inside the objective when the evaluation budget is spent."""


def _optimise(
    evaluate: Any,
    gamma: np.ndarray,
    beta: np.ndarray,
    method: str,
    maxiter: int,
    rhobeg: float,
) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Minimise ``<C>`` over the angles; returns the best evaluated point, its value and count."""
    p = len(gamma)
    best: list[Any] = [math.inf, np.concatenate([gamma, beta])]
    count = [0]

    def objective(theta: np.ndarray) -> float:
        if count[0] >= maxiter:
            raise _Budget
        count[0] += 1
        value = float(evaluate(theta[:p], theta[p:]))
        if value < best[0]:
            best[0], best[1] = value, np.array(theta, dtype=float)
        return value

    upper = method.upper()
    if upper == "COBYLA":
        options: dict[str, Any] = {"maxiter": maxiter, "rhobeg": rhobeg}
    elif upper in ("NELDER-MEAD", "POWELL", "COBYQA"):
        options = {"maxfev": maxiter}
    else:
        options = {"maxiter": maxiter}
    try:
        minimize(objective, best[1].copy(), method=method, options=options)
    except _Budget:
        pass
    except ValueError as exc:
        if count[0] == 0:  # typically an unknown method name or option
            raise ValueError(f"optimizer {method!r} failed before any evaluation: {exc}") from exc
        raise
    theta = best[1]
    return theta[:p].copy(), theta[p:].copy(), float(best[0]), count[0]


def _make_qaoa_sampler(**params: Any) -> QAOASampler:
    """Factory for the solver registry: QAOA (numpy fast path + qiskit-aer) as a dimod Sampler.

    Raises:
        MissingExtraError: qiskit or qiskit-aer is not installed (``pip install 'mecsim[qaoa]'``).
    """
    _require_qiskit()
    return QAOASampler(**params)
