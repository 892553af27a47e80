"""Learning-health detectors: policy-collapse, regime-shift, performance-collapse, sparse-reward-stall, training-instability."""

from __future__ import annotations

import numpy as np
import pytest

from tests.analyzer.recording import record_run
from tests.detectors.plants import EPISODES, LENGTH, PLANTS, _noisy_rewards, _update_metrics, record_policy_run
from tests.detectors.test_builtin import _run, _status

LEARNING = ["policy-collapse", "regime-shift", "performance-collapse", "sparse-reward-stall", "training-instability"]


def _span(f):
    return (f.episode_start, f.episode_end, f.step_start, f.step_end)


@pytest.mark.parametrize("name", LEARNING)
def test_plant_found_with_its_span_and_clean_twin_not(name, tmp_path):
    planted = PLANTS[name].plant(tmp_path)
    clean = PLANTS[name].clean(tmp_path)
    out = _run(tmp_path, name)  # also re-executes every evidence SQL
    (f,) = out.findings
    assert f.run_id == planted.run_id
    assert _span(f) == (planted.episode_start, planted.episode_end, planted.step_start, planted.step_end)
    assert _status(out, clean).status == "clean"
    assert f.evidence.rows and f.expected and f.actual


def test_policy_collapse_details(tmp_path):
    PLANTS["policy-collapse"].plant(tmp_path)
    (f,) = _run(tmp_path, "policy-collapse").findings
    assert f.actual["source"] == "entropy" and f.actual["entropy_after"] < 0.1
    assert f.expected["entropy_early"] == pytest.approx(0.6 / np.log(2), rel=1e-3)
    assert abs(f.actual["return_gain_sd"]) < 0.5
    assert f.evidence.columns[:2] == ("step_window", "steps") and f.phase == "train"


def test_policy_collapse_from_actions_when_no_entropy_is_logged(tmp_path):
    record_policy_run(tmp_path, "acts", _noisy_rewards(11), action=lambda k, t: t % 2 if k < 30 else 0,
                      metrics=_update_metrics(11))
    (f,) = _run(tmp_path, "policy-collapse").findings
    assert f.actual["source"] == "actions" and f.episode_start == 30
    assert "top_share" in f.evidence.columns


@pytest.mark.parametrize("case", ["deterministic-from-start", "converged-while-learning", "stays-stochastic"])
def test_policy_collapse_not_flagged(tmp_path, case):
    if case == "deterministic-from-start":  # a heuristic: entropy 0 throughout
        record_policy_run(tmp_path, "r", _noisy_rewards(12), entropy=lambda k, t: 0.0, learning=False)
    elif case == "converged-while-learning":  # entropy decays over 25 episodes as the returns rise: convergence
        ramp = lambda k: min(1.0, max(0.0, (k - 20) / 25))  # noqa: E731
        rewards = [list(np.full(LENGTH, 0.2 + 0.8 * ramp(k)) + 0.1 * np.random.default_rng(k).standard_normal(LENGTH))
                   for k in range(EPISODES)]
        record_policy_run(tmp_path, "r", rewards, entropy=lambda k, t: 0.6 - 0.59 * ramp(k))
    else:
        record_policy_run(tmp_path, "r", _noisy_rewards(12), entropy=lambda k, t: 0.5)
    out = _run(tmp_path, "policy-collapse")
    assert out.findings == () and _status(out, "r").status == "clean"


def test_policy_collapse_skips_runs_without_actions_to_judge(tmp_path):
    record_run(tmp_path, "short", [[1.0] * 5] * 4)
    out = _run(tmp_path, "policy-collapse")
    assert _status(out, "short").status == "skipped"
    assert _status(out, "short").reason == "needs at least 10 finished training episodes, run has 4"


def test_regime_shift_p_value_and_oscillation(tmp_path):
    PLANTS["regime-shift"].plant(tmp_path)
    (f,) = _run(tmp_path, "regime-shift").findings
    assert f.p_method.startswith("AR(1) parametric bootstrap") and f.p_value < 0.01
    assert f.actual["level_before"] == pytest.approx(50, abs=1) and f.actual["level_after"] == pytest.approx(75, abs=1)
    assert not f.actual["learning_run"]
    # a level that drops and comes back: the span ends where it came back; two changes
    rng = np.random.default_rng(13)
    rewards = [list((0.6 if 25 <= k < 40 else 1.0) + 0.1 * rng.standard_normal(LENGTH)) for k in range(EPISODES)]
    record_run(tmp_path / "dip", "dip", rewards)
    (g,) = _run(tmp_path / "dip", "regime-shift").findings
    assert (g.episode_start, g.episode_end) == (25, 39) and g.actual["changes"] == 2


