"""The planted-failure suite: clean runs and the same runs with one known failure each.

A *base* is an environment and a controller: honest heuristics on the career
env and on Gymnasium's classic-control tasks (CartPole, MountainCar,
Acrobot, Pendulum), random policies, and short DQN/PPO training with
rlaudit's own agents. A *case* is a base, a seed and at most one injection;
its runs are recorded through the real recorder (:class:`RecordTrajectory`),
so the store holds exactly what a user's store would hold.

An injection is an honest simulation of one catalogue failure in the
recorded stream, starting at a known episode (the *onset*): a Gymnasium
wrapper between the environment and the recorder that changes rewards,
dynamics or observations, a change of the acting policy (constant actions,
collapsed entropy), or a change of the logged learner values and metrics.
Every catalogue detector has at least one injection, so the detection
benchmark (``benchmarks/detection.py``) and the CI test
(``tests/detectors/test_detection_suite.py``) measure every detector that is
registered, and report the others as "not registered".

Each case records into its own folder (``<store>/<case>``) and is audited
alone, so a finding is attributed to its case without ambiguity; a folder
that already holds the case's finished runs is reused.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np

EPISODES = 60
GAMMA = 0.99
SIZES = ("small", "full")
CATALOGUE = (
    "reward-hacking", "reward-spike", "reward-term-dominance", "boundary-exploitation", "state-cycling",
    "action-repetition", "policy-collapse", "value-explosion", "non-finite", "regime-shift",
    "sparse-reward-stall", "performance-collapse", "training-instability", "truncation-exploitation",
    "degenerate-environment", "irreproducible",
)
#: Failures present from the first episode: their onset error is not measured.
WHOLE_RUN = ("sparse-reward-stall", "degenerate-environment")
STAY, SWITCH = 0, 1


# ---------------------------------------------------------------------------
# Controllers: obs -> (action, policy data)
# ---------------------------------------------------------------------------


class Controller:
    """A policy for one run: ``act(obs, episode)`` and, for learners, ``observe`` returning metrics."""

    stochastic = False  # logs logp and entropy

    def __init__(self, env: gym.Env, seed: int):
        self.env = env
        self.rng = np.random.default_rng(seed)

    def act(self, obs, episode: int) -> tuple[Any, dict[str, Any]]:
        raise NotImplementedError

    def observe(self, obs, action, reward, next_obs, terminated, truncated) -> dict[str, float] | None:
        return None

    def greedy(self, obs, episode: int) -> Any:
        return self.act(obs, episode)[0]


class RandomPolicy(Controller):
    stochastic = True

    def act(self, obs, episode):
        space = self.env.action_space
        if isinstance(space, gym.spaces.Discrete):
            n = int(space.n)
            return int(self.rng.integers(n)), {"logp": -math.log(n), "entropy": math.log(n)}
        low, high = float(space.low[0]), float(space.high[0])
        a = self.rng.uniform(low, high, size=space.shape).astype(np.float32)
        h = float(np.log(high - low)) * space.shape[0]
        return a, {"logp": -h, "entropy": h}

    def greedy(self, obs, episode):
        space = self.env.action_space
        return 0 if isinstance(space, gym.spaces.Discrete) else np.zeros(space.shape, np.float32)


class CartPolePD(Controller):
    """Balances the pole with a PD rule; ``target`` is the cart position it holds."""

    target = 0.0

    def act(self, obs, episode):
        x, v, th, w = (float(u) for u in obs)
        return int(10 * th + w + 0.1 * (x - self.target) + 0.2 * v > 0), {}


class CartPoleSoftmax(CartPolePD):
    """The PD rule as the mode of a logistic policy (temperature ``tau``): logs logp and entropy."""

    stochastic = True
    tau = 0.6

    def act(self, obs, episode):
        x, v, th, w = (float(u) for u in obs)
        pref = 10 * th + w + 0.1 * (x - self.target) + 0.2 * v
        p1 = 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, pref / self.tau))))
        a = int(self.rng.random() < p1)
        p = min(max(p1 if a else 1 - p1, 1e-12), 1.0)
        q = min(max(p1, 1e-12), 1 - 1e-12)
        return a, {"logp": math.log(p), "entropy": float(-(q * math.log(q) + (1 - q) * math.log(1 - q)))}


class MountainCarEnergy(Controller):
    def act(self, obs, episode):
        return (2 if float(obs[1]) >= 0 else 0), {}


class AcrobotEnergy(Controller):
    def act(self, obs, episode):
        return (2 if float(obs[5]) > 0 else 0), {}


class PendulumSwingUp(Controller):
    def act(self, obs, episode):
        c, s, w = (float(u) for u in obs)
        th = math.atan2(s, c)
        if c > 0.85:
            u = -(12 * th + 2.5 * w)
        else:
            energy = 0.5 * w * w + 10 * (c - 1)
            u = 2.0 * math.copysign(1.0, w) * (1 if energy < 0 else -1)
        return np.array([max(-2.0, min(2.0, u))], np.float32), {}


class Probing(Controller):
    """Another controller, except every fifth episode plays one constant action (a baseline probe)."""

    def __init__(self, inner: Controller, constant):
        self.inner, self.constant, self.env, self.rng = inner, constant, inner.env, inner.rng

    def act(self, obs, episode):
        if episode % 5 == 4:
            return self.constant, {}
        return self.inner.act(obs, episode)


class CareerHeuristic(Controller):
    def __init__(self, env, seed, name="burnout_threshold"):
        super().__init__(env, seed)
        from rlaudit.agents.heuristics import make_heuristic

        self.agent = make_heuristic(name, seed=seed)
        self.stochastic = name == "random"

    def act(self, obs, episode):
        a, info = self.agent.act(obs)
        return int(a), {k: info[k] for k in ("logp", "entropy") if k in info} if self.stochastic else {}

    def greedy(self, obs, episode):
        return STAY if self.stochastic else self.act(obs, episode)[0]


class Learner(Controller):
    """rlaudit's DQN or PPO, learning online; logs logp, entropy, value (and q) and its update metrics."""

    stochastic = True

    def __init__(self, env, seed, name: str, **params):
        super().__init__(env, seed)
        from rlaudit.agents.common import make_agent

        self.agent = make_agent(name, env.observation_space, env.action_space, seed=seed, **params)
        self.on_policy = name == "ppo"
        self.sampled = None

    def act(self, obs, episode):
        a, info = self.agent.act(obs, explore=True)
        self.sampled = int(a)
        return int(a), {k: info[k] for k in ("logp", "entropy", "value", "q") if k in info}

    def greedy(self, obs, episode):
        return int(self.agent.act(obs, explore=False)[0])

    def observe(self, obs, action, reward, next_obs, terminated, truncated):
        if self.on_policy and action != self.sampled:
            return None  # an action the policy did not sample is not an on-policy transition
        return self.agent.observe(obs, action, reward, next_obs, terminated, truncated)


