"""Sweep files: the validated spec of many runs (scenario overrides x policies x seeds).

A sweep file names a base scenario, the overrides to vary, the policies and the seeds:

.. code-block:: yaml

    name: smoke-bandwidth
    scenario: smoke-v1            # a registered name, or a path relative to this file
    overrides: {duration_s: 30}   # applied to every run
    grid:                         # cartesian product of dotted overrides
      radio.bandwidth_hz: [5.0e+6, 10.0e+6]
    cases:                        # explicit override sets, each combined with every grid point
      - {}
      - {servers.1.slots: 2}
    policies: [random, {name: greedy, params: {bandwidth: sum}}]
    seeds: {count: 3, start: 0}   # or a list: [1, 2, 3]
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mecsim.errors import MecsimError

__all__ = ["SweepError", "PolicyEntry", "SweepSpec", "load_sweep_spec"]


class SweepError(MecsimError, ValueError):
    """A sweep file or spec is malformed, or a sweep cannot start.

    Attributes:
        field: dotted path of the offending field in the sweep spec, e.g. ``"seeds.count"``.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


# ---------------------------------------------------------------------------------------------
# the spec


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PolicyEntry(_Model):
    """A policy to run: a registered name or ``"package.module:Object"``, with its parameters.

    ``params: null`` (the default) means "as :func:`mecsim.simulate` would": the scenario's
    policy params when the name is the scenario's policy, none otherwise.
    """

    name: str = Field(min_length=1)
    params: dict[str, Any] | None = None


def _dotted(key: Any, where: str) -> str:
    if not isinstance(key, str) or not key.strip():
        raise ValueError(f"{where}: override keys must be non-empty strings, got {key!r}")
    return key.strip().replace("__", ".")


