"""The reward registry: ten versioned reward functions for the career env.

A reward is built by name, ``get_reward("short_term_v1", burnout_weight=2.0)``,
and called once per step with the state before and after the action::

    terms = reward.step(prev_state, action, state, terminated, truncated)

It returns its *terms*, a dict whose keys are always ``reward.terms`` in that
order (zeros where a term does not apply); the reward is those terms added
left to right (:func:`total`). Rewards with episode memory (shaping,
windows, milestones, delayed scores) forget it in :meth:`Reward.reset`, which
the env calls on every reset.

States are :class:`CareerState` tuples of Python floats, the same values the
env puts in ``info`` (not the float32 observation), so a reward can be
recomputed offline from recorded ``info`` columns with
:meth:`CareerState.from_info`.
"""

from __future__ import annotations

import math
import numbers
from collections import deque
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar, NamedTuple

from rlaudit.errors import unknown_name
from rlaudit.errors import ConfigError

STAY = 0
SWITCH = 1


class CareerState(NamedTuple):
    """The career env's state as Python floats (what ``info`` reports)."""

    salary: float
    """Salary in dollars, clipped to [min_salary, max_salary]."""
    salary_norm: float
    """(salary - min_salary) / (max_salary - min_salary), in [0, 1]."""
    burnout: float
    """Burnout in [0, burnout_threshold]."""
    tenure: int
    """Months since the last SWITCH."""
    tenure_norm: float
    """min(tenure / 100, 1)."""
    market: float
    """Market condition in [-1, 1]."""

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> CareerState:
        """Rebuild the state from an env ``info`` dict (or a recorded info row)."""
        tenure = int(info["tenure"])
        return cls(
            float(info["salary"]),
            float(info["salary_norm"]),
            float(info["burnout"]),
            tenure,
            min(tenure / 100.0, 1.0),
            float(info["market_condition"]),
        )


def total(terms: Mapping[str, float]) -> float:
    """The reward of a step: its terms added left to right in their order."""
    value = 0.0
    for term in terms.values():
        value += term
    return value


class Reward:
    """Base class of the registered rewards.

    Subclasses set the class attributes below, ``defaults`` (parameter name ->
    default value; the type of the default is the type accepted), and
    implement :meth:`step`.
    """

    name: ClassVar[str]
    version: ClassVar[int]
    terms: ClassVar[tuple[str, ...]]
    defaults: ClassVar[Mapping[str, Any]]
    summary: ClassVar[str]
    formula: ClassVar[str]
    intended_behavior: ClassVar[str]
    failure_modes: ClassVar[Mapping[str, str]]

    def __init__(self, **params: Any) -> None:
        for key in params:
            if key not in self.defaults:
                raise unknown_name(f"parameter of reward {self.name!r}", key, self.defaults)
        merged = dict(self.defaults)
        for key, value in params.items():
            merged[key] = _check_param(self.name, key, value, self.defaults[key])
        self.params: dict[str, Any] = merged
        for key, value in merged.items():
            setattr(self, key, value)
        self._validate()
        self.reset()

    def _validate(self) -> None:
        """Checks across parameters; raise ConfigError."""

    def reset(self) -> None:
        """Forget the episode memory; called by the env on every reset."""

    def step(
        self,
        prev: CareerState,
        action: int,
        state: CareerState,
        terminated: bool,
        truncated: bool,
    ) -> dict[str, float]:
        """The terms of one transition ``prev --action--> state``."""
        raise NotImplementedError

    def term_bounds(self, env: Any = None) -> dict[str, tuple[float, float]]:
        """Per-step ``(low, high)`` of each term in an env with parameters ``env``.

        ``env`` is an :class:`~rlaudit.envs.params.EnvironmentParams` (default:
        the stable regime); the bounds use its salary range, burnout threshold
        and horizon. They hold for every transition the env can produce; they
        may be loose, never too tight.
        """
        raise NotImplementedError

    def bounds(self, env: Any = None) -> tuple[float, float]:
        """Per-step ``(low, high)`` of the reward: the term bounds added up (see :meth:`term_bounds`)."""
        terms = self.term_bounds(_env_params(env))
        return (sum(lo for lo, _ in terms.values()), sum(hi for _, hi in terms.values()))

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.params.items() if v != self.defaults[k]}
        args = ", ".join(f"{k}={v!r}" for k, v in changed.items())
        return f"get_reward({self.name!r}{', ' if args else ''}{args})"

    @classmethod
    def describe(cls) -> str:
        """Markdown documentation: formula, terms, parameters, intent, failure modes."""
        lines = [
            f"### {cls.name}",
            "",
            cls.summary,
            "",
            "**Formula.** " + cls.formula,
            "",
            "**Terms** (in order): " + ", ".join(f"`{t}`" for t in cls.terms),
            "",
            "**Parameters:** "
            + ", ".join(f"`{k}={v!r}`" for k, v in cls.defaults.items()),
            "",
            "**Intended behaviour.** " + cls.intended_behavior,
            "",
            "**Known failure modes.**",
            "",
        ]
        lines += [f"- `{mode}`: {text}" for mode, text in cls.failure_modes.items()]
        return "\n".join(lines) + "\n"