# ---------------------------------------------------------------------------
# Bases
# ---------------------------------------------------------------------------


def _career(**env_params):
    import rlaudit.envs  # noqa: F401  (registers the env id)

    return gym.make("rlaudit/Career-v0", disable_env_checker=True, regime="stable", reward="short_term_v1",
                    **({"params": env_params} if env_params else {}))


@dataclass(frozen=True)
class Base:
    name: str
    make_env: Callable[[], gym.Env]
    controller: Callable[[gym.Env, int], Controller]
    config: dict = field(default_factory=dict)  # manifest facts: reward bounds, auditor columns
    learner: bool = False
    episodes: int = EPISODES


CAREER_CONFIG = {"auditor_columns": ["info.burnout", "info.salary"], "reward": "short_term_v1",
                 "auditor_goals": {"info.burnout": "min", "info.salary": "max"}, "reward_task_terms": ["salary"]}

BASES: dict[str, Base] = {b.name: b for b in (
    Base("career-heuristic", _career, lambda e, s: CareerHeuristic(e, s), CAREER_CONFIG),
    Base("career-random", _career, lambda e, s: CareerHeuristic(e, s, "random"), CAREER_CONFIG),
    Base("career-ppo", lambda: _career(max_steps=50), lambda e, s: Learner(e, s, "ppo"), CAREER_CONFIG,
         learner=True, episodes=40),
    Base("career-dqn", lambda: _career(max_steps=50),
         lambda e, s: Learner(e, s, "dqn", train_frequency=4, learning_starts=200), CAREER_CONFIG,
         learner=True, episodes=40),
    Base("cartpole-pd", lambda: gym.make("CartPole-v1"), CartPolePD, {"reward_bounds": [0.0, 1.0]}),
    Base("cartpole-softmax", lambda: gym.make("CartPole-v1"), CartPoleSoftmax, {"reward_bounds": [0.0, 1.0]}),
    Base("cartpole-probe", lambda: gym.make("CartPole-v1"), lambda e, s: Probing(CartPolePD(e, s), 0),
         {"reward_bounds": [0.0, 1.0]}),
    Base("cartpole-random", lambda: gym.make("CartPole-v1"), RandomPolicy, {"reward_bounds": [0.0, 1.0]}),
    Base("mountaincar-energy", lambda: gym.make("MountainCar-v0"), MountainCarEnergy, {"reward_bounds": [-1.0, 0.0]}),
    Base("mountaincar-random", lambda: gym.make("MountainCar-v0"), RandomPolicy, {"reward_bounds": [-1.0, 0.0]}),
    Base("acrobot-energy", lambda: gym.make("Acrobot-v1"), AcrobotEnergy, {"reward_bounds": [-1.0, 0.0]}),
    Base("acrobot-random", lambda: gym.make("Acrobot-v1"), RandomPolicy, {"reward_bounds": [-1.0, 0.0]}, episodes=30),
    Base("pendulum-swingup", lambda: gym.make("Pendulum-v1"), PendulumSwingUp, {"reward_bounds": [-16.2736, 0.0]}),
    Base("pendulum-probe", lambda: gym.make("Pendulum-v1"),
         lambda e, s: Probing(PendulumSwingUp(e, s), np.zeros(1, np.float32)), {"reward_bounds": [-16.2736, 0.0]}),
    Base("pendulum-random", lambda: gym.make("Pendulum-v1"), RandomPolicy, {"reward_bounds": [-16.2736, 0.0]}),
)}


