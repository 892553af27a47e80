"""CareerEnv: a monthly career simulation with a stay-or-switch decision.

Dynamics, in the order of one ``step(action)`` (u ~ U[0, 1), z ~ N(0, 1), all
drawn from ``self.np_random`` in exactly this order):

1. STAY (draws z, u):
   growth = salary_growth_mean + min(tenure * tenure_salary_bonus, max_tenure_bonus);
   change = growth + salary_volatility * (1 + 0.5 * market) * z;
   salary *= 1 + change / 12;
   burnout += burnout_rate * (1 + 0.3 * (salary / initial_salary - 1)) * U(0.8, 1.2);
   tenure += 1.
   SWITCH (draws u, u, u): switches += 1; the switch succeeds if u > switching_risk;
   success: salary *= (1 + U(0.05, 0.25) * job_availability) * salary_multiplier;
   failure: salary *= 1 - U(0, 0.15);
   burnout = max(0, burnout - burnout_recovery_rate * (1 + 0.5 * job_availability)
   - U(0.05, 0.15)); tenure = 0.
2. market = clip(market - 0.1 * market + 0.1 * z, -1, 1)   (draws z).
3. salary clipped to [min_salary, max_salary], burnout to [0, burnout_threshold].
4. terminated = burnout >= burnout_threshold; truncated = step >= max_steps.

``reset`` draws the market once: clip(initial_market_mean + 0.2 * z, -1, 1).
See docs/career-env.md for the full specification.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded
from gymnasium.utils import seeding

from rlaudit.envs.params import EnvironmentParams
from rlaudit.envs.rewards import STAY, SWITCH, CareerState, Reward, get_reward
from rlaudit.errors import ConfigError

ACTION_NAMES = ("STAY", "SWITCH")
DEFAULT_SEED = 0
"""Seed of the generator when ``reset`` has never been given one."""
DEFAULT_REWARD = "short_term_v1"

INITIAL_MARKET_STD = 0.2
MARKET_REVERSION = 0.1
MARKET_NOISE_STD = 0.1

# U(low, high) is computed as low + (high - low) * u, as numpy's Generator.uniform does.
_STAY_BURNOUT_LOW, _STAY_BURNOUT_SPAN = 0.8, 1.2 - 0.8
_RAISE_LOW, _RAISE_SPAN = 0.05, 0.25 - 0.05
_CUT_LOW, _CUT_SPAN = 0.0, 0.15 - 0.0
_RECOVERY_LOW, _RECOVERY_SPAN = 0.05, 0.15 - 0.05
_TWO_POW_MINUS_53 = 1.0 / 9007199254740992.0
_FLOAT32 = np.dtype(np.float32)


_tuple_new = tuple.__new__  # builds a CareerState without NamedTuple.__new__'s overhead



def resolve_params(
    regime: str | None, params: EnvironmentParams | Mapping[str, Any] | None
) -> EnvironmentParams:
    """The EnvironmentParams described by the env's ``regime`` and ``params`` kwargs."""
    if params is None:
        return EnvironmentParams.for_regime(regime) if regime is not None else EnvironmentParams()
    if isinstance(params, EnvironmentParams):
        if regime is not None and regime != params.market_regime:
            raise ConfigError(
                f"regime={regime!r} disagrees with params.market_regime="
                f"{params.market_regime!r}; pass one of them"
            )
        return params
    if isinstance(params, Mapping):
        values = dict(params)
        if regime is not None:
            if values.get("market_regime", regime) != regime:
                raise ConfigError(
                    f"regime={regime!r} disagrees with params['market_regime']="
                    f"{values['market_regime']!r}; pass one of them"
                )
            values["market_regime"] = regime
        return EnvironmentParams.from_dict(values)
    raise ConfigError(
        "params must be an EnvironmentParams or a mapping of its fields; "
        f"found {type(params).__name__}"
    )


