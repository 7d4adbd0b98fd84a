"""The Ising problem: a BQM laid out on qubits and registers, cost tables, circuits, warm starts."""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dimod
import numpy as np

try:  # the qaoa extra (see _base._require_qiskit)
    from qiskit import QuantumCircuit
    from qiskit.circuit.library import qaoa_ansatz
    from qiskit.quantum_info import SparsePauliOp
except ImportError:  # pragma: no cover - exercised only without the extra
    pass

from mecsim.decision.qaoa._base import _MIXERS, _TOPOLOGIES


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