# ---------------------------------------------------------------------------
# Injections
# ---------------------------------------------------------------------------


class EpisodeWrapper(gym.Wrapper):
    """Counts episodes (resets) so an injection knows whether its onset has passed."""

    def __init__(self, env, onset: int):
        super().__init__(env)
        self.onset = onset
        self.episode = -1
        self.t = 0

    @property
    def active(self) -> bool:
        return self.episode >= self.onset

    def reset(self, **kwargs):
        self.episode += 1
        self.t = 0
        return self.env.reset(**kwargs)

    def step(self, action):
        self.t += 1
        obs, r, term, trunc, info = self.env.step(action)
        if self.active:
            obs, r, term, trunc, info = self.inject(action, obs, r, term, trunc, info)
        return obs, r, term, trunc, info

    def inject(self, action, obs, r, term, trunc, info):
        return obs, r, term, trunc, info


class SpikeBug(EpisodeWrapper):
    """A bug pays one huge reward at step 5 of the onset episode and again 11 episodes later."""

    def inject(self, action, obs, r, term, trunc, info):
        if self.episode - self.onset in (0, 11) and self.t == 5:
            r = float(r) + 100.0
        return obs, r, term, trunc, info


class BurnoutBonus(EpisodeWrapper):
    """Career: an 'engagement' bonus proportional to burnout, paid from the onset (a proxy that rewards overwork)."""

    def inject(self, action, obs, r, term, trunc, info):
        bonus = 1.0 * float(info["burnout"])
        info = {**info, "reward_engagement": bonus}
        return obs, float(r) + bonus, term, trunc, info


