"""Reinforcement-learning baseline: a gymnasium environment around the engine's decision step, a
trained policy (``"rl"``), and training with stable-baselines3 (sb3-contrib's MaskablePPO).

Importing this package is cheap: torch, gymnasium and stable-baselines3 are imported only when an
environment is built, a model is trained or loaded (the ``rl`` extra:
``pip install 'mecsim[rl]'``). :mod:`mecsim.rl.policy` registers the ``"rl"`` policy.

Example:
    >>> from mecsim.rl.policy import EncoderConfig
    >>> EncoderConfig(n_servers=4).dim
    29
"""

from __future__ import annotations

from typing import Any

__all__ = ["MecEnv", "RLPolicy", "train_rl", "EncoderConfig"]


def __getattr__(name: str) -> Any:
    # Lazy: `from mecsim.rl import MecEnv` imports gymnasium only then.
    if name == "MecEnv":
        from mecsim.rl.env import MecEnv

        return MecEnv
    if name == "RLPolicy":
        from mecsim.rl.policy import RLPolicy

        return RLPolicy
    if name == "train_rl":
        from mecsim.rl.train import train_rl

        return train_rl
    if name == "EncoderConfig":
        from mecsim.rl.policy import EncoderConfig

        return EncoderConfig
    raise AttributeError(f"module 'mecsim.rl' has no attribute {name!r}")
