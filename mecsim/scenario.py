"""Scenarios: the schema, loading, validation and the registry of ready scenarios.

A scenario is a YAML file (or a dict) describing devices, radio, servers, the scheduling epoch and
the default policy. Units are SI and are part of every field name (``_s``, ``_hz``, ``_bits``,
``_dbm``, ``_db``, ``_m``, ``_mps``, ``_w``, ``_bps``). Unknown fields are errors, so a typo
never silently falls back to a default.

Ready scenarios live in ``scenarios/`` at the project root; each has a versioned ``name``
(``"paper-small-v1"``) by which it can be run. Model and GPU profiles come from ``models/`` and
can be extended or overridden inline under ``profiles``.

Example:
    >>> from mecsim.scenario import load_scenario
    >>> sc = load_scenario("smoke-v1")
    >>> sc.name
    'smoke-v1'
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from mecsim.errors import ScenarioError

PosFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]

#: Sanity limits that keep a run bounded in time and memory (each error names the field).
MAX_EXPECTED_TASKS = 5e7
MAX_SPEED_MPS = 100.0
MIN_EPOCH_S = 1e-3
MAX_BITS = 1e12
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def _check_range(v: Any, positive: bool = False, integer: bool = False) -> Any:
    """A value or a [low, high] pair (uniform draw); both ends >= 0 (> 0 when positive)."""
    vals = list(v) if isinstance(v, list | tuple) else [v]
    if len(vals) not in (1, 2):
        raise ValueError("must be a number or a [low, high] pair")
    for x in vals:
        if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
            raise ValueError(f"must be a finite number, got {x!r}")
        if integer and int(x) != x:
            raise ValueError(f"must be a whole number, got {x!r}")
        if x < 0 or (positive and x == 0):
            raise ValueError(f"must be {'> 0' if positive else '>= 0'}, got {x!r}")
    if len(vals) == 2 and vals[0] > vals[1]:
        raise ValueError(f"low {vals[0]} is above high {vals[1]}")
    return tuple(float(x) for x in vals) if len(vals) == 2 else float(vals[0])


Range = float | tuple[float, float]


# ---------------------------------------------------------------------------------------------
# radio


class PathLoss(_Model):
    """Log-distance path loss PL(d) = pl0_db + slope_db_per_decade * log10(d / ref_distance_m).

    Defaults: 3GPP TR 36.814 macro, 128.1 + 37.6 log10(d/km) dB.
    """

    pl0_db: Finite = 128.1
    slope_db_per_decade: NonNegFloat = 37.6
    ref_distance_m: PosFloat = 1000.0
    shadowing_std_db: NonNegFloat = 0.0
    min_distance_m: PosFloat = 10.0


class Fading(_Model):
    """Small-scale fading: Rayleigh block fading re-drawn every coherence time, or none."""

    model: Literal["none", "rayleigh"] = "rayleigh"
    coherence_time_s: float = Field(default=0.01, ge=1e-4, le=1e6, allow_inf_nan=False)


class Downlink(_Model):
    """Downlink of the result: a fixed rate plus a latency."""

    rate_bps: PosFloat = 100e6
    latency_s: NonNegFloat = 0.0


class Radio(_Model):
    """Shared uplink (FDMA shares of ``bandwidth_hz``) and downlink."""

    ideal: bool = False
    bandwidth_hz: PosFloat = 20e6
    min_bandwidth_hz: PosFloat = 1e5
    noise_dbm_per_hz: Finite = -174.0
    noise_figure_db: NonNegFloat = 7.0
    path_loss: PathLoss = PathLoss()
    fading: Fading = Fading()
    downlink: Downlink = Downlink()
    #: ``preallocated``: a share is fixed until its upload ends; ``reallocated``: the running
    #: uploads' shares are recomputed by the policy's rule whenever an upload ends or an epoch
    #: starts (:mod:`mecsim.sim.uplink`).
    uplink_mode: Literal["preallocated", "reallocated"] = "preallocated"

    @model_validator(mode="after")
    def _bmin(self) -> Radio:
        if self.min_bandwidth_hz > self.bandwidth_hz:
            raise ValueError(
                f"min_bandwidth_hz ({self.min_bandwidth_hz:g}) exceeds bandwidth_hz "
                f"({self.bandwidth_hz:g})"
            )
        return self


# ---------------------------------------------------------------------------------------------
# devices


class Placement(_Model):
    """Distance of each device from the access point, drawn uniformly in [low, high] (m)."""

    distance_m: Range = (50.0, 300.0)

    _v = field_validator("distance_m", mode="before")(lambda v: _check_range(v, positive=True))


class Mobility(_Model):
    """Device mobility: none, or random waypoint inside a disc around the access point."""

    model: Literal["none", "random-waypoint"] = "none"
    speed_mps: Range = 1.0
    pause_s: NonNegFloat = 0.0
    radius_m: PosFloat = 300.0

    _v = field_validator("speed_mps", mode="before")(lambda v: _check_range(v, positive=True))

    @field_validator("speed_mps")
    @classmethod
    def _max_speed(cls, v: Any) -> Any:
        top = v[1] if isinstance(v, tuple) else v
        if top > MAX_SPEED_MPS:
            raise ValueError(f"must be at most {MAX_SPEED_MPS:g} m/s, got {top!r}")
        low = v[0] if isinstance(v, tuple) else v
        if low < 1e-3:
            raise ValueError(f"must be at least 0.001 m/s, got {low!r}")
        return v


class PoissonArrivals(_Model):
    """Poisson arrivals at ``rate_per_s`` per device."""

    process: Literal["poisson"]
    rate_per_s: PosFloat


class MMPPArrivals(_Model):
    """Markov-modulated Poisson arrivals: state k has rate ``rates_per_s[k]`` and an exponential
    sojourn of mean ``mean_sojourn_s[k]``; on leaving a state the next is drawn uniformly among
    the others (two states: on-off bursts)."""

    process: Literal["mmpp"]
    rates_per_s: list[NonNegFloat] = Field(min_length=2)
    mean_sojourn_s: list[PosFloat] = Field(min_length=2)

    @model_validator(mode="after")
    def _lens(self) -> MMPPArrivals:
        if len(self.rates_per_s) != len(self.mean_sojourn_s):
            raise ValueError("rates_per_s and mean_sojourn_s must have the same length")
        if max(self.rates_per_s) <= 0:
            raise ValueError("at least one state needs a rate above 0")
        return self


class TraceArrivals(_Model):
    """Replay of a CSV of arrival times, shared among the group's devices.

    The time column holds seconds, or timestamps (``time_format: datetime``) taken relative to the
    first row. ``time_scale`` compresses (< 1) or stretches (> 1) time. Rows are given to devices
    round-robin, or by ``device_column`` modulo the group size. Optional columns map to a
    request's input size (``input_bits_column`` x ``input_bits_per_unit``) and steps.
    Rows at or after the scenario duration are not replayed (the summary says how many).
    """

    process: Literal["trace"]
    path: str
    time_column: str = "time"
    time_format: Literal["seconds", "datetime"] = "seconds"
    time_scale: PosFloat = 1.0
    start_s: NonNegFloat = 0.0
    device_column: str | None = None
    input_bits_column: str | None = None
    input_bits_per_unit: PosFloat = 1.0
    steps_column: str | None = None


Arrivals = Annotated[
    PoissonArrivals | MMPPArrivals | TraceArrivals, Field(discriminator="process")
]


class Workload(_Model):
    """One kind of request a device group issues; a request picks a kind with ``weight``.

    ``input_bits``, ``output_bits`` and ``steps`` are a value or a [low, high] uniform range;
    unset, they come from the model profile (input = the profile's ``prompt_bits``).
    ``deadline_s`` is relative to the arrival.
    """

    model: str
    weight: PosFloat = 1.0
    input_bits: Range | None = None
    output_bits: Range | None = None
    steps: Range | None = None
    deadline_s: PosFloat | None = None

    @field_validator("input_bits", "output_bits", mode="before")
    @classmethod
    def _bits(cls, v: Any) -> Any:
        if v is None:
            return None
        r = _check_range(v)
        if (max(r) if isinstance(r, tuple) else r) > MAX_BITS:
            raise ValueError(f"must be at most {MAX_BITS:g} bits")
        return r

    @field_validator("steps", mode="before")
    @classmethod
    def _steps(cls, v: Any) -> Any:
        if v is None:
            return None
        r = _check_range(v, positive=True, integer=True)
        if (max(r) if isinstance(r, tuple) else r) > 1e6:
            raise ValueError("must be at most 1e6 steps")
        return r


class DeviceGroup(_Model):
    """``count`` identical IoT devices."""

    name: str = "devices"
    count: int = Field(default=1, ge=1, le=100_000)
    tx_power_dbm: Finite = 23.0
    placement: Placement = Placement()
    mobility: Mobility = Mobility()
    arrivals: Arrivals
    workload: list[Workload] = Field(min_length=1)


# ---------------------------------------------------------------------------------------------
# servers and service


class Backhaul(_Model):
    """Access point -> server link: latency plus bits / rate (``rate_bps: null`` = infinite)."""

    latency_s: NonNegFloat = 0.001
    rate_bps: PosFloat | None = 1e9


class Server(_Model):
    """An AIGC server: ``slots`` GPUs of one kind (one task per GPU at a time), FIFO queue."""

    name: str
    gpu: str
    slots: int = Field(default=1, ge=1, le=1024)
    models: list[str] = Field(min_length=1)
    backhaul: Backhaul = Backhaul()


class Jitter(_Model):
    """Random factor on service time, mean 1: deterministic, exponential, or lognormal with the
    given coefficient of variation."""

    distribution: Literal["deterministic", "exponential", "lognormal"] = "deterministic"
    cv: NonNegFloat = 0.1


class Service(_Model):
    """Service discipline and time jitter.

    ``discipline``: ``"epoch-spt"`` serves tasks decided in earlier epochs first and, within one
    epoch's batch, the shortest first (the order the QUBO's congestion terms assume);
    ``"fifo"`` serves in order of arrival at the server.
    """

    jitter: Jitter = Jitter()
    discipline: Literal["epoch-spt", "fifo"] = "epoch-spt"


# ---------------------------------------------------------------------------------------------
# epochs and decision time


class DecisionCost(_Model):
    """Simulated time a decision takes: base + per task + per QUBO variable/interaction (s)."""

    base_s: NonNegFloat = 0.0
    per_task_s: NonNegFloat = 0.0
    per_variable_s: NonNegFloat = 0.0
    per_interaction_s: NonNegFloat = 0.0


class DecisionTime(_Model):
    """How long a decision takes in simulated time.

    ``zero``: instantaneous. ``fixed``: ``fixed_s``, or ``by_solver[solver].base_s`` when the
    solver is listed. ``model``: a :class:`DecisionCost` of the problem size, per solver
    (``by_solver``) or the default ``cost``. Measured wall time is recorded but never used, so
    runs stay reproducible.
    """

    mode: Literal["zero", "fixed", "model"] = "zero"
    fixed_s: NonNegFloat = 0.0
    cost: DecisionCost = DecisionCost()
    by_solver: dict[str, DecisionCost] = Field(default_factory=dict)


class Epoch(_Model):
    """The scheduling epoch: every ``length_s`` seconds (0 = at every arrival) the waiting tasks
    are decided, at most ``max_tasks`` of them (oldest first) and at most as many as the free
    bandwidth allows at ``min_bandwidth_hz`` each."""

    length_s: NonNegFloat = 0.5

    @field_validator("length_s")
    @classmethod
    def _len(cls, v: float) -> float:
        if 0 < v < MIN_EPOCH_S:
            raise ValueError(f"must be 0 (decide at every arrival) or at least {MIN_EPOCH_S:g} s, got {v!r}")
        return v
    max_tasks: int | None = Field(default=None, ge=1)
    decision_time: DecisionTime = DecisionTime()


class ServerFault(_Model):
    """Outages of one server: at fixed times (``down_s[k]`` .. ``up_s[k]``) or by exponential
    failure and repair times (``mtbf_s``, ``mttr_s``), drawn from the run's fault stream."""

    server: str
    down_s: list[NonNegFloat] = Field(default_factory=list)
    up_s: list[NonNegFloat] = Field(default_factory=list)
    mtbf_s: PosFloat | None = None
    mttr_s: PosFloat | None = None

    @model_validator(mode="after")
    def _times(self) -> ServerFault:
        if (self.mtbf_s is None) != (self.mttr_s is None):
            raise ValueError("mtbf_s and mttr_s go together")
        if self.mtbf_s is not None and self.down_s:
            raise ValueError("give either down_s/up_s or mtbf_s/mttr_s, not both")
        if self.mtbf_s is None and not self.down_s:
            raise ValueError("give down_s/up_s or mtbf_s/mttr_s")
        if len(self.up_s) > len(self.down_s) or len(self.down_s) - len(self.up_s) > 1:
            raise ValueError("up_s needs one time per down_s (the last outage may stay down)")
        seq = [t for pair in zip(self.down_s, self.up_s + [math.inf], strict=False) for t in pair]
        if any(b <= a for a, b in zip(seq, seq[1:], strict=False)):
            raise ValueError("down_s/up_s must alternate in increasing time")
        return self