class GrowingTerm(EpisodeWrapper):
    """Career: a small referral bonus whose weight grows every episode from the onset until it dominates the return."""

    def step(self, action):
        self.t += 1
        obs, r, term, trunc, info = self.env.step(action)
        bonus = 0.002 + (0.02 * (self.episode - self.onset + 1) if self.active else 0.0)
        return obs, float(r) + bonus, term, trunc, {**info, "reward_referral": bonus}


class EdgeBonus(EpisodeWrapper):
    """A bonus paid at the edge of the reachable range: CartPole's track end, Pendulum's full torque."""

    def inject(self, action, obs, r, term, trunc, info):
        sid = self.env.spec.id
        if sid.startswith("CartPole"):
            if float(obs[0]) > 1.5:
                r = float(r) + 2.0
        elif abs(float(np.asarray(action).ravel()[0])) >= 1.99:
            r = float(r) + 4.0
        return obs, r, term, trunc, info


class RespawnBug(EpisodeWrapper):
    """From the onset, every 8 steps after step 20 the env restores the state of step 20 and pays +1 (a checkpoint loop)."""

    saved = None

    def reset(self, **kwargs):
        self.saved = None
        return super().reset(**kwargs)

    def inject(self, action, obs, r, term, trunc, info):
        base = self.env.unwrapped
        if self.t == 20:
            self.saved = np.array(base.state, dtype=np.float64).copy()
        elif self.saved is not None and self.t > 20 and (self.t - 20) % 8 == 0 and not (term or trunc):
            base.state = self.saved.copy() if isinstance(base.state, np.ndarray) else tuple(self.saved)
            obs = np.array(base._get_obs() if hasattr(base, "_get_obs") else base.state, dtype=np.float32)
            r = float(r) + 1.0
        return obs, r, term, trunc, info


class NonFiniteSensor(EpisodeWrapper):
    """At the onset episode a sensor divides by zero: a NaN observation and an infinite reward at step 3."""

    def inject(self, action, obs, r, term, trunc, info):
        if self.episode == self.onset and self.t == 3:
            obs = np.full_like(obs, np.nan)
            r = float("inf")
        return obs, r, term, trunc, info


class DynamicsShift(EpisodeWrapper):
    """The dynamics change at the onset (heavier car, longer pole, weaker motor, recession)."""

    def reset(self, **kwargs):
        out = super().reset(**kwargs)
        if self.episode == self.onset:
            base = self.env.unwrapped
            sid = self.env.spec.id
            if sid.startswith("MountainCar"):
                base.force = 0.0006
            elif sid.startswith("Acrobot"):
                base.LINK_MASS_2 = 3.0
            elif sid.startswith("Pendulum"):
                base.max_torque = 1.0
            else:  # career
                from rlaudit.envs import EnvironmentParams

                base.params = EnvironmentParams.for_regime("recession", max_steps=base.params.max_steps)
        return out


class SparseGoal(EpisodeWrapper):
    """The reward is 1 on reaching the goal and 0 otherwise (a sparse task the policy never solves)."""

    def inject(self, action, obs, r, term, trunc, info):
        return obs, (1.0 if term else 0.0), term, trunc, info


class AliveBonus(EpisodeWrapper):
    """A reward of +0.2 per step alive and +5 at the goal; from the onset the policy earns more by never finishing."""

    def step(self, action):
        self.t += 1
        obs, r, term, trunc, info = self.env.step(action)
        return obs, 0.2 + (5.0 if term else 0.0), term, trunc, info


class NoTermination(EpisodeWrapper):
    """CartPole without its failure termination: every policy survives to truncation (a degenerate task)."""

    def step(self, action):
        self.t += 1
        obs, r, term, trunc, info = self.env.step(action)
        base = self.env.unwrapped
        if term:  # the pole fell or the cart left: the bug keeps the episode going
            base.steps_beyond_terminated = None
            term = False
            r = 1.0
        return obs, r, term, trunc, info


class TorqueCostOnly(EpisodeWrapper):
    """Pendulum whose reward is only the torque cost: doing nothing is optimal (a degenerate task)."""

    def step(self, action):
        self.t += 1
        obs, r, term, trunc, info = self.env.step(action)
        u = float(np.asarray(action).ravel()[0])
        return obs, -0.1 * u * u, term, trunc, info


