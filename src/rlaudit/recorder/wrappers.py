"""Gymnasium front-ends of the recorder: one wrapper for single envs, one for vector envs."""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import VectorWrapper

from rlaudit.errors import ConfigError
from rlaudit.recorder.core import Recorder


def _env_facts(env: Any) -> tuple[str | None, dict[str, Any], dict[str, Any]]:
    """(env id, make kwargs, extra manifest facts) from a Gymnasium env's spec."""
    spec = getattr(env, "spec", None)
    meta: dict[str, Any] = {}
    if spec is None:
        return None, {}, meta
    meta["max_episode_steps"] = spec.max_episode_steps
    meta["entry_point"] = spec.entry_point if isinstance(spec.entry_point, str) else repr(spec.entry_point)
    return spec.id, dict(spec.kwargs or {}), meta


def _policy_kwargs(policy: dict[str, Any]) -> dict[str, Any]:
    unknown = set(policy) - {"logp", "entropy", "value", "q", "policy_version", "reward_terms"}
    if unknown:
        raise ConfigError(
            f"unknown policy data {sorted(unknown)}; expected any of logp, entropy, value, q, policy_version, reward_terms"
        )
    return policy


class _RecorderAccess:
    """What both wrappers expose of their recorder."""

    recorder: Recorder
    _policy: dict[str, Any] | None

    @property
    def run_id(self) -> str:
        return self.recorder.run_id

    @property
    def path(self):
        return self.recorder.path

    @property
    def phase(self) -> str:
        return self.recorder.phase

    @phase.setter
    def phase(self, value: str) -> None:
        self.recorder.phase = value

    def set_policy_info(self, **policy: Any) -> None:
        """Policy data for the next step: logp, entropy, value, q, policy_version,
        reward_terms (for a vector env, arrays with one entry per sub-env)."""
        self._policy = _policy_kwargs(policy)

    def log_metrics(self, global_step: int | None = None, **scalars: float) -> None:
        self.recorder.log_metrics(global_step, **scalars)


class RecordTrajectory(_RecorderAccess, gym.Wrapper):
    """Record every step of ``env`` into ``<store>/<run_id>.parquet``.

    ``options`` are those of :class:`rlaudit.Recorder` (``config``, ``phase``,
    ``info_prefix``, ``component_fns``, ``flush_steps``, ...).  Policy data for
    the next step can be handed over with :meth:`set_policy_info`.  The file
    is finalised by ``env.close()``.
    """

    def __init__(self, env: gym.Env, store: str | os.PathLike, run_id: str | None = None, **options: Any):
        super().__init__(env)
        env_id, env_kwargs, meta = _env_facts(env)
        options.setdefault("env_id", env_id)
        options.setdefault("env_kwargs", env_kwargs)
        options.setdefault("observation_space", env.observation_space)
        options.setdefault("action_space", env.action_space)
        options["env_meta"] = {**meta, **dict(options.get("env_meta") or {})}
        self.recorder = Recorder(store, run_id, **options)
        self._record = self.recorder.step
        self._policy: dict[str, Any] | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self.recorder.reset(obs, seed=seed, info=info)
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        policy = self._policy
        if policy is None:
            self._record(action, obs, reward, terminated, truncated, info)
        else:
            self._policy = None
            self._record(action, obs, reward, terminated, truncated, info, **policy)
        return obs, reward, terminated, truncated, info

    def close(self):
        try:
            self.recorder.close()
        finally:
            super().close()


def _autoreset_mode(envs: Any) -> str:
    mode = (getattr(envs, "metadata", None) or {}).get("autoreset_mode")
    if mode is None:
        return "next_step"
    value = getattr(mode, "value", mode)
    return {"NextStep": "next_step", "SameStep": "same_step", "Disabled": "disabled"}.get(str(value), "next_step")


class RecordVectorTrajectory(_RecorderAccess, VectorWrapper):
    """Record every sub-environment step of a ``gymnasium.vector`` env.

    Works with sync and async vector envs and every Gymnasium 1.x autoreset
    mode: the reset step after an episode ends is not recorded as a
    transition, and ``final_obs`` holds the true last observation.
    """

    def __init__(self, envs: gym.vector.VectorEnv, store: str | os.PathLike, run_id: str | None = None, **options: Any):
        super().__init__(envs)
        self.autoreset_mode = _autoreset_mode(envs)
        env_id, env_kwargs, meta = _env_facts(envs)
        meta.update(
            num_envs=int(envs.num_envs),
            vector=type(envs.unwrapped).__name__,
            autoreset_mode=self.autoreset_mode,
        )
        options.setdefault("env_id", env_id)
        options.setdefault("env_kwargs", env_kwargs)
        options.setdefault("observation_space", envs.single_observation_space)
        options.setdefault("action_space", envs.single_action_space)
        options["env_meta"] = {**meta, **dict(options.get("env_meta") or {})}
        self.recorder = Recorder(store, run_id, **options)
        self._policy: dict[str, Any] | None = None

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None):
        obs, infos = self.env.reset(seed=seed, options=options)
        mask = (options or {}).get("reset_mask")
        if isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + k for k in range(self.num_envs)]
        else:
            seeds = seed
        self.recorder.reset_batch(obs, seeds=seeds, infos=infos, mask=mask)
        return obs, infos

    def step(self, actions):
        obs, rewards, terminations, truncations, infos = self.env.step(actions)
        policy = self._policy or {}
        self._policy = None
        self.recorder.step_batch(
            actions, obs, rewards, terminations, truncations, infos, autoreset_mode=self.autoreset_mode, **policy
        )
        return obs, rewards, terminations, truncations, infos

    def close(self, **kwargs):
        try:
            self.recorder.close()
        finally:
            self.env.close(**kwargs)
