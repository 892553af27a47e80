"""Heuristic baselines for the career env, in numpy.

Observation indices: 0 normalised salary, 1 burnout, 2 tenure / 100, 3 market.
Actions: 0 STAY, 1 SWITCH.

Every heuristic follows the agent interface of :mod:`rlaudit.agents.common`::

    agent = make_heuristic("burnout_threshold", threshold=0.6)
    action, step_info = agent.act(obs)        # step_info: logp, entropy, policy_version
    agent.observe(obs, action, reward, next_obs, terminated, truncated)   # no learning

plus ``select_action(obs) -> int`` and ``select_actions(batch) -> int64 array``
for plain use. The rules are deterministic; ``random`` draws from a
``numpy.random.Generator`` seeded with ``seed`` (0 when None, never OS
entropy), so every heuristic's actions are a function of its seed and the
observations.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from rlaudit.errors import ConfigError, unknown_name

STAY = 0
SWITCH = 1
N_ACTIONS = 2
DEFAULT_SEED = 0
_FLOAT32 = np.dtype(np.float32)
_LOG_N_ACTIONS = math.log(N_ACTIONS)


class HeuristicAgent:
    """Base class: a fixed rule mapping an observation to STAY or SWITCH.

    Subclasses set ``name``, ``rule`` (one line, for docs and reports),
    ``defaults`` (parameter -> default float) and implement :meth:`_switch`
    on Python floats; written with ``&``/``|`` it also serves batches of
    numpy columns, otherwise override :meth:`_switch_batch` too.

    Observations are float32, and thresholds are compared in float32 too
    (``burnout > 0.6`` is false for the float32 observation 0.6), so the
    single and batch paths agree and match a float32 comparison.
    """

    name: ClassVar[str]
    rule: ClassVar[str]
    defaults: ClassVar[Mapping[str, float]] = {}
    n_actions = N_ACTIONS
    policy_version = 0
    """Heuristics never update."""

    def __init__(self, seed: int | None = None, **params: Any) -> None:
        for key in params:
            if key not in self.defaults:
                raise unknown_name(f"parameter of heuristic {self.name!r}", key, list(self.defaults))
        merged: dict[str, float] = dict(self.defaults)
        for key, value in params.items():
            where = f"heuristic {self.name!r} parameter {key}"
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                raise ConfigError(f"{where} must be a number; found {value!r}")
            if not math.isfinite(float(value)):
                raise ConfigError(f"{where} must be finite; found {value!r}")
            merged[key] = float(value)
        self.params = merged
        for key, value in merged.items():
            setattr(self, key, float(np.float32(value)))
        self.seed = DEFAULT_SEED if seed is None else int(seed)
        self.rng = np.random.default_rng(self.seed)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"make_heuristic({self.name!r}, seed={self.seed}{', ' if args else ''}{args})"

    def hyperparameters(self) -> dict[str, Any]:
        return dict(self.params)

    def reset(self, seed: int | None = None) -> None:
        """Start an episode; reseed the generator if ``seed`` is given."""
        if seed is not None:
            self.seed = int(seed)
            self.rng = np.random.default_rng(self.seed)

    def _switch(self, salary: float, burnout: float, tenure: float, market: float) -> bool:
        raise NotImplementedError

    def _switch_batch(self, salary, burnout, tenure, market) -> np.ndarray:
        return self._switch(salary, burnout, tenure, market)

    def select_action(self, obs: Any) -> int:
        """The action for one observation."""
        if type(obs) is not np.ndarray or obs.dtype != _FLOAT32:
            obs = np.asarray(obs, dtype=_FLOAT32)
        salary, burnout, tenure, market = obs.tolist()
        return SWITCH if self._switch(salary, burnout, tenure, market) else STAY

    def select_actions(self, observations: Any) -> np.ndarray:
        """Actions (int64) for a batch of observations of shape (n, 4)."""
        obs = np.asarray(observations, dtype=_FLOAT32)
        switch = self._switch_batch(obs[:, 0], obs[:, 1], obs[:, 2], obs[:, 3])
        return np.broadcast_to(np.asarray(switch, dtype=np.int64), (obs.shape[0],)).copy()

    def action_probabilities(self, obs: Any) -> np.ndarray:
        """The policy's distribution over (STAY, SWITCH) at ``obs``."""
        probs = np.zeros(N_ACTIONS)
        probs[self.select_action(obs)] = 1.0
        return probs

    def act(self, obs: Any, explore: bool = True) -> tuple[int, dict[str, Any]]:
        """``(action, step_info)``; a rule is deterministic: logp 0, entropy 0."""
        return self.select_action(obs), {"logp": 0.0, "entropy": 0.0, "policy_version": 0}

    def observe(self, obs, action, reward, next_obs, terminated, truncated) -> None:
        """Heuristics do not learn; returns None (no update)."""
        return None


