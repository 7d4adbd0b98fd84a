"""A gymnasium environment around the engine's decision step.

An episode is one simulation run of a scenario (:class:`mecsim.engine.Simulation`, the engine
:func:`mecsim.simulate` uses, so arrivals, channels, queues and the tables are the same); a step
is one task's server choice. The run is stepped (:meth:`Simulation.start`,
:meth:`~Simulation.next_decision`, :meth:`~Simulation.apply`): it pauses at each epoch, the
agent places the epoch's tasks one at a time, and the joint decision resumes the run. One thread,
so an episode is as deterministic as a run.

Registered with gymnasium as ``"mecsim/MecEnv-v0"``: ``gymnasium.make("mecsim/MecEnv-v0",
scenario="smoke-v1")`` builds it once :mod:`mecsim.rl.env` is imported, or directly as
``gymnasium.make("mecsim.rl.env:mecsim/MecEnv-v0", ...)`` (gymnasium imports the module first).

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

__all__ = ["MecEnv", "ENV_ID"]

#: The gymnasium id of :class:`MecEnv`.
ENV_ID = "mecsim/MecEnv-v0"

#: Tries to find a run seed with at least one decision before reset gives up.
_MAX_EMPTY_EPISODES = 100


class _Stepped(BasePolicy):
    """Stands in for the policy of a stepped run: the environment makes the decisions."""

    name = "rl-env"

    def decide(self, state: EpochState) -> Decision:  # pragma: no cover - never called
        raise RuntimeError("a stepped run takes its decisions from apply()")


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

    def __init__(
        self,
        scenario: str | Scenario | dict[str, Any] = "paper-small-v1",
        *,
        overrides: Mapping[str, Any] | None = None,
        bandwidth: str = "equal",
        time_scale_s: float = 1.0,
        reward_scale_s: float = 10.0,
        invalid_action_penalty: float = 1.0,
        draw_run_seeds: bool = False,
    ) -> None:
        super().__init__()
        self.scenario = load_scenario(scenario, **dict(overrides or {}))
        sc = self.scenario
        self.config = EncoderConfig(
            n_servers=len(sc.servers),
            time_scale_s=time_scale_s,
            bandwidth=bandwidth,
            reward_scale_s=reward_scale_s,
            server_names=tuple(s.name for s in sc.servers),
            scenario=sc.name,
        )
        self.invalid_action_penalty = float(invalid_action_penalty)
        self.draw_run_seeds = bool(draw_run_seeds)
        self.observation_space = spaces.Box(low=-CAP, high=CAP, shape=(self.config.dim,), dtype=np.float32)
        self.action_space = spaces.Discrete(self.config.n_servers)
        self.run_seed: int | None = None
        self.last_result: Result | None = None
        self._sim: Simulation | None = None
        self._enc: EpochEncoder | None = None  # the epoch being placed, task by task
        self._mask = np.ones(self.config.n_servers, dtype=bool)
        self._done = True
        self._reset_episode()

    # -- the stepped run -------------------------------------------------------------------------
    def _reset_episode(self) -> None:
        self._reward = 0.0  # of the last action, handed over with the next observation
        self._info: dict[str, Any] = {}
        self._latencies: list[float] = []

    def _start(self, seed: int) -> tuple[Any, ...]:
        self._reset_episode()
        self._enc = None
        self._sim = Simulation(self.scenario, _Stepped(), seed).start()
        return self._advance()

    def _advance(self) -> tuple[Any, ...]:
        """Go on to the next task that has a feasible server: ``("obs", obs, mask)``, or
        ``("done", result)`` when the run is over. An epoch whose tasks are all placed (or have
        no feasible server: deferred, as the heuristics do) is applied to the run."""
        sim = self._sim
        assert sim is not None
        while True:
            if self._enc is None:
                state = sim.next_decision()
                if state is None:
                    return ("done", collect(sim))
                bw = allocate(state, self.config.bandwidth)
                self._enc = EpochEncoder(self.config, state, bw)
                self._epoch = (state, bw, np.full(state.n_tasks, DEFER, dtype=np.int64))
                self._i = 0
            state, bw, server = self._epoch
            while self._i < state.n_tasks:
                obs, mask = self._enc.observe(self._i)
                if mask.any():
                    return ("obs", obs, mask)
                self._i += 1
            sim.apply(Decision(bw, server, {"bandwidth_rule": self.config.bandwidth}))
            self._enc = None

    def _place(self, action: int) -> None:
        """Place the current task on server ``action`` (an infeasible one is mapped to the best
        feasible server and penalised)."""
        enc = self._enc
        assert enc is not None
        state, _, server = self._epoch
        i = self._i
        j = int(action)
        invalid = not (0 <= j < state.n_servers and self._mask[j])
        if invalid:
            j = enc.fallback(i)
        lat = enc.place(i, j)
        server[i] = j
        self._latencies.append(lat)
        self._reward = -lat / self.config.reward_scale_s - (self.invalid_action_penalty if invalid else 0.0)
        self._info = {
            "task_id": int(state.task_id[i]),
            "epoch": int(state.epoch),
            "t": float(state.now),
            "server": j,
            "expected_latency_s": lat,
            "invalid_action": invalid,
        }
        self._i = i + 1

    def _stop(self) -> None:
        """Drop a running episode (a stepped run holds no thread: forgetting it is enough)."""
        self._sim = None
        self._enc = None
        self._done = True

    # -- gymnasium API ---------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
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
            self.last_result = msg[1]
            run_seed = int(self.np_random.integers(2**31 - 1))
        else:
            raise MecsimError(
                f"{self.scenario.name}: {_MAX_EMPTY_EPISODES} runs in a row had no task "
                "to decide; is the arrival rate zero?"
            )
        self.run_seed = run_seed
        self._done = False
        _, obs, mask = msg
        self._mask = mask
        return obs.copy(), {"run_seed": run_seed}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Send the current task to server ``action``; returns the next task's observation, this
        task's reward, whether the run has ended, False (never truncated) and an info dict."""
        if self._done or self._sim is None:
            raise RuntimeError("call reset() before step() (the episode has ended)")
        self._place(int(np.asarray(action).item()))
        msg = self._advance()
        reward, info = self._reward, dict(self._info)
        if msg[0] == "obs":
            _, obs, mask = msg
            self._mask = mask
            return obs.copy(), float(reward), False, False, info
        res = msg[1]
        self._sim = None
        self._done = True
        self.last_result = res
        s = res.summary
        info.update(
            latency_mean_s=s["latency_mean_s"],
            deadline_miss_rate=s["deadline_miss_rate"],
            tasks_completed=s["tasks_completed"],
            run_seed=self.run_seed,
        )
        self._mask = np.ones(self.config.n_servers, dtype=bool)
        return np.zeros(self.config.dim, dtype=np.float32), float(reward), True, False, info

    def action_masks(self) -> np.ndarray:
        """The servers the current task may go to (bool, length m)."""
        return self._mask.copy()

    def expected_latencies(self) -> list[float]:
        """The expected latency of every task decided so far in this episode (s)."""
        return list(self._latencies)

    def close(self) -> None:
        """Drop a running episode."""
        self._stop()


if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="mecsim.rl.env:MecEnv")