class CareerEnv(gym.Env):
    """Stay in the current job (0) or switch jobs (1), once a month.

    Args:
        regime: market regime name (stable, boom, recession, volatile); default stable.
        params: an :class:`EnvironmentParams` or a dict of its fields; explicit
            fields win over the regime.
        reward: a registered reward name (default ``"short_term_v1"``) or a
            :class:`~rlaudit.envs.rewards.Reward` instance; ``step`` returns it
            and puts its terms in ``info`` as ``reward_<term>``.
        reward_params: parameters of the named reward.
        render_mode: ``"ansi"`` (``render()`` returns text) or ``"human"``
            (the text is printed after every reset and step).

    Observation (float32): normalised salary in [0, 1], burnout in
    [0, burnout_threshold], tenure / 100 capped at 1, market in [-1, 1].

    Seeding: ``reset(seed=s)`` reseeds ``self.np_random``; ``reset()`` without a
    seed continues the current generator, which starts from ``DEFAULT_SEED``
    (0) if no seed was ever given. Nothing draws OS entropy, so an episode is a
    function of the seeds and the actions.
    """

    metadata = {"render_modes": ["ansi", "human"], "render_fps": 4}

    def __init__(
        self,
        regime: str | None = None,
        params: EnvironmentParams | Mapping[str, Any] | None = None,
        reward: str | Reward = DEFAULT_REWARD,
        reward_params: Mapping[str, Any] | None = None,
        render_mode: str | None = None,
    ) -> None:
        self.params = resolve_params(regime, params)
        if isinstance(reward, Reward):
            if reward_params:
                raise ConfigError("reward_params only apply to a reward given by name")
            self.reward_fn = reward
        elif isinstance(reward, str):
            self.reward_fn = get_reward(reward, **dict(reward_params or {}))
        else:
            raise ConfigError(
                f"reward must be a reward name or a Reward; found {type(reward).__name__}"
            )
        self._reward_keys = tuple((term, "reward_" + term) for term in self.reward_fn.terms)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ConfigError(
                f"render_mode must be one of {self.metadata['render_modes']} or None; "
                f"found {render_mode!r}"
            )
        self.render_mode = render_mode

        p = self.params
        self.action_space = spaces.Discrete(2)
        self.observation_space = spaces.Box(
            low=np.array([0.0, 0.0, 0.0, -1.0], dtype=np.float32),
            high=np.array([1.0, 1.0, 1.0, 1.0], dtype=np.float32),
            dtype=np.float32,
        )
        self._np_random, self._np_random_seed = seeding.np_random(DEFAULT_SEED)
        self._bind_rng(self._np_random)

        self._min_salary = p.min_salary
        self._max_salary = p.max_salary
        self._salary_span = p.max_salary - p.min_salary
        self._threshold = p.burnout_threshold
        self._max_steps = p.max_steps
        self._switch_recovery = p.burnout_recovery_rate * (1.0 + 0.5 * p.job_availability)

        self._state: CareerState | None = None
        self._switches = 0
        self._step_count = 0
        # resets so far; kept out of info, which must be a function of seed and actions
        self.episode_count = 0
        self._done = True
        self._last_action: int | None = None

    # -- gymnasium API -----------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        p = self.params
        z = self._np_random.standard_normal()
        market = min(max(p.initial_market_mean + INITIAL_MARKET_STD * z, -1.0), 1.0)
        salary = p.initial_salary
        salary_norm = (salary - self._min_salary) / self._salary_span
        self._state = CareerState(salary, salary_norm, p.initial_burnout, 0, 0.0, market)
        self._switches = 0
        self._step_count = 0
        self.episode_count += 1
        self._done = False
        self._last_action = None
        self.reward_fn.reset()
        state = self._state
        info = {
            "salary": state.salary,
            "salary_norm": state.salary_norm,
            "burnout": state.burnout,
            "tenure": 0,
            "market_condition": market,
            "job_switches": 0,
            "step": 0,
        }
        if self.render_mode == "human":
            print(self._render_text())
        return self._observation(state), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._done:
            raise ResetNeeded(
                "CareerEnv.step() called before reset() or after the episode ended; call reset()"
            )
        p = self.params
        rng = self._np_random
        if rng is not self._bound_rng:
            self._bind_rng(rng)
        random_raw = self._random_raw  # u = (random_raw() >> 11) * 2**-53 == rng.random()
        prev = self._state
        salary, burnout, tenure, market = prev.salary, prev.burnout, prev.tenure, prev.market
        self._step_count += 1

        if action == SWITCH:
            action = SWITCH
            self._switches += 1
            if (random_raw() >> 11) * _TWO_POW_MINUS_53 > p.switching_risk:
                u = (random_raw() >> 11) * _TWO_POW_MINUS_53
                salary = salary * (1.0 + (_RAISE_LOW + _RAISE_SPAN * u) * p.job_availability)
                salary = salary * p.salary_multiplier
            else:
                u = (random_raw() >> 11) * _TWO_POW_MINUS_53
                salary = salary * (1.0 - (_CUT_LOW + _CUT_SPAN * u))
            u = (random_raw() >> 11) * _TWO_POW_MINUS_53
            burnout = burnout - self._switch_recovery - (_RECOVERY_LOW + _RECOVERY_SPAN * u)
            if burnout < 0.0:
                burnout = 0.0
            tenure = 0
        elif action == STAY:
            action = STAY
            growth = p.salary_growth_mean + min(tenure * p.tenure_salary_bonus, p.max_tenure_bonus)
            change = growth + p.salary_volatility * (1.0 + 0.5 * market) * rng.standard_normal()
            salary = salary * (1.0 + change / 12.0)
            u = (random_raw() >> 11) * _TWO_POW_MINUS_53
            burnout = burnout + p.burnout_rate * (1.0 + 0.3 * (salary / p.initial_salary - 1.0)) * (
                _STAY_BURNOUT_LOW + _STAY_BURNOUT_SPAN * u
            )
            tenure += 1
        else:
            raise ValueError(f"action must be 0 (STAY) or 1 (SWITCH); found {action!r}")

        market = market - MARKET_REVERSION * market + MARKET_NOISE_STD * rng.standard_normal()
        market = -1.0 if market < -1.0 else (1.0 if market > 1.0 else market)
        salary = self._min_salary if salary < self._min_salary else (
            self._max_salary if salary > self._max_salary else salary
        )
        threshold = self._threshold
        burnout = 0.0 if burnout < 0.0 else (threshold if burnout > threshold else burnout)

        salary_norm = (salary - self._min_salary) / self._salary_span
        tenure_norm = tenure / 100.0 if tenure < 100 else 1.0
        state = _tuple_new(CareerState, (salary, salary_norm, burnout, tenure, tenure_norm, market))
        self._state = state
        self._last_action = action
        terminated = burnout >= threshold
        truncated = self._step_count >= self._max_steps
        self._done = terminated or truncated

        terms = self.reward_fn.step(prev, action, state, terminated, truncated)
        info = {
            "salary": salary,
            "salary_norm": salary_norm,
            "burnout": burnout,
            "tenure": tenure,
            "market_condition": market,
            "job_switches": self._switches,
            "step": self._step_count,
            "action_taken": ACTION_NAMES[action],
            "prev_salary": prev.salary,
            "prev_burnout": prev.burnout,
            "termination_reason": "burnout" if terminated else ("max_steps" if truncated else ""),
        }
        reward = 0.0
        for term, key in self._reward_keys:
            value = terms[term]
            info[key] = value
            reward += value
        if self.render_mode == "human":
            print(self._render_text())
        observation = np.array((salary_norm, burnout, tenure_norm, market), _FLOAT32)
        return observation, reward, terminated, truncated, info

    def render(self) -> str | None:
        if self.render_mode is None:
            gym.logger.warn(
                "CareerEnv.render() called without a render_mode; "
                'create the env with render_mode="ansi" or "human"'
            )
            return None
        text = self._render_text()
        if self.render_mode == "ansi":
            return text
        print(text)
        return None

    # -- helpers -------------------------------------------------------------

    @staticmethod
    def _observation(state: CareerState) -> np.ndarray:
        return np.array(
            (state.salary_norm, state.burnout, state.tenure_norm, state.market), dtype=_FLOAT32
        )

    def __getstate__(self) -> dict[str, Any]:
        # the bound draw function closes over a generator; rebuild it after copy/unpickle
        state = self.__dict__.copy()
        del state["_bound_rng"], state["_random_raw"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._bind_rng(self._np_random)

    def _bind_rng(self, rng: np.random.Generator) -> None:
        """Bind a fast source of 64-bit words w with (w >> 11) * 2**-53 == rng.random()."""
        self._bound_rng = rng
        if type(rng.bit_generator) is np.random.PCG64:
            # numpy's PCG64 next_double is (next_uint64 >> 11) * 2**-53
            self._random_raw = rng.bit_generator.random_raw
        else:
            # every numpy next_double is a multiple of 2**-53; rebuild a word from it
            draw = rng.random
            self._random_raw = lambda: int(draw() * 9007199254740992.0) << 11

    @property
    def state(self) -> CareerState | None:
        """The current state (None before the first reset)."""
        return self._state

    def _render_text(self) -> str:
        state = self._state
        if state is None:
            return "CareerEnv: not reset yet"
        width = 20

        def bar(fraction: float) -> str:
            filled = int(round(max(0.0, min(1.0, fraction)) * width))
            return "[" + "#" * filled + "." * (width - filled) + "]"

        last = "-" if self._last_action is None else ACTION_NAMES[self._last_action]
        status = ""
        if self._done and self._step_count > 0:
            status = "  (burned out)" if state.burnout >= self._threshold else "  (horizon reached)"
        return "\n".join(
            [
                f"Career  episode {self.episode_count}  month {self._step_count}/{self._max_steps}"
                f"  regime {self.params.market_regime}{status}",
                f"  salary   ${state.salary:>10,.0f}  {bar(state.salary_norm)}"
                f" {state.salary_norm:.2f}",
                f"  burnout  {state.burnout:>11.2f}  {bar(state.burnout / self._threshold)}",
                f"  tenure   {state.tenure:>4d} months   job switches {self._switches}",
                f"  market   {state.market:>+11.2f}  last action {last}",
            ]
        )