class Unseeded(EpisodeWrapper):
    """From the onset the env ignores the reset seed it is given (a re-seeding bug)."""

    def reset(self, *, seed=None, options=None):
        self.episode += 1
        self.t = 0
        if self.active and seed is not None:
            seed = seed + 7919
        return self.env.reset(seed=seed, options=options)


@dataclass(frozen=True)
class Injection:
    """One catalogue failure: how it changes the env, the actions, the logged values and metrics."""

    detector: str
    bases: tuple[str, ...]  # bases it applies to, the first is used by the small suite
    description: str
    wrapper: type[EpisodeWrapper] | None = None
    act: Callable[[Controller, Any, int, int, Any, dict], tuple[Any, dict]] | None = None
    metrics: Callable[[dict, int, int], dict] | None = None
    repeat: bool = False  # records the run twice (same config and seed)
    whole_run: bool = False


def _constant_action(ctrl, obs, episode, onset, action, info):
    if episode < onset:
        return action, info
    space = ctrl.env.action_space
    a = 0 if isinstance(space, gym.spaces.Discrete) else np.full(space.shape, float(space.low[0]) / 2, np.float32)
    return a, ({"logp": 0.0, "entropy": 0.0} if ctrl.stochastic else {})


def _collapse(ctrl, obs, episode, onset, action, info):
    """Entropy decays to zero over five episodes from the onset: the policy becomes its own greedy action."""
    if episode < onset:
        return action, info
    decay = 0.35 ** (episode - onset + 1)
    a = ctrl.greedy(obs, episode)
    if "entropy" in info and ctrl.rng.random() < decay:
        return action, {**info, "entropy": float(info["entropy"]) * decay}
    return a, {**info, "logp": math.log(max(1 - decay / 2, 1e-12)), "entropy": float(info.get("entropy", 0.0)) * decay}


def _hack(ctrl, obs, episode, onset, action, info):
    """Career: from the onset the policy learns to stay: it switches only when burnout passes 0.75."""
    if episode < onset:
        return action, info
    ramp = min(1.0, (episode - onset + 1) / 8)
    if ctrl.rng.random() < ramp:
        return (SWITCH if float(obs[1]) > 0.75 else STAY), info
    return action, info


def _edge(ctrl, obs, episode, onset, action, info):
    if episode < onset:
        return action, info
    if isinstance(ctrl, CartPolePD):
        x, v, th, w = (float(u) for u in obs)
        return int(10 * th + w + 0.1 * (x - 1.8) + 0.2 * v > 0), info
    return np.array([2.0 if float(obs[2]) >= 0 else -2.0], np.float32), info


def _degrade(ctrl, obs, episode, onset, action, info):
    """From the onset the policy's weights are corrupted: 70% of actions are replaced by noise."""
    if episode < onset or ctrl.rng.random() >= 0.7:
        return action, info
    space = ctrl.env.action_space
    if isinstance(space, gym.spaces.Discrete):
        return int(ctrl.rng.integers(space.n)), info
    return ctrl.rng.uniform(space.low, space.high).astype(np.float32), info


def _idle(ctrl, obs, episode, onset, action, info):
    """With an alive bonus the policy stops pursuing the goal (engines idle, no torque)."""
    if episode < onset:
        return action, info
    return 1, info


def _no_gradient(ctrl, obs, episode, onset, action, info):
    """A policy-gradient learner updated after every episode: under a reward that is 0 everywhere every
    advantage is 0, so each update leaves it the (uniform random) policy it was initialised as."""
    return action, {**info, "policy_version": episode}


def _explode_values(ctrl, obs, episode, onset, action, info):
    if episode < onset:
        return action, info
    g = 1.25 ** (episode - onset + 1)
    out = dict(info)
    if "value" in out:
        out["value"] = float(out["value"]) * g + 5.0 * g
    if "q" in out:
        out["q"] = np.asarray(out["q"], dtype=np.float32) * g + 5.0 * g
    return action, out


