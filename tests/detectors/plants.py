"""Planted failures and their clean twins, one pair per registered detector.

Each plant records runs through the real recorder into a store folder and
says where the failure was planted; its clean twin records the same runs
without the failure. The registry contract test (test_registry.py) requires
an entry here for every built-in detector; the detection benchmark and the
docs reuse them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from tests.analyzer.recording import record_run

EPISODES = 60
LENGTH = 50


@dataclass(frozen=True)
class Planted:
    """Where a plant put its failure (global_step assumes one env: episode * LENGTH + t)."""

    run_id: str
    episode_start: int
    episode_end: int
    step_start: int
    step_end: int


@dataclass(frozen=True)
class Plant:
    detector: str
    plant: Callable[[Path], Planted]
    clean: Callable[[Path], str]  # returns the run id of the clean twin


def _noisy_rewards(seed: int) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    return [list(1.0 + 0.1 * rng.standard_normal(LENGTH)) for _ in range(EPISODES)]


def _step(episode: int, t: int) -> int:
    return episode * LENGTH + t


# -- non-finite ---------------------------------------------------------------

def _non_finite_plant(store: Path) -> Planted:
    rewards = _noisy_rewards(1)
    rewards[20][7] = float("nan")
    rewards[31][0] = float("inf")
    rewards[33][49] = float("nan")
    record_run(store, "nan-reward", rewards)
    return Planted("nan-reward", 20, 33, _step(20, 7), _step(33, 49))


def _non_finite_clean(store: Path) -> str:
    record_run(store, "nan-reward-clean", _noisy_rewards(1), metrics=[(100, {"loss": 0.3}), (200, {"loss": 0.2})])
    return "nan-reward-clean"


# -- reward-spike -------------------------------------------------------------

def _spike_plant(store: Path) -> Planted:
    rewards = _noisy_rewards(2)
    rewards[12][5] = 30.0
    rewards[41][40] = -25.0
    record_run(store, "spiky", rewards)
    return Planted("spiky", 12, 41, _step(12, 5), _step(41, 40))


def _spike_clean(store: Path) -> str:
    record_run(store, "spiky-clean", _noisy_rewards(2))
    return "spiky-clean"


def record_policy_run(
    store: Path,
    run_id: str,
    episodes,
    *,
    entropy=None,
    value=None,
    action=None,
    metrics=(),
    config: dict | None = None,
    learning: bool = True,
) -> str:
    """A single-env run with policy columns: ``entropy(k, t)``, ``value(k, t)``, ``action(k, t)`` per step,
    two actions, ``policy_version`` = episode number when ``learning`` (the policy changes every episode)."""
    import gymnasium as gym

    from rlaudit.recorder.core import Recorder

    rec = Recorder(store, run_id, env_id="Plant-v0", config=config or {"gamma": 0.99},
                   action_space=gym.spaces.Discrete(2))
    with rec:
        for k, rewards in enumerate(episodes):
            rec.reset(np.asarray([k, 0, 0, 0], dtype=np.float32))
            for t, r in enumerate(rewards):
                kw = {}
                if entropy is not None:
                    kw["entropy"] = entropy(k, t)
                if value is not None:
                    kw["value"] = value(k, t)
                if learning:
                    kw["policy_version"] = k
                end = t == len(rewards) - 1
                rec.step(action(k, t) if action else t % 2, np.asarray([k, t + 1, 0, 0], dtype=np.float32), float(r),
                         end, False, **kw)
        for gs, scalars in metrics:
            rec.log_metrics(gs, **scalars)
    return run_id


def _span(run_id: str, e0: int, e1: int) -> Planted:
    return Planted(run_id, e0, e1, _step(e0, 0), _step(e1, LENGTH - 1))


def _update_metrics(seed: int, **override) -> list[tuple[int, dict[str, float]]]:
    """One update per episode end, with healthy PPO-like values unless ``override[name](k)`` says otherwise."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(EPISODES):
        m = {"approx_kl": 0.01 + 0.002 * rng.standard_normal(), "clip_fraction": 0.1 + 0.02 * rng.random(),
             "explained_variance": 0.6 + 0.05 * rng.standard_normal(), "loss": 0.5 + 0.05 * rng.random(),
             "grad_norm": float(np.exp(0.1 * rng.standard_normal()))}
        for name, f in override.items():
            m[name] = f(k, m[name])
        out.append((_step(k, LENGTH - 1), m))
    return out


# -- policy-collapse ------------------------------------------------------------

def _collapse_entropy(k: int, t: int) -> float:
    return 0.6 if k < 30 else 0.01


def _policy_collapse_plant(store: Path) -> Planted:
    record_policy_run(store, "collapsed", _noisy_rewards(3), entropy=_collapse_entropy,
                      action=lambda k, t: t % 2 if k < 30 else 1, metrics=_update_metrics(3))
    return _span("collapsed", 30, EPISODES - 1)


def _policy_collapse_clean(store: Path) -> str:
    record_policy_run(store, "collapsed-clean", _noisy_rewards(3), entropy=lambda k, t: 0.6, metrics=_update_metrics(3))
    return "collapsed-clean"


# -- value-explosion ----------------------------------------------------------------

VALUE_CONFIG = {"gamma": 0.9, "reward_bounds": [0.0, 2.0]}  # achievable values: [0, 20]