class SweepSpec(_Model):
    """A validated sweep. See the module docstring for the file format.

    Attributes:
        name: the sweep's name (the default output folder is ``runs/<name>``).
        scenario: the base scenario: a registered name or a path (relative to ``base_dir``).
        overrides: dotted overrides applied to every run; a case may override them again.
        grid: dotted override -> list of values; the runs take the cartesian product.
        cases: explicit override dicts; every case is combined with every grid point.
        policies: the policies to compare (default: the scenario's policy).
        seeds: the run seeds, a list or ``{count: K, start: S}`` (S, S+1, ..., S+K-1).
        base_dir: the folder of the sweep file (not part of the file).
    """

    name: str = Field(default="sweep", min_length=1)
    description: str = ""
    scenario: str = Field(min_length=1)
    overrides: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    cases: list[dict[str, Any]] = Field(default_factory=list)
    policies: list[PolicyEntry] = Field(default_factory=list)
    seeds: list[int] = Field(min_length=1)
    base_dir: str | None = Field(default=None, exclude=True)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        # The name becomes a folder name: keep it to one path component.
        if "/" in v or "\\" in v or v in (".", ".."):
            raise ValueError(f"must be a plain name without path separators, got {v!r}")
        return v

    @field_validator("overrides", mode="before")
    @classmethod
    def _overrides(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        return {_dotted(k, "overrides"): x for k, x in v.items()}

    @field_validator("grid", mode="before")
    @classmethod
    def _grid(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        out = {}
        for k, vals in v.items():
            key = _dotted(k, "grid")
            if not isinstance(vals, list):
                raise ValueError(f"{key}: give a list of values, got {vals!r}")
            if not vals:
                raise ValueError(f"{key}: the list of values is empty")
            out[key] = vals
        return out

    @field_validator("cases", mode="before")
    @classmethod
    def _cases(cls, v: Any) -> Any:
        if not isinstance(v, list):
            return v
        return [
            {_dotted(k, f"case {i}"): x for k, x in c.items()} if isinstance(c, dict) else c
            for i, c in enumerate(v)
        ]

    @field_validator("policies", mode="before")
    @classmethod
    def _policies(cls, v: Any) -> Any:
        # A bare string is the common case; normalise it before the model sees it.
        if isinstance(v, str | dict):
            v = [v]
        if isinstance(v, list):
            return [{"name": p} if isinstance(p, str) else p for p in v]
        return v

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError(f"give a list of seeds or {{count: K, start: S}}, got {v!r}")
        if isinstance(v, int):
            v = [v]
        if isinstance(v, dict):
            unknown = set(v) - {"count", "start"}
            if unknown:
                raise ValueError(f"unknown key(s) {sorted(unknown)}; use {{count: K, start: S}}")
            count, start = v.get("count"), v.get("start", 0)
            for key, x, low in (("count", count, 1), ("start", start, 0)):
                if isinstance(x, bool) or not isinstance(x, int) or x < low:
                    raise ValueError(f"{key} must be a whole number >= {low}, got {x!r}")
            return list(range(start, start + count))
        if isinstance(v, list):
            for x in v:
                if isinstance(x, bool) or not isinstance(x, int) or x < 0:
                    raise ValueError(f"seeds must be whole numbers >= 0, got {x!r}")
            dup = sorted({x for x in v if v.count(x) > 1})
            if dup:
                raise ValueError(f"duplicate seed(s) {dup}")
            return v
        raise ValueError(f"give a list of seeds or {{count: K, start: S}}, got {v!r}")

    @model_validator(mode="after")
    def _disjoint(self) -> SweepSpec:
        # A key both in the grid and elsewhere would make the run's value depend on an order
        # nobody wrote down; cases may override the common `overrides` on purpose.
        for key in self.grid:
            if key in self.overrides:
                raise ValueError(f"grid key {key!r} is also in overrides; keep it in one place")
            for i, case in enumerate(self.cases):
                if key in case:
                    raise ValueError(f"grid key {key!r} is also set by case {i}; keep it in one place")
        names = [(p.name, json.dumps(p.params, sort_keys=True, default=str)) for p in self.policies]
        dup = sorted({n for n, _ in names if names.count((n, _)) > 1})
        if dup:
            raise ValueError(f"policies: listed twice with the same params: {dup}")
        return self

    def points(self) -> list[dict[str, Any]]:
        """The override dicts of the sweep's scenario points: overrides, then case, then grid."""
        keys = list(self.grid)
        combos = [dict(zip(keys, vals, strict=True)) for vals in itertools.product(*self.grid.values())]
        cases = self.cases or [{}]
        return [{**self.overrides, **case, **combo} for case in cases for combo in combos]

    def scenario_source(self) -> str:
        """The base scenario as :func:`~mecsim.scenario.load_scenario` takes it: a registered
        name, or a path resolved against the sweep file's folder."""
        src = self.scenario
        path = Path(os.path.expanduser(src))
        if not path.is_absolute() and self.base_dir:
            candidate = Path(self.base_dir) / path
            if candidate.exists():
                return str(candidate.resolve())
        if path.exists():
            return str(path.resolve())
        return src  # a registered name (load_scenario says so if it is not)


def _format_spec_error(exc: ValidationError) -> SweepError:
    from mecsim.scenario import _format_validation_error

    err = _format_validation_error(exc, SweepError, skip=())
    assert isinstance(err, SweepError)
    return err


def load_sweep_spec(source: str | os.PathLike[str] | dict[str, Any] | SweepSpec) -> SweepSpec:
    """Load and validate a sweep from a YAML file, a dict or a :class:`SweepSpec`.

    Raises:
        SweepError: one line naming the field and the problem.
    """
    if isinstance(source, SweepSpec):
        return source
    base_dir: str | None = None
    if isinstance(source, dict):
        data: Any = source
    else:
        from mecsim.scenario import _load_yaml_file

        path = Path(os.fspath(source))
        if not path.is_file():
            raise SweepError(f"no such sweep file: {path}")
        data = _load_yaml_file(path, SweepError, "sweep file")
        base_dir = str(path.resolve().parent)
    if not isinstance(data, dict):
        raise SweepError(f"a sweep must be a mapping of fields, got {type(data).__name__}")
    data = dict(data)
    if base_dir is not None:
        data["base_dir"] = base_dir
    else:
        data.pop("base_dir", None)
    try:
        return SweepSpec(**data)
    except ValidationError as exc:
        raise _format_spec_error(exc) from None