def _explode_metrics(metrics, episode, onset):
    if episode < onset:
        return metrics
    g = 1.25 ** (episode - onset + 1)
    return {k: (v * g + 5.0 * g if k in ("q_mean", "q_max", "value_mean") else v) for k, v in metrics.items()}


def _unstable_metrics(metrics, episode, onset):
    """From the onset the optimiser diverges (learning rate set 100x too high)."""
    if episode < onset:
        return metrics
    g = 3.0 ** min(episode - onset + 1, 8)
    out = dict(metrics)
    for key in ("loss", "value_loss", "td_error"):
        if key in out:
            out[key] = float(out[key]) * g * 10
    if "grad_norm" in out:
        out["grad_norm"] = float(out["grad_norm"]) * g * 20
    if "approx_kl" in out:
        out["approx_kl"] = float(out["approx_kl"]) + 0.05 * g
    if "clip_fraction" in out:
        out["clip_fraction"] = min(1.0, 0.4 + 0.05 * g)
    if "explained_variance" in out:
        out["explained_variance"] = -float(g)
    return out


INJECTIONS: dict[str, Injection] = {i.detector: i for i in (
    Injection("reward-hacking", ("career-heuristic", "career-random"),
              "an engagement bonus of 1.0 x burnout per step; the policy learns to stay until burnout passes 0.75",
              wrapper=BurnoutBonus, act=_hack),
    Injection("reward-spike", ("cartpole-pd", "career-heuristic", "mountaincar-energy", "pendulum-swingup"),
              "one +100 reward at step 5 of the onset episode and of the episode 11 later", wrapper=SpikeBug),
    Injection("reward-term-dominance", ("career-heuristic", "career-random", "career-ppo"),
              "a referral term of 0.002 per step whose weight grows by 0.02 per episode from the onset",
              wrapper=GrowingTerm),
    Injection("boundary-exploitation", ("pendulum-swingup", "cartpole-pd"),
              "a bonus at full torque (Pendulum) or at the track end (CartPole x > 1.5); the policy moves there",
              wrapper=EdgeBonus, act=_edge),
    Injection("state-cycling", ("cartpole-pd", "mountaincar-energy"),
              "a respawn bug restores the state of step 20 every 8 steps and pays +1", wrapper=RespawnBug),
    Injection("action-repetition", ("cartpole-random", "career-heuristic", "pendulum-swingup", "acrobot-energy"),
              "from the onset every action is the same constant", act=_constant_action),
    Injection("policy-collapse", ("cartpole-softmax", "career-random", "career-ppo"),
              "entropy decays by x0.35 per episode from the onset: the policy becomes deterministic", act=_collapse),
    Injection("value-explosion", ("career-ppo", "career-dqn"),
              "logged values, Q values and their metrics grow by x1.25 per episode from the onset",
              act=_explode_values, metrics=_explode_metrics),
    Injection("non-finite", ("cartpole-pd", "career-heuristic", "pendulum-swingup"),
              "a NaN observation and an infinite reward at step 3 of the onset episode", wrapper=NonFiniteSensor),
    Injection("regime-shift", ("mountaincar-energy", "acrobot-energy", "pendulum-swingup", "career-heuristic"),
              "the dynamics change at the onset (weaker motor, heavier link, weaker torque, recession)",
              wrapper=DynamicsShift),
    Injection("sparse-reward-stall", ("mountaincar-random", "acrobot-random"),
              "the reward is 1 at the goal and 0 elsewhere; a learner updated every episode stays the random policy "
              "it started as (no advantage, no gradient) and never gets there",
              wrapper=SparseGoal, act=_no_gradient, whole_run=True),
    Injection("performance-collapse", ("cartpole-pd", "mountaincar-energy", "acrobot-energy", "pendulum-swingup"),
              "from the onset 70% of actions are replaced by noise (corrupted weights), never recovered", act=_degrade),
    Injection("training-instability", ("career-ppo", "career-dqn"),
              "from the onset losses, gradient norms and KL blow up and explained variance turns negative",
              metrics=_unstable_metrics),
    Injection("truncation-exploitation", ("mountaincar-energy", "acrobot-energy"),
              "+0.2 per step alive and +5 at the goal; from the onset the policy idles until truncation",
              wrapper=AliveBonus, act=_idle),
    Injection("degenerate-environment", ("pendulum-probe", "cartpole-probe"),
              "a task every constant policy solves: CartPole without failure termination, Pendulum paying only torque cost",
              wrapper=None, whole_run=True),
    Injection("irreproducible", ("cartpole-pd", "career-heuristic", "pendulum-swingup"),
              "the run is recorded twice with the same config and seed; the second ignores reset seeds from the onset",
              wrapper=Unseeded, repeat=True),
)}


