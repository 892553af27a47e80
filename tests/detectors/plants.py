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

from rlaudit.recorder.core import Recorder
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


# -- helpers for the hacking and behaviour plants --------------------------------

Step = Callable[[int, int], float]


def record_episodes(store: Path, run_id: str, lengths: list[int], *, reward: Step,
                    action: Callable[[int, int], object] | None = None,
                    obs: Callable[[int, int], list[float]] | None = None,
                    info: Callable[[int, int], dict] | None = None,
                    terms: Callable[[int, int], dict[str, float]] | None = None,
                    truncated: Callable[[int], bool] | None = None,
                    config: dict | None = None) -> list[int]:
    """Record one single-env run of ``len(lengths)`` episodes; return each episode's first global_step.

    Episode ``k`` has ``lengths[k]`` steps and ends truncated if ``truncated(k)``,
    else terminated; step ``t`` pays ``reward(k, t)``, takes ``action(k, t)``
    (default ``t % 2``) from observation ``obs(k, t)`` (default ``[k, t]``).
    """
    rec = Recorder(store, run_id, env_id="Plant-v0", config={"gamma": 0.99, **(config or {})})
    starts, step = [], 0
    with rec:
        for k, n in enumerate(lengths):
            starts.append(step)
            rec.reset(np.asarray(obs(k, 0) if obs else [k, 0], dtype=np.float32))
            trunc = bool(truncated(k)) if truncated else False
            for t in range(n):
                end = t == n - 1
                kw = {"reward_terms": terms(k, t)} if terms else {}
                nxt = np.asarray(obs(k, t + 1) if obs else [k, t + 1], dtype=np.float32)
                rec.step(action(k, t) if action else t % 2, nxt, float(reward(k, t)), end and not trunc,
                         end and trunc, info(k, t) if info else None, **kw)
                step += 1
    return starts


