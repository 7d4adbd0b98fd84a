"""Scenarios: the schema, loading, validation and the registry of ready scenarios.

A scenario is a YAML file (or a dict) describing devices, radio, servers, the scheduling epoch and
the default policy. Units are SI and are part of every field name (``_s``, ``_hz``, ``_bits``,
``_dbm``, ``_db``, ``_m``, ``_mps``, ``_w``, ``_bps``). Unknown fields are errors, so a typo
never silently falls back to a default.

Ready scenarios live in ``scenarios/`` at the project root; each has a versioned ``name``
(``"paper-small-v1"``) by which it can be run. Model and GPU profiles come from ``models/`` and
can be extended or overridden inline under ``profiles``. Both folders are package data of
``mecsim._data`` (symbolic links in a checkout, copied files in a wheel) and are found through
:mod:`importlib.resources`, so an installed mecsim needs no checkout.

Bad input is bounded before anything runs: YAML files are at most :data:`MAX_YAML_BYTES` and
:data:`MAX_YAML_NODES` nodes once aliases are expanded (an alias bomb is refused without expanding
it), every number has finite, physically sensible bounds, and the expected numbers of tasks and of
fault events over a run are capped (:data:`MAX_EXPECTED_TASKS`, :data:`MAX_EXPECTED_FAULT_EVENTS`).

Example:
    >>> from mecsim.scenario import load_scenario
    >>> sc = load_scenario("smoke-v1")
    >>> sc.name
    'smoke-v1'
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib.resources
import json
import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from mecsim.errors import ScenarioError

#: Sanity limits that keep a run bounded in time and memory (each error names the field).
MAX_EXPECTED_TASKS = 5e7
#: Expected server failures + repairs (and MMPP state switches) over a run, summed over the scenario.
MAX_EXPECTED_FAULT_EVENTS = 1e6
MAX_SPEED_MPS = 100.0
MIN_EPOCH_S = 1e-3
MAX_BITS = 1e12
#: Longest simulated time (s, about 31 years): duration, warm-up, drain, times in fault lists.
MAX_TIME_S = 1e9
#: Longest latency or decision time (s): one day.
MAX_LATENCY_S = 86_400.0
#: Fastest link (bit/s): 10 Tbit/s.
MAX_RATE_BPS = 1e13
#: Largest YAML file (scenario, sweep or study) read, in bytes.
MAX_YAML_BYTES = 2 * 2**20
#: Most YAML nodes in one document once aliases are expanded, and the deepest nesting.
MAX_YAML_NODES = 100_000
MAX_YAML_DEPTH = 64


def _not_bool(v: Any) -> Any:
    if isinstance(v, bool):
        raise ValueError(f"must be a whole number, not a boolean (got {v!r})")
    return v


def _bounded(low: float | None = None, high: float | None = None, *, low_open: bool = False) -> Any:
    """A finite float in [low, high] (``low_open``: above low)."""
    kw: dict[str, Any] = {"allow_inf_nan": False}
    if low is not None:
        kw["gt" if low_open else "ge"] = low
    if high is not None:
        kw["le"] = high
    return Annotated[float, BeforeValidator(_not_bool), Field(**kw)]


Int = Annotated[int, BeforeValidator(_not_bool)]
PosFloat = _bounded(0, 1e15, low_open=True)
NonNegFloat = _bounded(0, 1e15)
Finite = _bounded(-1e15, 1e15)
Seconds = _bounded(0, MAX_TIME_S)
PosSeconds = _bounded(0, MAX_TIME_S, low_open=True)
Latency = _bounded(0, MAX_LATENCY_S)
RateBps = _bounded(0, MAX_RATE_BPS, low_open=True)
Bits = _bounded(0, MAX_BITS)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def _check_range(v: Any, positive: bool = False, integer: bool = False, high: float | None = None) -> Any:
    """A value or a [low, high] pair (uniform draw); both ends >= 0 (> 0 when positive) and at most
    ``high`` when given."""
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
        if high is not None and x > high:
            raise ValueError(f"must be at most {high:g}, got {x!r}")
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

    pl0_db: _bounded(-100.0, 300.0) = 128.1
    slope_db_per_decade: _bounded(0, 100.0) = 37.6
    ref_distance_m: _bounded(0, 1e6, low_open=True) = 1000.0
    shadowing_std_db: _bounded(0, 30.0) = 0.0
    min_distance_m: _bounded(0, 1e5, low_open=True) = 10.0


class Fading(_Model):
    """Small-scale fading: Rayleigh block fading re-drawn every coherence time, or none."""

    model: Literal["none", "rayleigh"] = "rayleigh"
    coherence_time_s: float = Field(default=0.01, ge=1e-4, le=1e6, allow_inf_nan=False)


class Downlink(_Model):
    """Downlink of the result: a fixed rate plus a latency."""

    rate_bps: RateBps = 100e6
    latency_s: Latency = 0.0


class Radio(_Model):
    """Shared uplink (FDMA shares of ``bandwidth_hz``) and downlink."""

    ideal: bool = False
    bandwidth_hz: _bounded(0, 1e12, low_open=True) = 20e6
    min_bandwidth_hz: _bounded(0, 1e12, low_open=True) = 1e5
    noise_dbm_per_hz: _bounded(-250.0, 0.0) = -174.0
    noise_figure_db: _bounded(0, 50.0) = 7.0
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
                f"min_bandwidth_hz ({self.min_bandwidth_hz:g}) exceeds bandwidth_hz ({self.bandwidth_hz:g})"
            )
        return self


# ---------------------------------------------------------------------------------------------
# devices


class Placement(_Model):
    """Distance of each device from the access point, drawn uniformly in [low, high] (m)."""

    distance_m: Range = (50.0, 300.0)

    _v = field_validator("distance_m", mode="before")(lambda v: _check_range(v, positive=True, high=1e5))


class Mobility(_Model):
    """Device mobility: none, or random waypoint inside a disc around the access point."""

    model: Literal["none", "random-waypoint"] = "none"
    speed_mps: Range = 1.0
    pause_s: Seconds = 0.0
    radius_m: _bounded(0, 1e5, low_open=True) = 300.0

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
    """Poisson arrivals at ``rate_per_s`` per device. A group of more than 64 devices draws them
    as one superposed process of rate ``count x rate_per_s`` (see :class:`DeviceGroup`)."""

    process: Literal["poisson"]
    rate_per_s: _bounded(0, 1e6, low_open=True)


class MMPPArrivals(_Model):
    """Markov-modulated Poisson arrivals: state k has rate ``rates_per_s[k]`` and an exponential
    sojourn of mean ``mean_sojourn_s[k]``; on leaving a state the next is drawn uniformly among
    the others (two states: on-off bursts)."""

    process: Literal["mmpp"]
    rates_per_s: list[_bounded(0, 1e6)] = Field(min_length=2, max_length=1000)
    mean_sojourn_s: list[_bounded(MIN_EPOCH_S, MAX_TIME_S)] = Field(min_length=2, max_length=1000)

    @model_validator(mode="after")
    def _lens(self) -> MMPPArrivals:
        if len(self.rates_per_s) != len(self.mean_sojourn_s):
            raise ValueError("rates_per_s and mean_sojourn_s must have the same length")
        if max(self.rates_per_s) <= 0:
            raise ValueError("at least one state needs a rate above 0")
        return self


class TraceArrivals(_Model):
    """Replay of a file of arrival times (CSV, optionally .gz/.bz2/.xz, or Parquet), shared among
    the group's devices. A relative ``path`` is relative to the scenario file's folder.

    The time column holds seconds, or timestamps (``time_format: datetime``) taken relative to the
    earliest row; rows need not be in time order (they are replayed sorted by time).
    ``time_scale`` compresses (< 1) or stretches (> 1) time. Rows are given to devices round-robin,
    or by ``device_column`` modulo the group size. Optional columns map to a request's input size
    (``input_bits_column`` x ``input_bits_per_unit``) and steps. Rows at or after the scenario
    duration are not replayed (the summary says how many). ``mecsim validate`` opens and checks
    the file (see :func:`mecsim.arrivals.read_trace`); at most 64 MiB once decompressed.
    """

    process: Literal["trace"]
    path: str
    time_column: str = "time"
    time_format: Literal["seconds", "datetime"] = "seconds"
    time_scale: _bounded(1e-6, 1e6) = 1.0
    start_s: Seconds = 0.0
    device_column: str | None = None
    input_bits_column: str | None = None
    input_bits_per_unit: _bounded(0, 1e9, low_open=True) = 1.0
    steps_column: str | None = None


Arrivals = Annotated[PoissonArrivals | MMPPArrivals | TraceArrivals, Field(discriminator="process")]


class Adapters(_Model):
    """Adapters (LoRA, ControlNet) a request of a workload item may carry: ``count`` adapters of one
    ``kind`` (an entry of ``weights`` in models/aigc.yaml or ``profiles.weights``, whose ``base``
    is the item's model), Zipf(``zipf_s``) popular over their ranks; a request carries one with
    ``probability``. Adapter ``k`` is the item ``<kind>#<k>`` (a distinct file of the kind's size
    and load time). Only matters with ``service.residency`` on (otherwise every adapter is
    resident)."""

    kind: str
    count: int = Field(default=1, ge=1, le=100_000)
    zipf_s: float = Field(default=1.0, ge=0, le=10, allow_inf_nan=False)
    probability: float = Field(default=1.0, ge=0, le=1, allow_inf_nan=False)


class Workload(_Model):
    """One kind of request a device group issues; a request picks a kind with ``weight``.

    ``input_bits``, ``output_bits`` and ``steps`` are a value or a [low, high] uniform range;
    unset, they come from the model profile (input = the profile's ``prompt_bits``).
    ``deadline_s`` is relative to the arrival.
    """

    model: str
    weight: _bounded(0, 1e9, low_open=True) = 1.0
    input_bits: Range | None = None
    output_bits: Range | None = None
    steps: Range | None = None
    deadline_s: PosSeconds | None = None
    adapters: Adapters | None = None

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
    """``count`` identical IoT devices.

    ``arrivals`` is the request process of each device (Poisson, MMPP or a replayed trace shared
    by the group). A Poisson group of more than 64 devices
    (:data:`mecsim.streams.PER_DEVICE_MAX`) is simulated as one superposed Poisson process of
    rate ``count x rate_per_s`` whose arrivals go to devices uniformly at random: the same law as
    independent per-device processes, at a cost that does not grow with ``count``, but a
    different realisation from per-device streams (see :mod:`mecsim.arrivals`). Such a group's
    fading also comes from one stream per group (see :mod:`mecsim.radio`). Groups of at most 64
    devices and MMPP groups draw per device.
    """

    name: str = "devices"
    count: Int = Field(default=1, ge=1, le=100_000)
    tx_power_dbm: _bounded(-100.0, 60.0) = 23.0
    placement: Placement = Placement()
    mobility: Mobility = Mobility()
    arrivals: Arrivals
    workload: list[Workload] = Field(min_length=1)
    #: Zipf exponent over the workload items' listed order (most popular first) instead of their
    #: ``weight`` (see :mod:`mecsim.sim.workload_mix`); null: the weights.
    model_zipf_s: float | None = Field(default=None, ge=0, le=10, allow_inf_nan=False)


# ---------------------------------------------------------------------------------------------
# servers and service


class Backhaul(_Model):
    """Access point -> server link: latency plus bits / rate (``rate_bps: null`` = infinite)."""

    latency_s: Latency = 0.001
    rate_bps: RateBps | None = 1e9


class Server(_Model):
    """An AIGC server: ``slots`` GPUs of one kind (one task per GPU at a time), FIFO queue."""

    name: str
    gpu: str
    slots: Int = Field(default=1, ge=1, le=1024)
    models: list[str] = Field(min_length=1)
    backhaul: Backhaul = Backhaul()
    #: With ``service.residency`` on: the weights resident on every GPU at time 0 and after a
    #: recovery (names of ``weights`` entries, adapters as ``<kind>#<k>``); null: the hosted
    #: models' weights in the listed order, as many as fit.
    preload: list[str] | None = None


class Jitter(_Model):
    """Random factor on service time, mean 1: deterministic, exponential, or lognormal with the
    given coefficient of variation."""

    distribution: Literal["deterministic", "exponential", "lognormal"] = "deterministic"
    cv: _bounded(0, 10.0) = 0.1


class Batching(_Model):
    """Batched denoising at the servers (see :mod:`mecsim.sim.gpu`): a free GPU serves up to
    ``max_batch`` queued tasks of one model key together, in ``max(steps)`` steps at the GPU's
    batch step time (``serving.<gpu>.batch_factor`` in models/gpus.yaml). ``max_batch: null``: the
    largest profiled batch; ``timeout_s``: how long an idle GPU waits to fill a batch."""

    enabled: bool = False
    max_batch: int | None = Field(default=None, ge=1, le=1024)
    timeout_s: float = Field(default=0.0, ge=0, le=3600, allow_inf_nan=False)


class Residency(_Model):
    """Model residency in GPU memory: a task whose weights (model, adapter) are not resident on a
    GPU waits for them to load (``weights`` in models/aigc.yaml: footprint, load time); when the
    GPU's memory (``serving`` in models/gpus.yaml) is full, ``eviction`` picks what goes."""

    enabled: bool = False
    eviction: Literal["lru", "lfu", "fifo"] = "lru"


class Service(_Model):
    """Service discipline and time jitter.

    ``discipline``: ``"epoch-spt"`` serves tasks decided in earlier epochs first and, within one
    epoch's batch, the shortest first (the order the QUBO's congestion terms assume);
    ``"fifo"`` serves in order of arrival at the server.
    """

    jitter: Jitter = Jitter()
    discipline: Literal["epoch-spt", "fifo"] = "epoch-spt"
    batching: Batching = Batching()
    residency: Residency = Residency()


# ---------------------------------------------------------------------------------------------
# epochs and decision time


class DecisionCost(_Model):
    """Simulated time a decision takes: base + per task + per QUBO variable/interaction (s)."""

    base_s: Latency = 0.0
    per_task_s: Latency = 0.0
    per_variable_s: Latency = 0.0
    per_interaction_s: Latency = 0.0


class DecisionTime(_Model):
    """How long a decision takes in simulated time.

    ``zero``: instantaneous. ``fixed``: ``fixed_s``, or ``by_solver[solver].base_s`` when the
    solver is listed. ``model``: a :class:`DecisionCost` of the problem size, per solver
    (``by_solver``) or the default ``cost``. ``measured``: the model per solver fitted from the
    decision benchmark, read from ``file`` (default ``models/decision-time.yaml``; see
    :mod:`mecsim.decision.timing`). ``qpu``: the QPU time the sampler reports for the decision
    (QAOA on a device target: jobs x (job latency + shots x (circuit + readout + reset)), from the
    backend's timing; :mod:`mecsim.decision.hardware`) plus the classical part given by ``cost``
    (or ``by_solver``); a decision without it is an error unless it fell back to a heuristic.
    Measured wall time is recorded but never used, so runs stay reproducible.
    """

    mode: Literal["zero", "fixed", "model", "measured", "qpu"] = "zero"
    fixed_s: Latency = 0.0
    cost: DecisionCost = DecisionCost()
    by_solver: dict[str, DecisionCost] = Field(default_factory=dict)
    file: str | None = None

    @model_validator(mode="after")
    def _file_only_measured(self) -> DecisionTime:
        if self.file is not None and self.mode != "measured":
            raise ScenarioError("is read only with mode: measured", "epoch.decision_time.file")
        return self


class Epoch(_Model):
    """The scheduling epoch: every ``length_s`` seconds (0 = at every arrival) the waiting tasks
    are decided, at most ``max_tasks`` of them (oldest first) and at most as many as the free
    bandwidth allows at ``min_bandwidth_hz`` each."""

    length_s: _bounded(0, MAX_LATENCY_S) = 0.5

    @field_validator("length_s")
    @classmethod
    def _len(cls, v: float) -> float:
        if 0 < v < MIN_EPOCH_S:
            raise ValueError(f"must be 0 (decide at every arrival) or at least {MIN_EPOCH_S:g} s, got {v!r}")
        return v

    max_tasks: Int | None = Field(default=None, ge=1, le=1_000_000)
    decision_time: DecisionTime = DecisionTime()


class ServerFault(_Model):
    """Outages of one server: at fixed times (``down_s[k]`` .. ``up_s[k]``) or by exponential
    failure and repair times (``mtbf_s``, ``mttr_s``), drawn from the run's fault stream."""

    server: str
    down_s: list[Seconds] = Field(default_factory=list)
    up_s: list[Seconds] = Field(default_factory=list)
    mtbf_s: _bounded(MIN_EPOCH_S, MAX_TIME_S) | None = None
    mttr_s: _bounded(MIN_EPOCH_S, MAX_TIME_S) | None = None

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

    device: Int = Field(ge=0)
    start_s: Seconds
    end_s: PosSeconds

    @model_validator(mode="after")
    def _order(self) -> ChannelFault:
        if self.end_s <= self.start_s:
            raise ValueError("end_s must be after start_s")
        return self


class BackhaulFault(_Model):
    """A server's backhaul degrades from ``start_s`` to ``end_s``: extra latency and/or a rate
    multiplied by ``rate_factor``."""

    server: str
    start_s: Seconds
    end_s: PosSeconds
    extra_latency_s: Latency = 0.0
    rate_factor: _bounded(0, 1.0, low_open=True) = 1.0

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
    output_bits: Bits
    steps: Int = Field(ge=1, le=1_000_000)
    prompt_bits: Bits
    description: str = ""


class GPUProfile(_Model):
    power_w: _bounded(0, 1e6)
    seconds_per_step: dict[str, _bounded(0, MAX_LATENCY_S, low_open=True)]
    description: str = ""


class ServingProfile(_Model):
    """A GPU's serving data (models/gpus.yaml ``serving``): memory, activation workspace, and the
    step time of a batch of b relative to batch 1 per model (``{b: factor}``, starting 1: 1.0)."""

    memory_gib: float = Field(gt=0, le=1e5, allow_inf_nan=False)
    workspace_gib: float = Field(default=0.0, ge=0, le=1e5, allow_inf_nan=False)
    batch_factor: dict[str, dict[int, Annotated[float, Field(gt=0, le=1e4, allow_inf_nan=False)]]] = Field(
        default_factory=dict
    )


class WeightsProfile(_Model):
    """Loadable weights (models/aigc.yaml ``weights``): footprint (GiB), load time (s), and the
    base model of an adapter."""

    memory_gib: float = Field(ge=0, le=1e5, allow_inf_nan=False)
    load_s: float = Field(ge=0, le=1e5, allow_inf_nan=False)
    base: str | None = None


class Profiles(_Model):
    """Inline additions/overrides of models/aigc.yaml and models/gpus.yaml (``serving``,
    ``weights`` and ``uses`` overlay the serving sections read by :mod:`mecsim.sim.gpu`)."""

    models: dict[str, ModelProfile] = Field(default_factory=dict)
    gpus: dict[str, GPUProfile] = Field(default_factory=dict)
    serving: dict[str, ServingProfile] = Field(default_factory=dict)
    weights: dict[str, WeightsProfile] = Field(default_factory=dict)
    uses: dict[str, list[str]] = Field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# the scenario


class Scenario(_Model):
    """A complete, validated scenario. See the module docstring and README for the format."""

    name: str = "unnamed"
    description: str = ""
    seed: Int = Field(default=0, ge=0, lt=2**63)
    duration_s: PosSeconds = 600.0
    warmup_s: Seconds = 0.0
    drain_s: Seconds = 0.0
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
            raise ValueError(
                f"warmup_s ({self.warmup_s:g}) must be below duration_s ({self.duration_s:g}); "
                "shorten it too (e.g. --set warmup_s=0)"
            )
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
                    raise ScenarioError(
                        f"unknown model {mname!r}; known: {sorted(models)}", f"servers.{k}.models"
                    )
                if mname not in gpus[srv.gpu].seconds_per_step:
                    raise ScenarioError(
                        f"GPU {srv.gpu!r} has no seconds_per_step for model {mname!r}",
                        f"servers.{k}.models",
                    )
        expected = 0.0
        for g, grp in enumerate(self.devices):
            a = grp.arrivals
            rate = (
                a.rate_per_s
                if isinstance(a, PoissonArrivals)
                else max(a.rates_per_s)
                if isinstance(a, MMPPArrivals)
                else 0.0
            )
            expected += grp.count * rate * self.duration_s
            if expected > MAX_EXPECTED_TASKS:
                raise ScenarioError(
                    f"about {expected:.3g} tasks expected in {self.duration_s:g} s, above the limit "
                    f"of {MAX_EXPECTED_TASKS:g} per run (lower the rate or duration_s)",
                    f"devices.{g}.arrivals",
                )
        horizon = self.duration_s + self.drain_s
        events = 0.0
        for g, grp in enumerate(self.devices):
            a = grp.arrivals
            if isinstance(a, MMPPArrivals):  # state switches
                events += grp.count * self.duration_s / min(a.mean_sojourn_s)
                if events > MAX_EXPECTED_FAULT_EVENTS:
                    raise ScenarioError(
                        f"about {events:.3g} MMPP state switches expected over the run, above the limit "
                        f"of {MAX_EXPECTED_FAULT_EVENTS:g} (lengthen mean_sojourn_s or shorten the run)",
                        f"devices.{g}.arrivals.mean_sojourn_s",
                    )
        for k, f in enumerate(self.faults.servers):
            if f.mtbf_s is not None and f.mttr_s is not None:
                events += 2.0 * horizon / (f.mtbf_s + f.mttr_s)
            else:
                events += len(f.down_s) + len(f.up_s)
            if events > MAX_EXPECTED_FAULT_EVENTS:
                raise ScenarioError(
                    f"about {events:.3g} fault events (failures and repairs) expected over "
                    f"{horizon:g} s, above the limit of {MAX_EXPECTED_FAULT_EVENTS:g} per run "
                    "(raise mtbf_s/mttr_s or shorten the run)",
                    f"faults.servers.{k}.mtbf_s",
                )
        if (self.faults.servers or self.faults.channels or self.faults.backhaul) and self.epoch.length_s:
            beats = horizon / self.epoch.length_s  # with faults the scheduler keeps the epoch beat
            if beats > MAX_EXPECTED_TASKS:
                raise ScenarioError(
                    f"{beats:.3g} epochs over {horizon:g} s with faults, above the limit of "
                    f"{MAX_EXPECTED_TASKS:g} (lengthen epoch.length_s or shorten the run)",
                    "epoch.length_s",
                )
        for k, f in enumerate(self.faults.servers):
            if f.server not in names:
                raise ScenarioError(
                    f"unknown server {f.server!r}; servers: {names}", f"faults.servers.{k}.server"
                )
        for k, f in enumerate(self.faults.backhaul):
            if f.server not in names:
                raise ScenarioError(
                    f"unknown server {f.server!r}; servers: {names}", f"faults.backhaul.{k}.server"
                )
        for k, f in enumerate(self.faults.channels):
            if f.device >= self.n_devices:
                raise ScenarioError(
                    f"device {f.device} does not exist (devices 0..{self.n_devices - 1})",
                    f"faults.channels.{k}.device",
                )
        hosted = {m for s in self.servers for m in s.models}
        for g, grp in enumerate(self.devices):
            for w, wl in enumerate(grp.workload):
                if wl.model not in models:
                    raise ScenarioError(
                        f"unknown model {wl.model!r}; known: {sorted(models)}",
                        f"devices.{g}.workload.{w}.model",
                    )
                if wl.model not in hosted:
                    raise ScenarioError(
                        f"no server hosts model {wl.model!r}", f"devices.{g}.workload.{w}.model"
                    )
        if self.epoch.decision_time.mode == "measured":  # the timing file must be readable now
            from mecsim.decision.timing import scenario_timing_model

            scenario_timing_model(self)
        self._check_serving()
        return self

    def _check_serving(self) -> None:
        """Batching, residency, adapters and preloads name serving data that exists."""
        svc = self.service
        adapters = [
            (g, w, wl)
            for g, grp in enumerate(self.devices)
            for w, wl in enumerate(grp.workload)
            if wl.adapters is not None
        ]
        preloads = [k for k, s in enumerate(self.servers) if s.preload is not None]
        if not (
            svc.batching.enabled
            or svc.residency.enabled
            or adapters
            or preloads
            or self.profiles.serving
            or self.profiles.weights
            or self.profiles.uses
        ):
            return
        from mecsim.sim.gpu import load_serving_data  # light; only for scenarios that use it

        try:
            data = load_serving_data(self.profiles)
        except ValueError as exc:
            raise ScenarioError(str(exc), "profiles") from None
        if svc.batching.enabled or svc.residency.enabled:
            for k, srv in enumerate(self.servers):
                if srv.gpu not in data.gpus:
                    raise ScenarioError(
                        f"GPU {srv.gpu!r} has no serving data (memory, batch factors); "
                        f"known: {sorted(data.gpus)} (add it under profiles.serving)",
                        f"servers.{k}.gpu",
                    )
        for g, w, wl in adapters:
            kind = wl.adapters.kind
            it = data.items.get(kind)
            if it is None:
                raise ScenarioError(
                    f"unknown adapter kind {kind!r}; known: {sorted(data.items)}",
                    f"devices.{g}.workload.{w}.adapters.kind",
                )
            if it.base is None or it.base not in data.uses.get(wl.model, (wl.model,)):
                raise ScenarioError(
                    f"{kind!r} is an adapter of {it.base!r}, which model {wl.model!r} does not use",
                    f"devices.{g}.workload.{w}.adapters.kind",
                )
        for k in preloads:
            for name in self.servers[k].preload or ():
                if name.split("#", 1)[0] not in data.items:
                    raise ScenarioError(
                        f"unknown weights {name!r}; known: {sorted(data.items)}", f"servers.{k}.preload"
                    )

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
        _drop_serving_defaults(d)
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


def _drop_serving_defaults(d: dict[str, Any]) -> None:
    """Leave the GPU-serving keys out of a resolved scenario while they hold their defaults, so a
    scenario that does not use them keeps the digest it had before they existed."""
    svc = d.get("service", {})
    if svc.get("batching") == Batching().model_dump(mode="json"):
        svc.pop("batching")
    if svc.get("residency") == Residency().model_dump(mode="json"):
        svc.pop("residency")
    for s in d.get("servers", []):
        if s.get("preload", 0) is None:
            s.pop("preload")
    for g in d.get("devices", []):
        if g.get("model_zipf_s", 0) is None:
            g.pop("model_zipf_s")
        for w in g.get("workload", []):
            if w.get("adapters", 0) is None:
                w.pop("adapters")
    prof = d.get("profiles", {})
    for k in ("serving", "weights", "uses"):
        if prof.get(k) == {}:
            prof.pop(k)


# ---------------------------------------------------------------------------------------------
# profiles and paths


_RESOURCES = contextlib.ExitStack()
atexit.register(_RESOURCES.close)
_DATA_DIRS: dict[str, Path] = {}


def data_dir(kind: Literal["models", "scenarios"]) -> Path:
    """The packaged folder ``models`` or ``scenarios`` as a path on disk.

    Found through :mod:`importlib.resources` (package ``mecsim._data``), so it is the installed
    copy in a wheel install and the repository's folder in a checkout or an editable install.
    """
    if kind not in _DATA_DIRS:
        res = importlib.resources.files("mecsim._data") / kind
        if isinstance(res, Path):
            _DATA_DIRS[kind] = res
        else:  # e.g. a zipped install: extracted for the life of the process
            _DATA_DIRS[kind] = Path(_RESOURCES.enter_context(importlib.resources.as_file(res)))
    return _DATA_DIRS[kind]


def project_root() -> Path:
    """The packaged folder that holds ``models/`` and ``scenarios/`` (``mecsim/_data``), for
    callers that join ``"models"`` or ``"scenarios"`` to it; prefer :func:`data_dir`. Found through
    importlib.resources like :func:`data_dir`: the installed copy, never the checkout's root."""
    return data_dir("models").parent


_PROFILE_CACHE: dict[str, Any] = {}
_YamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _YamlTooBig(Exception):
    pass


def _check_yaml_events(text: str) -> None:
    """Count the nodes of a YAML document with aliases expanded, from the parser's event stream,
    without composing or expanding anything: an alias adds the size of the node it names (known
    when that node closed), so an alias bomb or a file dense with nodes is refused after at most
    :data:`MAX_YAML_NODES` events, in bounded time and memory."""
    count = 0
    depth = 0
    sizes: dict[str, int] = {}
    open_anchors: list[tuple[str | None, int]] = []
    for ev in yaml.parse(text, Loader=_YamlLoader):
        if isinstance(ev, yaml.AliasEvent):
            if ev.anchor in {a for a, _ in open_anchors}:
                raise _YamlTooBig(f"alias *{ev.anchor} refers to a node that contains it")
            count += sizes.get(ev.anchor, 1)
        elif isinstance(ev, yaml.ScalarEvent):
            count += 1
            if ev.anchor is not None:
                sizes[ev.anchor] = 1
        elif isinstance(ev, yaml.CollectionStartEvent):
            open_anchors.append((ev.anchor, count))
            count += 1
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise _YamlTooBig(f"nested deeper than {MAX_YAML_DEPTH} levels")
        elif isinstance(ev, yaml.CollectionEndEvent):
            anchor, start = open_anchors.pop()
            depth -= 1
            if anchor is not None:
                sizes[anchor] = count - start
        if count > MAX_YAML_NODES:
            raise _YamlTooBig(
                f"more than {MAX_YAML_NODES:,} nodes once aliases are expanded "
                "(aliases multiply the document, or it is too dense)"
            )


def load_yaml_text(text: str | bytes) -> Any:
    """Parse YAML safely and bounded: safe tags only, at most :data:`MAX_YAML_NODES` nodes with
    aliases expanded, nesting at most :data:`MAX_YAML_DEPTH`, no recursive aliases.

    Raises:
        yaml.YAMLError: malformed YAML, or too large/deep (the message says which).
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    try:
        _check_yaml_events(text)
    except _YamlTooBig as exc:
        raise yaml.YAMLError(str(exc)) from None
    return yaml.load(text, Loader=_YamlLoader)  # noqa: S506 (a safe loader)


def _load_yaml_file(path: Path, error: type[Exception] = ScenarioError, what: str = "YAML file") -> Any:
    """Read a YAML file safely and bounded (see :func:`load_yaml_text`; at most
    :data:`MAX_YAML_BYTES`); every failure is one ``error`` line."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_YAML_BYTES + 1)
        if len(raw) > MAX_YAML_BYTES:
            raise error(f"{path}: larger than the {MAX_YAML_BYTES / 2**20:g} MiB limit for a {what}")
        return load_yaml_text(raw.decode("utf-8"))
    except FileNotFoundError:
        raise error(f"no such {what}: {path}") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {_one_line(str(exc))}") from None
    except (UnicodeDecodeError, IsADirectoryError, PermissionError) as exc:
        raise error(f"{path}: cannot read as a text file: {type(exc).__name__}") from None
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or type(exc).__name__}") from None


