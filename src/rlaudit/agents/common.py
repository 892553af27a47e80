"""What every agent shares: the acting/learning interface, the registry of agent
names, and the torch settings that make the learning agents deterministic.

The interface (plain duck typing, no base class needed)::

    action, step_info = agent.act(obs, explore=True)
    metrics = agent.observe(obs, action, reward, next_obs, terminated, truncated)

``step_info`` is the per-step policy data the recorder stores next to the
action: ``logp`` (log-probability of the taken action under the distribution
it was actually drawn from, exploration included), ``entropy`` (entropy of
that distribution), ``value`` (the agent's value estimate of ``obs``), ``q``
(Q-values, DQN only) and ``policy_version`` (number of updates the acting
policy has received). Keys an agent cannot provide are absent.

``observe`` feeds one training transition to the agent and returns the
metrics of the update it triggered (a dict of floats), or ``None`` when no
update happened. Evaluation episodes call ``act(obs, explore=False)`` and never
``observe``; acting greedily draws no random numbers, so evaluation does not
change the training trajectory.

This module imports neither torch nor numpy-heavy code at import time;
:func:`make_agent` imports the agent's module when it is asked for.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import fields
from typing import Any, Protocol, runtime_checkable

from rlaudit.errors import ConfigError, did_you_mean

LEARNING_AGENTS = ("dqn", "ppo")


@runtime_checkable
class Agent(Protocol):
    """The interface the experiment runner drives (see the module docstring)."""

    name: str

    def act(self, obs: Any, explore: bool = True) -> tuple[int, dict[str, Any]]: ...

    def observe(
        self,
        obs: Any,
        action: int,
        reward: float,
        next_obs: Any,
        terminated: bool,
        truncated: bool,
    ) -> dict[str, float] | None: ...


def heuristic_names() -> list[str]:
    """Names of the heuristic baselines (from :mod:`rlaudit.agents.heuristics`)."""
    from rlaudit.agents import heuristics

    names = getattr(heuristics, "HEURISTICS", None)
    if names is None:
        names = heuristics.list_heuristics()
    return list(names)


def list_agents() -> list[str]:
    """Every agent name :func:`make_agent` accepts: the learners, then the heuristics."""
    return [*LEARNING_AGENTS, *heuristic_names()]


def check_agent_name(name: str) -> None:
    """Raise ConfigError naming the valid agents if ``name`` is not one of them."""
    names = list_agents()
    if name not in names:
        raise ConfigError(
            f"unknown agent {name!r}{did_you_mean(name, names)}; expected one of: {', '.join(names)}"
        )


def config_from_params(config_cls: type, agent: str, params: dict[str, Any]):
    """Build a config dataclass from user params, rejecting unknown or ill-typed fields."""
    known = {f.name: f for f in fields(config_cls)}
    unknown = [k for k in params if k not in known]
    if unknown:
        key = unknown[0]
        raise ConfigError(
            f"unknown {agent} parameter {key!r}{did_you_mean(key, list(known))}; "
            f"expected some of: {', '.join(known)}"
        )
    config = config_cls(**params)
    config.validate()
    return config


def require_torch(agent: str) -> None:
    """Raise ConfigError with the install command if torch is missing."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"agent {agent!r} needs torch, which is not installed; "
            "install it with: pip install 'rlaudit[torch]'"
        ) from None


def learner_config_class(name: str):
    """DQNConfig or PPOConfig (imports torch, after checking it is there)."""
    require_torch(name)
    if name == "dqn":
        from rlaudit.agents.dqn import DQNConfig

        return DQNConfig
    from rlaudit.agents.ppo import PPOConfig

    return PPOConfig


def make_agent(name: str, observation_space, action_space, *, seed: int | None = None, **params):
    """Build the agent called ``name`` for the given spaces.

    ``params`` are the agent's hyper-parameters (fields of :class:`DQNConfig` /
    :class:`PPOConfig`, or a heuristic's parameters). An unknown name or
    parameter raises :class:`~rlaudit.errors.ConfigError`.
    """
    check_agent_name(name)
    if name == "dqn":
        config = config_from_params(learner_config_class("dqn"), "dqn", params)
        from rlaudit.agents.dqn import DQNAgent

        return DQNAgent(observation_space, action_space, config, seed=seed)
    if name == "ppo":
        config = config_from_params(learner_config_class("ppo"), "ppo", params)
        from rlaudit.agents.ppo import PPOAgent

        return PPOAgent(observation_space, action_space, config, seed=seed)
    from rlaudit.agents.heuristics import make_heuristic

    return make_heuristic(name, seed=seed, **params)


