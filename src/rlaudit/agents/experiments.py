"""Experiment protocols and the runner that records every step of a run.

An :class:`ExperimentProtocol` says everything a run depends on: the agent and
its hyper-parameters, the reward and its parameters, the market regime and
environment overrides, the training budget, the evaluation schedule and one
seed. :func:`run_experiment` trains the agent on the career environment,
interleaves greedy evaluation episodes, records every step (phase ``train`` or
``eval``) and every update's metrics through :class:`rlaudit.Recorder`, and
stores the protocol in the run manifest so that the run can be repeated.
A DQN or PPO agent's final policy is saved beside the run as
``<run_id>.policy.pt`` (manifest ``config.policy_file``) so that
counterfactual replay can roll it out.

Seeding. One ``numpy.random.SeedSequence(protocol.seed)`` is split into three
independent streams: the agent's seed, the reset seeds of the training
episodes (one fresh seed per episode, drawn in order) and the reset seeds of
the evaluation episodes (one fixed set, reused at every evaluation so that
evaluations at different points of training face the same episodes). Greedy
acting draws no random numbers, so the evaluation schedule does not change
the training trajectory, and two runs of the same protocol record the same
step table.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlaudit.agents.common import LEARNING_AGENTS, check_agent_name
from rlaudit.errors import ConfigError, did_you_mean

ENV_ID = "rlaudit/Career-v0"
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]{0,199}$")
DEFAULT_AUDITOR_COLUMNS = ("info.burnout", "info.salary")
#: Whether higher ("max") or lower ("min") is better for each auditor signal of the career env.
AUDITOR_GOALS = {"info.burnout": "min", "info.salary": "max", "info.salary_norm": "max",
                 "info.job_switches": "min"}
#: Reward terms that are the task by design (the audit lets them carry most of the return).
TASK_TERMS = {
    "short_term_v1": ("salary",), "short_term_v2": ("salary",),
    "long_term_shaped_v1": ("salary",), "long_term_shaped_v2": ("salary",),
    "risk_sensitive_v1": ("salary",), "risk_sensitive_cvar_v1": ("salary",),
    "sparse_v1": ("success_bonus",), "sparse_milestones_v1": ("success_bonus",),
    "delayed_v1": ("outcome", "goal_bonus"), "delayed_hindsight_v1": ("outcome",),
}
STEP_POLICY_KEYS = ("logp", "entropy", "value", "q", "policy_version")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass
class ExperimentProtocol:
    """Everything one recorded run depends on.

    Exactly one of ``episodes`` and ``steps`` sets the training budget; with
    ``steps`` training stops at the end of the episode in which the budget is
    reached. Evaluation runs ``eval_episodes`` greedy episodes after every
    ``eval_interval`` training episodes and once more after training (unless
    the last training episode was just evaluated); ``eval_interval=0`` keeps
    only the final evaluation, ``eval_episodes=0`` skips evaluation.
    """

    agent: str = "ppo"
    """Agent name: dqn, ppo or a heuristic (see rlaudit.agents.list_agents())."""
    reward: str = "short_term_v1"
    """Reward name from the registry (rlaudit.envs.list_rewards())."""
    regime: str = "stable"
    """Market regime: stable, boom, recession or volatile."""
    seed: int = 0
    """Root seed of the run: agent, training resets and evaluation resets derive from it."""
    episodes: int | None = 100
    """Training episodes (set to None when ``steps`` is the budget)."""
    steps: int | None = None
    """Training environment steps, as an alternative budget to ``episodes``."""
    eval_interval: int = 20
    """Training episodes between evaluations (0: evaluate only after training)."""
    eval_episodes: int = 10
    """Greedy episodes per evaluation (0: no evaluation)."""
    agent_params: dict[str, Any] = field(default_factory=dict)
    """Agent hyper-parameters (fields of DQNConfig / PPOConfig, or a heuristic's parameters)."""
    reward_params: dict[str, Any] = field(default_factory=dict)
    """Parameters of the reward (e.g. {"burnout_weight": 0.0})."""
    env_params: dict[str, Any] = field(default_factory=dict)
    """EnvironmentParams fields; explicit values win over the regime's."""
    name: str | None = None
    """Run id in the store; default ``<agent>-<reward>-<regime>-s<seed>``."""
    auditor_columns: list[str] = field(default_factory=lambda: list(DEFAULT_AUDITOR_COLUMNS))
    """Columns the auditor treats as true outcomes (not seen by the learner as reward)."""
    description: str = ""
    """Free text kept in the manifest (hypothesis, expected failure, ...)."""
    shift: dict[str, Any] | None = None
    """A change of environment during the run: ``{"after_episode": k, "regime": ..., "env_params": {...}}``.

    After ``k`` training episodes the policy is evaluated in the current
    environment (unless that evaluation just ran), the environment is rebuilt
    with the new regime and/or parameters (merged over ``env_params``), the
    policy is evaluated again at once in the new environment, and training
    continues there. The metric ``env_shift`` (1.0) marks the global step of
    the change in the metrics table."""

    @property
    def run_id(self) -> str:
        return self.name or f"{self.agent}-{self.reward}-{self.regime}-s{self.seed}"

    # --- validation -----------------------------------------------------------

    def validate(self) -> ExperimentProtocol:
        """Check every field; raise ConfigError saying what was expected and found."""
        from rlaudit import envs

        for key in ("agent", "reward", "regime"):
            if not isinstance(getattr(self, key), str):
                raise ConfigError(f"protocol {key} must be a name (string); found {getattr(self, key)!r}")
        check_agent_name(self.agent)
        rewards = envs.list_rewards()
        if self.reward not in rewards:
            raise ConfigError(
                f"unknown reward {self.reward!r}{did_you_mean(self.reward, rewards)}; "
                f"expected one of: {', '.join(rewards)}"
            )
        regimes = list(envs.REGIMES)
        if self.regime not in regimes:
            raise ConfigError(
                f"unknown regime {self.regime!r}{did_you_mean(self.regime, regimes)}; "
                f"expected one of: {', '.join(regimes)}"
            )
        if not _is_int(self.seed) or self.seed < 0:
            raise ConfigError(f"protocol seed must be an integer ≥ 0; found {self.seed!r}")
        if (self.episodes is None) == (self.steps is None):
            raise ConfigError(
                "protocol needs exactly one training budget, episodes or steps; "
                f"found episodes={self.episodes!r}, steps={self.steps!r}"
            )
        for key in ("episodes", "steps"):
            value = getattr(self, key)
            if value is not None and (not _is_int(value) or value < 1):
                raise ConfigError(f"protocol {key} must be a positive integer; found {value!r}")
        for key in ("eval_interval", "eval_episodes"):
            value = getattr(self, key)
            if not _is_int(value) or value < 0:
                raise ConfigError(f"protocol {key} must be an integer ≥ 0; found {value!r}")
        for key in ("agent_params", "reward_params", "env_params"):
            value = getattr(self, key)
            if not isinstance(value, dict):
                raise ConfigError(f"protocol {key} must be a mapping of names to values; found {value!r}")
        if self.name is not None and (not isinstance(self.name, str) or not RUN_ID_PATTERN.match(self.name)):
            raise ConfigError(
                "protocol name is the run id and a file name: expected letters, digits and . _ = + - "
                f"(starting with a letter or digit, at most 200 characters); found {self.name!r}"
            )
        if not RUN_ID_PATTERN.match(self.run_id):
            raise ConfigError(f"run id {self.run_id!r} is not a valid file name; set protocol name")
        if not isinstance(self.auditor_columns, (list, tuple)) or not all(
            isinstance(c, str) and c for c in self.auditor_columns
        ):
            raise ConfigError(
                f'protocol auditor_columns must be a list of column names like ["info.burnout"]; '
                f"found {self.auditor_columns!r}"
            )
        if not isinstance(self.description, str):
            raise ConfigError(f"protocol description must be text; found {self.description!r}")
        if self.shift is not None:
            self._validate_shift()
        # Reward, environment and agent parameters are checked by building them.
        envs.get_reward(self.reward, **self.reward_params)
        envs.EnvironmentParams.for_regime(self.regime, **self.env_params)
        if self.agent in LEARNING_AGENTS:
            from rlaudit.agents.common import config_from_params, learner_config_class

            config_from_params(learner_config_class(self.agent), self.agent, dict(self.agent_params))
        else:
            from rlaudit.agents.heuristics import make_heuristic

            make_heuristic(self.agent, seed=0, **self.agent_params)
        return self

    def _validate_shift(self) -> None:
        from rlaudit import envs

        shift = self.shift
        expected = 'a mapping like {"after_episode": 50, "regime": "recession", "env_params": {...}}'
        if not isinstance(shift, dict):
            raise ConfigError(f"protocol shift must be {expected}; found {shift!r}")
        unknown = sorted(set(shift) - {"after_episode", "regime", "env_params"})
        if unknown:
            raise ConfigError(f"protocol shift has unknown key {unknown[0]!r}; expected {expected}")
        k = shift.get("after_episode")
        if not _is_int(k) or k < 1:
            raise ConfigError(f"protocol shift after_episode must be a positive integer; found {k!r}")
        if self.episodes is not None and k > self.episodes:
            raise ConfigError(f"protocol shift after_episode ({k}) is beyond the {self.episodes} training episodes")
        if "regime" not in shift and "env_params" not in shift:
            raise ConfigError(f"protocol shift changes nothing: give a regime or env_params; expected {expected}")
        if not isinstance(shift.get("env_params", {}), dict):
            raise ConfigError(f"protocol shift env_params must be a mapping; found {shift['env_params']!r}")
        envs.EnvironmentParams.for_regime(shift.get("regime", self.regime), **self.shifted_env_params())

    def shifted_env_params(self) -> dict[str, Any]:
        """Environment parameters after the shift (the protocol's, updated with the shift's)."""
        return {**self.env_params, **((self.shift or {}).get("env_params") or {})}

    # --- serialisation --------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict of every field (the run manifest stores it)."""
        d = dataclasses.asdict(self)
        d["auditor_columns"] = list(self.auditor_columns)
        return d

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ExperimentProtocol:
        """Inverse of :meth:`to_dict`; unknown keys are a ConfigError. Validates."""
        if not isinstance(values, dict):
            raise ConfigError(f"a protocol must be a mapping of field names to values; found {type(values).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in known:
                raise ConfigError(
                    f"unknown protocol field {key!r}{did_you_mean(str(key), known)}; expected some of: {', '.join(known)}"
                )
        return cls(**values).validate()


@dataclass
class Evaluation:
    """One evaluation: greedy returns after ``after_episode`` training episodes."""

    after_episode: int
    returns: list[float]

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns)) if self.returns else math.nan