def test_regime_shift_treats_learning_as_learning(tmp_path):
    # a learning run that improves abruptly: an upward change is learning, not a regime shift
    rng = np.random.default_rng(14)
    rewards = [list((0.2 if k < 30 else 1.0) + 0.1 * rng.standard_normal(LENGTH)) for k in range(EPISODES)]
    record_policy_run(tmp_path, "learns", rewards, metrics=_update_metrics(14))
    record_run(tmp_path, "fixed", rewards)  # the same curve from a fixed policy is non-stationary
    out = _run(tmp_path, "regime-shift")
    assert _status(out, "learns").status == "clean"
    assert _status(out, "fixed").status == "found"


def test_regime_shift_is_quiet_on_autocorrelated_noise(tmp_path):
    # AR(1) noise with phi = 0.8 around a constant level: no shift
    found = 0
    for seed in range(10):
        rng = np.random.default_rng(100 + seed)
        x = np.zeros(EPISODES)
        for k in range(1, EPISODES):
            x[k] = 0.8 * x[k - 1] + rng.standard_normal()
        rewards = [[1.0 + 0.02 * x[k]] * LENGTH for k in range(EPISODES)]
        record_run(tmp_path / str(seed), f"ar{seed}", rewards)
        found += len(_run(tmp_path / str(seed), "regime-shift").findings)
    assert found <= 1


def test_performance_collapse_needs_the_drop_to_last(tmp_path):
    rng = np.random.default_rng(15)
    level = lambda k: 0.2 + 0.8 * min(k, 15) / 15 if not 35 <= k < 45 else 0.4  # noqa: E731
    rewards = [list(level(k) + 0.1 * rng.standard_normal(LENGTH)) for k in range(EPISODES)]
    record_policy_run(tmp_path, "dip", rewards, metrics=_update_metrics(15))
    out = _run(tmp_path, "performance-collapse")
    assert _status(out, "dip").status == "clean"  # it recovered
    PLANTS["performance-collapse"].plant(tmp_path / "p")
    (f,) = _run(tmp_path / "p", "performance-collapse").findings
    assert f.actual["drop_of_climb"] > 0.5 and f.p_value < 0.01 and f.p_method.startswith("AR(1)")


def test_sparse_reward_stall_details_and_skips(tmp_path):
    PLANTS["sparse-reward-stall"].plant(tmp_path)
    (f,) = _run(tmp_path, "sparse-reward-stall").findings
    assert f.actual["reward_mode"] == 0.0 and f.actual["informative_fraction"] == pytest.approx(6 / 3000)
    assert [r[0] for r in f.evidence.rows] == [1, 2, 3] and f.p_value is None
    # a fixed policy is not a learning run: skipped with the reason
    record_run(tmp_path / "h", "heuristic", [[0.0] * 50] * 30)
    out = _run(tmp_path / "h", "sparse-reward-stall")
    assert _status(out, "heuristic").status == "skipped"
    assert "not a learning run" in _status(out, "heuristic").reason
    # a dense reward is not sparse
    record_policy_run(tmp_path / "d", "dense", _noisy_rewards(16), metrics=_update_metrics(16))
    assert _status(_run(tmp_path / "d", "sparse-reward-stall"), "dense").status == "clean"


@pytest.mark.parametrize("check", ["clip", "ev", "grad", "loss"])
def test_training_instability_checks(tmp_path, check):
    n = 400  # updates, several per episode
    rng = np.random.default_rng(17)
    metrics = []
    for i in range(n):
        m = {"train/approx_kl": 0.01, "train/clip_fraction": 0.1, "train/explained_variance": 0.5,
             "train/loss": 1.0 + 0.1 * rng.random(), "train/grad_norm": float(np.exp(0.1 * rng.standard_normal()))}
        if check == "clip" and 200 <= i < 260:
            m["train/clip_fraction"] = 0.5
        if check == "ev" and 300 <= i < 350:
            m["train/explained_variance"] = -0.4
        if check == "grad" and i in (250, 320):
            m["train/grad_norm"] = 1e4
        if check == "loss" and i >= 380:
            m["train/loss"] = 1e3
        metrics.append((i * 7, m))  # SB3-style names, global_step 7 apart
    record_policy_run(tmp_path, "r", _noisy_rewards(17), metrics=metrics)
    (f,) = _run(tmp_path, "training-instability").findings
    assert f.actual["check"] == check and f.actual["metric"].startswith("train/")
    expected = {"clip": (1400, 259 * 7), "ev": (2100, 349 * 7), "grad": (1750, 2240), "loss": (2660, 399 * 7)}[check]
    assert (f.step_start, f.step_end) == expected
    assert f.episode_start == f.step_start // LENGTH and f.episode_end == f.step_end // LENGTH
    if check == "grad":
        assert [r[0] for r in f.evidence.rows] == [1750, 2240]


