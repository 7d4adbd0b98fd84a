"""Training and evaluating the RL baseline (sb3-contrib's MaskablePPO on :class:`MecEnv`).

Why MaskablePPO: the action is a server and only the servers that host the task's model (and
are up) are valid. MaskablePPO takes the environment's ``action_masks()`` and gives invalid
actions zero probability both when acting and in the policy-gradient update, so no sample is
wasted on them and no penalty has to be tuned; plain PPO or DQN in stable-baselines3 have no
masks (DQN's bootstrapped max would also range over invalid actions). PPO's clipped on-policy
updates are also the robust default for long, variable-length episodes like a whole run.

Training is seeded and reproducible: ``torch.set_num_threads(1)`` (one core, deterministic CPU
kernels), the model's seed sets torch's, numpy's and the action space's generators (stable-
baselines3 seeds the global ones; nothing else in mecsim uses them), and the environment's run
seeds come from its own generator seeded with the same seed.

Example:
    >>> from mecsim.rl.train import train_rl
    >>> rep = train_rl("smoke-v1", steps=256, out="runs/rl-smoke.zip",   # doctest: +SKIP
    ...                overrides={"duration_s": 60}, progress=False)
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mecsim.errors import MecsimError
from mecsim.rl.policy import META_KEY, import_sb3, model_digest

__all__ = [
    "DEFAULT_HYPERPARAMETERS",
    "RLError",
    "TrainReport",
    "train_rl",
    "make_model",
    "evaluate_rewards",
    "is_flat",
    "is_flat_validation",
]


class RLError(MecsimError, ValueError):
    """Bad training settings (a hyperparameter out of range or unknown to MaskablePPO)."""


#: MaskablePPO settings used unless overridden (small network, short rollouts: the baseline is
#: meant to be trained in minutes on one core).
DEFAULT_HYPERPARAMETERS: dict[str, Any] = {
    "n_steps": 512,
    "batch_size": 128,
    "n_epochs": 5,
    "learning_rate": 1e-3,
    "gamma": 0.95,
    "gae_lambda": 0.9,
    "ent_coef": 0.0,
    "policy_kwargs": {"net_arch": [64, 64]},
}


@dataclass
class TrainReport:
    """What :func:`train_rl` did.

    Attributes:
        path: the saved model.
        digest: :func:`~mecsim.rl.policy.model_digest` of the file.
        steps: environment steps (task decisions) trained on.
        episodes: finished episodes (runs) during training.
        wall_s: training wall time (s).
        episode_rewards: the return of every finished episode, in order.
        config: the encoder settings saved with the model.
        hyperparameters: the MaskablePPO settings.
        episode_steps: the training steps done when each episode finished.
        episode_reward_per_step: each episode's return over its length (episodes differ in
            length, so this, not the return, is the learning curve).
        flat: whether the learning curve had flattened at the end; None with too few points to
            tell. Trained ``until_flat``: judged on the validation curve (:func:`is_flat_validation`);
            otherwise on the training runs' returns (:func:`is_flat`, noisier: the runs differ in
            load).
        eval_steps: the training decisions done at each validation check (``until_flat`` only).
        eval_reward_per_step: at each check, the deterministic policy's return per decision on
            each validation seed (the same seeds at every check).
        eval_seeds: the validation run seeds (drawn apart from the training runs' seeds and from
            the small seeds 0, 1, 2, ... a comparison evaluates on).
        best_step: the training decisions at the validation check whose policy was kept (the
            best mean validation return; ``until_flat`` only, else None).
    """

    path: Path
    digest: str
    steps: int
    episodes: int
    wall_s: float
    episode_rewards: list[float] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    episode_steps: list[int] = field(default_factory=list)
    episode_reward_per_step: list[float] = field(default_factory=list)
    flat: bool | None = None
    eval_steps: list[int] = field(default_factory=list)
    eval_reward_per_step: list[list[float]] = field(default_factory=list)
    eval_seeds: list[int] = field(default_factory=list)
    best_step: int | None = None


def is_flat(
    values: Iterable[float], frac: float = 0.25, tol: float = 0.05, min_episodes: int = 16
) -> bool | None:
    """Has a learning curve flattened? The mean of the last ``frac`` of the episodes against the
    mean of the ``frac`` before them: flat when they differ by less than ``tol`` (relative). At
    least ``min_episodes`` episodes are needed (so that each mean is over 4 or more runs, which
    differ in load from seed to seed).

    Returns:
        True or False; None with fewer than ``min_episodes`` values.

    Example:
        >>> is_flat([-3, -2.5, -2, -1.6, -1.2, -1.1, -1.0, -1.0] + [-1.0, -1.01, -0.99, -1.0] * 2)
        True
        >>> is_flat([-16 + k for k in range(16)])
        False
        >>> is_flat([-1.0] * 10) is None
        True
    """
    v = np.asarray(list(values), dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < min_episodes:
        return None
    k = max(2, int(round(frac * len(v))))
    last, prev = v[-k:].mean(), v[-2 * k : -k].mean()
    return bool(abs(last - prev) <= tol * max(abs(prev), 1e-12))


def _last_gain(means: np.ndarray, tol: float) -> int:
    """Index of the last check whose mean beat every earlier check by more than ``tol``
    (relative); the first check counts as a gain."""
    last, best = 0, means[0]
    for i in range(1, len(means)):
        if means[i] > best + tol * max(abs(best), 1e-12):
            last = i
        best = max(best, means[i])
    return last


def is_flat_validation(evals: Any, patience: int = 4, tol: float = 0.01, min_checks: int = 6) -> bool | None:
    """Has a validation curve flattened? ``evals`` is one row per check and one column per
    validation seed (the same seeds at every check: common random numbers), each the return per
    decision of the deterministic policy at that check. Flat when none of the last ``patience``
    checks beat the best check before them by more than ``tol`` (relative), judged from
    ``min_checks`` checks on: the early-stopping rule on a validation set (Prechelt, "Early
    stopping - but when?", 1998), with the best check's policy kept (:func:`train_rl`).

    Why validation seeds and not the training runs' returns (:func:`is_flat`): the training
    runs differ in load, and on a scenario whose load varies much from run to run
    (radio-limited-v1: the return per decision has a coefficient of variation of 1.2 across
    runs, one run at 13 times the median) the standard error of a window's mean is larger than
    any tolerance worth using, so that test passes or fails by the draw of runs. On common seeds
    the load cancels. Why patience rather than a window-mean difference: PPO's deterministic
    policy moves from check to check (on radio-limited-v1 by about 8% between checks 4,096
    decisions apart, without a trend), and a difference of two window means of such a curve
    passes or fails a tolerance of a few percent by chance; a curve that still rises keeps
    setting new bests, a plateau stops setting them.

    Returns:
        True or False; None with fewer than ``min_checks`` checks.

    Example:
        >>> is_flat_validation([[-3.0, -1.0], [-2.0, -0.8], [-1.2, -0.6]] + [[-1.0, -0.5]] * 5)
        True
        >>> is_flat_validation([[-6.0 + k, -3.0 + k / 2] for k in range(6)])
        False
        >>> is_flat_validation([[-1.0, -1.0]] * 5) is None
        True
    """
    a = np.asarray(evals, dtype=float)
    if a.ndim != 2 or a.shape[0] < max(min_checks, patience + 1) or a.shape[1] < 1:
        return None
    means = a.mean(axis=1)
    return bool(len(means) - 1 - _last_gain(means, tol) >= patience)


def _validation_seeds(seed: int, n: int) -> list[int]:
    """Validation run seeds: 31-bit, from their own generator (not the training runs' stream,
    not the small evaluation seeds of a comparison)."""
    rng = np.random.default_rng([int(seed), 0x7A11D])
    return [int(x) for x in rng.integers(1_000_000, 2**31 - 1, size=n)]


def _setup_torch(seed: int) -> None:
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(seed)


def _check_hyperparameters(hp: Mapping[str, Any]) -> None:
    """Range checks stable-baselines3 does not do itself (it would fail mid-training)."""
    for key in ("n_steps", "batch_size", "n_epochs"):
        v = hp.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise RLError(f"hyperparameter {key} must be a whole number >= 1, got {v!r}")
    for key, lo_open in (("learning_rate", True), ("gamma", True), ("gae_lambda", False)):
        v = hp.get(key)
        if v is None or callable(v):
            continue
        if isinstance(v, bool) or not isinstance(v, int | float) or not (0 < v if lo_open else 0 <= v):
            raise RLError(f"hyperparameter {key} must be a number > 0, got {v!r}")
        if key != "learning_rate" and v > 1:
            raise RLError(f"hyperparameter {key} must be at most 1, got {v!r}")


def make_model(env: Any, seed: int = 0, **hyperparameters: Any) -> Any:
    """An untrained MaskablePPO on ``env`` (a :class:`~mecsim.rl.env.MecEnv`), seeded, on the
    CPU, with :data:`DEFAULT_HYPERPARAMETERS` updated by ``hyperparameters``.

    Raises:
        RLError: a hyperparameter out of range or unknown to MaskablePPO.
    """
    algo = import_sb3()
    from stable_baselines3.common.monitor import Monitor

    _setup_torch(seed)
    hp = {**DEFAULT_HYPERPARAMETERS, **hyperparameters}
    _check_hyperparameters(hp)
    try:
        model = algo("MlpPolicy", Monitor(env), seed=seed, device="cpu", verbose=0, **hp)
    except TypeError as exc:  # an unknown keyword
        raise RLError(f"MaskablePPO does not take these settings {sorted(hyperparameters)}: {exc}") from None
    setattr(model, META_KEY, env.config.to_dict())
    return model


def _progress_callback(total: int, desc: str, enabled: bool) -> Any:
    from stable_baselines3.common.callbacks import BaseCallback

    if enabled:  # tqdm.auto only then: in a notebook without ipywidgets it warns on import
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm

    class _Bar(BaseCallback):
        """A tqdm bar over environment steps, showing the last episodes' mean return."""

        def __init__(self) -> None:
            super().__init__()
            self.bar: Any = None
            self.rewards: list[float] = []
            self.steps_at: list[int] = []
            self.per_step: list[float] = []

        def _on_training_start(self) -> None:
            if self.bar is None:  # one bar over several learn() calls
                self.bar = tqdm(total=total, desc=desc, unit="step", disable=not enabled, dynamic_ncols=True)

        def _on_step(self) -> bool:
            for info in self.locals.get("infos", []):
                ep = info.get("episode")
                if ep is not None:
                    self.rewards.append(float(ep["r"]))
                    self.steps_at.append(int(self.num_timesteps))
                    self.per_step.append(float(ep["r"]) / max(int(ep["l"]), 1))
                    self.bar.set_postfix(
                        episodes=len(self.rewards), ret=f"{np.mean(self.rewards[-5:]):.1f}", refresh=False
                    )
            self.bar.update(self.training_env.num_envs)
            return True

        def close(self) -> None:
            if self.bar is not None:
                self.bar.close()

    return _Bar()


def train_rl(
    scenario: Any,
    steps: int,
    out: str | os.PathLike[str],
    seed: int = 0,
    *,
    overrides: Mapping[str, Any] | None = None,
    bandwidth: str = "equal",
    hyperparameters: Mapping[str, Any] | None = None,
    progress: bool = True,
    env_kwargs: Mapping[str, Any] | None = None,
    until_flat: bool = False,
    check_every: int = 4096,
    n_validation: int = 4,
) -> TrainReport:
    """Train MaskablePPO on a scenario for ``steps`` task decisions and save it to ``out``.

    Args:
        scenario: a registered name, a YAML path, a dict or a Scenario.
        steps: environment steps (one per task decided).
        out: the model file to write (``.zip`` is added by stable-baselines3 when missing).
        seed: seeds the network, the sampling of actions and the training runs.
        overrides: scenario overrides for the training runs (e.g. a shorter ``duration_s``).
        bandwidth: the bandwidth rule (``equal``, ``sum``, ``minmax``).
        hyperparameters: MaskablePPO settings over :data:`DEFAULT_HYPERPARAMETERS`.
        progress: show a progress bar.
        env_kwargs: more :class:`~mecsim.rl.env.MecEnv` arguments (``time_scale_s``, ...).
        until_flat: train in chunks of ``check_every`` decisions (fewer for small budgets:
            ``steps / 10``, at least one rollout); after each chunk run the deterministic policy
            on ``n_validation`` fixed validation seeds (unseen in training and in a comparison)
            and stop once that validation curve is flat (:func:`is_flat_validation`: no new best
            by more than 1% in 4 checks); the policy of the best check is the one saved, and
            ``steps`` is the most trained. The chunk does not depend on ``steps`` beyond small
            budgets, so a larger budget only lets a curve that is not yet flat train on.
        check_every: decisions between validation checks.
        n_validation: validation seeds per check.

    Returns:
        A :class:`TrainReport`.

    Raises:
        MissingExtraError: the ``rl`` extra is not installed.
        ScenarioError: the scenario or an override is invalid.
    """
    if steps < 1:
        raise RLError(f"steps must be >= 1, got {steps}")
    import_sb3()
    from mecsim.rl.env import MecEnv

    # Training runs draw their seeds (31-bit) from the environment's generator seeded with
    # `seed`: they are not the small seeds 0, 1, 2, ... a comparison evaluates on.
    env = MecEnv(
        scenario, overrides=overrides, bandwidth=bandwidth, draw_run_seeds=True, **dict(env_kwargs or {})
    )
    hp = dict(hyperparameters or {})
    # Small budgets: rollouts no longer than the budget, so that some update happens.
    n_steps = int(hp.get("n_steps", DEFAULT_HYPERPARAMETERS["n_steps"]))
    if steps < n_steps:
        hp["n_steps"] = max(steps, 16)
        hp["batch_size"] = min(
            int(hp.get("batch_size", DEFAULT_HYPERPARAMETERS["batch_size"])), hp["n_steps"]
        )
    model = make_model(env, seed=seed, **hp)
    cb = _progress_callback(steps, f"train-rl {env.scenario.name}", progress)
    if check_every < 1 or n_validation < 1:
        raise RLError(f"check_every and n_validation must be >= 1, got {check_every}, {n_validation}")
    eval_steps: list[int] = []
    evals: list[list[float]] = []
    val_seeds = _validation_seeds(seed, n_validation) if until_flat else []
    best: int | None = None
    best_weights: Any = None
    t0 = time.perf_counter()
    try:
        if until_flat:
            rollout = int(hp.get("n_steps", DEFAULT_HYPERPARAMETERS["n_steps"]))
            chunk = min(int(check_every), max(steps // 10, rollout))
            while model.num_timesteps < steps:
                model.learn(
                    total_timesteps=min(chunk, steps - model.num_timesteps),
                    callback=cb,
                    reset_num_timesteps=False,
                )
                ev = evaluate_rewards(model, env.scenario, val_seeds)
                eval_steps.append(int(model.num_timesteps))
                evals.append([float(x) for x in ev["mean_reward_per_step"]])
                if best is None or np.mean(evals[-1]) > np.mean(evals[best]):
                    best = len(evals) - 1
                    best_weights = copy.deepcopy(model.policy.state_dict())
                if is_flat_validation(evals):
                    break
            if best_weights is not None:  # keep the best check's policy (early stopping)
                model.policy.load_state_dict(best_weights)
        else:
            model.learn(total_timesteps=steps, callback=cb)
    finally:
        cb.close()
        env.close()
    wall = time.perf_counter() - t0
    path = Path(os.fspath(out))
    if path.suffix != ".zip":
        path = path.with_name(path.name + ".zip")
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(str(path))
    return TrainReport(
        path=path,
        digest=model_digest(path),
        steps=int(model.num_timesteps),
        episodes=len(cb.rewards),
        wall_s=wall,
        episode_rewards=list(cb.rewards),
        config=env.config.to_dict(),
        hyperparameters={**DEFAULT_HYPERPARAMETERS, **hp},
        episode_steps=list(cb.steps_at),
        episode_reward_per_step=list(cb.per_step),
        flat=is_flat_validation(evals) if until_flat else is_flat(cb.per_step),
        eval_steps=eval_steps,
        eval_reward_per_step=evals,
        eval_seeds=val_seeds,
        best_step=eval_steps[best] if best is not None else None,
    )


def evaluate_rewards(
    model: Any,
    scenario: Any,
    seeds: Iterable[int],
    *,
    overrides: Mapping[str, Any] | None = None,
    deterministic: bool = True,
) -> dict[str, Any]:
    """Roll a model out on the environment for the given run seeds (one episode each).

    Args:
        model: a MaskablePPO model (trained or not) or a path to a saved one.
        scenario: the scenario (the model's number of servers).
        seeds: run seeds (the same seeds give the same tasks for every model: common random
            numbers).
        overrides: scenario overrides.
        deterministic: take the most likely action.

    Returns:
        ``{"rewards": [return per seed], "mean_reward_per_step": [...], "latency_mean_s":
        [realised mean latency per seed], "steps": [...]}``.
    """
    from mecsim.rl.env import MecEnv
    from mecsim.rl.policy import EncoderConfig, load_model

    if isinstance(model, str | os.PathLike):
        model, cfg = load_model(model)
    else:
        cfg = EncoderConfig.from_dict(getattr(model, META_KEY))
    env = MecEnv(
        scenario,
        overrides=overrides,
        bandwidth=cfg.bandwidth,
        time_scale_s=cfg.time_scale_s,
        reward_scale_s=cfg.reward_scale_s,
    )
    out: dict[str, list[float]] = {
        "rewards": [],
        "mean_reward_per_step": [],
        "latency_mean_s": [],
        "steps": [],
    }
    try:
        for s in seeds:
            obs, _ = env.reset(seed=int(s))
            total, n, info = 0.0, 0, {}
            while True:
                action, _ = model.predict(obs, action_masks=env.action_masks(), deterministic=deterministic)
                obs, r, term, trunc, info = env.step(action)
                total += r
                n += 1
                if term or trunc:
                    break
            out["rewards"].append(total)
            out["mean_reward_per_step"].append(total / n)
            lat = info.get("latency_mean_s")
            out["latency_mean_s"].append(float(lat) if lat is not None else math.nan)
            out["steps"].append(n)
    finally:
        env.close()
    return out