@dataclass
class ExperimentResult:
    """What :func:`run_experiment` returns: where the run is and its headline numbers."""

    run_id: str
    path: str
    protocol: ExperimentProtocol
    train_returns: list[float]
    train_lengths: list[int]
    evaluations: list[Evaluation]
    train_steps: int
    total_steps: int
    updates: int
    wall_time: float

    @property
    def final_eval_mean(self) -> float | None:
        """Mean greedy return of the evaluation after training (None without evaluation)."""
        return self.evaluations[-1].mean if self.evaluations else None

    @property
    def final_eval_returns(self) -> list[float]:
        return list(self.evaluations[-1].returns) if self.evaluations else []

    @property
    def episodes(self) -> int:
        return len(self.train_returns)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "path": self.path,
            "protocol": self.protocol.to_dict(),
            "final_eval_mean": self.final_eval_mean,
            "train_returns": list(self.train_returns),
            "train_lengths": list(self.train_lengths),
            "evaluations": [{"after_episode": e.after_episode, "returns": list(e.returns)} for e in self.evaluations],
            "episodes": self.episodes,
            "train_steps": self.train_steps,
            "total_steps": self.total_steps,
            "updates": self.updates,
            "wall_time": self.wall_time,
        }

    def summary(self) -> str:
        """A few human-readable lines with the headline numbers."""
        last = self.train_returns[-10:]
        lines = [
            (
                f"run {self.run_id}: {self.episodes} training episodes, {self.train_steps:,} training steps "
                f"({self.total_steps:,} with evaluation), {self.updates:,} updates, {self.wall_time:.1f} s"
            ),
            f"  training return: mean of last {len(last)} episodes {np.mean(last):.2f}",
        ]
        if self.evaluations:
            e = self.evaluations[-1]
            lines.append(
                f"  final greedy evaluation: {e.mean:.2f} mean return over {len(e.returns)} episodes"
                f" (after {e.after_episode} training episodes)"
            )
        lines.append(f"  recorded to {self.path}")
        return "\n".join(lines)