def _degenerate_wrapper(base: str) -> type[EpisodeWrapper]:
    return NoTermination if base.startswith("cartpole") else TorqueCostOnly


# ---------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One audited unit: a base, a seed, and the planted failure (None for a clean case)."""

    base: str
    seed: int
    detector: str | None = None
    onset: int | None = None
    repeat: bool = False  # a clean case recorded twice, the twin of an irreproducible plant

    @property
    def name(self) -> str:
        kind = self.detector or ("clean-repeat" if self.repeat else "clean")
        return f"{kind}--{self.base}--s{self.seed}"

    @property
    def run_ids(self) -> tuple[str, ...]:
        first = f"{self.base}-s{self.seed}"
        twice = self.repeat or (self.detector is not None and INJECTIONS[self.detector].repeat)
        return (first, first + "-repeat") if twice else (first,)

    @property
    def whole_run(self) -> bool:
        return self.detector in WHOLE_RUN


def onset_for(detector: str, base: str, seed: int) -> int:
    """A planted onset between episodes 25 and 39, varied by case."""
    if detector in WHOLE_RUN:
        return 0
    key = sum(map(ord, detector + base)) + 13 * seed
    return 25 + key % 15 if BASES[base].episodes >= 50 else 10 + key % 8


SMALL_CLEAN = ("career-heuristic", "career-random", "career-ppo", "cartpole-pd", "cartpole-softmax", "cartpole-probe",
               "cartpole-random", "mountaincar-energy", "mountaincar-random", "acrobot-energy", "pendulum-swingup",
               "pendulum-probe", "pendulum-random")