def _noise(seed: int, *shape: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


# -- reward-hacking: proxy up, true reward down from episode 30 --------------------

def _hacking(store: Path, run_id: str, hacked: bool) -> Planted:
    e = _noise(10, EPISODES, LENGTH)
    proxy = lambda k, t: (1.0 if k < 30 else 2.0) + 0.1 * e[k, t]  # noqa: E731
    true = lambda k, t: (1.0 if k < 30 else (0.0 if hacked else 2.0)) + 0.1 * e[k, (t + 7) % LENGTH]  # noqa: E731
    record_episodes(store, run_id, [LENGTH] * EPISODES, reward=proxy, info=lambda k, t: {"true_reward": true(k, t)},
                    config={"auditor_columns": ["info.true_reward"]})
    return Planted(run_id, 30, EPISODES - 1, _step(30, 0), _step(EPISODES - 1, LENGTH - 1))


# -- reward-term-dominance: a bonus term takes over from episode 30 ---------------

def _dominance(store: Path, run_id: str, hacked: bool) -> Planted:
    e = _noise(11, EPISODES, LENGTH)

    def terms(k, t):
        late = hacked and k >= 30
        return {"task": (0.2 if late else 1.0) + 0.05 * e[k, t], "bonus": 1.5 if late else 0.1}

    record_episodes(store, run_id, [LENGTH] * EPISODES, reward=lambda k, t: sum(terms(k, t).values()),
                    terms=terms, config={"reward_task_terms": ["task"]})
    return Planted(run_id, 30, EPISODES - 1, _step(30, 0), _step(EPISODES - 1, LENGTH - 1))


# -- boundary-exploitation: obs[1] pinned at 1.0 paying a bonus from episode 20 -----

def _boundary(store: Path, run_id: str, hacked: bool) -> Planted:
    x = np.random.default_rng(12).uniform(0.0, 1.0, (EPISODES, LENGTH + 1))
    e = _noise(13, EPISODES, LENGTH)
    pinned = lambda k, t: hacked and k >= 20 and t >= 25  # noqa: E731
    obs = lambda k, t: [1.0 if pinned(k, t) else x[k, t], x[k, (t + 3) % LENGTH]]  # noqa: E731
    reward = lambda k, t: 3.0 if pinned(k, t) else 1.0 + 0.1 * x[k, t] + 0.05 * e[k, t]  # noqa: E731
    record_episodes(store, run_id, [LENGTH] * EPISODES, reward=reward, obs=obs)
    return Planted(run_id, 20, EPISODES - 1, _step(20, 0), _step(EPISODES - 1, LENGTH - 1))


# -- truncation-exploitation: from episode 30 episodes last to the limit at a lower rate ----

def _truncation(store: Path, run_id: str, hacked: bool) -> Planted:
    rng = np.random.default_rng(14)
    lengths = [int(rng.integers(20, 41)) if k < 30 else 100 for k in range(EPISODES)]
    e = _noise(15, EPISODES, 100)
    late_rate = 0.8 if hacked else 1.5
    reward = lambda k, t: (1.0 if k < 30 else late_rate) + 0.1 * e[k, t]  # noqa: E731
    starts = record_episodes(store, run_id, lengths, reward=reward, truncated=lambda k: k >= 30)
    return Planted(run_id, 30, EPISODES - 1, starts[30], starts[-1] + lengths[-1] - 1)


# -- state-cycling: from episode 30 a 4-state loop that pays double -------------------

LOOP = ([100.0, 100.0], [101.0, 100.0], [101.0, 101.0], [100.0, 101.0])


def _cycling(store: Path, run_id: str, hacked: bool) -> Planted:
    e = _noise(16, EPISODES, LENGTH)
    looping = lambda k, t: k >= 30 and t >= 10  # noqa: E731
    obs = lambda k, t: LOOP[t % 4] if looping(k, t) else [float(k), float(t)]  # noqa: E731
    reward = lambda k, t: (2.0 if hacked and looping(k, t) else 1.0) + 0.1 * e[k, t]  # noqa: E731
    record_episodes(store, run_id, [LENGTH] * EPISODES, reward=reward, obs=obs)
    return Planted(run_id, 30, EPISODES - 1, _step(30, 0), _step(EPISODES - 1, LENGTH - 1))


# -- action-repetition: from episode 30 the policy always takes action 1 -----------------

def _repetition(store: Path, run_id: str, hacked: bool) -> Planted:
    a = np.random.default_rng(17).integers(0, 3, (EPISODES, LENGTH))
    action = lambda k, t: 1 if hacked and k >= 30 else int(a[k, t])  # noqa: E731
    record_episodes(store, run_id, [LENGTH] * EPISODES, reward=lambda k, t: 1.0, action=action)
    return Planted(run_id, 30, EPISODES - 1, _step(30, 0), _step(EPISODES - 1, LENGTH - 1))


# -- degenerate-environment: every third episode always takes action 1 and scores best ----

def _degenerate(store: Path, run_id: str, hacked: bool) -> Planted:
    a = np.random.default_rng(18).integers(0, 3, (EPISODES, LENGTH))
    e = _noise(19, EPISODES, LENGTH)
    constant = lambda k: k % 3 == 2  # noqa: E731
    action = lambda k, t: 1 if constant(k) else int(a[k, t])  # noqa: E731
    level = 0.3 if hacked else 0.1
    reward = lambda k, t: (level if constant(k) else 0.2) + 0.3 * e[k, t]  # noqa: E731
    record_episodes(store, run_id, [LENGTH] * EPISODES, reward=reward, action=action)
    return Planted(run_id, 2, EPISODES - 1, _step(2, 0), _step(EPISODES - 1, LENGTH - 1))


def _pair(detector: str, build: Callable[[Path, str, bool], Planted], run_id: str) -> Plant:
    return Plant(detector, lambda store: build(store, run_id, True),
                 lambda store: build(store, f"{run_id}-clean", False).run_id)


PLANTS: dict[str, Plant] = {
    "non-finite": Plant("non-finite", _non_finite_plant, _non_finite_clean),
    "reward-spike": Plant("reward-spike", _spike_plant, _spike_clean),
    "reward-hacking": _pair("reward-hacking", _hacking, "proxy-up-true-down"),
    "reward-term-dominance": _pair("reward-term-dominance", _dominance, "bonus-takes-over"),
    "boundary-exploitation": _pair("boundary-exploitation", _boundary, "pinned-edge"),
    "truncation-exploitation": _pair("truncation-exploitation", _truncation, "survives-to-limit"),
    "state-cycling": _pair("state-cycling", _cycling, "reward-loop"),
    "action-repetition": _pair("action-repetition", _repetition, "always-one"),
    "degenerate-environment": _pair("degenerate-environment", _degenerate, "constant-wins"),
}
