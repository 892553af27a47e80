"""EnvironmentParams: regimes, precedence of explicit values, validation, presets."""

from __future__ import annotations

import dataclasses
import json

import pytest

from rlaudit.envs import REGIME_FIELDS, REGIMES, STRESS_PRESETS, EnvironmentParams
from rlaudit.errors import ConfigError

# The reference dataclass defaults that its regime logic compared against.
REFERENCE_DEFAULTS = {
    "burnout_rate": 0.10,
    "salary_volatility": 0.15,
    "switching_risk": 0.30,
    "salary_growth_mean": 0.03,
    "job_availability": 0.80,
    "salary_multiplier": 1.00,
}


def test_regime_table_matches_the_reference():
    assert REGIMES["stable"]["burnout_rate"] == 0.08
    assert dict(REGIMES["boom"]) == {
        "salary_growth_mean": 0.08,
        "salary_volatility": 0.15,
        "burnout_rate": 0.12,
        "switching_risk": 0.15,
        "job_availability": 0.95,
        "salary_multiplier": 1.30,
        "initial_market_mean": 0.5,
    }
    assert REGIMES["recession"]["salary_multiplier"] == 0.85
    assert REGIMES["recession"]["initial_market_mean"] == -0.5
    assert REGIMES["volatile"]["salary_volatility"] == 0.35
    assert set(REGIMES) == {"stable", "boom", "recession", "volatile"}


def test_no_argument_params_are_the_stable_regime():
    params = EnvironmentParams()
    assert params.market_regime == "stable"
    for name in REGIME_FIELDS:
        assert getattr(params, name) == REGIMES["stable"][name]
    assert params == EnvironmentParams.for_regime("stable")
    assert params.overridden == frozenset()


@pytest.mark.parametrize("regime", sorted(REGIMES))
def test_explicit_values_equal_to_old_defaults_win_over_the_regime(regime):
    # The reference replaced any value equal to its dataclass default by the
    # regime's value; here an explicit value always wins.
    direct = EnvironmentParams(market_regime=regime, **REFERENCE_DEFAULTS)
    via_for_regime = EnvironmentParams.for_regime(regime, **REFERENCE_DEFAULTS)
    for params in (direct, via_for_regime):
        for name, value in REFERENCE_DEFAULTS.items():
            assert getattr(params, name) == value, name
        assert params.overridden == frozenset(REFERENCE_DEFAULTS)


def test_single_explicit_default_value_is_kept():
    assert EnvironmentParams(burnout_rate=0.1).burnout_rate == 0.1
    assert EnvironmentParams(burnout_rate=0.1).salary_volatility == 0.10  # stable's
    assert EnvironmentParams.for_regime("boom", burnout_rate=0.08).burnout_rate == 0.08


def test_with_regime_keeps_explicit_overrides_only():
    params = EnvironmentParams(burnout_rate=0.3, max_steps=77)
    boom = params.with_regime("boom")
    assert boom.market_regime == "boom"
    assert boom.burnout_rate == 0.3
    assert boom.max_steps == 77
    assert boom.switching_risk == REGIMES["boom"]["switching_risk"]


def test_to_dict_round_trips_every_field_through_json():
    params = EnvironmentParams.for_regime("recession", min_salary=10_000, max_salary=500_000)
    data = json.loads(json.dumps(params.to_dict()))
    assert data["min_salary"] == 10_000.0 and data["max_salary"] == 500_000.0
    assert EnvironmentParams.from_dict(data) == params
    assert set(data) == {f.name for f in dataclasses.fields(EnvironmentParams) if f.init}


def test_params_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        EnvironmentParams().burnout_rate = 0.2  # type: ignore[misc]


def test_unknown_regime_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"unknown market regime 'recesion'.*did you mean 'recession'"):
        EnvironmentParams(market_regime="recesion")
    with pytest.raises(ConfigError, match="did you mean 'boom'"):
        EnvironmentParams.for_regime("bom")


