"""A gymnasium environment around the engine's decision step.

An episode is one simulation run of a scenario (:class:`mecsim.engine.Simulation`, the engine
:func:`mecsim.simulate` uses, so arrivals, channels, queues and the tables are the same); a step
is one task's server choice. The run goes on in a helper thread whose policy hands the epoch's
tasks to the agent one at a time and waits for each answer; the two threads never run at once, so
an episode is as deterministic as a run.

Why one task per step rather than a joint action per epoch: the number of tasks in an epoch
varies (1 to ``max_tasks``), so a joint action would need a padded ``MultiDiscrete`` of the
largest epoch with ``m ** n`` combinations; deciding the tasks in turn keeps a fixed
``Discrete(m)`` action and a fixed-size observation, a plain per-step mask, and loses nothing:
each step sees the placements made before it in the same epoch (an autoregressive factorisation
of the joint choice).

* Action: ``Discrete(m)``, the server. ``action_masks()`` gives the feasible servers (what
  sb3-contrib's MaskablePPO uses); an infeasible action is mapped to the feasible server with the
  earliest expected completion and costs ``invalid_action_penalty``.
* Bandwidth: by the rule of the encoder (equal shares by default), as the heuristics.
* Observation: see :mod:`mecsim.rl.policy` (``6 m + 5`` normalised numbers).
* Reward: minus the task's expected latency (wait so far + upload + backhaul + wait for a slot +
  service + return, from the engine's own estimates, as the greedy heuristic computes it) divided
  by ``reward_scale_s``. Summed over an episode it is minus the total latency the scheduler
  expects, so the return carries what a placement costs later tasks (they see a longer backlog).
  It is known at once (no delayed credit), and it differs from the realised latency only by what
  no decision can see: service-time jitter (mean 1), fading changes during an upload and the
  shortest-first reordering of one epoch's tasks at a server. The realised mean latency of the
  episode is in the last step's ``info`` (``latency_mean_s``).
* Episode end: ``terminated`` when the run reaches ``duration_s + drain_s``; never truncated.

Seeding: ``reset(seed=s)`` runs seed ``s`` (the same tasks and channels as
``mecsim.simulate(scenario, seed=s)``); ``reset()`` draws the next run seed from the
environment's generator.

Example:
    >>> from mecsim.rl.env import MecEnv
    >>> env = MecEnv("smoke-v1", overrides={"duration_s": 20})
    >>> obs, info = env.reset(seed=1)
    >>> obs.shape, env.action_masks().tolist()
    ((17,), [True, True])
    >>> env.close()
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

try:
    import gymnasium as gym
    from gymnasium import spaces
except ImportError:  # pragma: no cover - only without the rl extra
    from mecsim.errors import MissingExtraError

    raise MissingExtraError("gymnasium", "rl") from None

from mecsim.engine import Simulation
from mecsim.errors import MecsimError
from mecsim.policies.base import BasePolicy
from mecsim.policies.heuristics import allocate
from mecsim.results import Result, collect
from mecsim.rl.policy import CAP, EncoderConfig, EpochEncoder
from mecsim.scenario import Scenario, load_scenario
from mecsim.state import DEFER, Decision, EpochState

__all__ = ["MecEnv"]

#: Tries to find a run seed with at least one decision before reset gives up.
_MAX_EMPTY_EPISODES = 100


class _Abort(Exception):
    """Sent into the simulation thread to end an episode early."""


class _Bridge(BasePolicy):
    """The policy inside the simulation thread: asks the agent for each task's server."""

    name = "rl-env"

    def __init__(self, config: EncoderConfig, invalid_action_penalty: float) -> None:
        super().__init__()
        # No reference to the environment: an abandoned environment can be collected (and its
        # __del__ ends this thread).
        self.config = config
        self.penalty = invalid_action_penalty
        self.to_agent: queue.Queue[tuple[Any, ...]] = queue.Queue(maxsize=1)
        self.to_sim: queue.Queue[Any] = queue.Queue(maxsize=1)
        self.reward = 0.0  # of the last action, handed over with the next message
        self.info: dict[str, Any] = {}
        self.latencies: list[float] = []

    def decide(self, state: EpochState) -> Decision:
        cfg = self.config
        bw = allocate(state, cfg.bandwidth)
        server = np.full(state.n_tasks, DEFER, dtype=np.int64)
        enc = EpochEncoder(cfg, state, bw)
        for i in range(state.n_tasks):
            obs, mask = enc.observe(i)
            if not mask.any():
                continue  # no feasible server now: deferred, as the heuristics do
            self.to_agent.put(("obs", obs, mask, self.reward, self.info))
            action = self.to_sim.get()
            if action is _Abort:
                raise _Abort()
            j = int(action)
            invalid = not (0 <= j < state.n_servers and mask[j])
            if invalid:
                j = enc.fallback(i)
            lat = enc.place(i, j)
            server[i] = j
            self.latencies.append(lat)
            self.reward = -lat / cfg.reward_scale_s - (self.penalty if invalid else 0.0)
            self.info = {"task_id": int(state.task_id[i]), "epoch": int(state.epoch), "t": float(state.now),
                         "server": j, "expected_latency_s": lat, "invalid_action": invalid}
        return Decision(bw, server, {"bandwidth_rule": cfg.bandwidth})


