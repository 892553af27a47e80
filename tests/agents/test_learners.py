"""DQN and PPO on their own: policy data, the documented fixes, seeding, validation."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rlaudit.agents.common import make_agent, torch_settings
from rlaudit.agents.dqn import DQNAgent, DQNConfig
from rlaudit.agents.ppo import PPOAgent, PPOConfig
from rlaudit.errors import ConfigError

OBS_SPACE = gym.spaces.Box(low=-1.0, high=1.0, shape=(4,), dtype=np.float32)
ACT_SPACE = gym.spaces.Discrete(2)
X = np.array([0.3, -0.2, 0.5, 0.1], dtype=np.float32)


@pytest.fixture(autouse=True)
def _one_thread():
    with torch_settings(1):
        yield


# --- DQN --------------------------------------------------------------------


def test_dqn_logp_and_entropy_are_those_of_the_epsilon_greedy_distribution():
    agent = DQNAgent(OBS_SPACE, ACT_SPACE, seed=3)
    agent.epsilon = 0.3
    q = agent.q_values(X)
    greedy = int(np.argmax(q))
    seen = set()
    for _ in range(200):
        action, info = agent.act(X)
        expected_p = 0.7 + 0.15 if action == greedy else 0.15
        assert info["logp"] == pytest.approx(math.log(expected_p))
        assert info["entropy"] == pytest.approx(-(0.85 * math.log(0.85) + 0.15 * math.log(0.15)))
        assert info["value"] == pytest.approx(float(q.max()))
        np.testing.assert_array_equal(info["q"], q)
        assert info["policy_version"] == 0
        seen.add(action)
    assert seen == {0, 1}  # epsilon 0.3 explores


def test_dqn_greedy_act_draws_no_random_numbers():
    agent = DQNAgent(OBS_SPACE, ACT_SPACE, seed=3)
    state = agent.rng.bit_generator.state
    action, info = agent.act(X, explore=False)
    assert agent.rng.bit_generator.state == state
    assert action == int(np.argmax(agent.q_values(X)))
    assert info["logp"] == 0.0 and info["entropy"] == 0.0


def _fit_one_state(agent, *, terminated, truncated, updates):
    """Feed one repeated transition x --a--> x with reward 1 and train."""
    for _ in range(updates):
        agent.observe(X, 0, 1.0, X, terminated, truncated)
    return float(agent.q_values(X)[0])


def test_dqn_bootstraps_through_truncation_but_not_termination():
    cfg = {"gamma": 0.5, "learning_rate": 1e-2, "batch_size": 8, "buffer_size": 64, "target_update_interval": 10}
    truncated = DQNAgent(OBS_SPACE, ACT_SPACE, DQNConfig(**cfg), seed=0)
    terminated = DQNAgent(OBS_SPACE, ACT_SPACE, DQNConfig(**cfg), seed=0)
    q_trunc = _fit_one_state(truncated, terminated=False, truncated=True, updates=500)
    q_term = _fit_one_state(terminated, terminated=True, truncated=False, updates=500)
    assert q_trunc == pytest.approx(1 / (1 - 0.5), abs=0.1)  # 1 + 0.5 + 0.25 + ... = 2
    assert q_term == pytest.approx(1.0, abs=0.05)


def test_dqn_target_update_fix_removes_the_myopia():
    """The reference's tau=0.005 every 100 updates barely bootstraps; the default copies."""
    cfg = {"gamma": 0.9, "learning_rate": 1e-2, "batch_size": 8, "buffer_size": 64}
    fixed = DQNAgent(OBS_SPACE, ACT_SPACE, DQNConfig(**cfg), seed=0)
    reference = DQNAgent(OBS_SPACE, ACT_SPACE, DQNConfig(**cfg, tau=0.005), seed=0)
    q_fixed = _fit_one_state(fixed, terminated=False, truncated=False, updates=1500)
    q_reference = _fit_one_state(reference, terminated=False, truncated=False, updates=1500)
    assert q_fixed > 6.0  # heading for 1 / (1 - 0.9) = 10 (15 target copies: about 8)
    assert q_reference < 2.0  # stuck near the one-step reward