def _env_params(env: Any) -> Any:
    if env is None:
        from rlaudit.envs.params import EnvironmentParams

        return EnvironmentParams()
    return env


def _interval(*values: float) -> tuple[float, float]:
    """The smallest interval holding ``values``."""
    return (float(min(values)), float(max(values)))


def _times(weight: float, low: float, high: float) -> tuple[float, float]:
    """``weight * x`` for x in [low, high]."""
    return _interval(weight * low, weight * high)


def _add(*intervals: tuple[float, float]) -> tuple[float, float]:
    return (sum(lo for lo, _ in intervals), sum(hi for _, hi in intervals))


def _burnout_term(weight: float, env: Any, power: int = 1) -> tuple[float, float]:
    """``-weight * b**power`` for burnout b in [0, burnout_threshold]."""
    return _times(-weight, 0.0, env.burnout_threshold**power)


def _potential(reward: Any, env: Any) -> tuple[float, float]:
    """Range of the shaping potential Phi of the shaped rewards."""
    return _add(
        _times(reward.potential_salary_weight, 0.0, 1.0),
        _burnout_term(reward.potential_burnout_weight, env, 2),
        _times(reward.potential_tenure_weight, 0.0, 0.5),
    )


def _check_param(reward: str, key: str, value: Any, default: Any) -> Any:
    where = f"reward {reward!r} parameter {key}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false; found {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ConfigError(f"{where} must be a positive integer; found {value!r}")
        return int(value)
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ConfigError(f"{where} must be a number; found {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where} must be finite; found {value!r}")
        return float(value)
    if isinstance(default, tuple):
        try:
            items = tuple(float(v) for v in value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where} must be a sequence of numbers; found {value!r}") from None
        if not all(math.isfinite(v) for v in items):
            raise ConfigError(f"{where} must hold finite numbers; found {value!r}")
        return items
    raise TypeError(f"unsupported default type for {where}")


_REGISTRY: dict[str, type[Reward]] = {}


