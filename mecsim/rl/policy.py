"""The observation encoding shared by the environment and the trained policy, and the ``"rl"``
policy that replays a saved model.

One task at a time: within an epoch the tasks are decided oldest first, and each decision sees the
placements made before it in the same epoch (the expected availability of every server is moved
forward by the tasks already put there, as the ``greedy`` heuristic does). The environment
(:class:`mecsim.rl.env.MecEnv`) and :class:`RLPolicy` go through the same
:class:`EpochEncoder`, so a model sees in a run exactly what it saw in training.

The observation of task ``i`` (``6 m + 5`` numbers for ``m`` servers, all in ``[-CAP, CAP]``;
times ``t`` enter as ``log1p(t / time_scale_s)``, infinite ones as ``CAP``):

* per server ``j``: feasible (0/1); expected time from now until the task would be back at the
  device if sent to ``j`` (upload + backhaul, wait for a slot, service, return); the same minus the
  best feasible server's (the regret of choosing ``j``); the server's expected availability
  (backlog); the task's service time on ``j``; tasks queued per slot;
* per task: its upload time with its bandwidth share; its deadline slack after the best
  completion (signed); how long it has already waited; the fraction of the epoch's tasks still
  to decide; ``log1p`` of the epoch's number of tasks.

Importing this module is cheap; torch and sb3-contrib are imported when a model is loaded.

Example:
    >>> import numpy as np
    >>> from mecsim.rl.policy import EncoderConfig, EpochEncoder
    >>> from mecsim.testing import random_epoch_state
    >>> state = random_epoch_state(3, 4, seed=1)
    >>> enc = EpochEncoder(EncoderConfig(n_servers=4), state, state.equal_share())
    >>> obs, mask = enc.observe(0)
    >>> obs.shape, mask.dtype
    ((29,), dtype('bool'))
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mecsim.errors import MissingExtraError, PolicyError
from mecsim.policies.base import BasePolicy
from mecsim.policies.heuristics import BANDWIDTH_RULES, allocate
from mecsim.registry import POLICIES
from mecsim.state import DEFER, Decision, EpochState

__all__ = ["CAP", "EncoderConfig", "EpochEncoder", "RLPolicy", "load_model", "model_digest", "import_sb3"]

#: Bound of every observation entry (``log1p`` of 22 000 time scales; nothing real gets there).
CAP = 10.0

#: Number of per-server and per-task features.
SERVER_FEATURES = 6
TASK_FEATURES = 5

#: Key of the encoder settings stored inside a saved model.
META_KEY = "mecsim_meta"


@dataclass(frozen=True)
class EncoderConfig:
    """How observations and rewards are made; saved with a model.

    Attributes:
        n_servers: number of servers ``m`` (the action space is ``Discrete(m)``).
        time_scale_s: times enter the observation as ``log1p(t / time_scale_s)``.
        bandwidth: the bandwidth rule of the epoch's tasks (``equal``, ``sum`` or ``minmax``,
            as the heuristics).
        reward_scale_s: the reward is minus the expected latency divided by this.
        server_names: the servers the model was trained on (checked, with a warning, at use).
        scenario: the scenario the model was trained on (informative).
    """

    n_servers: int
    time_scale_s: float = 1.0
    bandwidth: str = "equal"
    reward_scale_s: float = 10.0
    server_names: tuple[str, ...] = ()
    scenario: str = ""

    def __post_init__(self) -> None:
        if self.n_servers < 1:
            raise PolicyError(f"n_servers must be >= 1, got {self.n_servers}")
        if not self.time_scale_s > 0 or not self.reward_scale_s > 0:
            raise PolicyError(
                f"time_scale_s and reward_scale_s must be > 0, got "
                f"{self.time_scale_s} and {self.reward_scale_s}"
            )
        if self.bandwidth not in BANDWIDTH_RULES:
            raise PolicyError(f"bandwidth: unknown rule {self.bandwidth!r}; use one of {BANDWIDTH_RULES}")
        object.__setattr__(self, "server_names", tuple(self.server_names))

    @property
    def dim(self) -> int:
        """Length of an observation."""
        return SERVER_FEATURES * self.n_servers + TASK_FEATURES

    def to_dict(self) -> dict[str, Any]:
        """Plain types (stored in the model file)."""
        d = asdict(self)
        d["server_names"] = list(self.server_names)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EncoderConfig:
        """The inverse of :meth:`to_dict` (unknown keys are ignored: newer files stay readable)."""
        keys = {"n_servers", "time_scale_s", "bandwidth", "reward_scale_s", "server_names", "scenario"}
        return cls(**{k: v for k, v in d.items() if k in keys})


def _log_time(t: np.ndarray, scale: float) -> np.ndarray:
    """``log1p(t / scale)`` for t >= 0, ``CAP`` for inf, clipped to ``[0, CAP]``."""
    t = np.asarray(t, dtype=float)
    with np.errstate(invalid="ignore", over="ignore"):
        out = np.log1p(np.clip(t, 0.0, None) / scale)
    return np.clip(np.nan_to_num(out, nan=CAP, posinf=CAP), 0.0, CAP)


def _signed_log_time(t: float, scale: float) -> float:
    if not math.isfinite(t):
        return CAP if t > 0 else -CAP
    return float(np.clip(math.copysign(math.log1p(abs(t) / scale), t), -CAP, CAP))


class EpochEncoder:
    """Observations, masks and expected latencies of one epoch's tasks, decided one at a time.

    Args:
        config: the encoder settings.
        state: the epoch's state.
        bandwidth_hz: the tasks' uplink shares (from the bandwidth rule).

    Raises:
        PolicyError: the state has a different number of servers than the configuration.
    """

    def __init__(self, config: EncoderConfig, state: EpochState, bandwidth_hz: np.ndarray) -> None:
        if state.n_servers != config.n_servers:
            raise PolicyError(
                f"the model was made for {config.n_servers} servers; this scenario has {state.n_servers}"
            )
        self.cfg = config
        self.state = state
        self.n = state.n_tasks
        # Time from now until the input reaches each server (upload with its share, backhaul).
        self.reach = state.upload_s(bandwidth_hz)[:, None] + state.backhaul_s
        self.upload = state.upload_s(bandwidth_hz)
        # Expected time from now until each server could start one more task; moved forward by
        # every placement of this epoch (fluid approximation across slots, as the engine's
        # backlog estimate).
        self.avail = np.asarray(state.backlog_s, dtype=float).copy()
        self.per_slot = np.asarray(state.queued, dtype=float) / state.slots

    def completion(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(start, done): expected start of service and return of the result, from now, of task
        ``i`` on every server (``inf`` where infeasible)."""
        st = self.state
        start = np.maximum(self.reach[i], self.avail)
        done = np.where(st.feasible[i], start + st.service_s[i] + st.return_s[i], np.inf)
        return start, done

    def mask(self, i: int) -> np.ndarray:
        """The servers task ``i`` may go to (bool, length m)."""
        return np.array(self.state.feasible[i], dtype=bool)

    def observe(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """The observation (float32) and the action mask of task ``i``."""
        st, ts = self.state, self.cfg.time_scale_s
        mask = self.mask(i)
        _, done = self.completion(i)
        best = float(done[mask].min()) if mask.any() else math.inf
        slack = float(st.deadline[i]) - st.now - best if math.isfinite(best) else -math.inf
        per_server = np.concatenate(
            [
                mask.astype(float),
                _log_time(done, ts),
                _log_time(done - best, ts) if math.isfinite(best) else np.full(len(done), CAP),
                _log_time(self.avail, ts),
                _log_time(st.service_s[i], ts),
                np.clip(np.log1p(self.per_slot), 0.0, CAP),
            ]
        )
        task = np.array(
            [
                _log_time(np.array([self.upload[i]]), ts)[0],
                _signed_log_time(slack, ts),
                _log_time(np.array([st.now - float(st.t_arrival[i])]), ts)[0],
                (self.n - i) / self.n,
                min(math.log1p(self.n), CAP),
            ]
        )
        obs = np.concatenate([per_server, task]).astype(np.float32)
        return np.clip(obs, -CAP, CAP), mask

    def fallback(self, i: int) -> int:
        """The feasible server with the earliest expected completion (used for masked actions)."""
        _, done = self.completion(i)
        return int(np.argmin(done))

    def place(self, i: int, j: int) -> float:
        """Put task ``i`` on server ``j``; returns its expected latency (s): the wait so far plus
        the expected time from now until its result is back."""
        st = self.state
        start, done = self.completion(i)
        self.avail[j] = start[j] + st.service_s[i, j] / st.slots[j]
        self.per_slot[j] += 1.0 / st.slots[j]
        return float(st.now - float(st.t_arrival[i]) + done[j])


def import_sb3() -> Any:
    """``sb3_contrib.MaskablePPO``, or :class:`MissingExtraError` naming the ``rl`` extra."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise MissingExtraError("torch", "rl") from None
    try:
        import stable_baselines3  # noqa: F401
    except ImportError:
        raise MissingExtraError("stable-baselines3", "rl") from None
    try:
        from sb3_contrib import MaskablePPO
    except ImportError:
        raise MissingExtraError("sb3-contrib", "rl") from None
    return MaskablePPO


def model_digest(path: str | os.PathLike[str]) -> str:
    """A short hash of what a saved model decides with: its network weights and encoder settings.

    Two trainings with the same seed and settings give the same digest (the file itself differs
    by its timestamps), so a sweep keyed on it reuses the runs of an identical model and never
    those of a different one. A file that is not a stable-baselines3 archive is hashed whole.
    """
    h = hashlib.sha256()
    try:
        with zipfile.ZipFile(path) as z:
            h.update(z.read("policy.pth"))
            meta = json.loads(z.read("data")).get(META_KEY)
            h.update(json.dumps(meta, sort_keys=True).encode())
    except (zipfile.BadZipFile, KeyError, ValueError):
        h = hashlib.sha256(Path(path).read_bytes())
    return h.hexdigest()[:16]


def load_model(path: str | os.PathLike[str]) -> tuple[Any, EncoderConfig]:
    """Load a model saved by :func:`mecsim.rl.train.train_rl` and its encoder settings.

    Raises:
        PolicyError: no such file, or not a mecsim RL model.
        MissingExtraError: the ``rl`` extra is not installed.
    """
    p = Path(os.fspath(path)).expanduser()
    if not p.is_file():
        raise PolicyError(f"rl: no such model file: {p}")
    algo = import_sb3()
    import torch

    torch.set_num_threads(1)
    try:
        model = algo.load(str(p), device="cpu")
    except Exception as exc:  # a corrupt or foreign zip: say so in one line
        raise PolicyError(f"rl: cannot load model {p}: {type(exc).__name__}: {exc}") from None
    meta = getattr(model, META_KEY, None)
    if not isinstance(meta, dict):
        raise PolicyError(
            f"rl: {p} is not a mecsim RL model (no encoder settings inside); train one with `mecsim train-rl`"
        )
    return model, EncoderConfig.from_dict(meta)


class RLPolicy(BasePolicy):
    """A trained MaskablePPO model, deciding the epoch's tasks one at a time (deterministic).

    Args:
        model: path of a model saved by ``mecsim train-rl`` (a ``.zip``).
        digest: optional :func:`model_digest` of the file; when given, a different file is an
            error (sweeps key their runs on it, so a retrained model is never mixed up with
            cached runs of the old one).
        deterministic: take the most likely action (default) rather than sampling.

    Raises:
        PolicyError: the file is missing, not a model, or not the one ``digest`` names.
        MissingExtraError: the ``rl`` extra is not installed.

    Example:
        >>> import mecsim
        >>> res = mecsim.simulate("smoke-v1", policy="rl",                    # doctest: +SKIP
        ...                       policy_params={"model": "runs/rl-smoke.zip"}, seed=1)
    """

    name = "rl"

    def __init__(
        self, model: str | os.PathLike[str], digest: str | None = None, deterministic: bool = True
    ) -> None:
        super().__init__()
        self.path = str(model)
        if digest is not None and Path(self.path).is_file() and model_digest(self.path) != digest:
            raise PolicyError(
                f"rl: {self.path} is not the model with digest {digest} (it was "
                "replaced after the runs were planned)"
            )
        self.model, self.config = load_model(self.path)
        self.deterministic = bool(deterministic)

    def bind(self, info: dict[str, Any]) -> None:
        """Check that the scenario has the servers the model was trained on."""
        names = tuple(info.get("server_names", ()))
        if names and len(names) != self.config.n_servers:
            raise PolicyError(
                f"rl: the model {self.path} was trained for {self.config.n_servers} "
                f"servers ({self.config.scenario or 'unknown scenario'}); this scenario "
                f"has {len(names)}"
            )
        if names and self.config.server_names and names != self.config.server_names:
            warnings.warn(
                f"rl: the model was trained on servers {list(self.config.server_names)}; "
                f"this scenario has {list(names)} (same count, used in that order)",
                stacklevel=2,
            )

    def reset(self, rng: np.random.Generator) -> None:
        """Start a run (a sampling policy draws from the torch generator seeded from ``rng``)."""
        super().reset(rng)
        if not self.deterministic:
            import torch

            torch.manual_seed(int(rng.integers(2**31 - 1)))

    def decide(self, state: EpochState) -> Decision:
        bw = allocate(state, self.config.bandwidth)
        server = np.full(state.n_tasks, DEFER, dtype=np.int64)
        enc = EpochEncoder(self.config, state, bw)
        for i in range(state.n_tasks):
            obs, mask = enc.observe(i)
            if not mask.any():
                continue  # no server can take it now (hosts down): wait for the next epoch
            action, _ = self.model.predict(obs, action_masks=mask, deterministic=self.deterministic)
            j = int(action)
            if not mask[j]:  # cannot happen with masking; stay safe
                j = enc.fallback(i)
            enc.place(i, j)
            server[i] = j
        return Decision(bw, server, {"bandwidth_rule": self.config.bandwidth})


POLICIES.register(
    "rl", "reinforcement-learning baseline: a trained MaskablePPO model (params: model=path.zip)"
)(RLPolicy)