def _diverging_value(k: int, t: int) -> float:
    return 10.0 if k < 40 else 30.0 * 1.2 ** (k - 40)


def _value_plant(store: Path) -> Planted:
    record_policy_run(store, "diverged", _noisy_rewards(4), value=_diverging_value, config=VALUE_CONFIG)
    return _span("diverged", 40, EPISODES - 1)


def _value_clean(store: Path) -> str:
    record_policy_run(store, "diverged-clean", _noisy_rewards(4), value=lambda k, t: 10.0, config=VALUE_CONFIG)
    return "diverged-clean"


# -- regime-shift ---------------------------------------------------------------------

def _shifted_rewards(seed: int, at: int = 30, to: float = 1.5) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    return [list((1.0 if k < at else to) + 0.1 * rng.standard_normal(LENGTH)) for k in range(EPISODES)]


def _regime_plant(store: Path) -> Planted:
    record_run(store, "shifted", _shifted_rewards(5))
    return _span("shifted", 30, EPISODES - 1)


def _regime_clean(store: Path) -> str:
    record_run(store, "shifted-clean", _noisy_rewards(5))
    return "shifted-clean"


# -- performance-collapse ----------------------------------------------------------------

def _learning_curve(seed: int, drop_at: int | None) -> list[list[float]]:
    """Per-step reward level rises over 15 episodes to 1.0, holds, and (with ``drop_at``) falls to 0.4."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(EPISODES):
        level = 0.2 + 0.8 * min(k, 15) / 15
        if drop_at is not None and k >= drop_at:
            level = 0.4
        out.append(list(level + 0.1 * rng.standard_normal(LENGTH)))
    return out


def _collapse_plant(store: Path) -> Planted:
    record_policy_run(store, "forgot", _learning_curve(6, 40), metrics=_update_metrics(6))
    return _span("forgot", 40, EPISODES - 1)


def _collapse_clean(store: Path) -> str:
    record_policy_run(store, "forgot-clean", _learning_curve(6, None), metrics=_update_metrics(6))
    return "forgot-clean"


# -- sparse-reward-stall ------------------------------------------------------------------

def _sparse_rewards(success) -> list[list[float]]:
    return [[0.0] * (LENGTH - 1) + [1.0 if success(k) else 0.0] for k in range(EPISODES)]


def _sparse_plant(store: Path) -> Planted:
    record_policy_run(store, "stalled", _sparse_rewards(lambda k: k % 10 == 3), metrics=_update_metrics(7))
    return _span("stalled", 0, EPISODES - 1)


def _sparse_clean(store: Path) -> str:
    # as sparse, but the learner gets there: every late episode succeeds
    record_policy_run(store, "stalled-clean", _sparse_rewards(lambda k: k % 10 == 3 or k >= 40), metrics=_update_metrics(7))
    return "stalled-clean"


# -- training-instability --------------------------------------------------------------------

def _instability_plant(store: Path) -> Planted:
    spikes = {22: 0.5, 37: 0.8}
    record_policy_run(store, "kl-spikes", _noisy_rewards(8),
                      metrics=_update_metrics(8, approx_kl=lambda k, v: spikes.get(k, v)))
    return Planted("kl-spikes", 22, 37, _step(22, LENGTH - 1), _step(37, LENGTH - 1))


def _instability_clean(store: Path) -> str:
    record_policy_run(store, "kl-spikes-clean", _noisy_rewards(8), metrics=_update_metrics(8))
    return "kl-spikes-clean"


# -- irreproducible ---------------------------------------------------------------------------

SEEDED = {"gamma": 0.99, "seed": 3, "agent": "plant"}


def _irreproducible_plant(store: Path) -> Planted:
    rewards = _noisy_rewards(9)
    record_run(store, "seeded-a", rewards, config=SEEDED)
    changed = [list(r) for r in rewards]
    changed[25][10] += 0.5
    changed[41][0] -= 0.25
    record_run(store, "seeded-b", changed, config=SEEDED)
    return Planted("seeded-b", 25, 41, _step(25, 0), _step(41, LENGTH - 1))


def _irreproducible_clean(store: Path) -> str:
    config = dict(SEEDED, seed=4)
    record_run(store, "seeded-clean-a", _noisy_rewards(9), config=config)
    record_run(store, "seeded-clean-b", _noisy_rewards(9), config=config)
    return "seeded-clean-b"


PLANTS: dict[str, Plant] = {
    "non-finite": Plant("non-finite", _non_finite_plant, _non_finite_clean),
    "reward-spike": Plant("reward-spike", _spike_plant, _spike_clean),
    "policy-collapse": Plant("policy-collapse", _policy_collapse_plant, _policy_collapse_clean),
    "value-explosion": Plant("value-explosion", _value_plant, _value_clean),
    "regime-shift": Plant("regime-shift", _regime_plant, _regime_clean),
    "performance-collapse": Plant("performance-collapse", _collapse_plant, _collapse_clean),
    "sparse-reward-stall": Plant("sparse-reward-stall", _sparse_plant, _sparse_clean),
    "training-instability": Plant("training-instability", _instability_plant, _instability_clean),
    "irreproducible": Plant("irreproducible", _irreproducible_plant, _irreproducible_clean),
}
