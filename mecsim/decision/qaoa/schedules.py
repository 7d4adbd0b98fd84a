"""Angle schedules (linear ramp, INTERP) and the bounded scipy optimiser of the angles."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.optimize import minimize

from mecsim.decision.qaoa._base import DEFAULT_DT


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
