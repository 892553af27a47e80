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
    """Where a plant put its failure (global_step assumes one env: episode * LENGTH + t).

    A failure of a group of runs (``below-baseline``) has no run and no span: all None.
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
    truncated=None,
) -> str:
    """A single-env run with policy columns: ``entropy(k, t)``, ``value(k, t)``, ``action(k, t)`` per step,
    two actions, ``policy_version`` = episode number when ``learning`` (the policy changes every episode);
    episode ``k`` ends truncated if ``truncated(k)``, else terminated."""
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
                cut = bool(truncated(k)) if truncated else False
                rec.step(action(k, t) if action else t % 2, np.asarray([k, t + 1, 0, 0], dtype=np.float32), float(r),
                         end and not cut, end and cut, **kw)
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


# -- below-baseline ------------------------------------------------------------------------------


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
    return Planted(None)  # a finding about a group of runs: no run, no span


def _below_baseline_clean(store: Path) -> str:
    # another task (reward), so that plant and twin can also share a store without being compared
    for agent, level in (("dqn", 40.0), ("always_switch", 30.0)):
        record_agent_runs(store, agent, level, reward="clean_reward", prefix="clean-")
    return "clean-dqn-s0"


PLANTS: dict[str, Plant] = {
    "below-baseline": Plant("below-baseline", _below_baseline_plant, _below_baseline_clean),
    "non-finite": Plant("non-finite", _non_finite_plant, _non_finite_clean),
    "reward-spike": Plant("reward-spike", _spike_plant, _spike_clean),
    "reward-hacking": _pair("reward-hacking", _hacking, "proxy-up-true-down"),
    "reward-term-dominance": _pair("reward-term-dominance", _dominance, "bonus-takes-over"),
    "boundary-exploitation": _pair("boundary-exploitation", _boundary, "pinned-edge"),
    "truncation-exploitation": _pair("truncation-exploitation", _truncation, "survives-to-limit"),
    "state-cycling": _pair("state-cycling", _cycling, "reward-loop"),
    "action-repetition": _pair("action-repetition", _repetition, "always-one"),
    "degenerate-environment": _pair("degenerate-environment", _degenerate, "constant-wins"),
    "policy-collapse": Plant("policy-collapse", _policy_collapse_plant, _policy_collapse_clean),
    "value-explosion": Plant("value-explosion", _value_plant, _value_clean),
    "regime-shift": Plant("regime-shift", _regime_plant, _regime_clean),
    "performance-collapse": Plant("performance-collapse", _collapse_plant, _collapse_clean),
    "sparse-reward-stall": Plant("sparse-reward-stall", _sparse_plant, _sparse_clean),
    "training-instability": Plant("training-instability", _instability_plant, _instability_clean),
    "irreproducible": Plant("irreproducible", _irreproducible_plant, _irreproducible_clean),
}