@dataclass
class Progress:
    """Handed to the ``progress`` callback after every training episode and evaluation."""

    phase: str  # "train" or "eval"
    episode: int  # training episodes finished so far
    train_steps: int
    ret: float  # the episode's return (train) or the evaluation's mean return (eval)
    elapsed: float


def episode_seeds(seed: int) -> tuple[int, np.random.Generator, np.random.SeedSequence]:
    """(agent seed, generator of training reset seeds, seed sequence of evaluation seeds)."""
    agent_ss, train_ss, eval_ss = np.random.SeedSequence(seed).spawn(3)
    agent_seed = int(agent_ss.generate_state(1, dtype=np.uint32)[0])
    return agent_seed, np.random.default_rng(train_ss), eval_ss


def make_env_kwargs(protocol: ExperimentProtocol, *, shifted: bool = False) -> dict[str, Any]:
    """The gymnasium.make kwargs of the career env of ``protocol`` (after its shift when ``shifted``)."""
    regime = (protocol.shift or {}).get("regime", protocol.regime) if shifted else protocol.regime
    env_params = protocol.shifted_env_params() if shifted else protocol.env_params
    env_kwargs: dict[str, Any] = {"regime": regime, "reward": protocol.reward}
    if protocol.reward_params:
        env_kwargs["reward_params"] = dict(protocol.reward_params)
    if env_params:
        env_kwargs["params"] = dict(env_params)
    return env_kwargs