class MecEnv(gym.Env):
    """One episode = one run of a scenario; one step = one task's server.

    Args:
        scenario: a registered name, a YAML path, a dict or a Scenario.
        overrides: dotted scenario overrides (e.g. ``{"duration_s": 120}`` for shorter episodes).
        bandwidth: the bandwidth rule (``equal``, ``sum``, ``minmax``).
        time_scale_s: the time unit of the observation's ``log1p`` scaling.
        reward_scale_s: the reward is minus the expected latency divided by this.
        invalid_action_penalty: extra cost of an infeasible action (which is mapped to the best
            feasible server).
        draw_run_seeds: draw every run seed from the environment's generator, also after
            ``reset(seed=s)`` (which then only seeds the generator). Training uses it, so that its
            runs are not the evaluation seeds 0, 1, 2, ... of a comparison.

    Attributes:
        config: the :class:`~mecsim.rl.policy.EncoderConfig` (saved with trained models).
        scenario: the validated scenario.
        run_seed: the seed of the current episode's run.
        last_result: the :class:`~mecsim.results.Result` of the last finished episode.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, scenario: str | Scenario | dict[str, Any] = "paper-small-v1", *,
                 overrides: Mapping[str, Any] | None = None, bandwidth: str = "equal",
                 time_scale_s: float = 1.0, reward_scale_s: float = 10.0,
                 invalid_action_penalty: float = 1.0, draw_run_seeds: bool = False) -> None:
        super().__init__()
        self.scenario = load_scenario(scenario, **dict(overrides or {}))
        sc = self.scenario
        self.config = EncoderConfig(n_servers=len(sc.servers), time_scale_s=time_scale_s,
                                    bandwidth=bandwidth, reward_scale_s=reward_scale_s,
                                    server_names=tuple(s.name for s in sc.servers), scenario=sc.name)
        self.invalid_action_penalty = float(invalid_action_penalty)
        self.draw_run_seeds = bool(draw_run_seeds)
        self.observation_space = spaces.Box(low=-CAP, high=CAP, shape=(self.config.dim,),
                                            dtype=np.float32)
        self.action_space = spaces.Discrete(self.config.n_servers)
        self.run_seed: int | None = None
        self.last_result: Result | None = None
        self._thread: threading.Thread | None = None
        self._bridge: _Bridge | None = None
        self._mask = np.ones(self.config.n_servers, dtype=bool)
        self._done = True

    # -- the simulation thread -----------------------------------------------------------------
    def _start(self, seed: int) -> tuple[Any, ...]:
        bridge = _Bridge(self.config, self.invalid_action_penalty)
        sim = Simulation(self.scenario, bridge, seed)

        def run() -> None:
            try:
                sim.run()
            except _Abort:
                return
            except BaseException as exc:  # noqa: BLE001 - handed to the agent's thread
                bridge.to_agent.put(("error", exc))
                return
            try:
                res = collect(sim)
            except BaseException as exc:  # noqa: BLE001
                bridge.to_agent.put(("error", exc))
                return
            bridge.to_agent.put(("done", res, bridge.reward, bridge.info))

        self._bridge = bridge
        self._thread = threading.Thread(target=run, name=f"mecsim-env-{seed}", daemon=True)
        self._thread.start()
        return self._receive()

    def _receive(self) -> tuple[Any, ...]:
        assert self._bridge is not None
        msg = self._bridge.to_agent.get()
        if msg[0] == "error":
            self._join()
            exc = msg[1]
            if isinstance(exc, MecsimError):
                raise exc
            raise RuntimeError(f"the simulation failed: {type(exc).__name__}: {exc}") from exc
        return msg

    def _join(self) -> None:
        if self._thread is not None:
            self._thread.join()
        self._thread = None

    def _stop(self) -> None:
        """End a running episode (its thread raises inside the engine and exits)."""
        if self._thread is not None and self._thread.is_alive() and not self._done:
            assert self._bridge is not None
            self._bridge.to_sim.put(_Abort)
        self._join()
        self._done = True

    # -- gymnasium API ---------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a run: with ``seed``, run seed ``seed``; without, the next seed from the
        environment's generator. Returns the first task's observation.

        A run without any decision (no task arrived) is skipped for the next seed drawn from the
        generator, so an episode always has at least one step.
        """
        super().reset(seed=seed)
        self._stop()
        if seed is not None and not self.draw_run_seeds:
            run_seed = int(seed)
        else:
            run_seed = int(self.np_random.integers(2**31 - 1))
        for _ in range(_MAX_EMPTY_EPISODES):
            msg = self._start(run_seed)
            if msg[0] == "obs":
                break
            self._join()
            self.last_result = msg[1]
            run_seed = int(self.np_random.integers(2**31 - 1))
        else:
            raise MecsimError(f"{self.scenario.name}: {_MAX_EMPTY_EPISODES} runs in a row had no task "
                              "to decide; is the arrival rate zero?")
        self.run_seed = run_seed
        self._done = False
        _, obs, mask, _, _ = msg
        self._mask = mask
        return obs.copy(), {"run_seed": run_seed}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Send the current task to server ``action``; returns the next task's observation, this
        task's reward, whether the run has ended, False (never truncated) and an info dict."""
        if self._done or self._bridge is None:
            raise RuntimeError("call reset() before step() (the episode has ended)")
        self._bridge.to_sim.put(int(np.asarray(action).item()))
        msg = self._receive()
        if msg[0] == "obs":
            _, obs, mask, reward, info = msg
            self._mask = mask
            return obs.copy(), float(reward), False, False, dict(info)
        _, res, reward, info = msg
        self._join()
        self._done = True
        self.last_result = res
        s = res.summary
        info = dict(info)
        info.update(latency_mean_s=s["latency_mean_s"], deadline_miss_rate=s["deadline_miss_rate"],
                    tasks_completed=s["tasks_completed"], run_seed=self.run_seed)
        self._mask = np.ones(self.config.n_servers, dtype=bool)
        return np.zeros(self.config.dim, dtype=np.float32), float(reward), True, False, info

    def action_masks(self) -> np.ndarray:
        """The servers the current task may go to (bool, length m)."""
        return self._mask.copy()

    def expected_latencies(self) -> list[float]:
        """The expected latency of every task decided so far in this episode (s)."""
        return list(self._bridge.latencies) if self._bridge is not None else []

    def close(self) -> None:
        """Stop a running episode's thread."""
        self._stop()

    def __del__(self) -> None:
        try:
            self._stop()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
