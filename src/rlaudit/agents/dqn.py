"""Deep Q-Network (Mnih et al. 2015) for small Box observations and discrete actions.

Read top to bottom: config, network, acting (epsilon-greedy with the exact
behaviour probabilities), storing transitions, the gradient update, the target
network update.

Differences from RL Failure Lab's DQN (reference section 4.2), all deliberate:

* **Target network.** The reference soft-updates the target with tau = 0.005
  only every 100 updates, so the target covers about 39 % of the way to the
  online net in 10,000 updates; bootstrapping barely happens and the learned Q
  stays near the one-step reward (a myopic agent: Q about 1.2 where the true
  value is about 87). Here the target is *copied* (tau = 1) every 100 updates,
  the usual DQN rule. ``tau`` and ``target_update_interval`` are still fields,
  so the reference behaviour is one setting away (``tau=0.005``).
* **Terminated versus truncated.** The reference bootstraps with
  ``done = terminated or truncated``; here only ``terminated`` stops the
  bootstrap, so hitting the time limit is not treated as a dead end.
* **Randomness.** Exploration and replay sampling draw from one numpy Generator
  seeded from ``seed``; network initialisation uses a torch generator forked
  from the same seed. Nothing reads Python's ``random`` or the global numpy
  state.
* **Entropy.** The reference reports the entropy of the cumulative action
  counts; here each step reports the entropy of the epsilon-greedy
  distribution the action was drawn from.

Kept from the reference: MLP 64-64 with ReLU, Adam lr 1e-3, gamma 0.99,
epsilon from 1.0 to 0.01 multiplied by 0.995 after every gradient update,
replay of 10,000 transitions, batch 64, learning as soon as the buffer holds a
batch, one update per environment step, MSE loss, gradient norm clipped at 10.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

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
class DQNConfig:
    """Hyper-parameters of :class:`DQNAgent` (defaults: the reference's, target update fixed)."""

    hidden_sizes: tuple[int, ...] = (64, 64)
    """Sizes of the hidden ReLU layers of the Q-network."""
    learning_rate: float = 1e-3
    """Adam step size."""
    gamma: float = 0.99
    """Discount factor of the TD target."""
    buffer_size: int = 10_000
    """Capacity of the replay buffer (oldest transitions are overwritten)."""
    batch_size: int = 64
    """Transitions sampled (uniformly, with replacement) per gradient update."""
    learning_starts: int | None = None
    """Transitions stored before the first update; None means one batch (the reference's rule)."""
    train_frequency: int = 1
    """Environment steps between gradient updates."""
    epsilon_start: float = 1.0
    """Exploration probability before the first update."""
    epsilon_end: float = 0.01
    """Floor of the exploration probability."""
    epsilon_decay: float = 0.995
    """Factor applied to epsilon after every gradient update (0.995: epsilon reaches 0.01 after about 920 updates)."""
    target_update_interval: int = 100
    """Gradient updates between target-network updates."""
    tau: float = 1.0
    """Target update weight: 1.0 copies the online net (fixed default); the reference used 0.005."""
    max_grad_norm: float = 10.0
    """Gradient norm clip (the norm before clipping is reported as ``grad_norm``)."""

    def validate(self) -> None:
        """Raise ConfigError on a value outside its documented range."""
        self.hidden_sizes = check_hidden_sizes("dqn hidden_sizes", self.hidden_sizes)
        check_positive("dqn learning_rate", self.learning_rate)
        check_range("dqn gamma", self.gamma, 0.0, 1.0)
        for name in ("buffer_size", "batch_size", "train_frequency", "target_update_interval"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"dqn {name} must be a positive integer; found {value!r}")
        if self.batch_size > self.buffer_size:
            raise ConfigError(
                f"dqn batch_size must be ≤ buffer_size ({self.buffer_size}); found {self.batch_size}"
            )
        if self.learning_starts is None:
            self.learning_starts = self.batch_size
        if self.learning_starts < self.batch_size:
            raise ConfigError(
                f"dqn learning_starts must be ≥ batch_size ({self.batch_size}); "
                f"found {self.learning_starts}"
            )
        check_range("dqn epsilon_start", self.epsilon_start, 0.0, 1.0)
        check_range("dqn epsilon_end", self.epsilon_end, 0.0, 1.0)
        check_range("dqn epsilon_decay", self.epsilon_decay, 0.0, 1.0)
        check_range("dqn tau", self.tau, 0.0, 1.0)
        check_positive("dqn tau", self.tau)
        check_positive("dqn max_grad_norm", self.max_grad_norm)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden_sizes"] = list(self.hidden_sizes)
        return d


class DQNAgent:
    """Epsilon-greedy DQN with a replay buffer and a periodically updated target network.

    ``act`` returns ``(action, step_info)`` where ``step_info`` holds ``logp``
    (log of (1 - eps)·[a is greedy] + eps/n, the behaviour probability),
    ``entropy`` (of that epsilon-greedy distribution), ``value`` (max_a Q(s, a):
    the greedy state value the TD target bootstraps from; Q of the taken action
    is ``q[action]``), ``q`` (all Q-values) and ``policy_version`` (gradient
    updates so far). ``observe`` returns the metrics of the update it ran.
    """

    name = "dqn"

    def __init__(self, observation_space, action_space, config: DQNConfig | None = None, *, seed: int | None = None):
        self.config = config = config or DQNConfig()
        config.validate()
        self.obs_dim, self.n_actions = check_discrete_box(observation_space, action_space, "dqn")
        self.seed = seed
        seed_seq = np.random.SeedSequence(seed)
        torch_seed, np_seed = seed_seq.generate_state(2, dtype=np.uint64)
        self.rng = np.random.default_rng(int(np_seed))

        # Networks: online Q and its target copy, initialised from our own seed
        # without touching torch's global generator.
        sizes = [self.obs_dim, *config.hidden_sizes, self.n_actions]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch_seed) % (2**63))
            self.q_net = build_mlp(sizes, "relu")
        self.target_net = build_mlp(sizes, "relu")
        self.target_net.load_state_dict(self.q_net.state_dict())
        self.target_net.requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.q_net.parameters(), lr=config.learning_rate, fused=True)

        # Replay buffer: one preallocated float32 table used as a ring, a row
        # per transition: obs | next_obs | action | reward | terminated. One
        # table means one gather per batch.
        d = self.obs_dim
        self.buffer = np.zeros((config.buffer_size, 2 * d + 3), dtype=np.float32)
        self._cols = (slice(0, d), slice(d, 2 * d), 2 * d, 2 * d + 1, 2 * d + 2)
        self.buf_pos = 0
        self.buf_len = 0

        self.epsilon = config.epsilon_start
        self.steps = 0  # transitions observed
        self.updates = 0  # gradient updates (the policy version)
        self.target_updates = 0

    # --- acting -------------------------------------------------------------

    @property
    def policy_version(self) -> int:
        return self.updates

    @property
    def gamma(self) -> float:
        return self.config.gamma

    def hyperparameters(self) -> dict[str, Any]:
        return self.config.to_dict()

    def q_values(self, obs) -> np.ndarray:
        """Q(obs, ·) of the online network as float32."""
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32))
        with torch.inference_mode():
            return self.q_net(x).numpy()

    def act(self, obs, explore: bool = True) -> tuple[int, dict[str, Any]]:
        q = self.q_values(obs)
        greedy = int(np.argmax(q))
        eps = self.epsilon if explore else 0.0
        if eps > 0.0 and self.rng.random() < eps:
            action = int(self.rng.integers(self.n_actions))
        else:
            action = greedy
        # The epsilon-greedy behaviour distribution the action was drawn from.
        p_other = eps / self.n_actions
        p_greedy = 1.0 - eps + p_other
        p_action = p_greedy if action == greedy else p_other
        entropy = -p_greedy * math.log(p_greedy)
        if p_other > 0.0:
            entropy -= (self.n_actions - 1) * p_other * math.log(p_other)
        return action, {
            "logp": math.log(p_action),
            "entropy": entropy,
            "value": float(q[greedy]),
            "q": q,
            "policy_version": self.updates,
        }

    # --- learning -----------------------------------------------------------

    def observe(self, obs, action, reward, next_obs, terminated, truncated) -> dict[str, float] | None:
        """Store the transition; run a gradient update when one is due."""
        i = self.buf_pos
        c_obs, c_next, c_action, c_reward, c_term = self._cols
        row = self.buffer[i]
        row[c_obs] = obs
        row[c_next] = next_obs
        row[c_action] = action
        row[c_reward] = reward
        # Only a real termination ends the bootstrap; a truncated episode's
        # next_obs is the true next state and its value still counts.
        row[c_term] = float(terminated)
        self.buf_pos = (i + 1) % self.config.buffer_size
        self.buf_len = min(self.buf_len + 1, self.config.buffer_size)
        self.steps += 1
        if self.buf_len < self.config.learning_starts or self.steps % self.config.train_frequency:
            return None
        return self.update()

    def update(self) -> dict[str, float]:
        """One gradient step on a uniform replay batch, then epsilon decay and target update."""
        cfg = self.config
        idx = self.rng.integers(0, self.buf_len, size=cfg.batch_size)
        batch = torch.from_numpy(self.buffer[idx])
        c_obs, c_next, c_action, c_reward, c_term = self._cols
        obs, next_obs = batch[:, c_obs], batch[:, c_next]
        actions = batch[:, c_action].long()
        rewards, terminated = batch[:, c_reward], batch[:, c_term]

        # TD target r + gamma * max_a' Q_target(s', a'), cut only at termination.
        with torch.no_grad():
            next_q = self.target_net(next_obs).max(dim=1).values
            target = rewards + cfg.gamma * (1.0 - terminated) * next_q

        q_all = self.q_net(obs)
        q_taken = q_all.gather(1, actions.unsqueeze(1)).squeeze(1)
        loss = F.mse_loss(q_taken, target)

        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = clip_grad_norm(self.q_net.parameters(), cfg.max_grad_norm)
        self.optimizer.step()
        self.updates += 1

        # Exploration decays per gradient update, as in the reference.
        self.epsilon = max(cfg.epsilon_end, self.epsilon * cfg.epsilon_decay)

        if self.updates % cfg.target_update_interval == 0:
            self._update_target()

        with torch.no_grad():
            loss_v, q_mean, q_max, td_error, grad_norm_v = torch.stack(
                [loss, q_taken.mean(), q_all.max(), (target - q_taken).abs().mean(), grad_norm]
            ).tolist()
        return {
            "loss": loss_v,
            "q_mean": q_mean,
            "q_max": q_max,
            "td_error": td_error,
            "epsilon": float(self.epsilon),
            "grad_norm": grad_norm_v,
            "learning_rate": float(self.optimizer.param_groups[0]["lr"]),
        }

    def _update_target(self) -> None:
        tau = self.config.tau
        with torch.no_grad():
            if tau >= 1.0:
                self.target_net.load_state_dict(self.q_net.state_dict())
            else:
                for t, s in zip(self.target_net.parameters(), self.q_net.parameters()):
                    t.mul_(1.0 - tau).add_(s, alpha=tau)
        self.target_updates += 1
