"""state-cycling, action-repetition, degenerate-environment."""

from __future__ import annotations

import numpy as np
import pytest

from rlaudit.recorder.core import Recorder
from tests.analyzer.recording import record_run
from tests.detectors.plants import EPISODES, LENGTH, PLANTS, record_episodes
from tests.detectors.test_hacking import check_plant_and_clean_twin, run, status

NAMES = ("state-cycling", "action-repetition", "degenerate-environment")


@pytest.mark.parametrize("name", NAMES)
def test_plant_found_with_its_span_and_clean_twin_not(name, tmp_path):
    check_plant_and_clean_twin(name, tmp_path)


def test_state_cycling_loop_evidence(tmp_path):
    PLANTS["state-cycling"].plant(tmp_path)
    (f,) = run(tmp_path, "state-cycling").findings
    assert f.p_value < 1e-6 and "one-sided z" in f.p_method
    # the loop region is never passed outside the loop: its baseline is the run's other steps (+1)
    assert f.expected["baseline_reward"] == pytest.approx(1.0, abs=0.05)
    assert f.actual["loop_step_share"] == pytest.approx(40 / 50)
    # evidence: the looping episodes, each visiting a loop state 10 times
    first = f.evidence.rows[0]
    assert first[:2] == (0, 30) and first[3:6] == (50, 40, 10)


def test_state_cycling_limit_cycle_with_task_reward_is_not_a_hack(tmp_path):
    # a controller settling into a 4-state cycle with the same +1 every step (CartPole balancing)
    cycle = ([0.0, 0.1], [0.1, 0.0], [0.0, -0.1], [-0.1, 0.0])
    obs = lambda k, t: cycle[t % 4] if t >= 5 else [float(k), float(t)]  # noqa: E731
    record_episodes(tmp_path, "balanced", [LENGTH] * EPISODES, reward=lambda k, t: 1.0 + 0.01 * (t % 3), obs=obs)
    assert status(run(tmp_path, "state-cycling"), "balanced").status == "clean"


def test_state_cycling_fixed_point_at_the_goal_is_not_a_hack(tmp_path):
    # a swing-up: the state converges to the goal (0, 0) and the controller then holds it, jittering between two
    # neighbouring cells; the swing-up as a whole pays far less than the hold, but its last steps, in the goal's
    # region, pay about what the hold pays
    def obs(k, t):
        if t < 25:
            return [(3.0 + 0.01 * k) * 0.85 ** t, 0.85 ** t]
        return [0.0, 1e-6 * (t % 2)]

    def reward(k, t):
        x, y = obs(k, t)
        return -(x * x + y * y)

    record_episodes(tmp_path, "hover", [LENGTH] * EPISODES, reward=reward, obs=obs)
    assert status(run(tmp_path, "state-cycling"), "hover").status == "clean"


def test_state_cycling_ignores_non_finite_observations(tmp_path):
    # a broken sensor: NaN observations on every step from t = 10, with finite rewards; not a loop, not an error
    obs = lambda k, t: [float("nan"), float("nan")] if t >= 10 else [float(k), float(t)]  # noqa: E731
    record_episodes(tmp_path, "nan-obs", [LENGTH] * EPISODES, reward=lambda k, t: 2.0 if t >= 10 else 1.0, obs=obs)
    assert status(run(tmp_path, "state-cycling"), "nan-obs").status == "clean"


def test_state_cycling_needs_observations(tmp_path):
    record_run(tmp_path, "r", [[1.0] * 5] * 3)
    assert status(run(tmp_path, "state-cycling"), "r").status == "clean"  # no revisits, nothing to find
    with Recorder(tmp_path, "no-obs", env_id="Plant-v0") as rec:
        for t in range(5):
            rec.step(0, None, 1.0, t == 4, False)  # steps without a reset: obs never seen
    out = run(tmp_path, "state-cycling")
    assert status(out, "no-obs").status == "skipped"


