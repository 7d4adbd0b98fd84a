"""Measured decision time: a model per solver of how long one decision takes, by problem size.

With ``epoch: {decision_time: {mode: measured}}`` every decision costs simulated time: the
scheduler waits ``t(size)`` before the epoch's tasks start uploading, so a slow solver pays in
latency. ``t`` comes from a timing file (default ``models/decision-time.yaml``; another with
``decision_time.file``, relative to the scenario file), fitted by
``tests/benchmarks/decision_time.py`` from the wall time of whole decisions (bandwidth, QUBO,
solve, repair and local search: what the epochs table records as ``decision_wall_s``) on random
epochs of growing size. Runs stay reproducible: the simulated delay is a function of the decision's
size, never of the wall clock of the run.

A file maps a key to a model::

    models:
      sa:     {size: variables, form: power, a_s: 2.0e-3, b_s: 1.0e-5, c: 1.2,
               points: [[7, 2.1e-3], [70, 4.4e-3]]}
      exact:  {size: variables, form: piecewise, points: [[1, 1e-3], [12, 0.05], [20, 9.0]]}
      greedy: {size: tasks, form: power, a_s: 3.0e-5, b_s: 4.0e-6, c: 1.0}

The key of a decision is its solver label (``info["solver"]``: ``sa``, ``tabu``, ``qaoa``,
``random-feasible``, ``greedy-ls``, ...) or, for policies without a solver (the heuristics, RL),
the policy's name; a file may add a ``default`` model for every other key. The size is the QUBO's
``variables`` (from the decision's ``info``) or the epoch's ``tasks``. Forms:

* ``power``: ``t = a_s + b_s * size ** c``;
* ``piecewise``: linear interpolation between measured ``points`` ``[size, seconds]`` (sorted by
  size), extended beyond the last point along the last segment (and held at the first point
  below it).

``points`` are kept in every entry as the measured medians the model was fitted to.

Example:
    >>> m = TimingModel.from_dict({"models": {"sa": {"size": "variables", "form": "power",
    ...                            "a_s": 0.001, "b_s": 0.0001, "c": 1.0}}})
    >>> round(m.delay({"solver": "sa", "variables": 50}, n_tasks=8, policy="qubo-sa"), 6)
    0.006
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mecsim.errors import ScenarioError

__all__ = ["FIELD", "TimingEntry", "TimingModel", "default_file", "load_timing_model", "measured_delay"]

#: The scenario field every error of this module names.
FIELD = "epoch.decision_time.file"

_SIZES = ("variables", "tasks")
_FORMS = ("power", "piecewise")


def default_file() -> Path:
    """``models/decision-time.yaml`` as packaged (found through importlib.resources)."""
    from mecsim.scenario import data_dir

    return data_dir("models") / "decision-time.yaml"


def _number(raw: dict[str, Any], key: str, where: str, minimum: float = 0.0) -> float:
    val = raw.get(key)
    if isinstance(val, bool) or not isinstance(val, int | float) or not math.isfinite(val) or val < minimum:
        raise ValueError(f"{where}.{key} must be a finite number >= {minimum:g}, got {val!r}")
    return float(val)


@dataclass(frozen=True)
class TimingEntry:
    """One key's model: ``size`` (``variables`` or ``tasks``), ``form`` and its parameters."""

    size: str
    form: str
    a_s: float = 0.0
    b_s: float = 0.0
    c: float = 1.0
    points: tuple[tuple[float, float], ...] = ()

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> TimingEntry:
        """Validate one entry; ``where`` names it in errors (``models.sa``)."""
        if not isinstance(raw, dict):
            raise ValueError(f"{where} must be a mapping, got {type(raw).__name__}")
        unknown = set(raw) - {"size", "form", "a_s", "b_s", "c", "points", "range", "note"}
        if unknown:
            raise ValueError(f"{where}: unknown field {sorted(unknown)[0]!r}")
        size, form = raw.get("size", "variables"), raw.get("form", "power")
        if size not in _SIZES:
            raise ValueError(f"{where}.size must be one of {_SIZES}, got {size!r}")
        if form not in _FORMS:
            raise ValueError(f"{where}.form must be one of {_FORMS}, got {form!r}")
        pts_raw = raw.get("points", [])
        if not isinstance(pts_raw, list):
            raise ValueError(f"{where}.points must be a list of [size, seconds] pairs")
        points = []
        for k, p in enumerate(pts_raw):
            if not (isinstance(p, list | tuple) and len(p) == 2):
                raise ValueError(f"{where}.points.{k} must be a [size, seconds] pair, got {p!r}")
            pair = {"size": p[0], "seconds": p[1]}
            points.append(
                (
                    _number(pair, "size", f"{where}.points.{k}"),
                    _number(pair, "seconds", f"{where}.points.{k}"),
                )
            )
        if any(b[0] <= a[0] for a, b in zip(points, points[1:], strict=False)):
            raise ValueError(f"{where}.points must have strictly increasing sizes")
        if form == "piecewise":
            if not points:
                raise ValueError(f"{where}: form piecewise needs points")
            return cls(size, form, points=tuple(points))
        return cls(
            size,
            form,
            _number(raw, "a_s", where),
            _number(raw, "b_s", where),
            _number(raw, "c", where),
            tuple(points),
        )

    def time(self, size: float) -> float:
        """Seconds for a decision of this size (>= 0)."""
        size = max(float(size), 0.0)
        if self.form == "power":
            return self.a_s + self.b_s * size**self.c
        pts = self.points
        if size <= pts[0][0] or len(pts) == 1:
            return pts[0][1] if size <= pts[0][0] else pts[-1][1]
        for (x0, y0), (x1, y1) in zip(pts, pts[1:], strict=False):
            if size <= x1:
                return y0 + (y1 - y0) * (size - x0) / (x1 - x0)
        (x0, y0), (x1, y1) = pts[-2], pts[-1]
        return max(y1 + (y1 - y0) * (size - x1) / (x1 - x0), 0.0)


