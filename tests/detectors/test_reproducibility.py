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
