"""The first detectors: non-finite and reward-spike, on plants, twins and look-alikes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import rlaudit
from rlaudit.detectors import get_registry, run_detectors
from rlaudit.detectors.model import plain
from tests.analyzer.recording import record_run
from tests.detectors.plants import PLANTS

REG = get_registry()


def _run(store_dir, name, **params):
    with rlaudit.open(store_dir) as store:
        out = run_detectors(store, [REG.get(name)], {name: params} if params else None)
        # evidence SQL re-executed returns the evidence rows
        for f in out.findings:
            ev = f.evidence
            again = store.sql(ev.sql, **ev.params).rows()
            assert len(again) == ev.total_rows
            # compare as JSON text: NaN != NaN, but both print as NaN
            assert json.dumps([[plain(v) for v in r] for r in again[: len(ev.rows)]]) == json.dumps(
                [list(r) for r in ev.rows])
    return out


def _status(out, run_id):
    return {r.run_id: r for r in out.results}[run_id]


@pytest.mark.parametrize("name", sorted(PLANTS))
def test_evidence_sql_reproduces_the_rows(name, tmp_path):
    planted = PLANTS[name].plant(tmp_path)
    out = _run(tmp_path, name)
    (f,) = out.findings
    assert f.run_id == planted.run_id
    assert f.evidence.rows and f.evidence.params.get("run_id") == planted.run_id
    assert f.fix == REG.get(name).fix


def test_non_finite_reports_each_column_once_with_span(tmp_path):
    rewards = [[1.0] * 10 for _ in range(8)]
    rewards[2][4] = float("nan")
    rewards[5][9] = float("-inf")

    def obs(k, t):
        return [k, t, float("inf") if (k, t) == (6, 3) else 0.0, 0.0]

    record_run(tmp_path, "r", rewards, obs=obs, entropy=lambda k, t: float("nan") if k == 7 else 0.3,
               metrics=[(10, {"loss": 0.1}), (20, {"loss": float("nan")}), (30, {"loss": float("inf")}),
                        (30, {"kl": 0.01})])
    out = _run(tmp_path, "non-finite")
    by_col = {f.actual.get("column") or f.actual.get("metric"): f for f in out.findings}
    assert set(by_col) == {"reward", "obs", "entropy", "loss"}
    r = by_col["reward"]
    assert (r.episode_start, r.episode_end, r.step_start, r.step_end) == (2, 5, 24, 59)
    assert r.actual["non_finite_steps"] == 2 and r.actual["nan"] == 1
    assert "1 NaN, 1 infinite" in r.summary and r.severity == "critical"
    assert [row[0] for row in r.evidence.rows] == [24, 59]
    # obs: the inf is in next_obs of (6, 2), i.e. the observation of step (6, 3)
    o = by_col["obs"]
    assert (o.episode_start, o.step_start) == (6, 63)
    e = by_col["entropy"]
    assert (e.episode_start, e.episode_end, e.step_start, e.step_end) == (7, 7, 70, 79)
    assert e.actual["non_finite_steps"] == 10 and len(e.evidence.rows) == 10
    m = by_col["loss"]
    assert (m.step_start, m.step_end) == (20, 30) and m.actual == {
        "metric": "loss", "non_finite_updates": 2, "updates": 3, "nan": 1}


def test_non_finite_evidence_is_capped(tmp_path):
    record_run(tmp_path, "r", [[float("nan")] * 30])
    out = _run(tmp_path, "non-finite", cap=5)
    (f,) = out.findings
    assert len(f.evidence.rows) == 5 and f.evidence.total_rows == 30 and f.evidence.truncated


def test_non_finite_ignores_nulls(tmp_path):
    # final_obs is NULL except at episode ends; entropy absent on some steps is NULL, not NaN
    record_run(tmp_path, "r", [[1.0] * 5] * 3, entropy=lambda k, t: 0.5)
    out = _run(tmp_path, "non-finite")
    assert out.findings == () and _status(out, "r").status == "clean"


def _noisy(seed, episodes=60, length=50):
    rng = np.random.default_rng(seed)
    return [list(1.0 + 0.1 * rng.standard_normal(length)) for _ in range(episodes)]


def test_reward_spike_finding_details(tmp_path):
    rewards = _noisy(5)
    rewards[12][5] = 30.0
    rewards[41][40] = -25.0
    record_run(tmp_path, "r", rewards)
    (f,) = _run(tmp_path, "reward-spike").findings
    assert f.actual["spikes"] == 2 and f.actual["largest_reward"] == 30.0
    assert f.score == pytest.approx(f.actual["max_robust_z"]) and f.score > 200
    assert f.evidence.columns == ("global_step", "env_index", "episode", "t", "phase", "reward", "robust_z", "action", "obs")
    assert [r[0] for r in f.evidence.rows] == [12 * 50 + 5, 41 * 50 + 40]  # most extreme first
    assert f.evidence.rows[0][-1] == [12.0, 5.0, 0.0, 0.0]  # the state the spike came from
    assert f.expected["max_robust_z"] == 10.0
    assert f.phase == "train" and f.env_index == 0


def test_reward_spike_threshold_is_a_parameter(tmp_path):
    rewards = _noisy(6)
    rewards[30][10] = 1.0 + 0.1 * 8  # 8 sigma: below the default z=10
    record_run(tmp_path, "r", rewards)
    assert _run(tmp_path, "reward-spike").findings == ()
    (f,) = _run(tmp_path, "reward-spike", z=7.0).findings
    assert f.step_start == 30 * 50 + 10


def test_reward_spike_constant_reward_with_one_spike(tmp_path):
    # CartPole-like: MAD = 0, the mean absolute deviation gives the scale
    rewards = [[1.0] * 50 for _ in range(60)]
    rewards[33][3] = 100.0
    record_run(tmp_path, "r", rewards)
    (f,) = _run(tmp_path, "reward-spike").findings
    assert f.step_start == 33 * 50 + 3 and f.expected["scale_from"] == "mean absolute deviation"


@pytest.mark.parametrize("case", ["constant", "goal-bonus", "heavy-level", "few-steps"])
def test_reward_spike_not_flagged(tmp_path, case):
    if case == "constant":
        rewards = [[1.0] * 50 for _ in range(60)]
    elif case == "goal-bonus":  # sparse reward paid at the end of most episodes: part of the task
        rewards = [[0.0] * 49 + [10.0 if k % 3 else 0.0] for k in range(60)]
    elif case == "heavy-level":  # a second reward level on 2% of steps: too frequent to be a spike
        rng = np.random.default_rng(7)
        rewards = [list(np.where(rng.random(50) < 0.02, 50.0, 1.0 + 0.1 * rng.standard_normal(50))) for _ in range(60)]
    else:
        rewards = [[1.0, 1.0, 1000.0]]
    record_run(tmp_path, "r", rewards)
    out = _run(tmp_path, "reward-spike")
    assert out.findings == ()
    expected = "skipped" if case == "few-steps" else "clean"
    assert _status(out, "r").status == expected
    if case == "few-steps":
        assert _status(out, "r").reason == "needs at least 100 finite rewards, run has 3"


def test_reward_spike_ignores_non_finite_rewards(tmp_path):
    rewards = _noisy(8)
    rewards[3][3] = float("nan")
    rewards[4][4] = float("inf")
    record_run(tmp_path, "r", rewards)
    out = _run(tmp_path, "reward-spike")
    assert out.findings == ()
    assert math.isfinite(0.0)


def test_spike_in_vector_run_reports_env_and_phase(tmp_path):
    from rlaudit.recorder.core import Recorder

    with Recorder(tmp_path, "vec", env_id="Plant-v0") as rec:
        rng = np.random.default_rng(9)
        rec.reset_batch(np.zeros((4, 2), np.float32), seeds=1)
        for i in range(400):
            r = 1.0 + 0.1 * rng.standard_normal(4)
            if i == 250:
                r[2] = 40.0
            rec.step_batch(np.zeros(4, np.int64), np.full((4, 2), i, np.float32), r,
                           np.zeros(4, bool), np.zeros(4, bool), autoreset_mode="disabled")
    (f,) = _run(tmp_path, "reward-spike").findings
    assert f.env_index == 2 and f.step_start == 250 * 4 and f.phase == "train"


def _held_upright(seed: int, spike: bool) -> list[list[float]]:
    """Pendulum-like: a costly swing-up (heavy lower tail), then the optimum held at reward ~0."""
    rng = np.random.default_rng(seed)
    rewards = [list(-rng.uniform(5, 15, 10)) + list(-1e-12 * rng.random(40)) for _ in range(60)]
    if spike:
        rewards[33][5] = 90.0
        rewards[44][5] = 90.0
    return rewards


def test_reward_spike_above_an_optimum_held_with_a_heavy_lower_tail(tmp_path):
    record_run(tmp_path, "r", _held_upright(3, spike=True))
    (f,) = _run(tmp_path, "reward-spike").findings
    assert (f.episode_start, f.episode_end, f.actual["spikes"]) == (33, 44, 2)
    assert f.expected["scale_from"] == "mean absolute deviation"  # the MAD is ~1e-12
    record_run(tmp_path / "twin", "r", _held_upright(3, spike=False))
    assert _run(tmp_path / "twin", "reward-spike").findings == ()


def test_reward_spike_terminal_outcome_within_declared_bounds(tmp_path):
    # Acrobot-like: -1 per step, 0 on the step that reaches the goal (once in the run): the outcome, not a spike
    rewards = [[-1.0] * 50 for _ in range(60)]
    rewards[20][-1] = 0.0
    record_run(tmp_path, "goal", rewards, config={"gamma": 0.99, "reward_bounds": [-1.0, 0.0]})
    assert _run(tmp_path, "reward-spike").findings == ()
    # a terminal reward outside the declared bounds is a spike all the same
    rewards[20][-1] = 500.0
    record_run(tmp_path / "bug", "bug", rewards, config={"gamma": 0.99, "reward_bounds": [-1.0, 0.0]})
    (f,) = _run(tmp_path / "bug", "reward-spike").findings
    assert f.step_start == 20 * 50 + 49 and f.expected["declared_reward_bounds"] == [-1.0, 0.0]
