"""Parameters of the career environment: fields, market regimes, stress presets.

A market regime supplies seven fields (the ones in :data:`REGIME_FIELDS`).
Any of them given explicitly wins over the regime, whatever its value::

    EnvironmentParams()                                   # the stable regime
    EnvironmentParams(burnout_rate=0.1)                   # stable, but burnout_rate 0.1
    EnvironmentParams.for_regime("boom", switching_risk=0.4)
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import operator
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from rlaudit.errors import unknown_name
from rlaudit.errors import ConfigError

REGIME_FIELDS = (
    "salary_growth_mean",
    "salary_volatility",
    "burnout_rate",
    "switching_risk",
    "job_availability",
    "salary_multiplier",
    "initial_market_mean",
)

REGIMES: MappingProxyType[str, MappingProxyType[str, float]] = MappingProxyType(
    {
        name: MappingProxyType(dict(zip(REGIME_FIELDS, values)))
        for name, values in {
            "stable": (0.03, 0.10, 0.08, 0.25, 0.80, 1.00, 0.0),
            "boom": (0.08, 0.15, 0.12, 0.15, 0.95, 1.30, 0.5),
            "recession": (-0.02, 0.25, 0.15, 0.50, 0.40, 0.85, -0.5),
            "volatile": (0.02, 0.35, 0.10, 0.35, 0.60, 1.10, 0.0),
        }.items()
    }
)
"""Regime name -> values of the :data:`REGIME_FIELDS`."""

STRESS_PRESETS: MappingProxyType[str, tuple[str, MappingProxyType[str, float]]] = MappingProxyType(
    {
        "high_volatility": ("volatile", MappingProxyType({"salary_volatility": 0.4})),
        "rapid_burnout": (
            "stable",
            MappingProxyType({"burnout_rate": 0.3, "burnout_recovery_rate": 0.01}),
        ),
        "risky_switching": (
            "stable",
            MappingProxyType({"switching_risk": 0.7, "job_availability": 0.3}),
        ),
        "long_horizon": ("stable", MappingProxyType({"max_steps": 500, "burnout_rate": 0.05})),
        "harsh_recession": (
            "recession",
            MappingProxyType({"switching_risk": 0.6, "job_availability": 0.2}),
        ),
    }
)
"""Stress preset name -> (regime, overrides)."""

# field -> (low, high, low inclusive, high inclusive)
_BOUNDS: dict[str, tuple[float, float, bool, bool]] = {
    "salary_growth_mean": (-1.0, 1.0, True, True),
    "salary_volatility": (0.0, 0.5, True, True),
    "burnout_rate": (0.01, 0.5, True, True),
    "switching_risk": (0.0, 1.0, True, True),
    "job_availability": (0.0, 1.0, True, True),
    "salary_multiplier": (0.0, 10.0, False, True),
    "initial_market_mean": (-1.0, 1.0, True, True),
    "initial_salary": (0.0, math.inf, False, False),
    "initial_burnout": (0.0, 1.0, True, True),
    "min_salary": (0.0, math.inf, True, False),
    "max_salary": (0.0, math.inf, False, False),
    "max_steps": (1, 100_000, True, True),
    "burnout_recovery_rate": (0.0, 1.0, True, True),
    "burnout_threshold": (0.0, 1.0, False, True),
    "tenure_salary_bonus": (0.0, 1.0, True, True),
    "max_tenure_bonus": (0.0, 1.0, True, True),
}


def _interval(low: float, high: float, low_in: bool, high_in: bool) -> str:
    return f"{'[' if low_in else '('}{low}, {high}{']' if high_in else ')'}"


@dataclass(frozen=True, kw_only=True)
class EnvironmentParams:
    """All parameters of :class:`~rlaudit.envs.CareerEnv`.

    Fields left as ``None`` take their value from ``market_regime`` (see
    :data:`REGIMES`); after construction every field holds a number.
    Invalid values raise :class:`~rlaudit.errors.ConfigError`.
    """

    market_regime: str = "stable"
    """One of stable, boom, recession, volatile; supplies the fields below left as None."""
    salary_growth_mean: float | None = None
    """Annual mean salary growth on STAY."""
    salary_volatility: float | None = None
    """Std of the annual salary change on STAY (scaled by 1 + 0.5 * market)."""
    burnout_rate: float | None = None
    """Base burnout added per STAY."""
    switching_risk: float | None = None
    """Probability that a SWITCH fails."""
    job_availability: float | None = None
    """Scales the raise of a successful SWITCH and the burnout recovery."""
    salary_multiplier: float | None = None
    """Multiplies the salary after a successful SWITCH."""
    initial_market_mean: float | None = None
    """Mean of the market condition drawn at reset (std 0.2, clipped to [-1, 1])."""
    initial_salary: float = 50_000.0
    initial_burnout: float = 0.0
    min_salary: float = 30_000.0
    """Lower clip bound of the salary and zero of the normalised salary."""
    max_salary: float = 300_000.0
    """Upper clip bound of the salary and one of the normalised salary."""
    max_steps: int = 200
    """Truncation horizon; one step is read as one month."""
    burnout_recovery_rate: float = 0.02
    """Base burnout recovery per SWITCH."""
    burnout_threshold: float = 1.0
    """The episode terminates when burnout reaches it."""
    tenure_salary_bonus: float = 0.01
    """Extra annual growth per month of tenure."""
    max_tenure_bonus: float = 0.15
    """Cap on the tenure bonus."""
    _explicit: frozenset[str] = field(default=frozenset(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.market_regime not in REGIMES:
            raise unknown_name("market regime", self.market_regime, REGIMES)
        regime = REGIMES[self.market_regime]
        explicit = set()
        for f in dataclasses.fields(self):
            if f.name in ("market_regime", "_explicit"):
                continue
            value = getattr(self, f.name)
            if value is None:
                if f.name not in regime:
                    raise ConfigError(f"{f.name} must be a number; found None")
                value = regime[f.name]
            elif f.name in regime:
                explicit.add(f.name)
            object.__setattr__(self, f.name, self._checked(f.name, value))
        object.__setattr__(self, "_explicit", frozenset(explicit))
        if not self.min_salary < self.max_salary:
            raise ConfigError(
                f"min_salary must be below max_salary; found min_salary={self.min_salary}, "
                f"max_salary={self.max_salary}"
            )
        if not self.min_salary <= self.initial_salary <= self.max_salary:
            raise ConfigError(
                f"initial_salary must be in [min_salary, max_salary] = "
                f"[{self.min_salary}, {self.max_salary}]; found {self.initial_salary}"
            )
        if not self.initial_burnout < self.burnout_threshold:
            raise ConfigError(
                f"initial_burnout must be below burnout_threshold ({self.burnout_threshold}); "
                f"found {self.initial_burnout}"
            )

    @staticmethod
    def _checked(name: str, value: Any) -> float | int:
        low, high, low_in, high_in = _BOUNDS[name]
        if name == "max_steps":
            if isinstance(value, bool):
                raise ConfigError(f"max_steps must be an integer; found {value!r}")
            try:
                number: float | int = operator.index(value)
            except TypeError:
                raise ConfigError(f"max_steps must be an integer; found {value!r}") from None
        else:
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ConfigError(f"{name} must be a number; found {value!r}")
            number = float(value)
        ok_low = number >= low if low_in else number > low
        ok_high = number <= high if high_in else number < high
        if not (ok_low and ok_high) or number != number:
            raise ConfigError(
                f"{name} must be in {_interval(low, high, low_in, high_in)}; found {value!r}"
            )
        return number

    @classmethod
    def for_regime(cls, name: str, **overrides: Any) -> EnvironmentParams:
        """The parameters of regime ``name``; every override wins over the regime."""
        if "market_regime" in overrides:
            raise ConfigError(
                f"for_regime({name!r}) got market_regime={overrides['market_regime']!r} too; "
                "pass the regime once, as the first argument"
            )
        return cls.from_dict({"market_regime": name, **overrides})

    def with_regime(self, name: str) -> EnvironmentParams:
        """The same parameters under regime ``name``, keeping explicit overrides.

        Use this rather than ``dataclasses.replace(params, market_regime=...)``,
        which would keep the old regime's values as if they were overrides.
        """
        kept = {
            key: value
            for key, value in self.to_dict().items()
            if key != "market_regime" and (key not in REGIME_FIELDS or key in self._explicit)
        }
        return type(self).for_regime(name, **kept)

    @classmethod
    def stress_preset(cls, name: str) -> EnvironmentParams:
        """One of the five stress presets (see :data:`STRESS_PRESETS`)."""
        if name not in STRESS_PRESETS:
            raise unknown_name("stress preset", name, STRESS_PRESETS)
        regime, overrides = STRESS_PRESETS[name]
        return cls.for_regime(regime, **overrides)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EnvironmentParams:
        """Build from a mapping such as :meth:`to_dict` returns; unknown keys are errors."""
        names = [f.name for f in dataclasses.fields(cls) if f.init]
        for key in values:
            if key not in names:
                raise unknown_name("environment parameter", key, names)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Every field (regime fields resolved), JSON-ready; ``from_dict`` inverts it."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}

    @property
    def overridden(self) -> frozenset[str]:
        """Regime fields that were given explicitly instead of taken from the regime."""
        return self._explicit