def test_training_instability_quiet_on_transient_loss_spikes(tmp_path):
    metrics = _update_metrics(18, loss=lambda k, v: 80.0 if k in (20, 45) else v)  # DQN-like target-update spikes
    record_policy_run(tmp_path, "r", _noisy_rewards(18), metrics=metrics)
    out = _run(tmp_path, "training-instability")
    assert out.findings == () and _status(out, "r").status == "clean"


def test_training_instability_skips_runs_without_metrics(tmp_path):
    record_run(tmp_path, "r", _noisy_rewards(19))
    out = _run(tmp_path, "training-instability")
    assert _status(out, "r").status == "skipped" and "metrics" in _status(out, "r").reason


def test_training_instability_a_loss_growing_with_the_returns_is_not_a_blow_up(tmp_path):
    # PPO's value loss grows with the returns it predicts: 1000x over training, smoothly
    metrics = [(k * 50 + 49, {"train/value_loss": float(10 ** (3 * k / 59))}) for k in range(60)]
    record_policy_run(tmp_path, "grows", _noisy_rewards(20), metrics=metrics)
    jump = [(k * 50 + 49, {"train/value_loss": 1.0 if k < 40 else 500.0}) for k in range(60)]
    record_policy_run(tmp_path, "jumps", _noisy_rewards(20), metrics=jump)
    out = _run(tmp_path, "training-instability")
    assert _status(out, "grows").status == "clean"
    (f,) = out.findings
    assert f.run_id == "jumps" and f.episode_start == 40 and f.actual["check"] == "loss"


def test_sparse_reward_stall_constant_reward_informs_through_length(tmp_path):
    # CartPole-like: +1 every step, episode lengths vary -> dense enough; MountainCar-like: -1 and always the limit
    rng = np.random.default_rng(21)
    record_policy_run(tmp_path, "alive", [[1.0] * int(rng.integers(10, 60)) for _ in range(40)],
                      metrics=_update_metrics(21))
    record_policy_run(tmp_path, "stuck", [[-1.0] * 50 for _ in range(40)], metrics=_update_metrics(21))
    out = _run(tmp_path, "sparse-reward-stall")
    assert _status(out, "alive").status == "clean"
    (f,) = out.findings
    assert f.run_id == "stuck" and f.actual["reward_mode"] == -1.0


def test_training_instability_kl_judged_on_a_short_log(tmp_path):
    # seven PPO updates (a short run): too few for the sustained checks, enough for the absolute KL limit
    every = EPISODES // 7
    metrics = [(step, m) for k, (step, m) in enumerate(_update_metrics(4)) if k % every == every - 1][:7]
    blown = [(step, dict(m, approx_kl=1.5 if i >= 4 else m["approx_kl"])) for i, (step, m) in enumerate(metrics)]
    record_policy_run(tmp_path, "short-kl", _noisy_rewards(4), metrics=blown)
    (f,) = _run(tmp_path, "training-instability").findings
    assert f.actual["check"] == "kl" and f.actual["updates"] == 3
    assert f.step_start == blown[4][0] and f.step_end == blown[6][0]
    record_policy_run(tmp_path / "twin", "short-kl", _noisy_rewards(4), metrics=metrics)
    assert _run(tmp_path / "twin", "training-instability").findings == ()


def test_policy_collapse_abrupt_even_while_the_returns_rise(tmp_path):
    # entropy falls from 0.6 to ~0 within three episodes at episode 30, while the returns rise a little
    rewards = [list(np.full(LENGTH, 0.5 + (0.05 if k >= 30 else 0.0))
                    + 0.1 * np.random.default_rng(k).standard_normal(LENGTH)) for k in range(EPISODES)]
    record_policy_run(tmp_path, "r", rewards, entropy=lambda k, t: 0.6 * 0.2 ** max(0, k - 29))
    (f,) = _run(tmp_path, "policy-collapse").findings
    assert f.actual["abrupt"] and f.actual["return_gain_sd"] >= 0.5
    assert 30 <= f.episode_start <= 32 and f.episode_end == EPISODES - 1
    assert "expected a gradual decay" in f.summary