def test_dqn_update_metrics_and_policy_version():
    agent = DQNAgent(OBS_SPACE, ACT_SPACE, DQNConfig(batch_size=4, learning_starts=8), seed=1)
    results = [agent.observe(X, 1, 0.5, X, False, False) for _ in range(10)]
    assert results[:7] == [None] * 7  # learning starts once 8 transitions are stored
    metrics = results[-1]
    assert set(metrics) == {"loss", "q_mean", "q_max", "td_error", "epsilon", "grad_norm", "learning_rate"}
    assert agent.policy_version == 3
    assert metrics["epsilon"] == pytest.approx(0.995**3)
    assert metrics["learning_rate"] == pytest.approx(1e-3)
    assert all(math.isfinite(v) for v in metrics.values())
    assert agent.act(X)[1]["policy_version"] == 3


def test_dqn_is_a_function_of_its_seed():
    def trajectory(seed):
        agent = DQNAgent(OBS_SPACE, ACT_SPACE, DQNConfig(batch_size=8), seed=seed)
        rng = np.random.default_rng(0)
        out = []
        for _ in range(60):
            obs = rng.uniform(-1, 1, 4).astype(np.float32)
            action, info = agent.act(obs)
            agent.observe(obs, action, float(rng.normal()), obs, False, False)
            out.append((action, info["q"].tobytes()))
        return out

    assert trajectory(5) == trajectory(5)
    assert trajectory(5) != trajectory(6)


# --- PPO --------------------------------------------------------------------


def test_ppo_logp_and_entropy_match_the_sampled_distribution():
    agent = PPOAgent(OBS_SPACE, ACT_SPACE, seed=2)
    with torch.no_grad():
        logits, value = agent.net(torch.from_numpy(X))
        logp = torch.log_softmax(logits, -1).numpy().astype(float)
    counts = np.zeros(2)
    for _ in range(2000):
        action, info = agent.act(X)
        agent._pending = None
        counts[action] += 1
        assert info["logp"] == pytest.approx(logp[action], abs=1e-6)
        assert info["entropy"] == pytest.approx(-(np.exp(logp) * logp).sum(), abs=1e-6)
        assert info["value"] == pytest.approx(float(value), abs=1e-6)
    assert counts / counts.sum() == pytest.approx(np.exp(logp), abs=0.04)
    greedy, info = agent.act(X, explore=False)
    assert greedy == int(np.argmax(logp))
    assert info["logp"] == 0.0 and info["entropy"] == 0.0


def test_ppo_observe_needs_the_matching_act():
    agent = PPOAgent(OBS_SPACE, ACT_SPACE, seed=0)
    with pytest.raises(RuntimeError, match="preceding act"):
        agent.observe(X, 0, 1.0, X, False, False)


def _ppo_value_after(*, terminated, truncated):
    """One-step episodes with reward 1 from X; returns the critic's V(X) after training."""
    cfg = PPOConfig(gamma=0.5, learning_rate=3e-3, n_steps=64, minibatch_size=64, n_epochs=10,
                    value_coef=1.0, entropy_coef=0.0)
    agent = PPOAgent(OBS_SPACE, ACT_SPACE, cfg, seed=0)
    for _ in range(64 * 40):
        action, _ = agent.act(X)
        agent.observe(X, action, 1.0, X, terminated, truncated)
    return agent.value(X), agent


def test_ppo_values_truncated_episodes_by_bootstrapping_and_terminated_ones_not():
    v_trunc, agent = _ppo_value_after(terminated=False, truncated=True)
    v_term, _ = _ppo_value_after(terminated=True, truncated=False)
    assert v_term == pytest.approx(1.0, abs=0.1)
    assert v_trunc == pytest.approx(2.0, abs=0.2)  # 1 + 0.5 * V
    assert agent.policy_version == 40


