"""Heuristic baselines: rules, interface, seeding, and the reference's returns."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from rlaudit.agents.heuristics import HEURISTICS, heuristic_class, make_heuristic
from rlaudit.envs import CareerEnv
from rlaudit.errors import ConfigError


def obs(salary=0.1, burnout=0.0, tenure=0.0, market=0.0):
    return np.array([salary, burnout, tenure, market], dtype=np.float32)


def test_names():
    assert HEURISTICS == (
        "random",
        "always_stay",
        "always_switch",
        "burnout_threshold",
        "conservative",
        "aggressive",
        "adaptive",
    )
    for name in HEURISTICS:
        assert make_heuristic(name).name == name


def test_unknown_name_and_parameter():
    with pytest.raises(ConfigError, match=r"unknown heuristic 'always_swtich'.*did you mean 'always_switch'"):
        make_heuristic("always_swtich")
    with pytest.raises(ConfigError, match=r"'treshold'.*did you mean 'threshold'"):
        make_heuristic("burnout_threshold", treshold=0.5)
    with pytest.raises(ConfigError, match="threshold must be a number; found 'high'"):
        make_heuristic("burnout_threshold", threshold="high")
    with pytest.raises(ConfigError, match="must be finite"):
        make_heuristic("adaptive", market_band=float("nan"))


@pytest.mark.parametrize(
    ("name", "params", "observation", "action"),
    [
        ("always_stay", {}, obs(burnout=0.99), 0),
        ("always_switch", {}, obs(burnout=0.0), 1),
        ("burnout_threshold", {}, obs(burnout=0.6), 0),  # strictly above 0.6
        ("burnout_threshold", {}, obs(burnout=0.61), 1),
        ("burnout_threshold", {"threshold": 0.2}, obs(burnout=0.3), 1),
        ("conservative", {}, obs(burnout=0.9, market=0.0), 0),  # needs market > 0
        ("conservative", {}, obs(burnout=0.9, market=0.01), 1),
        ("conservative", {}, obs(burnout=0.5, market=0.9), 0),
        ("aggressive", {}, obs(market=0.21), 1),
        ("aggressive", {}, obs(burnout=0.31), 1),
        ("aggressive", {}, obs(tenure=0.21), 1),
        ("aggressive", {}, obs(burnout=0.3, market=0.2, tenure=0.2), 0),
        ("adaptive", {}, obs(burnout=0.6, market=-0.31), 0),  # threshold 0.7
        ("adaptive", {}, obs(burnout=0.71, market=-0.31), 1),
        ("adaptive", {}, obs(burnout=0.31, market=0.31), 1),  # threshold 0.3
        ("adaptive", {}, obs(burnout=0.31, market=0.3), 0),  # threshold 0.5
        ("adaptive", {}, obs(burnout=0.51, market=0.0), 1),
    ],
)
def test_rules(name, params, observation, action):
    agent = make_heuristic(name, **params)
    assert agent.select_action(observation) == action
    assert agent.select_action(observation.tolist()) == action  # float32 precision either way
    assert agent.select_actions(observation[None, :]).tolist() == [action]
    assert agent.act(observation) == (action, {"logp": 0.0, "entropy": 0.0, "policy_version": 0})
    probs = agent.action_probabilities(observation)
    assert probs[action] == 1.0 and probs.sum() == 1.0


@pytest.mark.parametrize("name", [n for n in HEURISTICS if n != "random"])
def test_batch_actions_equal_single_actions(name):
    rng = np.random.default_rng(0)
    batch = np.column_stack(
        [rng.random(500), rng.random(500), rng.random(500), rng.uniform(-1, 1, 500)]
    ).astype(np.float32)
    agent = make_heuristic(name)
    actions = agent.select_actions(batch)
    assert actions.dtype == np.int64 and actions.shape == (500,)
    assert actions.tolist() == [agent.select_action(row) for row in batch]
    if name not in ("always_stay", "always_switch"):
        assert 0 < actions.sum() < 500  # the rule sees both sides


def test_random_agent_is_seeded():
    def actions(agent, n=200):
        return [agent.select_action(obs()) for _ in range(n)]

    a, b, c = make_heuristic("random", seed=3), make_heuristic("random", seed=3), make_heuristic("random", seed=4)
    first = actions(a)
    assert first == actions(b) and first != actions(c)
    assert 70 < sum(first) < 130
    assert actions(make_heuristic("random")) == actions(make_heuristic("random", seed=0))
    a.reset(seed=3)
    assert actions(a) == first
    a.reset()  # no seed: the stream continues
    assert actions(a) != first
    batch = make_heuristic("random", seed=3).select_actions(np.zeros((200, 4)))
    assert batch.dtype == np.int64 and 70 < batch.sum() < 130


def test_random_agent_step_info():
    agent = make_heuristic("random", seed=0)
    action, info = agent.act(obs(), explore=False)
    assert action in (0, 1)
    assert info["logp"] == pytest.approx(math.log(0.5))
    assert info["entropy"] == pytest.approx(math.log(2))
    np.testing.assert_array_equal(agent.action_probabilities(obs()), [0.5, 0.5])


def test_agent_interface():
    agent = make_heuristic("adaptive", seed=5, market_band=0.2)
    assert agent.observe(obs(), 0, 1.0, obs(), False, False) is None
    assert agent.hyperparameters()["market_band"] == 0.2
    assert agent.policy_version == 0 and agent.n_actions == 2
    assert repr(agent).startswith("make_heuristic('adaptive', seed=5, market_band=0.2")
    assert heuristic_class("adaptive") is type(agent)


def test_agents_package_does_not_import_torch():
    code = (
        "import sys, rlaudit.agents as a\n"
        "a.make_heuristic('random')\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    import os

    import rlaudit

    env = dict(os.environ)
    src = os.path.dirname(os.path.dirname(rlaudit.__file__))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr


# -- figures of the reference (rl-failure-lab.md §2.6, §2.7) ---------------------------

EPISODES = 50
REFERENCE_EPISODES = 30


def run(name, regime="stable", reward="short_term_v1", episodes=EPISODES):
    env = CareerEnv(regime=regime, reward=reward)
    returns, lengths = [], []
    for seed in range(episodes):
        agent = make_heuristic(name, seed=seed)
        observation, _ = env.reset(seed=seed)
        total, steps, done = 0.0, 0, False
        while not done:
            observation, reward_, terminated, truncated, _ = env.step(agent.select_action(observation))
            total += reward_
            steps += 1
            done = terminated or truncated
        returns.append(total)
        lengths.append(steps)
    return np.array(returns), np.array(lengths)


def within_noise(values, reference_mean):
    """|our mean - reference mean| within 3 standard errors of their difference.

    The reference means come from 30 episodes of an unseeded env; we assume the
    same spread as ours.
    """
    sd = values.std(ddof=1)
    tolerance = 3 * sd * math.sqrt(1 / len(values) + 1 / REFERENCE_EPISODES)
    return abs(values.mean() - reference_mean) <= max(tolerance, 0.05), (values.mean(), tolerance)


@pytest.mark.parametrize(
    ("name", "reference_mean"),
    [
        ("always_switch", 177.4),
        ("always_stay", -7.2),
        ("burnout_threshold", 29.7),
        ("conservative", -9.8),
        ("aggressive", 105.9),
        ("adaptive", 49.1),
        ("random", 8.5),  # "6-11" in the reference
    ],
)
def test_short_term_v1_returns_match_the_reference(name, reference_mean):
    returns, _ = run(name)
    ok, detail = within_noise(returns, reference_mean)
    assert ok, detail


def test_always_stay_burns_out_in_about_13_steps():
    returns, lengths = run("always_stay")
    assert 12.5 <= lengths.mean() <= 13.5
    assert (lengths <= 16).all() and (lengths >= 10).all()
    assert returns.max() < 0


def test_always_switch_collapses_in_recession():
    stable, lengths = run("always_switch")
    recession, _ = run("always_switch", regime="recession")
    assert (lengths == 200).all()
    ok, detail = within_noise(recession, 0.15)
    assert ok, detail
    assert recession.max() < 1.0 and stable.min() > 150.0
