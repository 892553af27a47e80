"""value-explosion: the bound from the manifest, runaway growth, over-estimation and stall against realised returns."""

from __future__ import annotations

import pytest

from tests.analyzer.recording import record_run
from tests.detectors.plants import PLANTS, VALUE_CONFIG, _noisy_rewards, record_policy_run
from tests.detectors.test_builtin import _run, _status

NAME = "value-explosion"


def test_plant_beyond_the_bound_and_clean_twin(tmp_path):
    planted = PLANTS[NAME].plant(tmp_path)
    clean = PLANTS[NAME].clean(tmp_path)
    out = _run(tmp_path, NAME)
    (f,) = out.findings
    assert (f.episode_start, f.episode_end, f.step_start, f.step_end) == (
        planted.episode_start, planted.episode_end, planted.step_start, planted.step_end)
    assert f.actual["check"] == "bound" and f.severity == "critical"
    assert f.expected["value_high"] == pytest.approx(20.0) and f.expected["value_low"] == 0.0
    assert f.evidence.rows[0][0] == 59 * 50  # the largest estimate first
    assert _status(out, clean).status == "clean"


def test_without_bounds_runaway_growth_is_still_found(tmp_path):
    record_policy_run(tmp_path, "r", _noisy_rewards(4), value=lambda k, t: 10.0 if k < 40 else 30.0 * 1.2 ** (k - 40),
                      config={"gamma": 0.9})
    (f,) = _run(tmp_path, NAME).findings
    assert f.actual["check"] == "runaway"
    # 30 * 1.2**(k-40) first exceeds 10 x the largest discounted return (about 10) at episode 47; the estimates
    # left the returns' scale at episode 40, where the span starts
    assert f.episode_start == 40 and f.episode_end == 59
    assert f.actual["steps"] == 13 * 50


def test_runaway_limit_is_not_raised_by_bootstrapping_truncated_episodes(tmp_path):
    # every episode is cut by a time limit; the estimates at its last step explode with the rest
    record_policy_run(tmp_path, "r", _noisy_rewards(4), value=lambda k, t: 5.0 if k < 30 else 5.0 * 1.3 ** (k - 30),
                      config={"gamma": 0.99}, truncated=lambda k: True)
    (f,) = _run(tmp_path, NAME).findings
    assert f.actual["check"] == "runaway" and f.episode_end == 59
    assert f.expected["bound"].startswith("not checked: the manifest declares no per-step reward bounds")


@pytest.mark.parametrize("kind, value", [("over", 18.0), ("stall", 2.0)])
def test_over_estimation_and_stall_against_discounted_returns(tmp_path, kind, value):
    # realised discounted return of 50 steps of ~1.0 at gamma 0.9 is about 9.95
    record_policy_run(tmp_path, "r", _noisy_rewards(4), value=lambda k, t: 9.95 if k < 30 else value,
                      config={"gamma": 0.9})
    (f,) = _run(tmp_path, NAME).findings
    assert f.actual["check"] == kind
    assert f.episode_start in range(28, 33) and f.episode_end == 59
    assert f.actual["ci_low"] > 0.5 if kind == "over" else f.actual["ci_high"] < -0.5
    assert f.evidence.columns[-1] == "difference"


def test_a_value_function_still_catching_up_is_not_a_stall(tmp_path):
    # far below the returns but closing the gap steadily
    record_policy_run(tmp_path, "r", _noisy_rewards(4), value=lambda k, t: 1.0 + 0.08 * k, config={"gamma": 0.9})
    out = _run(tmp_path, NAME)
    assert out.findings == () and _status(out, "r").status == "clean"


def test_metrics_beyond_the_bound(tmp_path):
    metrics = [(k * 50 + 49, {"q_max": 15.0 if k < 50 else 400.0}) for k in range(60)]
    record_policy_run(tmp_path, "r", _noisy_rewards(4), metrics=metrics, config=VALUE_CONFIG)
    (f,) = _run(tmp_path, NAME).findings
    assert f.actual["source"] == "metrics" and f.actual["updates"] == 10
    assert (f.step_start, f.episode_start) == (50 * 50 + 49, 50)


def test_truncated_episodes_are_bootstrapped(tmp_path):
    # every episode is cut by a time limit; the value at the last step stands in for the rest
    from rlaudit.recorder.core import Recorder

    with Recorder(tmp_path, "cut", config={"gamma": 0.9}) as rec:
        for k in range(30):
            rec.reset([k, 0.0])
            for t in range(5):
                rec.step(0, [k, t + 1.0], 1.0, False, t == 4, value=10.0)
    out = _run(tmp_path, NAME)
    # the 5-step return is only 4.1, so ignoring the cut tail the value 10 would look 144% too high;
    # bootstrapped with the last value (3.44 + 0.9**4 * 10) it is exact
    assert out.findings == () and _status(out, "cut").status == "clean"


def test_skips_with_reasons(tmp_path):
    record_run(tmp_path, "novalue", _noisy_rewards(1))
    record_policy_run(tmp_path, "nogamma", _noisy_rewards(1), value=lambda k, t: 1.0, config={"agent": "x"})
    out = _run(tmp_path, NAME)
    assert _status(out, "novalue").reason == (
        "needs value estimates: a 'value' or 'q' column, or a q_max / q_mean / value_mean metric")
    assert _status(out, "nogamma").reason.startswith("needs manifest key 'gamma'")


def test_non_finite_values_are_left_to_non_finite_which_finds_them(tmp_path):
    from rlaudit.recorder.core import Recorder

    with Recorder(tmp_path, "nanq", config={"gamma": 0.9, "reward_bounds": [0.0, 1.0]}) as rec:
        for k in range(25):
            rec.reset([k, 0.0])
            for t in range(10):
                bad = (k, t) == (20, 3)
                v = 0.5 * (1 - 0.9 ** (10 - t)) / 0.1  # the true discounted return-to-go
                rec.step(0, [k, t + 1.0], 0.5, t == 9, False, value=float("nan") if bad else v,
                         q=[float("inf") if bad else v, v - 1.0])
    out = _run(tmp_path, NAME)
    assert out.findings == () and _status(out, "nanq").status == "clean"
    nf = _run(tmp_path, "non-finite")
    assert {f.actual["column"] for f in nf.findings} == {"value", "q"}
    assert all(f.step_start == 20 * 10 + 3 for f in nf.findings)