def base_profiles() -> tuple[dict[str, ModelProfile], dict[str, GPUProfile]]:
    """The model and GPU profiles from models/aigc.yaml and models/gpus.yaml."""
    if "base" not in _PROFILE_CACHE:
        root = data_dir("models")
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


def _format_validation_error(
    exc: ValidationError,
    error: type[Any] = ScenarioError,
    skip: tuple[str, ...] = ("poisson", "mmpp", "trace"),
) -> Any:
    """One line from a pydantic error: the first problem's dotted field, message and value.

    ``skip`` drops discriminator tags from the field path; ``error`` is the class to return (any
    subclass of ScenarioError taking ``(message, field)``, e.g. the sweep's).
    """
    errs = exc.errors()
    first = errs[0]
    loc = ".".join(str(p) for p in first["loc"] if not (isinstance(p, str) and p in skip))
    msg = first["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if first["type"] == "extra_forbidden":
        msg = "unknown field"
    val = first.get("input")
    shown = ""
    if first["type"] not in ("missing",) and not isinstance(val, dict | list) and "got " not in msg:
        shown = f" (got {val!r})"
    more = f" [+{len(errs) - 1} more problem(s)]" if len(errs) > 1 else ""
    inner = getattr(first.get("ctx", {}).get("error"), "field", None)
    if inner:
        return error(_one_line(msg.split(": ", 1)[-1]) + shown + more, inner)
    return error(_one_line(msg) + shown + more, loc or None)


def _index(p: str, n: int, field: str) -> int:
    """A list index as written in a dotted key: 0 .. n-1, digits only (no negative indices)."""
    if not (p.isascii() and p.isdigit()) or int(p) >= n:
        raise ScenarioError(f"no list element {p!r} (indices 0..{n - 1})", field)
    return int(p)


def _set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    parts = key.replace("__", ".").split(".")
    if any(not p for p in parts):
        raise ScenarioError("empty part in a dotted field name", key)
    cur: Any = d
    for k, p in enumerate(parts[:-1]):
        if isinstance(cur, list):
            cur = cur[_index(p, len(cur), ".".join(parts[: k + 1]))]
            continue
        if not isinstance(cur, dict):
            raise ScenarioError("is not a section", ".".join(parts[:k]))
        cur = cur.setdefault(p, {})
    last = parts[-1]
    if isinstance(cur, list):
        cur[_index(last, len(cur), key)] = value
    elif isinstance(cur, dict):
        cur[last] = value
    else:
        raise ScenarioError("is not a section", ".".join(parts[:-1]))


def _check_plain_size(data: Any, what: str) -> None:
    """Refuse a dict/list structure larger than :data:`MAX_YAML_NODES` once shared parts are
    counted every time they appear (what a deep copy would build), deeper than
    :data:`MAX_YAML_DEPTH`, or containing itself, without expanding it."""
    memo: dict[int, int] = {}
    on_path: set[int] = set()

    def kids(x: Any) -> list[Any]:
        if isinstance(x, dict):
            return [v for kv in x.items() for v in kv]
        if isinstance(x, list | tuple):
            return list(x)
        return []

    stack: list[tuple[Any, bool, int]] = [(data, False, 1)]
    while stack:
        x, done, depth = stack.pop()
        if not isinstance(x, dict | list | tuple):
            continue
        key = id(x)
        if done:
            on_path.discard(key)
            memo[key] = total = 1 + sum(memo.get(id(c), 1) for c in kids(x))
            if total > MAX_YAML_NODES:
                raise ScenarioError(
                    f"more than {MAX_YAML_NODES:,} values once shared parts are "
                    f"expanded (aliases multiply the document?)",
                    what,
                )
            continue
        if key in memo:
            continue
        if key in on_path:
            raise ScenarioError("contains itself (a recursive structure)", what)
        if depth > MAX_YAML_DEPTH:
            raise ScenarioError(f"nested deeper than {MAX_YAML_DEPTH} levels", what)
        on_path.add(key)
        stack.append((x, True, depth))
        stack.extend((c, False, depth + 1) for c in kids(x))


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
    _check_plain_size(data, "the scenario")
    for key, value in overrides.items():
        _check_plain_size(value, key)
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


#: file -> ((mtime_ns, size), its scenario name or None): a file is parsed again only when it changes
_NAME_CACHE: dict[Path, tuple[tuple[int, int], str | None]] = {}


def _scenario_name(path: Path) -> str | None:
    """The ``name`` of a ready-scenario file (None if it is not one), parsed once per version of
    the file: every :func:`load_scenario` by name looks the names up, and parsing the dozen
    files had been most of a short run's set-up."""
    try:
        st = path.stat()
    except OSError:
        return None
    stamp = (st.st_mtime_ns, st.st_size)
    hit = _NAME_CACHE.get(path)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    try:
        raw = _load_yaml_file(path)
    except ScenarioError:
        raw = None
    ok = isinstance(raw, dict) and isinstance(raw.get("name"), str) and "devices" in raw
    name = raw["name"] if ok else None  # type: ignore[index]
    _NAME_CACHE[path] = (stamp, name)
    return name


def registered_scenarios() -> dict[str, Path]:
    """Ready scenarios (package data, ``scenarios/`` in the repository): their ``name`` -> file."""
    out: dict[str, Path] = {}
    folder = data_dir("scenarios")
    for path in sorted(folder.glob("*.yaml")):
        name = _scenario_name(path)
        if name is not None:
            out[name] = path
    return out


def load_scenario(source: str | os.PathLike[str] | dict[str, Any] | Scenario, **overrides: Any) -> Scenario:
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
                f"no such file or registered scenario {str(source)!r}; registered: {', '.join(sorted(reg))}"
            )
    if path.is_dir():
        raise ScenarioError(f"{path} is a folder, not a scenario file")
    data = _load_yaml_file(path)
    return scenario_from_dict(data, str(path.resolve().parent), **overrides)
