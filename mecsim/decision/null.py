"""The null model of every selection solver: uniformly random feasible assignments.

:class:`RandomFeasibleSampler` (registered as ``"random-feasible"``) draws each read by choosing,
for every one-hot group (a task's servers), one of its variables uniformly at random and setting
it to 1, the rest of the group to 0; variables outside any group are uniform 0/1. Every read is
therefore a valid assignment, drawn from the uniform distribution over valid assignments. A
solver that does not beat it at the same number of reads (QAOA's shots, SA's reads) has not
earned its place; the QAOA benchmark and the quality tests use it as their negative control.

Groups come from the ``one_hot`` sampling parameter when given; otherwise, when every variable is
labelled ``(task, server)`` as in :func:`mecsim.decision.qubo.build_selection_qubo`, variables
that share their first element form a group; otherwise there are no groups (each variable is an
independent fair coin, dimod's :class:`~dimod.RandomSampler`).

Example:
    >>> from mecsim.testing import random_epoch_state
    >>> from mecsim.decision.qubo import build_selection_qubo
    >>> s = random_epoch_state(4, 3, seed=0)
    >>> q = build_selection_qubo(s, s.equal_share())
    >>> ss = RandomFeasibleSampler().sample(q.bqm, num_reads=5, seed=1)
    >>> all(sum(row[v] for v in g) == 1 for row in ss.samples() for g in q.one_hot if g)
    True
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import dimod
import numpy as np

from mecsim.errors import SolverError

__all__ = ["RandomFeasibleSampler", "best_of_distribution", "infer_one_hot", "null_best_of_distribution"]


def infer_one_hot(variables: Iterable[Hashable]) -> list[list[Hashable]]:
    """One-hot groups read from ``(task, server)`` labels; ``[]`` when not every label is a pair."""
    labels = list(variables)
    if not labels or not all(isinstance(v, tuple) and len(v) == 2 for v in labels):
        return []
    groups: dict[Hashable, list[Hashable]] = {}
    for v in labels:
        groups.setdefault(v[0], []).append(v)
    return list(groups.values())


class RandomFeasibleSampler(dimod.Sampler):
    """Uniform random feasible assignments (the null model), as a dimod Sampler.

    Sample parameters:
        num_reads: reads to draw (default 10). ``shots`` is accepted as a synonym, so QAOA's
            settings can be reused at equal shots.
        one_hot: groups of labels, exactly one of each set to 1 per read (default: inferred,
            see the module docstring).
        seed: integer seed; equal seeds give equal sample sets.

    Returns one row per read (not aggregated), ``info = {"num_reads", "groups",
    "feasible_states"}``: ``feasible_states`` is the number of distinct valid assignments
    (product of the group sizes times ``2`` per free variable), so ``1 / feasible_states`` is the
    chance that one read hits a given assignment.
    """

    parameters = {"num_reads": [], "shots": [], "one_hot": [], "seed": []}
    properties = {"null_model": "uniform over one-hot feasible assignments"}

    def sample(
        self,
        bqm: dimod.BinaryQuadraticModel,
        num_reads: int | None = None,
        *,
        shots: int | None = None,
        one_hot: Sequence[Sequence[Hashable]] | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> dimod.SampleSet:
        """Draw ``num_reads`` (or ``shots``) uniform feasible assignments of ``bqm``'s variables.

        Raises:
            SolverError: a bad read count, a group naming an unknown variable, or a variable in
                two groups.
        """
        self.remove_unknown_kwargs(**kwargs)
        if num_reads is not None and shots is not None and int(num_reads) != int(shots):
            raise SolverError(f"num_reads={num_reads!r} and shots={shots!r} disagree; give one")
        reads = num_reads if num_reads is not None else (shots if shots is not None else 10)
        if not (int(reads) == reads and reads >= 1):
            raise SolverError(f"num_reads must be an integer >= 1, got {reads!r}")
        reads = int(reads)
        labels = list(bqm.variables)
        where = {v: k for k, v in enumerate(labels)}
        groups = infer_one_hot(labels) if one_hot is None else [list(g) for g in one_hot]
        in_group = np.zeros(len(labels), dtype=bool)
        cols: list[np.ndarray] = []
        for g in groups:
            try:
                idx = np.array([where[v] for v in g], dtype=np.int64)
            except KeyError as exc:
                raise SolverError(f"one_hot names {exc.args[0]!r}, not a variable of the model") from None
            if idx.size == 0:
                continue
            if in_group[idx].any():
                raise SolverError(f"variable {labels[int(idx[in_group[idx]][0])]!r} is in two one_hot groups")
            in_group[idx] = True
            cols.append(idx)
        rng = np.random.default_rng(seed)
        x = np.zeros((reads, len(labels)), dtype=np.int8)
        free = np.flatnonzero(~in_group)
        if free.size:
            x[:, free] = rng.integers(0, 2, size=(reads, free.size), dtype=np.int8)
        rows = np.arange(reads)
        for idx in cols:
            x[rows, idx[rng.integers(0, idx.size, size=reads)]] = 1
        if bqm.vartype is dimod.SPIN:
            x = (2 * x - 1).astype(np.int8)
        states = math.prod(len(c) for c in cols) * 2 ** int(free.size)
        info = {"num_reads": reads, "groups": len(cols), "feasible_states": states}
        return dimod.SampleSet.from_samples_bqm((x, labels), bqm, info=info)


def null_best_of_distribution(values: np.ndarray, shots: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
    """Exact best-of-``S`` statistics of uniform sampling from the objective values ``values``.

    For ``S`` independent uniform draws from the finite list ``values`` (one entry per feasible
    assignment), the best draw's value ``V`` satisfies ``P(V >= v_k) = (1 - F(v_k^-))^S``, with
    ``F`` the empirical distribution of ``values``. Returns, per ``S``, ``p_opt`` (chance that the
    optimum is among the draws) and ``expected_best`` (``E[V]``). Used as the null curve of the
    QAOA benchmark; :func:`best_of_distribution` below does the same for any distribution.
    """
    v = np.asarray(values, dtype=float)
    return best_of_distribution(v, np.full(v.size, 1.0 / v.size), shots)


def best_of_distribution(
    values: np.ndarray, probs: np.ndarray, shots: Sequence[int] | np.ndarray, atol: float = 1e-9
) -> dict[str, np.ndarray]:
    """Exact best-of-``S`` statistics of i.i.d. draws from a discrete distribution.

    Args:
        values: objective value of each state (lower is better).
        probs: probability of each state (summing to 1, up to float error).
        shots: the sample sizes ``S``.
        atol: values within ``atol`` (relative to the range) of the minimum count as optimal.

    Returns:
        ``{"p_opt": P(an optimal state is drawn), "expected_best": E[min of S draws]}``, arrays
        over ``shots``.
    """
    v = np.asarray(values, dtype=float)
    p = np.clip(np.asarray(probs, dtype=float), 0.0, None)
    p = p / p.sum()
    order = np.argsort(v, kind="stable")
    v, p = v[order], p[order]
    tail = np.clip(1.0 - np.concatenate([[0.0], np.cumsum(p)[:-1]]), 0.0, 1.0)  # P(draw >= v_k)
    tail_next = np.clip(1.0 - np.cumsum(p), 0.0, 1.0)  # P(draw > v_k)
    span = max(float(v[-1] - v[0]), 1e-300)
    p_opt_state = float(p[v <= v[0] + atol * span].sum())
    out_p, out_e = [], []
    for s in np.asarray(shots, dtype=float):
        # P(min == v_k) = P(all >= v_k) - P(all > v_k)
        mass = tail**s - tail_next**s
        out_e.append(float(mass @ v))
        out_p.append(1.0 - (1.0 - p_opt_state) ** s)
    return {"p_opt": np.array(out_p), "expected_best": np.array(out_e)}