def test_action_repetition_counts_short_episodes(tmp_path):
    # CartPole always-left: 9-step episodes, too short for any per-episode window
    a = np.random.default_rng(1).integers(0, 2, (200, 30))
    lengths = [20] * 100 + [9] * 100
    record_episodes(tmp_path, "always-left", lengths, reward=lambda k, t: 1.0,
                    action=lambda k, t: 0 if k >= 100 else int(a[k, t]))
    (f,) = run(tmp_path, "action-repetition").findings
    assert (f.episode_start, f.episode_end, f.step_start) == (100, 199, 2000)
    assert f.actual["top_actions"] == {"0": 900} and "one action: 0" in f.summary


def test_action_repetition_pattern(tmp_path):
    # a period-3 pattern 0,1,2,0,1,2... from episode 30 (no single action dominates)
    a = np.random.default_rng(2).integers(0, 3, (EPISODES, LENGTH))
    record_episodes(tmp_path, "pattern", [LENGTH] * EPISODES, reward=lambda k, t: 1.0,
                    action=lambda k, t: (k * LENGTH + t) % 3 if k >= 30 else int(a[k, t]))
    (f,) = run(tmp_path, "action-repetition").findings
    assert "repeating pattern of period 3" in f.summary and (f.episode_start, f.episode_end) == (30, EPISODES - 1)
    assert f.actual["pattern_episodes"] == 30


