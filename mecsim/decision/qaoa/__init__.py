"""QAOA as a dimod Sampler: a BQM in, a SampleSet out, on qiskit circuits and qiskit-aer.

The subpackage: :mod:`~mecsim.decision.qaoa.problem` (the Ising problem on qubits and registers),
:mod:`~mecsim.decision.qaoa.fast` (the numpy statevector), :mod:`~mecsim.decision.qaoa.aer`
(qiskit-aer, primitives and circuit metrics), :mod:`~mecsim.decision.qaoa.schedules` (angle
schedules and the optimiser), :mod:`~mecsim.decision.qaoa.sampler` (:class:`QAOASampler`);
device targets and the QPU time model are in :mod:`mecsim.decision.hardware`. Everything is
importable from here as before the split.

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

from mecsim.decision.qaoa._base import (  # noqa: F401
    _QISKIT_IMPORT_ERROR,
    AER_STATEVECTOR_MAX_QUBITS,
    BASIS_GATES,
    DEFAULT_DT,
    FAST_MAX_LOG2_DIM,
    _require_qiskit,
)
from mecsim.decision.qaoa.aer import (  # noqa: F401
    _aer_sample,
    _AerEstimatorPath,
    _backend_options,
    _device_metrics,
    _metrics,
    _noise_model,
    circuit_metrics,
)
from mecsim.decision.qaoa.fast import _INNER_MIN_DIM, _FastSimulator, _single_threaded_blas  # noqa: F401
from mecsim.decision.qaoa.problem import (  # noqa: F401
    _apply_warm_start,
    _build_problem,
    _Problem,
    _Register,
    greedy_one_hot_solution,
)
from mecsim.decision.qaoa.sampler import QAOASampler, _make_qaoa_sampler  # noqa: F401
from mecsim.decision.qaoa.schedules import _optimise, fixed_angle_schedule, interp_angles  # noqa: F401

__all__ = [
    "BASIS_GATES",
    "DEFAULT_DT",
    "QAOASampler",
    "circuit_metrics",
    "fixed_angle_schedule",
    "greedy_one_hot_solution",
    "interp_angles",
]