def cases(size: str = "small") -> list[Case]:
    """The clean and planted cases of the ``small`` or ``full`` suite."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    out: list[Case] = []
    if size == "small":
        seeds = (0,)
        clean_bases = SMALL_CLEAN
        plants = [(d, inj.bases[0]) for d, inj in INJECTIONS.items()]
        repeats = ("cartpole-pd",)
    else:
        seeds = (0, 1, 2)
        clean_bases = tuple(BASES)
        plants = [(d, b) for d, inj in INJECTIONS.items() for b in inj.bases]
        repeats = INJECTIONS["irreproducible"].bases
    for seed in seeds:
        out += [Case(b, seed) for b in clean_bases]
        out += [Case(b, seed, repeat=True) for b in repeats]
        out += [Case(b, seed, d, onset_for(d, b, seed)) for d, b in plants]
    return out


# ---------------------------------------------------------------------------
# Recording
# ---------------------------------------------------------------------------


def _wrapper_for(case: Case) -> type[EpisodeWrapper] | None:
    if case.detector is None:
        return None
    if case.detector == "degenerate-environment":
        return _degenerate_wrapper(case.base)
    return INJECTIONS[case.detector].wrapper


def _record_one(case: Case, folder: Path, run_id: str, *, planted: bool) -> None:
    from rlaudit.recorder.wrappers import RecordTrajectory

    base = BASES[case.base]
    inj = INJECTIONS[case.detector] if planted and case.detector else None
    env = base.make_env()
    onset = case.onset if case.onset is not None else 0
    wrapper = _wrapper_for(case) if planted else None
    if wrapper is not None:
        env = wrapper(env, onset)
    ctrl = base.controller(env, case.seed)
    config = {"gamma": GAMMA, "seed": case.seed, "controller": case.base, **base.config}
    rec = RecordTrajectory(env, folder, run_id, config=config, info_prefix="reward_", flush_steps=50_000)
    try:
        for ep in range(base.episodes):
            obs, _ = rec.reset(seed=1000 * case.seed + ep)
            while True:
                action, info = ctrl.act(obs, ep)
                if inj is not None and inj.act is not None:
                    action, info = inj.act(ctrl, obs, ep, onset, action, info)
                if info:
                    rec.set_policy_info(**info)
                nxt, reward, term, trunc, _ = rec.step(action)
                metrics = ctrl.observe(obs, action, reward, nxt, term, trunc)
                if metrics:
                    if inj is not None and inj.metrics is not None:
                        metrics = inj.metrics(metrics, ep, onset)
                    rec.log_metrics(rec.recorder.global_step, **metrics)
                obs = nxt
                if term or trunc:
                    break
    finally:
        rec.close()


def suite_version() -> str:
    """A fingerprint of this file: a recorded case is reused only by the suite definition that recorded it."""
    import hashlib

    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def record_case(case: Case, store: Path, *, fresh: bool = False) -> Path:
    """Record ``case`` into ``store/<case.name>`` (reused when this suite version recorded it); return the folder."""
    folder = Path(store) / case.name
    done = folder / "case.json"
    if done.exists() and not fresh:
        try:
            if json.loads(done.read_text()).get("suite_version") == suite_version():
                return folder
        except ValueError:
            pass
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    ids = case.run_ids
    if BASES[case.base].learner:
        from rlaudit.agents.common import torch_settings

        with torch_settings(1):
            return _record_case_runs(case, folder, ids)
    return _record_case_runs(case, folder, ids)


def _record_case_runs(case: Case, folder: Path, ids: tuple[str, ...]) -> Path:
    done = folder / "case.json"
    _record_one(case, folder, ids[0], planted=case.detector is not None and not INJECTIONS[case.detector].repeat)
    if len(ids) == 2:
        _record_one(case, folder, ids[1], planted=case.detector is not None)
    done.write_text(json.dumps({"case": case.name, "runs": list(ids), "detector": case.detector,
                                "onset": case.onset, "suite_version": suite_version()}, sort_keys=True) + "\n")
    return folder


def _record_worker(args) -> str:
    case, store, fresh = args
    return str(record_case(case, Path(store), fresh=fresh))


def record_all(cases_: list[Case], store: Path, *, processes: int = 2, fresh: bool = False) -> list[Path]:
    """Record every case (two processes by default), longest first; reuse finished folders unless ``fresh``."""
    order = sorted(cases_, key=lambda c: (not BASES[c.base].learner, c.name))
    if processes <= 1:
        return [record_case(c, store, fresh=fresh) for c in order]
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(processes) as pool:
        list(pool.imap_unordered(_record_worker, [(c, str(store), fresh) for c in order]))
    return [Path(store) / c.name for c in cases_]


# ---------------------------------------------------------------------------
# Auditing
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseResult:
    case: Case
    found: dict[str, list]  # detector -> its findings on this case
    statuses: dict[str, str]  # detector -> worst status over the case's runs


def audit_case(case: Case, folder: Path, specs) -> CaseResult:
    """Run ``specs`` over the case's folder alone."""
    import rlaudit
    from rlaudit.detectors.runner import run_detectors

    with rlaudit.open(folder, threads=1) as store:
        out = run_detectors(store, specs)
    found: dict[str, list] = {}
    for f in out.findings:
        found.setdefault(f.detector, []).append(f)
    rank = {"error": 3, "found": 2, "clean": 1, "skipped": 0}
    statuses: dict[str, str] = {}
    for r in out.results:
        if rank[r.status] >= rank.get(statuses.get(r.detector, "skipped"), 0):
            statuses[r.detector] = r.status
    return CaseResult(case, found, statuses)


def onset_error(case: Case, findings) -> int | None:
    """|first finding's episode_start - planted onset| for onset-type plants (None when not measurable)."""
    if case.onset is None or case.whole_run:
        return None
    starts = [f.episode_start for f in findings if f.episode_start is not None]
    return abs(min(starts) - case.onset) if starts else None
