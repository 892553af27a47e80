"""irreproducible: same configuration and seed, different trajectories."""

from __future__ import annotations

from rlaudit.detectors.reproducibility import config_key
from tests.analyzer.recording import record_run
from tests.detectors.plants import PLANTS, SEEDED, _noisy_rewards
from tests.detectors.test_builtin import _run

NAME = "irreproducible"


def test_plant_found_with_span_and_both_runs_side_by_side(tmp_path):
    planted = PLANTS[NAME].plant(tmp_path)
    out = _run(tmp_path, NAME)  # re-executes the evidence SQL
    (f,) = out.findings
    assert f.run_id == planted.run_id and f.actual["reference_run"] == "seeded-a"
    assert (f.episode_start, f.episode_end, f.step_start, f.step_end) == (
        planted.episode_start, planted.episode_end, planted.step_start, planted.step_end)
    assert f.actual == {"reference_run": "seeded-a", "differing_episodes": 2, "shared_episodes": 60}
    assert [r[1] for r in f.evidence.rows] == [25, 41]
    assert "return_reference" in f.evidence.columns and "return_run" in f.evidence.columns
    assert [r.run_id for r in out.results] == [None]  # one store-wide result


def test_clean_twin_and_other_configs_are_not_compared(tmp_path):
    PLANTS[NAME].clean(tmp_path)
    # same seed, different config: not comparable, not flagged
    record_run(tmp_path, "other-gamma", [list(r) for r in _noisy_rewards(1)], config=dict(SEEDED, gamma=0.5))
    # no seed: nothing to reproduce
    record_run(tmp_path, "unseeded-a", _noisy_rewards(2), config={"gamma": 0.99})
    record_run(tmp_path, "unseeded-b", _noisy_rewards(3), config={"gamma": 0.99})
    out = _run(tmp_path, NAME)
    assert out.findings == () and [r.status for r in out.results] == ["clean"]


def test_config_key_ignores_names_and_descriptions():
    a = {"seed": 1, "agent": "ppo", "config": {"seed": 1, "protocol": {"name": "a", "description": "x", "episodes": 5}}}
    b = {"seed": 1, "agent": "ppo", "config": {"seed": 1, "protocol": {"name": "b", "description": "y", "episodes": 5}}}
    c = {"seed": 1, "agent": "ppo", "config": {"seed": 1, "protocol": {"name": "b", "episodes": 6}}}
    assert config_key(a) == config_key(b) != config_key(c)
    assert config_key({"agent": "ppo"}) is None


def test_longer_run_compared_on_shared_episodes_only(tmp_path):
    rewards = _noisy_rewards(5)
    record_run(tmp_path, "short", rewards[:30], config=SEEDED)
    record_run(tmp_path, "long", rewards, config=SEEDED)
    out = _run(tmp_path, NAME)
    # the short run's last episode is the same episode; only the budget differs
    assert out.findings == ()


def test_unseeded_reset_found_when_every_episode_returns_the_same(tmp_path):
    # a balanced controller: every episode pays the same; only the reset states give the unseeded reset away
    rewards = [[1.0] * 20 for _ in range(40)]
    record_run(tmp_path, "same-a", rewards, config=SEEDED, obs=lambda k, t: [k, t, 0, 0])
    record_run(tmp_path, "same-b", rewards, config=SEEDED,
               obs=lambda k, t: [k + (0.5 if k >= 30 else 0.0), t, 0, 0])
    out = _run(tmp_path, NAME)  # re-executes the evidence SQL
    (f,) = out.findings
    assert (f.run_id, f.episode_start, f.episode_end) == ("same-b", 30, 39)
    assert f.actual["differing_episodes"] == 10
    assert {"first_obs_reference", "first_obs_run"} <= set(f.evidence.columns)
    # the same reset states (and the same returns) are not flagged
    record_run(tmp_path / "twin", "same-a", rewards, config=SEEDED, obs=lambda k, t: [k, t, 0, 0])
    record_run(tmp_path / "twin", "same-b", rewards, config=SEEDED, obs=lambda k, t: [k, t, 0, 0])
    assert _run(tmp_path / "twin", NAME).findings == ()