class RandomAgent(HeuristicAgent):
    name = "random"
    rule = "STAY or SWITCH with probability 1/2 each"

    def select_action(self, obs: Any) -> int:
        return SWITCH if self.rng.random() < 0.5 else STAY

    def select_actions(self, observations: Any) -> np.ndarray:
        n = np.asarray(observations).shape[0]
        return (self.rng.random(n) < 0.5).astype(np.int64)

    def action_probabilities(self, obs: Any) -> np.ndarray:
        return np.full(N_ACTIONS, 1.0 / N_ACTIONS)

    def act(self, obs: Any, explore: bool = True) -> tuple[int, dict[str, Any]]:
        """A uniform draw, exploring or not: logp = log(1/2), entropy = log(2)."""
        return self.select_action(obs), {
            "logp": -_LOG_N_ACTIONS,
            "entropy": _LOG_N_ACTIONS,
            "policy_version": 0,
        }


class AlwaysStay(HeuristicAgent):
    name = "always_stay"
    rule = "always STAY"

    def select_action(self, obs: Any) -> int:
        return STAY

    def _switch(self, salary, burnout, tenure, market):
        return False

    def _switch_batch(self, salary, burnout, tenure, market):
        return np.zeros_like(burnout, dtype=bool)


class AlwaysSwitch(HeuristicAgent):
    name = "always_switch"
    rule = "always SWITCH"

    def select_action(self, obs: Any) -> int:
        return SWITCH

    def _switch(self, salary, burnout, tenure, market):
        return True

    def _switch_batch(self, salary, burnout, tenure, market):
        return np.ones_like(burnout, dtype=bool)


class BurnoutThreshold(HeuristicAgent):
    name = "burnout_threshold"
    rule = "SWITCH if burnout > threshold, else STAY"
    defaults = {"threshold": 0.6}

    def _switch(self, salary, burnout, tenure, market):
        return burnout > self.threshold


class Conservative(HeuristicAgent):
    name = "conservative"
    rule = "SWITCH only if burnout > burnout_threshold and market > market_threshold"
    defaults = {"burnout_threshold": 0.5, "market_threshold": 0.0}

    def _switch(self, salary, burnout, tenure, market):
        return (burnout > self.burnout_threshold) & (market > self.market_threshold)


class Aggressive(HeuristicAgent):
    name = "aggressive"
    rule = (
        "SWITCH if market > market_threshold or burnout > burnout_threshold "
        "or tenure_norm > tenure_threshold"
    )
    defaults = {"market_threshold": 0.2, "burnout_threshold": 0.3, "tenure_threshold": 0.2}

    def _switch(self, salary, burnout, tenure, market):
        return (
            (market > self.market_threshold)
            | (burnout > self.burnout_threshold)
            | (tenure > self.tenure_threshold)
        )


class Adaptive(HeuristicAgent):
    name = "adaptive"
    rule = (
        "SWITCH if burnout > a threshold set by the market: bad_market_threshold when "
        "market < -market_band, good_market_threshold when market > market_band, "
        "neutral_threshold otherwise"
    )
    defaults = {
        "market_band": 0.3,
        "bad_market_threshold": 0.7,
        "good_market_threshold": 0.3,
        "neutral_threshold": 0.5,
    }

    def _switch(self, salary, burnout, tenure, market):
        if market < -self.market_band:
            return burnout > self.bad_market_threshold
        if market > self.market_band:
            return burnout > self.good_market_threshold
        return burnout > self.neutral_threshold

    def _switch_batch(self, salary, burnout, tenure, market):
        threshold = np.where(
            market < -self.market_band,
            self.bad_market_threshold,
            np.where(market > self.market_band, self.good_market_threshold, self.neutral_threshold),
        )
        return burnout > threshold


_AGENTS: dict[str, type[HeuristicAgent]] = {
    cls.name: cls
    for cls in (
        RandomAgent,
        AlwaysStay,
        AlwaysSwitch,
        BurnoutThreshold,
        Conservative,
        Aggressive,
        Adaptive,
    )
}

HEURISTICS: tuple[str, ...] = tuple(_AGENTS)
"""Names accepted by :func:`make_heuristic`."""


def list_heuristics() -> list[str]:
    return list(HEURISTICS)


def heuristic_class(name: str) -> type[HeuristicAgent]:
    try:
        return _AGENTS[name]
    except (KeyError, TypeError):
        raise unknown_name("heuristic", name, list(HEURISTICS)) from None


def make_heuristic(name: str, seed: int | None = None, **params: Any) -> HeuristicAgent:
    """A new heuristic agent ``name`` (see :data:`HEURISTICS`) with ``params``."""
    return heuristic_class(name)(seed=seed, **params)
