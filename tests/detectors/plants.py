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
    """Where a plant put its failure (global_step assumes one env: episode * LENGTH + t).

    A store-wide failure (a ``scope="store"`` detector) has no run and no span: all None.
    """

    run_id: str | None
    episode_start: int | None = None
    episode_end: int | None = None
    step_start: int | None = None
    step_end: int | None = None


@dataclass(frozen=True)
class Plant:
    detector: str
    plant: Callable[[Path], Planted]
    clean: Callable[[Path], str | None]  # returns the run id of the clean twin (None: store-wide)


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


# -- below-baseline ------------------------------------------------------------


def record_agent_runs(store: Path, agent: str, level: float, seeds=range(3), *, spread: float = 1.0,
                      reward: str = "plant_reward", eval_episodes: int = 3, prefix: str = "") -> list[str]:
    """Runs of ``agent`` (one per seed): 10 training episodes, then ``eval_episodes`` evaluation
    episodes returning about ``level`` (seed-to-seed spread ``spread``)."""
    ids = []
    for seed in seeds:
        rng = np.random.default_rng([seed, sum(map(ord, agent))])
        run_level = level + spread * rng.standard_normal()
        episodes = [[float(x) for x in rng.normal(level / 2, 1.0, size=5)] for _ in range(10)]
        episodes += [[run_level / 5 + 0.05 * rng.standard_normal() for _ in range(5)] for _ in range(eval_episodes)]
        run_id = f"{prefix}{agent}-s{seed}"
        record_run(store, run_id, episodes, phase=lambda k: "train" if k < 10 else "eval",
                   config={"agent": agent, "seed": seed, "reward": reward, "gamma": 0.99})
        ids.append(run_id)
    return ids


def _below_baseline_plant(store: Path) -> Planted:
    record_agent_runs(store, "dqn", 20.0)
    record_agent_runs(store, "always_switch", 30.0)
    return Planted(None)


def _below_baseline_clean(store: Path) -> None:
    # another task (reward), so that plant and twin can share a store without being compared
    for agent, level in (("dqn", 40.0), ("always_switch", 30.0)):
        record_agent_runs(store, agent, level, reward="clean_reward", prefix="clean-")
    return None


PLANTS: dict[str, Plant] = {
    "below-baseline": Plant("below-baseline", _below_baseline_plant, _below_baseline_clean),
    "non-finite": Plant("non-finite", _non_finite_plant, _non_finite_clean),
    "reward-spike": Plant("reward-spike", _spike_plant, _spike_clean),
}