def test_action_repetition_energy_pump_is_not_degenerate(tmp_path):
    # MountainCar's pump: long runs of one action, but each action half the time
    record_episodes(tmp_path, "pump", [200] * 20, reward=lambda k, t: -1.0, action=lambda k, t: (t // 25) % 2 * 2)
    assert status(run(tmp_path, "action-repetition"), "pump").status == "clean"


def test_action_repetition_continuous_actions(tmp_path):
    a = np.random.default_rng(3).uniform(-2, 2, (EPISODES, LENGTH))
    act = lambda k, t: np.array([0.5 if k >= 40 else a[k, t]], dtype=np.float32)  # noqa: E731
    record_episodes(tmp_path, "stuck", [LENGTH] * EPISODES, reward=lambda k, t: 0.0, action=act)
    (f,) = run(tmp_path, "action-repetition").findings
    assert (f.episode_start, f.episode_end) == (40, EPISODES - 1)
    assert f.actual["action_key"].startswith("cells of 0.001 of the reached range")


def test_action_repetition_per_sub_env(tmp_path):
    # a vector run: sub-env 1 is stuck on action 1, sub-env 0 acts at random
    rng = np.random.default_rng(4)
    with Recorder(tmp_path, "vec", env_id="Plant-v0") as rec:
        rec.reset_batch(np.zeros((2, 2), np.float32))
        for step in range(1000):
            done = np.array([step % 10 == 9, step % 25 == 24])
            actions = np.array([rng.integers(0, 3), 1])
            rec.step_batch(actions, np.zeros((2, 2), np.float32), np.ones(2), done, np.zeros(2, bool),
                           autoreset_mode="disabled")
            if done.any():
                rec.reset_batch(np.zeros((2, 2), np.float32), mask=done)
    (f,) = run(tmp_path, "action-repetition").findings
    assert f.env_index == 1 and (f.episode_start, f.episode_end) == (0, 39)


def test_degenerate_environment_conformal_p_and_reference(tmp_path):
    PLANTS["degenerate-environment"].plant(tmp_path)
    (f,) = run(tmp_path, "degenerate-environment").findings
    assert f.p_method.startswith("conformal") and 0 < f.p_value <= 0.2
    assert f.actual["action"] == 1 and f.actual["constant_episodes"] == 20
    assert all(row[-1] == 1 for row in f.evidence.rows) and len(f.evidence.rows) == 20


def test_degenerate_environment_needs_varied_play(tmp_path):
    record_episodes(tmp_path, "always-one", [LENGTH] * 20, reward=lambda k, t: 1.0, action=lambda k, t: 1)
    out = run(tmp_path, "degenerate-environment")
    assert status(out, "always-one").status == "skipped"
    assert "needs at least 10 finished episodes that use more than one action" in status(out, "always-one").reason
    assert status(out, "always-one").reason.endswith("found 0")
    # a learner's run of the same environment in the store gives the constant heuristic something to compare with
    a = np.random.default_rng(5).integers(0, 2, (30, LENGTH))
    record_episodes(tmp_path, "learner", [LENGTH] * 30, reward=lambda k, t: 0.5 + 0.5 * (k / 30),
                    action=lambda k, t: int(a[k, t]))
    out = run(tmp_path, "degenerate-environment")
    (f,) = out.findings
    assert f.run_id == "always-one" and "30 of them from other runs of this environment" in f.summary
    assert f.p_value == pytest.approx(1 / 31)  # no learner episode returns as much as always-one
    assert status(out, "learner").status == "clean"


def test_degenerate_environment_returns_without_spread(tmp_path):
    # CartPole without failure: every episode lasts the full 50 steps, whatever the policy does
    a = np.random.default_rng(8).integers(0, 2, (30, 50))
    record_episodes(tmp_path, "no-failure", [50] * 30, reward=lambda k, t: 1.0,
                    action=lambda k, t: 0 if k % 5 == 4 else int(a[k, t]))
    (f,) = run(tmp_path, "degenerate-environment").findings
    assert (f.run_id, f.episode_start, f.episode_end) == ("no-failure", 4, 29)
    assert f.actual["scaled"] == 1.0 and f.actual["constant_episodes"] == 6
    assert "what every episode returns" in f.summary
    # the same returns but the constant episodes fall short: not flagged
    record_episodes(tmp_path / "twin", "constant-falls", [50 if k % 5 != 4 else 10 for k in range(30)],
                    reward=lambda k, t: 1.0, action=lambda k, t: 0 if k % 5 == 4 else int(a[k, t]))
    assert run(tmp_path / "twin", "degenerate-environment").findings == ()


def test_degenerate_environment_poor_policy_next_to_a_better_run(tmp_path):
    # a poor heuristic whose constant episodes match its own poor varied play, beside a far better run
    a = np.random.default_rng(6).integers(0, 2, (40, LENGTH))
    e = np.random.default_rng(7).standard_normal((40, LENGTH))
    record_episodes(tmp_path, "poor", [LENGTH] * 40, reward=lambda k, t: (-0.09 if k % 2 else -0.1) + 0.05 * e[k, t],
                    action=lambda k, t: 0 if k % 2 else int(a[k, t]))
    assert status(run(tmp_path, "degenerate-environment"), "poor").status == "found"  # alone: nothing better seen
    record_episodes(tmp_path, "good", [LENGTH] * 40, reward=lambda k, t: 1.0 + 0.01 * k,
                    action=lambda k, t: int(a[k, t]))
    assert status(run(tmp_path, "degenerate-environment"), "poor").status == "clean"


def test_state_cycling_screen_of_large_runs_keeps_the_finding(tmp_path):
    planted = PLANTS["state-cycling"].plant(tmp_path)
    clean = PLANTS["state-cycling"].clean(tmp_path)
    out = run(tmp_path, "state-cycling", gate_steps=100)  # screen every 8th episode first
    (f,) = out.findings
    assert f.run_id == planted.run_id and (f.episode_start, f.episode_end) == (30, EPISODES - 1)
    assert status(out, clean).status == "clean"


def test_action_repetition_screen_of_large_runs(tmp_path):
    a = np.random.default_rng(2).integers(0, 3, (EPISODES, LENGTH))
    record_episodes(tmp_path, "pattern", [LENGTH] * EPISODES, reward=lambda k, t: 1.0,
                    action=lambda k, t: (k * LENGTH + t) % 3 if k >= 30 else int(a[k, t]))
    record_episodes(tmp_path, "stuck", [LENGTH] * EPISODES, reward=lambda k, t: 1.0,
                    action=lambda k, t: 2 if k >= 30 else int(a[k, t]))
    out = run(tmp_path, "action-repetition", gate_steps=100)  # screened path for both runs
    found = {f.run_id: f for f in out.findings}
    assert "repeating pattern of period 3" in found["pattern"].summary
    assert (found["stuck"].episode_start, found["stuck"].episode_end) == (30, EPISODES - 1)
    assert "repeat_1" not in found["stuck"].evidence.columns  # no pattern screened: top-action shares only
    assert "repeat_1" in found["pattern"].evidence.columns
