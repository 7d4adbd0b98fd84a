"""Fast simulation: the exact QAOA statevector over the product of registers, in numpy."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from functools import lru_cache

import numpy as np
from threadpoolctl import ThreadpoolController

from mecsim.decision.qaoa.problem import _Problem

#: Smallest inner block of the fast path's phase construction (see :class:`_FastSimulator`).
_INNER_MIN_DIM = 1024

#: Most qubits per matrix product of the X mixer: consecutive X registers are regrouped into
#: blocks of at most this many qubits, each applied as one 2^k x 2^k product (real, in the
#: twisted basis of :class:`_FastSimulator`). Measured at 20 qubits, whole p = 2 expectation,
#: interleaved, load ~3 on 2 cores (complex128 / complex64): blocks [4]*5: 48 / 27 ms;
#: [5, 5, 4, 4, 2]: 48 / 31; [6, 6, 4, 4]: 56 / 30; [5, 5, 5, 3, 2]: 52 / 31; [4, 4, 4, 4, 2, 2]:
#: 52 / 32; [6, 6, 6, 2]: 63 / 37; [8, 8, 4]: 110 / 56; the previous per-register mixer: 66 ms.
#: Smaller blocks pay more passes over the state, larger ones more flops (2^k per amplitude).
_X_BLOCK_QUBITS = 4


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


def _rotation_power(beta: float, k: int, dtype: np.dtype) -> np.ndarray:
    """``R(beta)^{(x)k}`` with ``R = S^dag rx(beta) S = [[c, s], [-s, c]]`` (``S = diag(1, i)``,
    ``rx(beta) = exp(-i beta X)``): real, entry ``prod_bits`` of c (bits equal), s (row 0, column
    1) or -s (row 1, column 0)."""
    c, s = math.cos(beta), math.sin(beta)
    r = np.array([[c, s], [-s, c]])
    u = np.ones((1, 1))
    for _ in range(k):
        u = np.kron(u, r)
    return u.astype(dtype)


def _x_blocks(m: int) -> list[int]:
    """Block sizes (qubits) for a run of m X-mixer qubits: balanced, at most
    :data:`_X_BLOCK_QUBITS`, the larger first."""
    n_blocks = -(-m // _X_BLOCK_QUBITS)
    return [m // n_blocks + (1 if j < m % n_blocks else 0) for j in range(n_blocks)]


#: Most states of a block of consecutive XY registers whose mixers are applied as one Kronecker
#: product (e.g. four 2-server tasks, or two 4-server ones). Measured at 20 tasks x 2 servers
#: (2^20 states, p = 2): 549 ms register by register, 88 ms in blocks of 16 (10 x 4 servers:
#: 155 ms and 67 ms).
_XY_BLOCK_DIM = 16


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

    The mixer layer is a list of matrix products, each on one axis ``(A, d, B)`` of the state
    and in the original axis order (no transposes): an XY register's own ``d x d`` unitary, and
    for every run of consecutive X registers ``rx(beta)`` on each of its m qubits, regrouped into
    blocks of at most :data:`_X_BLOCK_QUBITS` qubits (the factors are equal, so any grouping of
    the run's 2^m states into powers of two is the same operator). The state is kept in the
    *twisted* basis ``phi = (-i)^{|x|} psi`` (|x| the number of X-mixer qubits set, see
    :meth:`twist`): there ``rx(beta) = exp(-i beta X)`` becomes the real rotation
    ``[[c, s], [-s, c]]`` (``S^dag rx S`` with ``S = diag(1, i)``), so the X blocks are real
    matrix products on the float view of the state, half the flops of complex ones; the cost
    phase is diagonal and the probabilities ``|phi|^2 = |psi|^2``, so only :meth:`state` turns
    the twist back.

    ``dtype``: ``complex128`` (default; equals Aer to 1e-8 in the tests) or ``complex64`` (about
    1.8x faster at 20 qubits; amplitudes carry ~1e-7 relative error, so ``<C>`` is good to about
    1e-6 of the cost scale -- enough to steer an optimiser, not for exact comparisons).

    Memory: the cost vector plus four complex vectors of ``dim`` entries.
    """

    def __init__(
        self, prob: _Problem, dtype: type | np.dtype = np.complex128, mixer_impl: str = "blocks"
    ) -> None:
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.complex128), np.dtype(np.complex64)):
            raise ValueError(f"dtype must be complex128 or complex64, got {self.dtype}")
        if mixer_impl not in ("blocks", "registers"):
            raise ValueError(f"mixer_impl must be 'blocks' or 'registers', got {mixer_impl!r}")
        #: "blocks" (:meth:`mix`) or "registers" (:meth:`mix_registers`, the previous method, kept
        #: as the reference of the tests and the benchmark)
        self.mixer_impl = mixer_impl
        self.prob = prob
        self.regs = list(prob.registers)
        self.dims = [r.dim for r in self.regs]
        self.dim = int(np.prod(self.dims, dtype=np.int64)) if self.dims else 1
        self.cost = self._diagonal(prob.offset, prob.reg_lin, prob.reg_cross, add=True)
        init = np.ones(1, dtype=complex)
        for reg in self.regs:
            init = np.multiply.outer(init, reg.initial()).reshape(-1)
        self._twisted = mixer_impl == "blocks"
        self.init = (init * self.twist() if self._twisted else init).astype(self.dtype)
        self._mixer_ops = self._plan_mixer()
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
        self._psi = np.empty(self.dim, dtype=self.dtype)
        self._order: np.ndarray | None = None
        self._sorted_cost = np.zeros(0)
        self._tmp = np.empty(self.dim, dtype=self.dtype)
        self._phase = np.empty(self.dim, dtype=self.dtype)

    def _plan_mixer(self) -> list[tuple[int, int, int, tuple[int, ...] | None, int]]:
        """Axes of the mixer's matrix products: ``(A, d, B, registers or None, k)``; None is a
        block of k X-mixer qubits, a tuple consecutive XY registers whose unitaries are applied
        as one Kronecker product (of at most :data:`_XY_BLOCK_DIM` states)."""
        ops: list[tuple[int, int, int, tuple[int, ...] | None, int]] = []
        before, r = 1, 0
        while r < len(self.regs):
            reg = self.regs[r]
            if reg.kind != "x":
                group, d = [r], reg.dim
                r += 1
                while (
                    r < len(self.regs) and self.regs[r].kind != "x" and d * self.regs[r].dim <= _XY_BLOCK_DIM
                ):
                    d *= self.regs[r].dim
                    group.append(r)
                    r += 1
                if d > 1:
                    ops.append((before, d, self.dim // (before * d), tuple(group), 0))
                before *= d
                continue
            m = 0
            while r < len(self.regs) and self.regs[r].kind == "x":
                m += len(self.regs[r].qubits)
                r += 1
            for k in _x_blocks(m):
                ops.append((before, 1 << k, self.dim // (before << k), None, k))
                before <<= k
        return ops

    def twist(self) -> np.ndarray:
        """``(-i)^{|x|}`` over the flat basis, |x| the number of X-mixer qubits set in x (1 on
        XY registers); the simulated state is ``twist * psi`` (see the class docstring)."""
        out = np.ones(1, dtype=complex)
        for reg in self.regs:
            t = np.ones(reg.dim, dtype=complex)
            if reg.kind == "x":
                t = (-1j) ** reg.bits.sum(axis=1)
            out = np.multiply.outer(out, t).reshape(-1)
        return out

    def mix(self, phi: np.ndarray, beta: float, out: np.ndarray) -> np.ndarray:
        """Apply the mixer ``U(beta)`` to a state ``phi`` in the twisted basis; ``out`` is a buffer
        of the same size (both are overwritten). Returns the buffer holding the result."""
        cache: dict[int, np.ndarray] = {}
        real = np.float64 if self.dtype == np.complex128 else np.float32
        for a, d, b, r, k in self._mixer_ops:
            x, y = phi, out
            if r is not None:  # XY registers: the Kronecker product of their unitaries
                u = np.ones((1, 1), dtype=complex)
                for i in r:
                    u = np.kron(u, self.regs[i].mixer(beta))
                u = u.astype(self.dtype)
            else:
                if k not in cache:
                    cache[k] = _rotation_power(beta, k, np.dtype(real))
                u = cache[k]
                if b > 1:  # real rotation on the float view: columns (re, im) of each amplitude
                    x, y, b = phi.view(real), out.view(real), 2 * b
                else:  # the last axis: one complex product (the float view would need a batch)
                    u = u.astype(self.dtype)
            if b == 1:
                np.matmul(x.reshape(a, d), u.T, out=y.reshape(a, d))
            elif a == 1:
                np.matmul(u, x.reshape(d, b), out=y.reshape(d, b))
            else:
                np.matmul(u, x.reshape(a, d, b), out=y.reshape(a, d, b))
            phi, out = out, phi
        return phi

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

    def mix_registers(self, psi: np.ndarray, beta: float, out: np.ndarray) -> np.ndarray:
        """The mixer register by register (the method before :meth:`mix`): ``(d, rest)^T @ U^T``
        applies U to the leading register axis and moves it last, so after every register the
        axis order is the original again. Same contract as :meth:`mix`."""
        for reg in self.regs:
            d = reg.dim
            if d == 1:
                continue
            rest = self.dim // d
            rows = _block_rows(rest)
            src = psi.reshape(d, rest // rows, rows).transpose(1, 2, 0)
            np.matmul(src, reg.mixer(beta).T.astype(self.dtype), out=out.reshape(-1, rows, d))
            psi, out = out, psi
        return psi

    def phase(self, gamma: float) -> np.ndarray:
        """``exp(-i gamma C_norm(z))`` up to a global phase (a view of an internal buffer)."""
        g = gamma / self.prob.scale
        dt = self.dtype
        rows = np.exp(-1j * g * self._inner_cost).astype(dt, copy=False)[None, :]
        for r, table in enumerate(self._outer_rows):
            w = np.exp(-1j * g * table).astype(dt, copy=False)
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
        ones = [np.ones(self.dims[r], dtype=dt) for r in range(self.n_outer)]
        cross = [[(rp, np.exp(-1j * g * m).astype(dt)) for rp, m in c] for c in self._outer_cross]
        if any(cross):
            outer = self._diagonal(np.ones((), dtype=dt), ones, cross, add=False)
            rows *= outer[:, None]
        return self._phase

    def _evolve(self, gamma: Sequence[float], beta: Sequence[float]) -> np.ndarray:
        """Run the circuit; returns a view of an internal buffer (call inside
        :func:`_single_threaded_blas`)."""
        psi, other = self._psi, self._tmp
        if len(gamma) == 0:
            psi[:] = self.init
        for layer, (g, b) in enumerate(zip(gamma, beta, strict=True)):
            if layer == 0:  # the start state times the first phase, in one pass
                np.multiply(self.init, self.phase(float(g)), out=psi)
            else:
                psi *= self.phase(float(g))
            mix = self.mix if self.mixer_impl == "blocks" else self.mix_registers
            res = mix(psi, float(b), other)
            if res is not psi:
                psi, other = other, psi
        return psi

    def state(self, gamma: Sequence[float], beta: Sequence[float]) -> np.ndarray:
        """The final state for the given angles (a fresh array)."""
        with _single_threaded_blas():
            psi = self._evolve(gamma, beta).copy()
        if self._twisted:
            psi *= np.conj(self.twist()).astype(self.dtype)
        return psi

    def probabilities(self, gamma: Sequence[float], beta: Sequence[float]) -> np.ndarray:
        """Born probabilities of the final state (a fresh float64 array)."""
        with _single_threaded_blas():
            pr = np.abs(self._evolve(gamma, beta)).astype(np.float64, copy=False)
            pr *= pr
        return pr

    def expectation(self, gamma: Sequence[float], beta: Sequence[float]) -> float:
        """``<C>`` in BQM energy units."""
        with _single_threaded_blas():
            psi = self._evolve(gamma, beta)
            # |psi|^2 from the float view into the free phase buffer: no new 2^n arrays (whose
            # page faults cost as much as the arithmetic at 20 qubits)
            if self.dtype == np.complex64:  # measured faster this way in single precision
                pr = np.abs(psi)
                pr *= pr
                return float(pr @ self.cost)
            r, sq = psi.view(np.float64), self._phase.view(np.float64)
            np.multiply(r, r, out=sq)
            pairs = sq.reshape(-1, 2)
            return float(np.dot(self.cost, pairs[:, 0]) + np.dot(self.cost, pairs[:, 1]))

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
