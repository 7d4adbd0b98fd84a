"""Shared pieces of the QAOA subpackage: the guarded qiskit imports and the constants."""

from __future__ import annotations

from mecsim.errors import MissingExtraError

try:  # the qaoa extra; the package stays importable without it (the factory reports it)
    import qiskit  # noqa: F401
    import qiskit_aer  # noqa: F401

    _QISKIT_IMPORT_ERROR: ImportError | None = None
except ImportError as _exc:  # pragma: no cover - exercised only without the extra
    _QISKIT_IMPORT_ERROR = _exc

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
