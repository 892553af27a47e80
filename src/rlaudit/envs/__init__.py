"""The career environment, its parameter regimes and the reward registry.

Importing this package registers the env with Gymnasium as ``rlaudit/Career-v0``::

    import gymnasium as gym
    import rlaudit.envs

    env = gym.make("rlaudit/Career-v0", regime="recession", reward="sparse_v1")
    # or, without importing first: gym.make("rlaudit.envs:rlaudit/Career-v0")
"""

from __future__ import annotations

import gymnasium as gym

from rlaudit.envs.career import ACTION_NAMES, DEFAULT_REWARD, DEFAULT_SEED, CareerEnv
from rlaudit.envs.params import REGIME_FIELDS, REGIMES, STRESS_PRESETS, EnvironmentParams
from rlaudit.envs.rewards import (
    CareerState,
    Reward,
    describe_reward,
    get_reward,
    list_rewards,
    register_reward,
    reward_class,
    total,
)

ENV_ID = "rlaudit/Career-v0"
"""Gymnasium id of :class:`CareerEnv` (kwargs: regime, params, reward, reward_params)."""
ENV_ID_WITH_MODULE = "rlaudit.envs:" + ENV_ID
"""The id with its module prefix: ``gymnasium.make`` imports rlaudit.envs itself."""

if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="rlaudit.envs.career:CareerEnv")

__all__ = [
    "ACTION_NAMES",
    "DEFAULT_REWARD",
    "DEFAULT_SEED",
    "ENV_ID",
    "ENV_ID_WITH_MODULE",
    "REGIMES",
    "REGIME_FIELDS",
    "STRESS_PRESETS",
    "CareerEnv",
    "CareerState",
    "EnvironmentParams",
    "Reward",
    "describe_reward",
    "get_reward",
    "list_rewards",
    "register_reward",
    "reward_class",
    "total",
]
