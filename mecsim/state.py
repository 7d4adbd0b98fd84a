"""What a policy sees (:class:`EpochState`) and what it returns (:class:`Decision`).

The engine builds one read-only :class:`EpochState` per scheduling epoch. Everything a decision
module needs is in it as numpy arrays indexed by task ``i`` (0..n-1) and server ``j`` (0..m-1),
with SI units throughout (seconds, bits, hertz, watts). Policies never touch the simulation; the
engine validates and applies the returned :class:`Decision`.

Example:
    >>> import numpy as np
    >>> from mecsim.state import Decision
    >>> d = Decision(bandwidth_hz=np.array([1e6, 1e6]), server=np.array([0, 1]))
    >>> d.server.tolist()
    [0, 1]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mecsim.errors import PolicyError

#: ``Decision.server`` value: drop the task now (recorded with reason ``"policy"``).
DROP = -1
#: ``Decision.server`` value: leave the task waiting for the next epoch.
DEFER = -2


def _frozen(a: Any, dtype: Any = None) -> np.ndarray:
    arr = np.array(a, dtype=dtype, copy=True)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class EpochState:
    """Read-only snapshot of the network at one scheduling epoch.

    Task arrays have length ``n`` (the tasks to decide now, oldest first); server arrays have
    length ``m``; matrices are ``n x m``. Infeasible pairs (the server does not host the task's
    model, or is down) have ``feasible[i, j] == False`` and ``service_s[i, j] == inf``.

    Attributes:
        now: simulation time of the epoch (s).
        epoch: epoch index (0, 1, ...).
        task_id: global task ids (int64).
        device: device index of each task.
        model: AIGC model name of each task (tuple of str, length n).
        input_bits: upload size D_i (bits).
        output_bits: result size O_i (bits).
        steps: denoising steps s_i.
        t_arrival: arrival time of each task (s).
        deadline: absolute deadline of each task (s); ``inf`` when none.
        tx_power_w: transmit power p_i (W).
        gain: current uplink channel gain g_i (linear power gain: path loss, shadowing, fading).
        noise_psd_w_per_hz: noise power spectral density N0 including the noise figure (W/Hz).
        bandwidth_budget_hz: uplink bandwidth free for this epoch's tasks (Hz).
        min_bandwidth_hz: smallest share a scheduled task may get (Hz).
        ideal_radio: True when uploads take no time (classic queueing special cases).
        server_names: names of the servers.
        slots: concurrent GPU slots c_j of each server.
        server_up: whether each server accepts tasks.
        backlog_s: expected time from ``now`` until server j could start a newly arriving task,
            counting the work queued, in service and already dispatched but still in transit (s).
        queued: number of tasks at or heading to server j (in service + waiting + in transit);
            see also :attr:`free_slots`.
        feasible: ``feasible[i, j]`` is True when server j can run task i.
        service_s: expected service time of task i on server j, steps x seconds-per-step (s).
        backhaul_s: delay from the access point to server j for task i's input (s).
        return_s: delay of the result from server j back to the device: backhaul plus downlink (s).
        server_energy_w: busy power draw of one slot of server j (W).
        key: GPU-model key of each task: its model, ``+`` its adapter if any (``sd15+sd15-lora#3``).
            This and the fields below are None unless the run uses the GPU-server model
            (``service.batching`` or ``service.residency`` on, or requests with adapters; see
            :mod:`mecsim.sim.gpu`).
        load_s: ``n x m`` load time before task i's weights would be resident on a GPU of server j:
            0 when some GPU holds (or is loading) them, else the least load time over the GPUs
            (s; 0 where ``feasible`` is False).
        warm: ``n x m``: some GPU of server j holds (or is loading) every item task i needs.
        batch_cap: ``n x m`` largest batch of task i's key on server j (1: no batching).
        batch_factor2: ``n x m`` time of a batch of two of task i's key on server j relative to one
            (``f_j(2)``; 2.0 where ``batch_cap`` is 1: two tasks are served in turn).
        queued_same: ``n x m`` tasks of task i's key queued at server j, not started yet (they
            may share a batch with it).
    """

    now: float
    epoch: int
    task_id: np.ndarray
    device: np.ndarray
    model: tuple[str, ...]
    input_bits: np.ndarray
    output_bits: np.ndarray
    steps: np.ndarray
    t_arrival: np.ndarray
    deadline: np.ndarray
    tx_power_w: np.ndarray
    gain: np.ndarray
    noise_psd_w_per_hz: float
    bandwidth_budget_hz: float
    min_bandwidth_hz: float
    ideal_radio: bool
    server_names: tuple[str, ...]
    slots: np.ndarray
    server_up: np.ndarray
    backlog_s: np.ndarray
    queued: np.ndarray
    feasible: np.ndarray
    service_s: np.ndarray
    backhaul_s: np.ndarray
    return_s: np.ndarray
    server_energy_w: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)
    key: tuple[str, ...] | None = None
    load_s: np.ndarray | None = None
    warm: np.ndarray | None = None
    batch_cap: np.ndarray | None = None
    batch_factor2: np.ndarray | None = None
    queued_same: np.ndarray | None = None

    @classmethod
    def _build(cls, **fields: Any) -> EpochState:
        """The engine's constructor: the same object as ``EpochState(**fields)`` (every field
        without a default given), without the per-field cost of a frozen dataclass's
        ``__init__`` (it is built at every epoch)."""
        st = object.__new__(cls)
        d = st.__dict__
        d.update(_OPTIONAL)
        d["extra"] = {}
        d.update(fields)
        return st

    @property
    def n_tasks(self) -> int:
        """Number of tasks to decide in this epoch."""
        return int(self.task_id.shape[0])

    @property
    def n_servers(self) -> int:
        """Number of servers."""
        return int(self.slots.shape[0])

    @property
    def free_slots(self) -> np.ndarray:
        """GPU slots of server j not taken by a task in service, queued or in transit to it
        (0 when the server is down): ``max(slots - queued, 0)``."""
        free = np.maximum(self.slots - self.queued, 0)
        return np.where(self.server_up, free, 0)

    @property
    def snr_per_hz(self) -> np.ndarray:
        """``p_i g_i / N0`` per task (1/Hz x Hz = SNR at 1 Hz of bandwidth, linear)."""
        return self.tx_power_w * self.gain / self.noise_psd_w_per_hz

    def rate_bps(self, bandwidth_hz: np.ndarray) -> np.ndarray:
        """Shannon rate ``b log2(1 + p g / (N0 b))`` of each task for the given shares."""
        return shannon_rate_bps(self.snr_per_hz, bandwidth_hz)

    def upload_s(self, bandwidth_hz: np.ndarray) -> np.ndarray:
        """Upload time ``D_i / r_i(b_i)`` on the current (static) channel; 0 with an ideal radio.

        With block fading the engine's real upload time differs when an upload spans a coherence
        boundary; the traces record the real one.
        """
        if self.ideal_radio:
            return np.zeros(self.n_tasks)
        return upload_time_s(self.input_bits, self.rate_bps(bandwidth_hz))

    def equal_share(self) -> np.ndarray:
        """The budget split equally among the epoch's tasks (Hz)."""
        n = self.n_tasks
        if n == 0:
            return np.zeros(0)
        return np.full(n, self.bandwidth_budget_hz / n)