class ChannelFault(_Model):
    """A device's uplink is out (gain 0) from ``start_s`` to ``end_s``; its tasks wait."""

    device: int = Field(ge=0)
    start_s: NonNegFloat
    end_s: PosFloat

    @model_validator(mode="after")
    def _order(self) -> ChannelFault:
        if self.end_s <= self.start_s:
            raise ValueError("end_s must be after start_s")
        return self


class BackhaulFault(_Model):
    """A server's backhaul degrades from ``start_s`` to ``end_s``: extra latency and/or a rate
    multiplied by ``rate_factor``."""

    server: str
    start_s: NonNegFloat
    end_s: PosFloat
    extra_latency_s: NonNegFloat = 0.0
    rate_factor: float = Field(default=1.0, gt=0, le=1)

    @model_validator(mode="after")
    def _order(self) -> BackhaulFault:
        if self.end_s <= self.start_s:
            raise ValueError("end_s must be after start_s")
        return self


class Faults(_Model):
    """Simulated faults. ``on_server_failure``: tasks queued or in service on a failed server
    (or arriving at it while down) go back to the waiting list for the next epoch
    (``redispatch``) or are dropped with reason ``server_failure`` (``drop``)."""

    on_server_failure: Literal["redispatch", "drop"] = "redispatch"
    servers: list[ServerFault] = Field(default_factory=list)
    channels: list[ChannelFault] = Field(default_factory=list)
    backhaul: list[BackhaulFault] = Field(default_factory=list)


