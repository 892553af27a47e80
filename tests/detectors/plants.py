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


PLANTS: dict[str, Plant] = {
    "non-finite": Plant("non-finite", _non_finite_plant, _non_finite_clean),
    "reward-spike": Plant("reward-spike", _spike_plant, _spike_clean),
}