def shannon_rate_bps(snr_per_hz: np.ndarray, bandwidth_hz: np.ndarray) -> np.ndarray:
    """Shannon rate ``b log2(1 + a / b)`` (bit/s) for SNRs at 1 Hz ``a`` and shares ``b``; 0
    where ``b`` is 0 (:meth:`EpochState.rate_bps`)."""
    b = np.asarray(bandwidth_hz, dtype=float)
    if b.shape[0] == 1 and b[0] > 0:  # one task: the same operations, fewer array calls
        return b * np.log2(1.0 + snr_per_hz / b)
    x = np.divide(snr_per_hz, b, out=np.zeros_like(b), where=b > 0)
    return b * np.log2(1.0 + x)


def upload_time_s(input_bits: np.ndarray, rate_bps: np.ndarray) -> np.ndarray:
    """Upload times ``D / r`` (s); inf where the rate is 0 (:meth:`EpochState.upload_s`)."""
    r = rate_bps
    if r.shape[0] == 1 and r[0] > 0:
        return input_bits / r
    return np.divide(input_bits, r, out=np.full_like(r, np.inf), where=r > 0)


#: the fields of :class:`EpochState` with a fixed default (``extra`` gets a new dict each time)
_OPTIONAL = {
    "key": None,
    "load_s": None,
    "warm": None,
    "batch_cap": None,
    "batch_factor2": None,
    "queued_same": None,
}


@dataclass(frozen=True, eq=False)
class Decision:
    """A policy's answer for one epoch.

    Attributes:
        bandwidth_hz: uplink share of each task (Hz). Tasks that are dropped or deferred may get
            0; the shares of dispatched tasks must sum to at most the budget and each be at least
            ``min_bandwidth_hz`` (the engine checks, with a relative tolerance of 1e-9).
        server: server index of each task, or :data:`DROP` / :data:`DEFER`.
        info: free-form numbers and labels for the epochs table (solver name, energy, repairs,
            ...). Keys become columns; values must be scalars (str, int, float, bool, None).
    """

    bandwidth_hz: np.ndarray
    server: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bandwidth_hz", _frozen(self.bandwidth_hz, float))
        object.__setattr__(self, "server", _frozen(self.server, np.int64))

    @classmethod
    def _owned(cls, bandwidth_hz: np.ndarray, server: np.ndarray, info: dict[str, Any]) -> Decision:
        """The built-in policies' constructor for arrays made for this decision alone (nothing
        else holds them): the same object as ``Decision(bandwidth_hz, server, info)``, the arrays
        frozen in place rather than copied (it is built at every epoch). Arrays of another dtype
        or shape go through the copying constructor."""
        if not (
            type(bandwidth_hz) is np.ndarray
            and type(server) is np.ndarray
            and bandwidth_hz.dtype == _F64
            and server.dtype == _I64
            and bandwidth_hz.ndim == 1
            and server.ndim == 1
        ):
            return cls(bandwidth_hz, server, info)
        bandwidth_hz.setflags(write=False)
        server.setflags(write=False)
        dec = object.__new__(cls)
        dec.__dict__.update(bandwidth_hz=bandwidth_hz, server=server, info=info)
        return dec