def test_unknown_field_suggests_the_closest():
    with pytest.raises(ConfigError, match="unknown environment parameter 'burnout_rat'.*'burnout_rate'"):
        EnvironmentParams.for_regime("stable", burnout_rat=0.2)
    with pytest.raises(ConfigError, match="switching_risk"):
        EnvironmentParams.from_dict({"switch_risk": 0.2})


def test_for_regime_refuses_a_second_regime():
    with pytest.raises(ConfigError, match="pass the regime once"):
        EnvironmentParams.for_regime("boom", market_regime="stable")


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("burnout_rate", 0.6, r"burnout_rate must be in \[0.01, 0.5\]; found 0.6"),
        ("burnout_rate", 0.0, r"burnout_rate must be in \[0.01, 0.5\]; found 0.0"),
        ("salary_volatility", -0.1, r"salary_volatility must be in \[0.0, 0.5\]; found -0.1"),
        ("switching_risk", 1.5, r"switching_risk must be in \[0.0, 1.0\]; found 1.5"),
        ("job_availability", 2.0, r"job_availability must be in \[0.0, 1.0\]"),
        ("salary_multiplier", 0.0, r"salary_multiplier must be in \(0.0, 10.0\]"),
        ("max_steps", 0, r"max_steps must be in \[1, 100000\]; found 0"),
        ("max_steps", 10.5, "max_steps must be an integer; found 10.5"),
        ("max_steps", True, "max_steps must be an integer"),
        ("initial_burnout", 1.2, r"initial_burnout must be in \[0.0, 1.0\]"),
        ("burnout_threshold", 1.5, r"burnout_threshold must be in \(0.0, 1.0\]"),
        ("burnout_rate", float("nan"), "burnout_rate must be in"),
        ("burnout_rate", "0.1", "burnout_rate must be a number; found '0.1'"),
        ("initial_market_mean", 1.5, r"initial_market_mean must be in \[-1.0, 1.0\]"),
    ],
)
def test_validation_says_expected_and_found(field, value, expected):
    with pytest.raises(ConfigError, match=expected):
        EnvironmentParams(**{field: value})


def test_cross_field_validation():
    with pytest.raises(ConfigError, match="min_salary must be below max_salary"):
        EnvironmentParams(min_salary=300_000, max_salary=30_000)
    with pytest.raises(ConfigError, match=r"initial_salary must be in \[min_salary, max_salary\]"):
        EnvironmentParams(initial_salary=20_000)
    with pytest.raises(ConfigError, match="initial_burnout must be below burnout_threshold"):
        EnvironmentParams(initial_burnout=0.5, burnout_threshold=0.5)


def test_numpy_numbers_are_accepted_and_stored_as_python_numbers():
    np = pytest.importorskip("numpy")
    params = EnvironmentParams(burnout_rate=np.float32(0.25), max_steps=np.int64(120))
    assert type(params.burnout_rate) is float and params.burnout_rate == pytest.approx(0.25)
    assert type(params.max_steps) is int and params.max_steps == 120


def test_stress_presets():
    assert set(STRESS_PRESETS) == {
        "high_volatility",
        "rapid_burnout",
        "risky_switching",
        "long_horizon",
        "harsh_recession",
    }
    high_vol = EnvironmentParams.stress_preset("high_volatility")
    assert high_vol.market_regime == "volatile" and high_vol.salary_volatility == 0.4
    rapid = EnvironmentParams.stress_preset("rapid_burnout")
    assert (rapid.burnout_rate, rapid.burnout_recovery_rate) == (0.3, 0.01)
    risky = EnvironmentParams.stress_preset("risky_switching")
    assert (risky.switching_risk, risky.job_availability) == (0.7, 0.3)
    long = EnvironmentParams.stress_preset("long_horizon")
    assert (long.max_steps, long.burnout_rate) == (500, 0.05)
    harsh = EnvironmentParams.stress_preset("harsh_recession")
    assert harsh.market_regime == "recession"
    assert (harsh.switching_risk, harsh.job_availability) == (0.6, 0.2)
    assert harsh.salary_multiplier == REGIMES["recession"]["salary_multiplier"]
    with pytest.raises(ConfigError, match="did you mean 'long_horizon'"):
        EnvironmentParams.stress_preset("long_horizons")
