"""Proximal Policy Optimisation (Schulman et al. 2017), clipped objective, with GAE.

Read top to bottom: config, actor-critic network, acting (sampling from the
categorical policy), collecting a rollout, computing advantages, the update.

Differences from RL Failure Lab's PPO (reference section 4.3), all deliberate:

* **Truncation.** The reference cuts GAE at ``done = terminated or
  truncated``, treating the time limit as a dead end. Here a truncated step's
  reward is augmented with gamma·V(final observation) (the value the episode
  would still have collected), and only a termination contributes zero future
  value.
* **KL.** The reference reports the mean absolute difference of log-probs;
  here ``approx_kl`` is the unbiased estimator mean((r - 1) - log r) of
  KL(old || new) (Schulman's "k3"), averaged over minibatches.
* **Entropy.** The reference reports a running mean of sampled-step
  entropies; here each step reports the entropy of the distribution the action
  was drawn from, and each update the mean policy entropy over its minibatches.
* **Randomness.** Action sampling and minibatch shuffling draw from a numpy
  Generator seeded from ``seed``; network initialisation uses a forked torch
  generator. Nothing reads global random state.
* **Rollout length.** Defaults are the settings of the reference's benchmark
  (n_steps 256, 4 epochs), under which its published PPO numbers were made;
  its class default of 2048 steps gives only about ten updates in 100
  episodes of this environment.

Kept from the reference: a shared Tanh trunk (all hidden sizes but the last)
with separate actor and critic heads, Adam lr 3e-4, gamma 0.99, GAE lambda
0.95, clip 0.2, entropy coefficient 0.01, value coefficient 0.5, gradient
norm clipped at 0.5, minibatches of 64, advantages normalised over the rollout,
rollouts spanning episode boundaries.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from rlaudit.agents.common import (
    build_mlp,
    check_discrete_box,
    check_hidden_sizes,
    check_positive,
    check_range,
    clip_grad_norm,
)
from rlaudit.errors import ConfigError


@dataclass
class PPOConfig:
    """Hyper-parameters of :class:`PPOAgent` (defaults: the reference's benchmark settings)."""

    hidden_sizes: tuple[int, ...] = (64, 64)
    """Hidden Tanh layer sizes: all but the last form the shared trunk, the last one each head's hidden layer."""
    learning_rate: float = 3e-4
    """Adam step size."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE lambda (1.0: Monte-Carlo advantages, 0.0: one-step TD)."""
    clip_range: float = 0.2
    """Clip of the probability ratio in the surrogate objective."""
    entropy_coef: float = 0.01
    """Weight of the entropy bonus in the loss."""
    value_coef: float = 0.5
    """Weight of the value-function MSE in the loss."""
    max_grad_norm: float = 0.5
    """Gradient norm clip (the norm before clipping is reported as ``grad_norm``)."""
    n_steps: int = 256
    """Environment steps per rollout (one update per rollout); rollouts span episodes."""
    n_epochs: int = 4
    """Passes over each rollout per update."""
    minibatch_size: int = 64
    """Transitions per gradient step."""
    normalize_advantages: bool = True
    """Standardise advantages over the rollout before the update."""

    def validate(self) -> None:
        """Raise ConfigError on a value outside its documented range."""
        self.hidden_sizes = check_hidden_sizes("ppo hidden_sizes", self.hidden_sizes)
        check_positive("ppo learning_rate", self.learning_rate)
        check_range("ppo gamma", self.gamma, 0.0, 1.0)
        check_range("ppo gae_lambda", self.gae_lambda, 0.0, 1.0)
        check_positive("ppo clip_range", self.clip_range)
        check_positive("ppo entropy_coef", self.entropy_coef, allow_zero=True)
        check_positive("ppo value_coef", self.value_coef, allow_zero=True)
        check_positive("ppo max_grad_norm", self.max_grad_norm)
        for name in ("n_steps", "n_epochs", "minibatch_size"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"ppo {name} must be a positive integer; found {value!r}")
        if self.minibatch_size > self.n_steps:
            raise ConfigError(
                f"ppo minibatch_size must be ≤ n_steps ({self.n_steps}); found {self.minibatch_size}"
            )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden_sizes"] = list(self.hidden_sizes)
        return d


class ActorCritic(nn.Module):
    """Shared Tanh trunk, then an actor head (logits) and a critic head (V)."""

    def __init__(self, obs_dim: int, n_actions: int, hidden_sizes: tuple[int, ...]):
        super().__init__()
        *trunk_sizes, head_size = hidden_sizes
        trunk_out = trunk_sizes[-1] if trunk_sizes else obs_dim
        self.trunk = build_mlp([obs_dim, *trunk_sizes], "tanh", final_activation=True)
        self.actor = build_mlp([trunk_out, head_size, n_actions], "tanh")
        self.critic = build_mlp([trunk_out, head_size, 1], "tanh")

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(obs)
        return self.actor(h), self.critic(h).squeeze(-1)


class PPOAgent:
    """On-policy PPO with a clipped surrogate, GAE and an entropy bonus.

    ``act`` returns ``(action, step_info)`` where ``step_info`` holds ``logp``
    and ``entropy`` of the distribution the action was drawn from (the
    categorical policy when exploring; the deterministic argmax when not, so
    logp 0 and entropy 0), ``value`` (V(s) from the critic) and
    ``policy_version`` (PPO updates so far). ``observe`` returns the metrics of
    the update that a full rollout triggers.
    """

    name = "ppo"

    def __init__(self, observation_space, action_space, config: PPOConfig | None = None, *, seed: int | None = None):
        self.config = config = config or PPOConfig()
        config.validate()
        self.obs_dim, self.n_actions = check_discrete_box(observation_space, action_space, "ppo")
        self.seed = seed
        torch_seed, np_seed = np.random.SeedSequence(seed).generate_state(2, dtype=np.uint64)
        self.rng = np.random.default_rng(int(np_seed))

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch_seed) % (2**63))
            self.net = ActorCritic(self.obs_dim, self.n_actions, config.hidden_sizes)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.learning_rate, fused=True)

        # Rollout storage, filled one transition per observe().
        n = config.n_steps
        self.roll_obs = np.zeros((n, self.obs_dim), dtype=np.float32)
        self.roll_action = np.zeros(n, dtype=np.int64)
        self.roll_logp = np.zeros(n, dtype=np.float32)
        self.roll_value = np.zeros(n, dtype=np.float32)
        self.roll_reward = np.zeros(n, dtype=np.float32)
        self.roll_done = np.zeros(n, dtype=np.float32)  # episode ended after this step
        self.roll_len = 0

        self._pending: tuple[int, float, float] | None = None  # (action, logp, value) of the last explore act
        self.steps = 0
        self.updates = 0

    @property
    def policy_version(self) -> int:
        return self.updates

    @property
    def gamma(self) -> float:
        return self.config.gamma

    def hyperparameters(self) -> dict[str, Any]:
        return self.config.to_dict()

    # --- acting -------------------------------------------------------------

    def _evaluate(self, obs) -> tuple[np.ndarray, float]:
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32))
        with torch.inference_mode():
            logits, value = self.net(x)
            logp = torch.log_softmax(logits, dim=-1)
        return logp.numpy().astype(np.float64), float(value)

    def value(self, obs) -> float:
        """V(obs) from the critic."""
        return self._evaluate(obs)[1]

    def act(self, obs, explore: bool = True) -> tuple[int, dict[str, Any]]:
        logp_all, value = self._evaluate(obs)
        if explore:
            probs = np.exp(logp_all)
            # Inverse-CDF sampling with one uniform draw from our own generator.
            u = self.rng.random()
            action = int(np.searchsorted(np.cumsum(probs), u * probs.sum(), side="right"))
            action = min(action, self.n_actions - 1)
            logp = float(logp_all[action])
            entropy = float(-(probs * logp_all).sum())
            self._pending = (action, logp, value)
        else:
            action = int(np.argmax(logp_all))
            logp, entropy = 0.0, 0.0
        return action, {"logp": logp, "entropy": entropy, "value": value, "policy_version": self.updates}

    # --- collecting ---------------------------------------------------------

    def observe(self, obs, action, reward, next_obs, terminated, truncated) -> dict[str, float] | None:
        """Append the transition to the rollout; update when the rollout is full."""
        if self._pending is None or self._pending[0] != action:
            raise RuntimeError(
                "PPOAgent.observe expects the transition of the preceding act(obs, explore=True); "
                f"found action {action!r} without a matching exploring act"
            )
        _, logp, value = self._pending
        self._pending = None
        if truncated and not terminated:
            # The episode was cut by the time limit, not ended: keep the value
            # of the state it was cut in.
            reward = float(reward) + self.config.gamma * self.value(next_obs)
        i = self.roll_len
        self.roll_obs[i] = obs
        self.roll_action[i] = action
        self.roll_logp[i] = logp
        self.roll_value[i] = value
        self.roll_reward[i] = reward
        self.roll_done[i] = float(terminated or truncated)
        self.roll_len += 1
        self.steps += 1
        if self.roll_len < self.config.n_steps:
            return None
        last_value = 0.0 if self.roll_done[i] else self.value(next_obs)
        metrics = self.update(last_value)
        self.roll_len = 0
        return metrics

    def _advantages(self, last_value: float) -> tuple[np.ndarray, np.ndarray]:
        """GAE(lambda) advantages and the value targets (advantage + value)."""
        cfg = self.config
        n = self.roll_len
        adv = np.zeros(n, dtype=np.float32)
        gae = 0.0
        next_value = last_value
        for t in range(n - 1, -1, -1):
            nonterminal = 1.0 - self.roll_done[t]
            delta = self.roll_reward[t] + cfg.gamma * next_value * nonterminal - self.roll_value[t]
            gae = delta + cfg.gamma * cfg.gae_lambda * nonterminal * gae
            adv[t] = gae
            next_value = self.roll_value[t]
        return adv, adv + self.roll_value[:n]

    # --- learning -----------------------------------------------------------

    def update(self, last_value: float) -> dict[str, float]:
        """n_epochs passes of clipped-surrogate minibatch updates over the rollout."""
        cfg = self.config
        n = self.roll_len
        adv_np, returns_np = self._advantages(last_value)
        values_np = self.roll_value[:n]
        var_returns = float(np.var(returns_np))
        # Undefined when the returns are constant; then the metric is left out.
        explained_variance = (
            float(1.0 - np.var(returns_np - values_np) / var_returns) if var_returns > 0 else None
        )
        if cfg.normalize_advantages and n > 1:
            adv_np = (adv_np - adv_np.mean()) / (adv_np.std() + 1e-8)

        obs = torch.from_numpy(self.roll_obs[:n])
        actions = torch.from_numpy(self.roll_action[:n])
        old_logp = torch.from_numpy(self.roll_logp[:n])
        advantages = torch.from_numpy(adv_np.astype(np.float32))
        returns = torch.from_numpy(returns_np.astype(np.float32))

        sums = {k: 0.0 for k in ("loss", "policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction", "grad_norm")}
        count = 0
        for _ in range(cfg.n_epochs):
            order = self.rng.permutation(n)
            for start in range(0, n, cfg.minibatch_size):
                mb = torch.from_numpy(order[start : start + cfg.minibatch_size])
                logits, value = self.net(obs[mb])
                logp_all = torch.log_softmax(logits, dim=-1)
                new_logp = logp_all.gather(1, actions[mb].unsqueeze(1)).squeeze(1)
                entropy = -(logp_all.exp() * logp_all).sum(dim=-1).mean()

                log_ratio = new_logp - old_logp[mb]
                ratio = log_ratio.exp()
                adv = advantages[mb]
                surrogate = torch.min(ratio * adv, ratio.clamp(1 - cfg.clip_range, 1 + cfg.clip_range) * adv)
                policy_loss = -surrogate.mean()
                value_loss = (value - returns[mb]).pow(2).mean()
                loss = policy_loss + cfg.value_coef * value_loss - cfg.entropy_coef * entropy

                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = clip_grad_norm(self.net.parameters(), cfg.max_grad_norm)
                self.optimizer.step()

                with torch.no_grad():
                    sums["loss"] += float(loss)
                    sums["policy_loss"] += float(policy_loss)
                    sums["value_loss"] += float(value_loss)
                    sums["entropy"] += float(entropy)
                    sums["approx_kl"] += float(((ratio - 1) - log_ratio).mean())
                    sums["clip_fraction"] += float(((ratio - 1).abs() > cfg.clip_range).float().mean())
                    sums["grad_norm"] += float(grad_norm)
                count += 1
        self.updates += 1
        metrics = {k: v / count for k, v in sums.items()}
        if explained_variance is not None:
            metrics["explained_variance"] = explained_variance
        metrics["value_mean"] = float(values_np.mean())
        metrics["learning_rate"] = float(self.optimizer.param_groups[0]["lr"])
        return metrics