def make_env(protocol: ExperimentProtocol, *, shifted: bool = False):
    """The career env of ``protocol`` (after its shift when ``shifted``) and the kwargs that rebuild it
    with gymnasium.make."""
    import gymnasium as gym

    import rlaudit.envs  # noqa: F401  (registers the env id)

    env_kwargs = make_env_kwargs(protocol, shifted=shifted)
    env = gym.make(ENV_ID, disable_env_checker=True, **env_kwargs)
    return env, env_kwargs


def env_meta(env) -> dict[str, Any]:
    """Manifest facts that let replay rebuild the env without importing rlaudit.envs first."""
    spec = env.spec
    entry = spec.entry_point if isinstance(spec.entry_point, str) else None
    return {"entry_point": entry, "max_episode_steps": spec.max_episode_steps}


def _run_episode(env, agent, rec, reset_seed: int, *, learn: bool) -> tuple[float, int, int]:
    """Play one episode, recording each step; returns (return, length, updates)."""
    obs, info = env.reset(seed=reset_seed)
    rec.reset(obs, seed=reset_seed, info=info)
    total, length, updates = 0.0, 0, 0
    while True:
        action, policy = agent.act(obs, explore=learn)
        next_obs, reward, terminated, truncated, info = env.step(action)
        rec.step(
            action, next_obs, reward, terminated, truncated, info,
            **{k: policy[k] for k in STEP_POLICY_KEYS if k in policy},
        )
        if learn:
            metrics = agent.observe(obs, action, reward, next_obs, terminated, truncated)
            if metrics:
                updates += 1
                rec.log_metrics(rec.global_step, **metrics)
        total += reward
        length += 1
        if terminated or truncated:
            return total, length, updates
        obs = next_obs