@dataclass(frozen=True)
class TimingModel:
    """Decision-time models by key (solver label or policy name), read from one file."""

    entries: dict[str, TimingEntry]
    source: str = "<dict>"

    @classmethod
    def from_dict(cls, raw: Any, source: str = "<dict>") -> TimingModel:
        """Validate a parsed timing file.

        Raises:
            ValueError: one line naming the entry and the problem.
        """
        if not isinstance(raw, dict) or not isinstance(raw.get("models"), dict) or not raw["models"]:
            raise ValueError("needs a non-empty mapping 'models: {key: model}'")
        unknown = set(raw) - {"models", "machine", "date", "command"}
        if unknown:
            raise ValueError(f"unknown top-level field {sorted(unknown)[0]!r}")
        entries = {str(k): TimingEntry.from_dict(v, f"models.{k}") for k, v in raw["models"].items()}
        return cls(entries, source)

    def key_for(self, info: dict[str, Any], policy: str) -> str:
        """The model key of a decision: its solver label, else the policy name, else ``default``."""
        solver = info.get("solver")
        for key in (str(solver) if solver else None, policy, "default"):
            if key and key in self.entries:
                return key
        wanted = f"solver {solver!r} (policy {policy!r})" if solver else f"policy {policy!r}"
        raise ScenarioError(
            f"{self.source} has no decision-time model for {wanted}; it has "
            f"{', '.join(sorted(self.entries))} (add one, or a 'default', or use mode fixed)",
            FIELD,
        )

    def delay(self, info: dict[str, Any], n_tasks: int, policy: str) -> float:
        """Simulated seconds a decision takes (see the module docstring for the key and size)."""
        entry = self.entries[self.key_for(info, policy)]
        if entry.size == "tasks":
            return entry.time(n_tasks)
        variables = info.get("variables")
        if variables is None:
            raise ScenarioError(
                f"{self.source}: the model for {self.key_for(info, policy)!r} is by QUBO variables, "
                f"but policy {policy!r} reports none (use size: tasks for it)",
                FIELD,
            )
        return entry.time(float(variables))


_CACHE: dict[tuple[str, float], TimingModel] = {}


def load_timing_model(path: str | os.PathLike[str] | None = None) -> TimingModel:
    """Read and validate a timing file (default :func:`default_file`), cached per file version.

    Raises:
        ScenarioError: one line naming ``epoch.decision_time.file``: missing, unreadable or
            invalid file.
    """
    from mecsim.scenario import _load_yaml_file

    p = Path(path) if path is not None else default_file()
    try:
        key = (str(p.resolve()), p.stat().st_mtime)
    except OSError:
        raise ScenarioError(f"no such timing file: {p}", FIELD) from None
    if key not in _CACHE:
        raw = _load_yaml_file(p, lambda msg: ScenarioError(msg, FIELD), what="timing file")
        try:
            _CACHE[key] = TimingModel.from_dict(raw, str(p))
        except ValueError as exc:
            raise ScenarioError(f"{p}: {exc}", FIELD) from None
    return _CACHE[key]


def scenario_timing_model(sc: Any) -> TimingModel:
    """The timing model a scenario names (``file`` relative to the scenario's folder)."""
    f = sc.epoch.decision_time.file
    return load_timing_model(sc.resolve_path(f) if f else None)


def measured_delay(sc: Any, info: dict[str, Any], n_tasks: int, policy: Any) -> float:
    """The engine's hook: simulated seconds of one decision under ``mode: measured``."""
    name = policy if isinstance(policy, str) else str(getattr(policy, "name", type(policy).__name__))
    return scenario_timing_model(sc).delay(info, n_tasks, name)