def register_reward(cls: type[Reward]) -> type[Reward]:
    """Class decorator adding a reward to the registry under ``cls.name``."""
    if cls.name in _REGISTRY:
        raise ConfigError(f"reward {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def list_rewards() -> list[str]:
    """Registered reward names, in registration order."""
    return list(_REGISTRY)


def reward_class(name: str) -> type[Reward]:
    """The class registered under ``name``."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise unknown_name("reward", name, _REGISTRY) from None


def get_reward(name: str, **params: Any) -> Reward:
    """A new reward ``name`` built with ``params`` (unknown names are errors)."""
    return reward_class(name)(**params)


def describe_reward(name: str | None = None) -> str:
    """Markdown documentation of one reward, or of all of them."""
    if name is not None:
        return reward_class(name).describe()
    return "\n".join(cls.describe() for cls in _REGISTRY.values())


# ---------------------------------------------------------------------------
# Dense rewards


@register_reward
class ShortTermV1(Reward):
    name = "short_term_v1"
    version = 1
    terms = ("salary", "burnout_penalty", "termination_penalty")
    defaults = MappingProxyType(
        {
            "salary_weight": 1.0,
            "burnout_weight": 1.0,
            "normalize_salary": True,
            "min_salary": 30_000.0,
            "max_salary": 300_000.0,
            "termination_penalty": -1.0,
        }
    )
    summary = "Immediate pay minus immediate burnout; the benchmark reward."
    formula = (
        "salary_weight * s - burnout_weight * b, where s = (salary - min_salary) / "
        "(max_salary - min_salary) from the dollar salary (salary / 100000 if "
        "normalize_salary is false) and b is the burnout after the action; plus "
        "termination_penalty on a burnout termination."
    )
    intended_behavior = (
        "Earn as much as possible each month while keeping burnout low, "
        "switching jobs when burnout builds up."
    )
    failure_modes = MappingProxyType(
        {
            "reward_hacking": "SWITCH is nearly dominant (it raises pay and lowers burnout), "
            "so a constant always-switch policy scores about 177 and the learner "
            "just finds it; the reward says nothing about job stability.",
            "myopic_behavior": "each step pays immediately, so a learner with little "
            "bootstrapping (the reference DQN) acts like a contextual bandit.",
            "burnout_spiral": "the burnout penalty is linear and the termination "
            "penalty only -1, so at max salary staying a few more months until "
            "burnout can look better than a switch that risks a pay cut.",
        }
    )

    def _validate(self) -> None:
        if not self.min_salary < self.max_salary:
            raise ConfigError(
                f"reward {self.name!r}: min_salary must be below max_salary; "
                f"found {self.min_salary} and {self.max_salary}"
            )
        self._span = self.max_salary - self.min_salary

    def term_bounds(self, env=None):
        env = _env_params(env)
        if self.normalize_salary:
            s = ((env.min_salary - self.min_salary) / self._span, (env.max_salary - self.min_salary) / self._span)
        else:
            s = (env.min_salary / 100_000.0, env.max_salary / 100_000.0)
        return {
            "salary": _times(self.salary_weight, *s),
            "burnout_penalty": _burnout_term(self.burnout_weight, env),
            "termination_penalty": _interval(0.0, self.termination_penalty),
        }

    def step(self, prev, action, state, terminated, truncated):
        if self.normalize_salary:
            s = (state.salary - self.min_salary) / self._span
        else:
            s = state.salary / 100_000.0
        return {
            "salary": self.salary_weight * s,
            "burnout_penalty": -self.burnout_weight * state.burnout,
            "termination_penalty": self.termination_penalty if terminated else 0.0,
        }


@register_reward
class ShortTermV2(Reward):
    name = "short_term_v2"
    version = 2
    terms = ("salary", "burnout_penalty", "termination_penalty")
    defaults = MappingProxyType(
        {"salary_weight": 1.0, "burnout_weight": 2.0, "termination_penalty": -2.0}
    )
    summary = "Immediate pay minus a quadratic burnout penalty."
    formula = (
        "salary_weight * s - burnout_weight * b**2 (s = normalised salary, b = burnout "
        "after the action); plus termination_penalty on a burnout termination."
    )
    intended_behavior = (
        "Like short_term_v1, but tolerate mild burnout and punish high burnout "
        "sharply, to keep the agent away from the burnout edge."
    )
    failure_modes = MappingProxyType(
        {
            "over_conservative": "the doubled, quadratic penalty can make a learner "
            "switch at the first sign of burnout and give up tenure growth.",
            "salary_avoidance": "because burnout rises faster at high salary, a "
            "learner may prefer to stay poor rather than pay the burnout price.",
        }
    )

    def term_bounds(self, env=None):
        env = _env_params(env)
        return {
            "salary": _times(self.salary_weight, 0.0, 1.0),
            "burnout_penalty": _burnout_term(self.burnout_weight, env, 2),
            "termination_penalty": _interval(0.0, self.termination_penalty),
        }

    def step(self, prev, action, state, terminated, truncated):
        b = state.burnout
        return {
            "salary": self.salary_weight * state.salary_norm,
            "burnout_penalty": -self.burnout_weight * (b * b),
            "termination_penalty": self.termination_penalty if terminated else 0.0,
        }


class _ShapedBase(Reward):
    """Shared potential bookkeeping of long_term_shaped_v1 and v2."""

    def reset(self) -> None:
        self._prev_potential: float | None = None

    def _validate(self) -> None:
        if not 0.0 <= self.gamma <= 1.0:
            raise ConfigError(f"reward {self.name!r}: gamma must be in [0, 1]; found {self.gamma}")

    def _shaping_bounds(self, env: Any) -> tuple[float, float]:
        """shaping is gamma * Phi' - Phi, -Phi or 0."""
        lo, hi = _potential(self, env)
        return _interval(0.0, self.gamma * lo - hi, self.gamma * hi - lo, -hi, -lo)

    def _potential(self, state: CareerState) -> float:
        b = state.burnout
        return (
            self.potential_salary_weight * state.salary_norm
            - self.potential_burnout_weight * (b * b)
            + self.potential_tenure_weight * min(state.tenure_norm, 0.5)
        )

    def _shaping(self, state: CareerState, done: bool) -> float:
        prev_potential = self._prev_potential
        if done:
            self._prev_potential = None
            return -prev_potential if prev_potential else 0.0
        potential = self._potential(state)
        self._prev_potential = potential
        if prev_potential is None:
            return 0.0
        return self.gamma * potential - prev_potential


_SHAPED_DEFAULTS = {
    "gamma": 0.99,
    "burnout_weight": 1.0,
    "potential_salary_weight": 1.0,
    "potential_burnout_weight": 2.0,
    "potential_tenure_weight": 0.5,
    "termination_penalty": -5.0,
}

_SHAPED_FORMULA = (
    "s - burnout_weight * b + shaping, with potential "
    "Phi(x) = potential_salary_weight * s - potential_burnout_weight * b**2 + "
    "potential_tenure_weight * min(tenure_norm, 0.5). shaping = gamma * Phi(s') - Phi(s) "
    "from the second step of an episode on, 0 on the first step; on the last step "
    "(terminated or truncated) shaping = -Phi(s) instead. Plus termination_penalty on a "
    "burnout termination."
)


@register_reward
class LongTermShapedV1(_ShapedBase):
    name = "long_term_shaped_v1"
    version = 1
    terms = ("salary", "burnout_penalty", "shaping", "termination_penalty")
    defaults = MappingProxyType(dict(_SHAPED_DEFAULTS))
    summary = "short_term_v1 plus potential-based shaping toward pay, low burnout and tenure."
    formula = _SHAPED_FORMULA
    intended_behavior = (
        "Encourage long-term career health: salary growth, low burnout and "
        "some tenure, without changing which policy is optimal."
    )
    failure_modes = MappingProxyType(
        {
            "potential_function_mismatch": "it is not textbook potential-based "
            "shaping: the first step gets no shaping and the last step subtracts "
            "Phi(s) whether the episode terminated or was truncated, so the optimal "
            "policy can change; and Phi rewards salary, which switching already buys.",
            "shaping_reward_hacking": "the shaping pays for salary increases, so it "
            "pays exactly what switching already pays; always-switch scores about 175, "
            "as much as the learners.",
        }
    )

    def term_bounds(self, env=None):
        env = _env_params(env)
        return {
            "salary": (0.0, 1.0),
            "burnout_penalty": _burnout_term(self.burnout_weight, env),
            "shaping": self._shaping_bounds(env),
            "termination_penalty": _interval(0.0, self.termination_penalty),
        }

    def step(self, prev, action, state, terminated, truncated):
        return {
            "salary": state.salary_norm,
            "burnout_penalty": -self.burnout_weight * state.burnout,
            "shaping": self._shaping(state, terminated or truncated),
            "termination_penalty": self.termination_penalty if terminated else 0.0,
        }


@register_reward
class LongTermShapedV2(_ShapedBase):
    name = "long_term_shaped_v2"
    version = 2
    terms = ("salary", "burnout_penalty", "shaping", "momentum", "termination_penalty")
    defaults = MappingProxyType({**_SHAPED_DEFAULTS, "momentum_weight": 0.5})
    summary = "long_term_shaped_v1 plus a bonus for improving salary and burnout."
    formula = _SHAPED_FORMULA + (
        " Plus momentum = momentum_weight * ((s' - s) + (b - b')) from the second step "
        "of an episode on (0 on the first step)."
    )
    intended_behavior = (
        "Reward progress, not only levels: a rising salary and a falling "
        "burnout earn extra."
    )
    failure_modes = MappingProxyType(
        {
            "momentum_exploitation": "the momentum term pays for change, so a policy "
            "that lets burnout rise and then switches collects the fall each time.",
            "oscillation_for_improvement": "cycling between states (stay, switch, "
            "stay...) manufactures 'improvements' that the momentum term rewards.",
        }
    )

    def reset(self) -> None:
        super().reset()
        self._prev_state: CareerState | None = None

    def term_bounds(self, env=None):
        env = _env_params(env)
        return {
            "salary": (0.0, 1.0),
            "burnout_penalty": _burnout_term(self.burnout_weight, env),
            "shaping": self._shaping_bounds(env),
            "momentum": _times(self.momentum_weight, -(1.0 + env.burnout_threshold), 1.0 + env.burnout_threshold),
            "termination_penalty": _interval(0.0, self.termination_penalty),
        }

    def step(self, prev, action, state, terminated, truncated):
        last = self._prev_state
        if last is None:
            momentum = 0.0
        else:
            momentum = self.momentum_weight * (
                (state.salary_norm - last.salary_norm) + (last.burnout - state.burnout)
            )
        done = terminated or truncated
        self._prev_state = None if done else state
        return {
            "salary": state.salary_norm,
            "burnout_penalty": -self.burnout_weight * state.burnout,
            "shaping": self._shaping(state, done),
            "momentum": momentum,
            "termination_penalty": self.termination_penalty if terminated else 0.0,
        }


@register_reward
class RiskSensitiveV1(Reward):
    name = "risk_sensitive_v1"
    version = 1
    terms = ("salary", "burnout_penalty", "variance_penalty", "termination_penalty")
    defaults = MappingProxyType(
        {
            "risk_aversion": 0.5,
            "window_size": 20,
            "burnout_weight": 1.0,
            "min_variance_samples": 5,
            "termination_penalty": -2.0,
        }
    )
    summary = "short_term_v1 minus the variance of recent per-step rewards."
    formula = (
        "base = s - burnout_weight * b is appended to a window of the last window_size "
        "bases of the episode; once the window holds at least min_variance_samples, "
        "variance_penalty = -risk_aversion * Var(window) (population variance, "
        "current step included). Plus termination_penalty on a burnout termination."
    )
    intended_behavior = "Prefer steady careers over volatile ones with the same mean pay."
    failure_modes = MappingProxyType(
        {
            "over_conservative": "any change of state raises the variance, so the "
            "learner may avoid even profitable switches.",
            "stuck_in_safe_states": "a flat trajectory has zero variance; the learner "
            "can settle for a low but steady reward.",
            "exploration_avoidance": "exploratory actions are punished twice, by their "
            "outcome and by the variance they add.",
        }
    )

    def reset(self) -> None:
        self._window: deque[float] = deque(maxlen=self.window_size)

    def term_bounds(self, env=None):
        env = _env_params(env)
        base = _add((0.0, 1.0), _burnout_term(self.burnout_weight, env))
        # a population variance of values in [lo, hi] is at most (hi - lo)**2 / 4
        return {
            "salary": (0.0, 1.0),
            "burnout_penalty": _burnout_term(self.burnout_weight, env),
            "variance_penalty": _times(-self.risk_aversion, 0.0, (base[1] - base[0]) ** 2 / 4.0),
            "termination_penalty": _interval(0.0, self.termination_penalty),
        }

    def step(self, prev, action, state, terminated, truncated):
        burnout_penalty = -self.burnout_weight * state.burnout
        window = self._window
        window.append(state.salary_norm + burnout_penalty)
        n = len(window)
        if n >= self.min_variance_samples:
            mean = sum(window) / n
            variance = sum((x - mean) * (x - mean) for x in window) / n
            variance_penalty = -self.risk_aversion * variance
        else:
            variance_penalty = 0.0
        return {
            "salary": state.salary_norm,
            "burnout_penalty": burnout_penalty,
            "variance_penalty": variance_penalty,
            "termination_penalty": self.termination_penalty if terminated else 0.0,
        }


@register_reward
class RiskSensitiveCvarV1(Reward):
    name = "risk_sensitive_cvar_v1"
    version = 1
    terms = ("salary", "burnout_penalty", "cvar_penalty", "termination_penalty")
    defaults = MappingProxyType(
        {
            "cvar_alpha": 0.2,
            "cvar_weight": 0.5,
            "window_size": 50,
            "burnout_weight": 1.0,
            "min_cvar_samples": 10,
            "termination_penalty": -3.0,
        }
    )
    summary = "short_term_v1 minus a penalty on the worst recent per-step rewards (CVaR)."
    formula = (
        "base = s - burnout_weight * b is appended to a window of the last window_size "
        "bases; once it holds at least min_cvar_samples values, CVaR = mean of the "
        "worst max(1, floor(cvar_alpha * n)) of them and cvar_penalty = "
        "-cvar_weight * max(0, -CVaR). Plus termination_penalty on a burnout termination."
    )
    intended_behavior = "Avoid bad tails: months with high burnout and low pay."
    failure_modes = MappingProxyType(
        {
            "extreme_conservatism": "the penalty tracks the worst months, so a single "
            "bad stretch keeps costing for window_size steps.",
            "paralysis_in_risky_states": "when recent outcomes were bad, every action "
            "looks equally penalised and the learner stops trying to recover.",
        }
    )

    def _validate(self) -> None:
        if not 0.0 < self.cvar_alpha <= 1.0:
            raise ConfigError(
                f"reward {self.name!r}: cvar_alpha must be in (0, 1]; found {self.cvar_alpha}"
            )

    def reset(self) -> None:
        self._window: deque[float] = deque(maxlen=self.window_size)

    def term_bounds(self, env=None):
        env = _env_params(env)
        base = _add((0.0, 1.0), _burnout_term(self.burnout_weight, env))
        return {
            "salary": (0.0, 1.0),
            "burnout_penalty": _burnout_term(self.burnout_weight, env),
            "cvar_penalty": _times(-self.cvar_weight, 0.0, max(0.0, -base[0])),
            "termination_penalty": _interval(0.0, self.termination_penalty),
        }

    def step(self, prev, action, state, terminated, truncated):
        burnout_penalty = -self.burnout_weight * state.burnout
        window = self._window
        window.append(state.salary_norm + burnout_penalty)
        n = len(window)
        if n >= self.min_cvar_samples:
            k = max(1, int(self.cvar_alpha * n))
            worst = sorted(window)[:k]
            cvar = sum(worst) / k
            cvar_penalty = -self.cvar_weight * max(0.0, -cvar)
        else:
            cvar_penalty = 0.0
        return {
            "salary": state.salary_norm,
            "burnout_penalty": burnout_penalty,
            "cvar_penalty": cvar_penalty,
            "termination_penalty": self.termination_penalty if terminated else 0.0,
        }


# ---------------------------------------------------------------------------
# Sparse rewards


@register_reward
class SparseV1(Reward):
    name = "sparse_v1"
    version = 1
    terms = ("step_penalty", "success_bonus", "termination_penalty")
    defaults = MappingProxyType(
        {
            "salary_threshold": 0.7,
            "burnout_threshold": 0.3,
            "success_bonus": 10.0,
            "termination_penalty": -5.0,
            "step_penalty": 0.0,
        }
    )
    summary = "Only the outcome counts: a bonus for ending well, a penalty for burning out."
    formula = (
        "step_penalty on every step; termination_penalty on a burnout termination; "
        "success_bonus when the episode is truncated (reaches max_steps) with "
        "s >= salary_threshold and b <= burnout_threshold."
    )
    intended_behavior = "Reach a well-paid, low-burnout career by the end of the horizon."
    failure_modes = MappingProxyType(
        {
            "exploration_failure": "nothing is learned until an episode happens to "
            "reach the goal at the last step.",
            "credit_assignment_difficulty": "one number at the end of up to 200 steps "
            "must be credited to every decision.",
            "random_walk_to_goal": "returns are on a different scale than dense "
            "rewards (10 against about 177); comparing them raw says nothing.",
        }
    )

    def term_bounds(self, env=None):
        return {
            "step_penalty": _interval(self.step_penalty),
            "success_bonus": _interval(0.0, self.success_bonus),
            "termination_penalty": _interval(0.0, self.termination_penalty),
        }

    def step(self, prev, action, state, terminated, truncated):
        success = (
            truncated
            and not terminated
            and state.salary_norm >= self.salary_threshold
            and state.burnout <= self.burnout_threshold
        )
        return {
            "step_penalty": self.step_penalty,
            "success_bonus": self.success_bonus if success else 0.0,
            "termination_penalty": self.termination_penalty if terminated else 0.0,
        }


@register_reward
class SparseMilestonesV1(Reward):
    name = "sparse_milestones_v1"
    version = 1
    terms = ("milestone_bonus", "success_bonus", "termination_penalty")
    defaults = MappingProxyType(
        {
            "milestones": (0.3, 0.5, 0.7, 0.9),
            "milestone_bonus": 2.0,
            "success_bonus": 10.0,
            "salary_threshold": 0.6,
            "burnout_threshold": 0.3,
            "termination_penalty": -5.0,
        }
    )
    summary = "sparse_v1 with intermediate bonuses for salary milestones."
    formula = (
        "milestone_bonus for each milestone the normalised salary reaches (s >= m) for "
        "the first time in the episode; termination_penalty on a burnout termination; "
        "success_bonus when truncated with b <= burnout_threshold and s >= salary_threshold."
    )
    intended_behavior = "Guide exploration toward high pay with a few stepping stones."
    failure_modes = MappingProxyType(
        {
            "milestone_camping": "once the milestones are collected, nothing pays "
            "until the end, and the learner may drift.",
            "ignoring_burnout_for_milestones": "milestones reward pay only, so burning "
            "out just after the last milestone still nets +8 - 5.",
        }
    )

    def reset(self) -> None:
        self._reached: set[float] = set()

    def term_bounds(self, env=None):
        return {
            "milestone_bonus": _interval(0.0, self.milestone_bonus * len(self.milestones)),
            "success_bonus": _interval(0.0, self.success_bonus),
            "termination_penalty": _interval(0.0, self.termination_penalty),
        }

    def step(self, prev, action, state, terminated, truncated):
        bonus = 0.0
        s = state.salary_norm
        for milestone in self.milestones:
            if s >= milestone and milestone not in self._reached:
                self._reached.add(milestone)
                bonus += self.milestone_bonus
        success = (
            truncated
            and not terminated
            and state.burnout <= self.burnout_threshold
            and s >= self.salary_threshold
        )
        return {
            "milestone_bonus": bonus,
            "success_bonus": self.success_bonus if success else 0.0,
            "termination_penalty": self.termination_penalty if terminated else 0.0,
        }


# ---------------------------------------------------------------------------
# Delayed rewards


@register_reward
class DelayedV1(Reward):
    name = "delayed_v1"
    version = 1
    terms = ("outcome", "survival_bonus", "goal_bonus", "termination_penalty")
    defaults = MappingProxyType(
        {
            "salary_weight": 1.0,
            "burnout_weight": 2.0,
            "survival_bonus": 5.0,
            "goal_bonus": 3.0,
            "goal_salary": 0.6,
            "goal_burnout": 0.3,
            "termination_penalty": -10.0,
            "normalize_by_steps": True,
        }
    )
    summary = "Zero until the episode ends, then one score for the whole career."
    formula = (
        "0 on every step but the last. On the last step: outcome = salary_weight * "
        "(0.3 * s_final + 0.3 * max s + 0.4 * mean s) - burnout_weight * (mean b, or the "
        "final b if normalize_by_steps is false), over the episode's post-action states; "
        "then termination_penalty on a burnout termination, otherwise survival_bonus, plus "
        "goal_bonus if the final b < goal_burnout and s > goal_salary."
    )
    intended_behavior = "Judge the career as a whole: good pay throughout, low burnout, survival."
    failure_modes = MappingProxyType(
        {
            "credit_assignment_failure": "every step but the last earns 0, so which "
            "decisions mattered is invisible to one-step TD learning.",
            "slow_learning": "value has to propagate back over up to 200 steps.",
            "high_variance_updates": "the whole episode's outcome lands on one transition.",
        }
    )

    def reset(self) -> None:
        self._salary_sum = 0.0
        self._salary_max = -math.inf
        self._burnout_sum = 0.0
        self._steps = 0

    def term_bounds(self, env=None):
        env = _env_params(env)
        return {
            "outcome": _add(_times(self.salary_weight, 0.0, 1.0), _burnout_term(self.burnout_weight, env)),
            "survival_bonus": _interval(0.0, self.survival_bonus),
            "goal_bonus": _interval(0.0, self.goal_bonus),
            "termination_penalty": _interval(0.0, self.termination_penalty),
        }

    def step(self, prev, action, state, terminated, truncated):
        s, b = state.salary_norm, state.burnout
        self._salary_sum += s
        self._salary_max = max(self._salary_max, s)
        self._burnout_sum += b
        self._steps += 1
        if not (terminated or truncated):
            return {"outcome": 0.0, "survival_bonus": 0.0, "goal_bonus": 0.0,
                    "termination_penalty": 0.0}
        n = self._steps
        burnout = self._burnout_sum / n if self.normalize_by_steps else b
        outcome = (
            self.salary_weight * (0.3 * s + 0.3 * self._salary_max + 0.4 * (self._salary_sum / n))
            - self.burnout_weight * burnout
        )
        survived = not terminated
        goal = survived and b < self.goal_burnout and s > self.goal_salary
        self.reset()
        return {
            "outcome": outcome,
            "survival_bonus": self.survival_bonus if survived else 0.0,
            "goal_bonus": self.goal_bonus if goal else 0.0,
            "termination_penalty": 0.0 if survived else self.termination_penalty,
        }


@register_reward
class DelayedHindsightV1(Reward):
    name = "delayed_hindsight_v1"
    version = 1
    terms = ("outcome", "hindsight", "survival_bonus", "termination_penalty")
    defaults = MappingProxyType(
        {
            "counterfactual_weight": 0.3,
            "burnout_weight": 2.0,
            "survival_bonus": 3.0,
            "termination_penalty": -5.0,
        }
    )
    summary = "delayed score plus a hindsight judgement of the episode's actions."
    formula = (
        "0 on every step but the last. On the last step: outcome = s_final - "
        "burnout_weight * b_final; hindsight = counterfactual_weight * h where "
        "h = 0.1 * (number of STAYs) if b_final > 0.7, else -0.1 * (number of SWITCHes) "
        "if SWITCHes are more than 30% of the episode's steps, else 0; then "
        "termination_penalty on a burnout termination, otherwise survival_bonus."
    )
    intended_behavior = (
        "Give the delayed reward a hint of which actions were to blame "
        "(too many stays before burning out, or too many switches)."
    )
    failure_modes = MappingProxyType(
        {
            "hindsight_bias": "an episode that ends above 0.7 burnout earns 0.03 per "
            "STAY, so the more the agent stayed before burning out, the more the "
            "hindsight term pays: it rewards the behaviour it means to blame.",
            "overestimation_of_alternatives": "the hindsight term assumes the other "
            "action would have helped, which the dynamics do not guarantee.",
        }
    )

    def reset(self) -> None:
        self._stays = 0
        self._switches = 0

    def term_bounds(self, env=None):
        env = _env_params(env)
        most = 0.1 * env.max_steps  # 0.1 per STAY or per SWITCH of one episode
        return {
            "outcome": _add((0.0, 1.0), _burnout_term(self.burnout_weight, env)),
            "hindsight": _times(self.counterfactual_weight, -most, most),
            "survival_bonus": _interval(0.0, self.survival_bonus),
            "termination_penalty": _interval(0.0, self.termination_penalty),
        }

    def step(self, prev, action, state, terminated, truncated):
        if action == SWITCH:
            self._switches += 1
        else:
            self._stays += 1
        if not (terminated or truncated):
            return {"outcome": 0.0, "hindsight": 0.0, "survival_bonus": 0.0,
                    "termination_penalty": 0.0}
        s, b = state.salary_norm, state.burnout
        steps = self._stays + self._switches
        if b > 0.7:
            judgement = 0.1 * self._stays
        elif self._switches > 0.3 * steps:
            judgement = -0.1 * self._switches
        else:
            judgement = 0.0
        survived = not terminated
        self.reset()
        return {
            "outcome": s - self.burnout_weight * b,
            "hindsight": self.counterfactual_weight * judgement,
            "survival_bonus": self.survival_bonus if survived else 0.0,
            "termination_penalty": 0.0 if survived else self.termination_penalty,
        }