def run_experiment(
    protocol: ExperimentProtocol,
    store: str | Path,
    *,
    on_exists: str = "error",
    progress: Callable[[Progress], None] | None = None,
    torch_threads: int | None = 1,
) -> ExperimentResult:
    """Train and evaluate ``protocol`` on the career env, recording the run into ``store``.

    The run id is ``protocol.run_id``; an existing run with that id raises
    :class:`~rlaudit.errors.RunExistsError` (``on_exists="suffix"`` picks a
    fresh id instead). Learning agents run with torch on ``torch_threads``
    threads and deterministic algorithms (restored afterwards).
    """
    from rlaudit import Recorder
    from rlaudit.agents.common import make_agent, torch_settings

    protocol.validate()
    started = time.perf_counter()
    agent_seed, train_seeds, eval_ss = episode_seeds(protocol.seed)
    eval_seeds = [int(s) for s in np.random.default_rng(eval_ss).integers(0, 2**31, size=protocol.eval_episodes)]

    env, env_kwargs = make_env(protocol)
    learning = protocol.agent in LEARNING_AGENTS
    settings = torch_settings(torch_threads) if learning else contextlib.nullcontext()
    try:
        with settings:
            agent = make_agent(protocol.agent, env.observation_space, env.action_space,
                               seed=agent_seed, **protocol.agent_params)
            reward_fn = env.unwrapped.reward_fn
            hyper = agent.hyperparameters() if hasattr(agent, "hyperparameters") else dict(protocol.agent_params)
            config = {
                "agent": protocol.agent,
                "hyperparameters": hyper,
                "gamma": float(getattr(agent, "gamma", 0.99)),
                "reward": protocol.reward,
                "reward_params": dict(reward_fn.params),
                "reward_bounds": list(reward_fn.bounds(env.unwrapped.params)),
                "auditor_columns": list(protocol.auditor_columns),
                "auditor_goals": {c: AUDITOR_GOALS[c] for c in protocol.auditor_columns if c in AUDITOR_GOALS},
                "reward_task_terms": list(TASK_TERMS.get(protocol.reward, ())),
                "seed": protocol.seed,
                "protocol": protocol.to_dict(),
                "agent_seed": agent_seed,
            }
            if protocol.shift is not None:
                config["shifted_env_kwargs"] = make_env_kwargs(protocol, shifted=True)
            rec = Recorder(
                store, protocol.run_id, config=config, env_id=ENV_ID, env_kwargs=env_kwargs,
                observation_space=env.observation_space, action_space=env.action_space,
                env_meta=env_meta(env), info_prefix="reward_", on_exists=on_exists,
            )
            with rec:
                train_returns: list[float] = []
                train_lengths: list[int] = []
                evaluations: list[Evaluation] = []
                train_steps = total_steps = updates = 0

                def evaluate() -> None:
                    nonlocal total_steps
                    rec.phase = "eval"
                    returns = []
                    for s in eval_seeds:
                        ret, length, _ = _run_episode(env, agent, rec, s, learn=False)
                        returns.append(ret)
                        total_steps += length
                    rec.phase = "train"
                    evaluations.append(Evaluation(len(train_returns), returns))
                    if progress is not None:
                        progress(Progress("eval", len(train_returns), train_steps,
                                          evaluations[-1].mean, time.perf_counter() - started))

                while True:
                    if protocol.episodes is not None and len(train_returns) >= protocol.episodes:
                        break
                    if protocol.steps is not None and train_steps >= protocol.steps:
                        break
                    reset_seed = int(train_seeds.integers(0, 2**31))
                    ret, length, n_updates = _run_episode(env, agent, rec, reset_seed, learn=True)
                    train_returns.append(ret)
                    train_lengths.append(length)
                    train_steps += length
                    total_steps += length
                    updates += n_updates
                    if progress is not None:
                        progress(Progress("train", len(train_returns), train_steps, ret,
                                          time.perf_counter() - started))
                    if (protocol.eval_episodes and protocol.eval_interval
                            and len(train_returns) % protocol.eval_interval == 0):
                        evaluate()
                    if protocol.shift is not None and len(train_returns) == protocol.shift["after_episode"]:
                        if protocol.eval_episodes and (not evaluations
                                                       or evaluations[-1].after_episode != len(train_returns)):
                            evaluate()
                        env.close()
                        env, _ = make_env(protocol, shifted=True)
                        rec.log_metrics(rec.global_step, env_shift=1.0)
                        if protocol.eval_episodes:
                            evaluate()
                if protocol.eval_episodes and (not evaluations or evaluations[-1].after_episode != len(train_returns)):
                    evaluate()
                if learning:
                    from rlaudit.agents.common import POLICY_SUFFIX, save_policy

                    policy_path = Path(store) / f"{rec.run_id}{POLICY_SUFFIX}"
                    if save_policy(agent, policy_path):
                        rec.annotate(policy_file=policy_path.name)
            path = str(rec.path)
            run_id = rec.run_id
    finally:
        env.close()
    return ExperimentResult(
        run_id=run_id,
        path=path,
        protocol=protocol,
        train_returns=train_returns,
        train_lengths=train_lengths,
        evaluations=evaluations,
        train_steps=train_steps,
        total_steps=total_steps,
        updates=updates,
        wall_time=time.perf_counter() - started,
    )