class PolicySpec(_Model):
    """A policy by registered name or ``"package.module:Object"``, with its parameters."""

    name: str = "greedy"
    params: dict[str, Any] = Field(default_factory=dict)


class ModelProfile(_Model):
    output_bits: NonNegFloat
    steps: int = Field(ge=1)
    prompt_bits: NonNegFloat
    description: str = ""


class GPUProfile(_Model):
    power_w: NonNegFloat
    seconds_per_step: dict[str, PosFloat]
    description: str = ""


class Profiles(_Model):
    """Inline additions/overrides of models/aigc.yaml and models/gpus.yaml."""

    models: dict[str, ModelProfile] = Field(default_factory=dict)
    gpus: dict[str, GPUProfile] = Field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# the scenario


class Scenario(_Model):
    """A complete, validated scenario. See the module docstring and README for the format."""

    name: str = "unnamed"
    description: str = ""
    seed: int = Field(default=0, ge=0)
    duration_s: PosFloat = 600.0
    warmup_s: NonNegFloat = 0.0
    drain_s: NonNegFloat = 0.0
    deadline_action: Literal["serve", "drop"] = "serve"
    radio: Radio = Radio()
    devices: list[DeviceGroup] = Field(min_length=1)
    servers: list[Server] = Field(min_length=1)
    service: Service = Service()
    epoch: Epoch = Epoch()
    policy: PolicySpec = PolicySpec()
    profiles: Profiles = Profiles()
    faults: Faults = Faults()
    base_dir: str | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        if self.warmup_s >= self.duration_s:
            raise ValueError(f"warmup_s ({self.warmup_s:g}) must be below duration_s ({self.duration_s:g}); "
                             "shorten it too (e.g. --set warmup_s=0)")
        names = [s.name for s in self.servers]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"servers: duplicate server name(s) {sorted(dup)}")
        models, gpus = merged_profiles(self.profiles)
        for k, srv in enumerate(self.servers):
            if srv.gpu not in gpus:
                raise ScenarioError(
                    f"unknown GPU {srv.gpu!r}; known: {sorted(gpus)} (add it under profiles.gpus)",
                    f"servers.{k}.gpu",
                )
            for mname in srv.models:
                if mname not in models:
                    raise ScenarioError(f"unknown model {mname!r}; known: {sorted(models)}",
                                        f"servers.{k}.models")
                if mname not in gpus[srv.gpu].seconds_per_step:
                    raise ScenarioError(
                        f"GPU {srv.gpu!r} has no seconds_per_step for model {mname!r}",
                        f"servers.{k}.models",
                    )
        expected = 0.0
        for g, grp in enumerate(self.devices):
            a = grp.arrivals
            rate = (a.rate_per_s if isinstance(a, PoissonArrivals)
                    else max(a.rates_per_s) if isinstance(a, MMPPArrivals) else 0.0)
            expected += grp.count * rate * self.duration_s
            if expected > MAX_EXPECTED_TASKS:
                raise ScenarioError(
                    f"about {expected:.3g} tasks expected in {self.duration_s:g} s, above the limit "
                    f"of {MAX_EXPECTED_TASKS:g} per run (lower the rate or duration_s)",
                    f"devices.{g}.arrivals")
        for k, f in enumerate(self.faults.servers):
            if f.server not in names:
                raise ScenarioError(f"unknown server {f.server!r}; servers: {names}",
                                    f"faults.servers.{k}.server")
        for k, f in enumerate(self.faults.backhaul):
            if f.server not in names:
                raise ScenarioError(f"unknown server {f.server!r}; servers: {names}",
                                    f"faults.backhaul.{k}.server")
        for k, f in enumerate(self.faults.channels):
            if f.device >= self.n_devices:
                raise ScenarioError(f"device {f.device} does not exist (devices 0..{self.n_devices - 1})",
                                    f"faults.channels.{k}.device")
        hosted = {m for s in self.servers for m in s.models}
        for g, grp in enumerate(self.devices):
            for w, wl in enumerate(grp.workload):
                if wl.model not in models:
                    raise ScenarioError(f"unknown model {wl.model!r}; known: {sorted(models)}",
                                        f"devices.{g}.workload.{w}.model")
                if wl.model not in hosted:
                    raise ScenarioError(f"no server hosts model {wl.model!r}",
                                        f"devices.{g}.workload.{w}.model")
        return self

    # convenient derived facts -----------------------------------------------------------------
    @property
    def n_devices(self) -> int:
        """Total number of devices."""
        return sum(g.count for g in self.devices)

    def resolved(self) -> dict[str, Any]:
        """The scenario as a plain dict with every default filled in (what a run used)."""
        return self.model_dump(mode="json")

    def digest(self) -> str:
        """A short stable hash of the resolved scenario (without the seed)."""
        d = self.resolved()
        d.pop("seed", None)
        if d.get("radio", {}).get("uplink_mode") == "preallocated":  # the default: digests as before
            d["radio"].pop("uplink_mode")
        blob = json.dumps(d, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def resolve_path(self, path: str) -> Path:
        """A path named in the scenario, relative to the scenario file's folder."""
        p = Path(os.path.expanduser(path))
        if not p.is_absolute() and self.base_dir:
            p = Path(self.base_dir) / p
        return p


# ---------------------------------------------------------------------------------------------
# profiles and paths


def project_root() -> Path:
    """The folder holding models/ and scenarios/ (``MECSIM_HOME`` overrides)."""
    env = os.environ.get("MECSIM_HOME")
    return Path(env) if env else Path(__file__).resolve().parent.parent


_PROFILE_CACHE: dict[str, Any] = {}


def _load_yaml_file(path: Path, error: type[Exception] = ScenarioError, what: str = "file") -> Any:
    """Read a YAML file safely (``yaml.safe_load``); every failure is one ``error`` line."""
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except FileNotFoundError:
        raise error(f"no such {what}: {path}") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {_one_line(str(exc))}") from None
    except (UnicodeDecodeError, IsADirectoryError, PermissionError) as exc:
        raise error(f"{path}: cannot read as a text file: {type(exc).__name__}") from None


def base_profiles() -> tuple[dict[str, ModelProfile], dict[str, GPUProfile]]:
    """The model and GPU profiles from models/aigc.yaml and models/gpus.yaml."""
    if "base" not in _PROFILE_CACHE:
        root = project_root() / "models"
        raw_m = (_load_yaml_file(root / "aigc.yaml") or {}).get("models", {})
        raw_g = (_load_yaml_file(root / "gpus.yaml") or {}).get("gpus", {})
        models = {k: ModelProfile(**v) for k, v in raw_m.items()}
        gpus = {k: GPUProfile(**v) for k, v in raw_g.items()}
        _PROFILE_CACHE["base"] = (models, gpus)
    return _PROFILE_CACHE["base"]


def merged_profiles(extra: Profiles) -> tuple[dict[str, ModelProfile], dict[str, GPUProfile]]:
    """Base profiles with a scenario's inline profiles laid over them."""
    models, gpus = base_profiles()
    return {**models, **extra.models}, {**gpus, **extra.gpus}


# ---------------------------------------------------------------------------------------------
# loading


def _one_line(s: str) -> str:
    return " ".join(s.split())


def _format_validation_error(exc: ValidationError, error: type[Any] = ScenarioError,
                             skip: tuple[str, ...] = ("poisson", "mmpp", "trace")) -> Any:
    """One line from a pydantic error: the first problem's dotted field, message and value.

    ``skip`` drops discriminator tags from the field path; ``error`` is the class to return (any
    subclass of ScenarioError taking ``(message, field)``, e.g. the sweep's).
    """
    errs = exc.errors()
    first = errs[0]
    loc = ".".join(str(p) for p in first["loc"] if not (isinstance(p, str) and p in skip))
    msg = first["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if first["type"] == "extra_forbidden":
        msg = "unknown field"
    val = first.get("input")
    shown = ""
    if (first["type"] not in ("missing",) and not isinstance(val, dict | list)
            and "got " not in msg):
        shown = f" (got {val!r})"
    more = f" [+{len(errs) - 1} more problem(s)]" if len(errs) > 1 else ""
    inner = getattr(first.get("ctx", {}).get("error"), "field", None)
    if inner:
        return error(_one_line(msg.split(": ", 1)[-1]) + shown + more, inner)
    return error(_one_line(msg) + shown + more, loc or None)


def _set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    parts = key.replace("__", ".").split(".")
    cur: Any = d
    for k, p in enumerate(parts[:-1]):
        if isinstance(cur, list):
            try:
                cur = cur[int(p)]
            except (ValueError, IndexError):
                raise ScenarioError(f"no list element {p!r}", ".".join(parts[: k + 1])) from None
            continue
        if not isinstance(cur, dict):
            raise ScenarioError("is not a section", ".".join(parts[:k]))
        cur = cur.setdefault(p, {})
    last = parts[-1]
    if isinstance(cur, list):
        try:
            cur[int(last)] = value
        except (ValueError, IndexError):
            raise ScenarioError(f"no list element {last!r}", key) from None
    elif isinstance(cur, dict):
        cur[last] = value
    else:
        raise ScenarioError("is not a section", ".".join(parts[:-1]))


def scenario_from_dict(data: Any, base_dir: str | None = None, **overrides: Any) -> Scenario:
    """Validate a dict as a scenario, after applying dotted overrides.

    Overrides use dots or double underscores for nesting: ``radio.bandwidth_hz=10e6`` or
    ``radio__bandwidth_hz=10e6``; list elements by index: ``servers.0.slots=2``.

    Raises:
        ScenarioError: one line naming the field and the problem.
    """
    if data is None:
        raise ScenarioError("the scenario is empty")
    if not isinstance(data, dict):
        raise ScenarioError(f"a scenario must be a mapping of fields, got {type(data).__name__}")
    data = json.loads(json.dumps(data, default=str))  # deep copy, plain types only
    for key, value in overrides.items():
        _set_dotted(data, key, value)
    if base_dir is not None:
        data["base_dir"] = base_dir
    try:
        return Scenario(**data)
    except ValidationError as exc:
        raise _format_validation_error(exc) from None
    except TypeError as exc:  # e.g. non-string keys
        raise ScenarioError(f"malformed scenario: {_one_line(str(exc))}") from None


def registered_scenarios() -> dict[str, Path]:
    """Ready scenarios in scenarios/: their ``name`` -> file."""
    out: dict[str, Path] = {}
    folder = project_root() / "scenarios"
    for path in sorted(folder.glob("*.yaml")):
        try:
            raw = _load_yaml_file(path)
        except ScenarioError:
            continue
        if isinstance(raw, dict) and isinstance(raw.get("name"), str) and "devices" in raw:
            out[raw["name"]] = path
    return out


def load_scenario(source: str | os.PathLike[str] | dict[str, Any] | Scenario,
                  **overrides: Any) -> Scenario:
    """Load a scenario from a registered name, a YAML path, a dict or a Scenario.

    Args:
        source: ``"paper-small-v1"``, ``"scenarios/paper-small.yaml"``, a dict, or a Scenario.
        **overrides: dotted field overrides (see :func:`scenario_from_dict`).

    Raises:
        ScenarioError: unknown name, missing file, invalid YAML or an invalid field.
    """
    if isinstance(source, Scenario):
        if not overrides:
            return source
        return scenario_from_dict(source.resolved(), source.base_dir, **overrides)
    if isinstance(source, dict):
        return scenario_from_dict(source, None, **overrides)
    path = Path(os.fspath(source))
    if not path.exists():
        reg = registered_scenarios()
        if str(source) in reg:
            path = reg[str(source)]
        else:
            raise ScenarioError(
                f"no such file or registered scenario {str(source)!r}; registered: "
                f"{', '.join(sorted(reg))}"
            )
    if path.is_dir():
        raise ScenarioError(f"{path} is a folder, not a scenario file")
    data = _load_yaml_file(path)
    return scenario_from_dict(data, str(path.resolve().parent), **overrides)
