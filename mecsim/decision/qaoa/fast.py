"""Fast simulation: the exact QAOA statevector over the product of registers, in numpy."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from functools import lru_cache

import numpy as np
from threadpoolctl import ThreadpoolController

from mecsim.decision.qaoa._base import (  # noqa: F401
    _EXPECTATION_PATHS,
    _MIXERS,
    _MODES,
    _OBJECTIVES,
    _QISKIT_IMPORT_ERROR,
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
from mecsim.decision.qaoa.problem import _Problem

#: Smallest inner block of the fast path's phase construction (see :class:`_FastSimulator`).
_INNER_MIN_DIM = 1024


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