POLICY_FORMAT = "rlaudit-policy"
POLICY_SUFFIX = ".policy.pt"
"""A learned agent's final policy is saved beside its run as ``<run_id>.policy.pt``."""


def _network(agent):
    net = getattr(agent, "q_net", None) or getattr(agent, "net", None)
    if net is None:
        raise ConfigError(f"agent {getattr(agent, 'name', agent)!r} has no network to save")
    return net


def save_policy(agent, path) -> bool:
    """Save a DQN/PPO agent's acting network to ``path`` (never over an existing file).

    Returns False when ``path`` already exists.
    """
    import torch

    payload = {
        "format": POLICY_FORMAT,
        "agent": agent.name,
        "hyperparameters": agent.hyperparameters(),
        "obs_dim": int(agent.obs_dim),
        "n_actions": int(agent.n_actions),
        "policy_version": int(agent.policy_version),
        "state_dict": _network(agent).state_dict(),
    }
    try:
        with open(path, "xb") as fh:
            torch.save(payload, fh)
    except FileExistsError:
        return False
    return True


def load_policy(path):
    """The agent saved by :func:`save_policy`, acting greedily with ``act(obs, explore=False)``."""
    require_torch("a saved policy")
    import gymnasium as gym
    import numpy as np
    import torch

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"no saved policy at {path}") from None
    except Exception as exc:
        raise ConfigError(f"{path} is not a saved rlaudit policy ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != POLICY_FORMAT:
        raise ConfigError(f"{path} is not a saved rlaudit policy")
    obs_space = gym.spaces.Box(-np.inf, np.inf, (payload["obs_dim"],), np.float32)
    agent = make_agent(payload["agent"], obs_space, gym.spaces.Discrete(payload["n_actions"]), seed=0,
                       **payload["hyperparameters"])
    _network(agent).load_state_dict(payload["state_dict"])
    agent.updates = payload["policy_version"]
    return agent


def check_discrete_box(observation_space, action_space, agent: str) -> tuple[int, int]:
    """Return (observation size, number of actions) or raise ConfigError."""
    import gymnasium as gym

    if not isinstance(action_space, gym.spaces.Discrete):
        raise ConfigError(
            f"{agent} needs a Discrete action space; found {action_space!r}"
        )
    if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
        raise ConfigError(
            f"{agent} needs a one-dimensional Box observation space; found {observation_space!r}"
        )
    return int(observation_space.shape[0]), int(action_space.n)


@contextlib.contextmanager
def torch_settings(threads: int | None = 1, deterministic: bool = True) -> Iterator[None]:
    """Run a block with torch on ``threads`` intra-op threads and deterministic kernels.

    Small MLPs are fastest on one thread (measured in benchmarks/agents.py), and
    a fixed thread count keeps CPU reductions bit-for-bit reproducible. The
    previous settings are restored on exit.
    """
    import torch

    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


def build_mlp(sizes: list[int], activation: str, *, final_activation: bool = False):
    """Linear layers of the given sizes with ``activation`` between them."""
    from torch import nn

    act = {"relu": nn.ReLU, "tanh": nn.Tanh}[activation]
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or final_activation:
            layers.append(act())
    return nn.Sequential(*layers)


def check_positive(name: str, value, *, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    if not ok:
        bound = "≥ 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be {bound}; found {value!r}")


def check_range(name: str, value, lo: float, hi: float) -> None:
    if not (lo <= value <= hi):
        raise ConfigError(f"{name} must be in [{lo}, {hi}]; found {value!r}")


def check_hidden_sizes(name: str, value) -> tuple[int, ...]:
    try:
        sizes = tuple(int(v) for v in value)
    except TypeError:
        raise ConfigError(f"{name} must be a list of layer sizes like [64, 64]; found {value!r}") from None
    if not sizes or any(s <= 0 for s in sizes):
        raise ConfigError(f"{name} must be a non-empty list of positive sizes; found {value!r}")
    return sizes


def clip_grad_norm(parameters, max_norm: float):
    """Scale gradients so that their global L2 norm is at most ``max_norm``.

    The same computation as ``torch.nn.utils.clip_grad_norm_`` (norm over all
    gradients, scale by max_norm / (norm + 1e-6) when above), without its
    per-call argument handling, which costs as much as the clipping on these
    small networks. Returns the norm before clipping (a 0-d tensor).
    """
    import torch

    grads = [p.grad for p in parameters if p.grad is not None]
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    scale = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
    torch._foreach_mul_(grads, scale)
    return norm