_F64 = np.dtype(np.float64)
_I64 = np.dtype(np.int64)


_INFO_TYPES = (str, int, float, bool, type(None), np.integer, np.floating, np.bool_)


def _invalid(check: str, msg: str) -> PolicyError:
    err = PolicyError(msg)
    err.check = check  # type: ignore[attr-defined]  # which rule failed (for check_policy)
    return err


def _one_task_valid(dec: Decision, state: EpochState) -> bool:
    """The rules of :func:`validate_decision` for a one-task epoch (the usual one), on scalars:
    True when they hold (numpy calls would cost more than the check); False sends the decision
    through the general rules, which name what is broken."""
    s = int(dec.server[0])
    if s in (DROP, DEFER):
        return True
    if not (0 <= s < state.slots.shape[0] and state.feasible[0, s]):
        return False
    b = float(dec.bandwidth_hz[0])
    return state.ideal_radio or (
        math.isfinite(b)
        and state.min_bandwidth_hz * (1 - 1e-9) <= b <= state.bandwidth_budget_hz * (1 + 1e-9)
    )


def validate_decision(dec: Any, state: EpochState, name: str = "policy") -> Decision:
    """Check a policy's answer against the epoch it was given; return it unchanged.

    The one set of rules, used by the engine on every decision a policy returns (the small
    epochs greedy and least-loaded place in the engine's lane, valid by construction, return
    none) and by :func:`~mecsim.policies.check_policy`: a :class:`Decision` with arrays of shape ``(n,)``;
    server indices in ``0..m-1`` or :data:`DROP` / :data:`DEFER`; dispatched tasks only on
    feasible servers; unless the radio is ideal, each dispatched share finite and at least
    ``min_bandwidth_hz`` and their sum within the budget (relative tolerance 1e-9); ``info``
    values scalars.

    Raises:
        PolicyError: naming the policy and the broken rule; its ``check`` attribute is one of
            ``type``, ``shape``, ``range``, ``feasible``, ``bandwidth``, ``info``.
    """
    if not isinstance(dec, Decision):
        raise _invalid("type", f"policy {name!r} returned {type(dec).__name__}, not a Decision")
    n = state.task_id.shape[0]
    srv = dec.server
    if srv.shape != (n,) or dec.bandwidth_hz.shape != (n,):
        raise _invalid(
            "shape",
            f"policy {name!r}: decision arrays must have shape ({n},), got "
            f"server {srv.shape}, bandwidth_hz {dec.bandwidth_hz.shape}",
        )
    if n and not (n == 1 and _one_task_valid(dec, state)):  # the general rules and their messages
        m = state.n_servers
        lo, hi = int(srv.min()), int(srv.max())
        if lo < DEFER or hi >= m:
            bad = lo if lo < DEFER else hi
            raise _invalid(
                "range", f"policy {name!r}: server index {bad} out of range (0..{m - 1}, DROP=-1, DEFER=-2)"
            )
        if hi >= 0:
            go = np.flatnonzero(srv >= 0)
            ok = state.feasible[go, srv[go]]
            if not ok.all():
                i = int(go[~ok][0])
                raise _invalid(
                    "feasible",
                    f"policy {name!r}: task {int(state.task_id[i])} (model {state.model[i]!r}) "
                    f"sent to server {state.server_names[srv[i]]!r}, which cannot run it",
                )
            if not state.ideal_radio:
                bw = dec.bandwidth_hz[go]
                if not np.isfinite(bw).all() or bw.min() < state.min_bandwidth_hz * (1 - 1e-9):
                    raise _invalid(
                        "bandwidth",
                        f"policy {name!r}: a dispatched task got a bandwidth "
                        f"below min_bandwidth_hz={state.min_bandwidth_hz:g} or not finite",
                    )
                total = float(bw.sum())
                if total > state.bandwidth_budget_hz * (1 + 1e-9):
                    raise _invalid(
                        "bandwidth",
                        f"policy {name!r}: bandwidth shares sum to {total:g} "
                        f"Hz, above the budget {state.bandwidth_budget_hz:g} Hz",
                    )
    for k, v in dec.info.items():
        if not isinstance(v, _INFO_TYPES):
            raise _invalid("info", f"policy {name!r}: info[{k!r}] must be a scalar, got {type(v).__name__}")
    return dec