def test_ppo_update_metrics():
    agent = PPOAgent(OBS_SPACE, ACT_SPACE, PPOConfig(n_steps=32, minibatch_size=8), seed=4)
    rng = np.random.default_rng(0)
    results = []
    for i in range(32):
        obs = rng.uniform(-1, 1, 4).astype(np.float32)
        action, _ = agent.act(obs)
        results.append(agent.observe(obs, action, float(action), obs, False, i % 10 == 9))
    assert results[:-1] == [None] * 31
    metrics = results[-1]
    assert set(metrics) >= {"loss", "policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction",
                            "explained_variance", "grad_norm", "learning_rate"}
    assert 0.0 <= metrics["clip_fraction"] <= 1.0
    assert metrics["approx_kl"] >= 0.0  # the k3 estimator is never negative
    assert 0.0 < metrics["entropy"] <= math.log(2) + 1e-6
    assert agent.policy_version == 1


def test_ppo_is_a_function_of_its_seed():
    def trajectory(seed):
        agent = PPOAgent(OBS_SPACE, ACT_SPACE, PPOConfig(n_steps=16, minibatch_size=8), seed=seed)
        rng = np.random.default_rng(0)
        out = []
        for _ in range(50):
            obs = rng.uniform(-1, 1, 4).astype(np.float32)
            action, info = agent.act(obs)
            agent.observe(obs, action, float(rng.normal()), obs, False, False)
            out.append((action, info["logp"]))
        return out

    assert trajectory(5) == trajectory(5)
    assert trajectory(5) != trajectory(6)


# --- construction and validation ----------------------------------------------


def test_make_agent_builds_learners_and_heuristics():
    assert isinstance(make_agent("dqn", OBS_SPACE, ACT_SPACE, seed=0, gamma=0.9), DQNAgent)
    assert isinstance(make_agent("ppo", OBS_SPACE, ACT_SPACE, seed=0), PPOAgent)
    assert make_agent("always_switch", OBS_SPACE, ACT_SPACE, seed=0).act(X)[0] == 1


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("dqm", {}, r"unknown agent 'dqm' \(did you mean 'dqn'\?\); expected one of: dqn, ppo"),
        ("dqn", {"learnig_rate": 1e-3}, r"unknown dqn parameter 'learnig_rate' \(did you mean 'learning_rate'"),
        ("dqn", {"gamma": 1.5}, r"dqn gamma must be in \[0.0, 1.0\]; found 1.5"),
        ("dqn", {"batch_size": 0}, r"dqn batch_size must be a positive integer; found 0"),
        ("dqn", {"batch_size": 128, "buffer_size": 64}, r"batch_size must be ≤ buffer_size \(64\); found 128"),
        ("dqn", {"tau": 0.0}, r"dqn tau must be > 0; found 0.0"),
        ("dqn", {"hidden_sizes": []}, r"hidden_sizes must be a non-empty list"),
        ("ppo", {"n_steps": 32, "minibatch_size": 64}, r"minibatch_size must be ≤ n_steps \(32\); found 64"),
        ("ppo", {"clip_range": -0.1}, r"ppo clip_range must be > 0; found -0.1"),
        ("ppo", {"n_epochs": 2.5}, r"ppo n_epochs must be a positive integer; found 2.5"),
    ],
)
def test_bad_agent_configuration_is_a_config_error(name, params, message):
    with pytest.raises(ConfigError, match=message):
        make_agent(name, OBS_SPACE, ACT_SPACE, seed=0, **params)


def test_learners_need_discrete_actions_and_flat_box_observations():
    with pytest.raises(ConfigError, match="Discrete action space; found Box"):
        DQNAgent(OBS_SPACE, gym.spaces.Box(-1, 1, (2,)))
    with pytest.raises(ConfigError, match="one-dimensional Box observation space"):
        PPOAgent(gym.spaces.Box(0, 1, (2, 2)), ACT_SPACE)
