"""Agents for the career environment and the experiment runner.

* heuristic baselines (numpy): ``make_heuristic(name, seed=None, **params)``;
* learning agents (torch): :class:`DQNAgent` / :class:`DQNConfig` and
  :class:`PPOAgent` / :class:`PPOConfig`;
* ``make_agent(name, observation_space, action_space, seed=..., **params)``
  builds any of them by name, ``list_agents()`` lists the names;
* experiments: :class:`ExperimentProtocol`, :func:`run_experiment`,
  :class:`ExperimentResult`.

Names are imported lazily: ``import rlaudit.agents`` does not import torch;
torch is loaded the first time a DQN or PPO name is used.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "Agent": "rlaudit.agents.common",
    "make_agent": "rlaudit.agents.common",
    "list_agents": "rlaudit.agents.common",
    "LEARNING_AGENTS": "rlaudit.agents.common",
    "torch_settings": "rlaudit.agents.common",
    "save_policy": "rlaudit.agents.common",
    "load_policy": "rlaudit.agents.common",
    "DQNAgent": "rlaudit.agents.dqn",
    "DQNConfig": "rlaudit.agents.dqn",
    "PPOAgent": "rlaudit.agents.ppo",
    "PPOConfig": "rlaudit.agents.ppo",
    "make_heuristic": "rlaudit.agents.heuristics",
    "ExperimentProtocol": "rlaudit.agents.experiments",
    "ExperimentResult": "rlaudit.agents.experiments",
    "Evaluation": "rlaudit.agents.experiments",
    "Progress": "rlaudit.agents.experiments",
    "run_experiment": "rlaudit.agents.experiments",
    "DemoSummary": "rlaudit.agents.demo",
    "demo_protocols": "rlaudit.agents.demo",
    "run_demo": "rlaudit.agents.demo",
}

__all__ = [
    "LEARNING_AGENTS",
    "Agent",
    "DQNAgent",
    "DQNConfig",
    "DemoSummary",
    "Evaluation",
    "ExperimentProtocol",
    "ExperimentResult",
    "PPOAgent",
    "PPOConfig",
    "Progress",
    "demo_protocols",
    "list_agents",
    "load_policy",
    "make_agent",
    "make_heuristic",
    "run_demo",
    "run_experiment",
    "save_policy",
    "torch_settings",
]


def __getattr__(name: str):
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'rlaudit.agents' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
