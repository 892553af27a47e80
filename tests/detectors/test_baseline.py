"""below-baseline: learners against the best heuristic on the same task."""

from __future__ import annotations

import pytest

import rlaudit
from rlaudit.detectors import get_registry, run_detectors
from tests.detectors.plants import record_agent_runs

REG = get_registry()


def _run(path, **params):
    with rlaudit.open(path) as store:
        out = run_detectors(store, [REG.get("below-baseline")], {"below-baseline": params} if params else None)
        for f in out.findings:
            again = store.sql(f.evidence.sql, **f.evidence.params).rows()
            assert [list(r) for r in again] == [list(r) for r in f.evidence.rows]
    return out


def test_flags_a_learner_below_the_best_heuristic_with_a_one_sided_p_value(tmp_path):
    record_agent_runs(tmp_path, "dqn", 20.0)
    record_agent_runs(tmp_path, "always_switch", 30.0)
    record_agent_runs(tmp_path, "always_stay", 25.0)  # a weaker heuristic is not the yardstick
    record_agent_runs(tmp_path, "ppo", 45.0)  # beats it: not flagged
    out = _run(tmp_path)
    (f,) = out.findings
    assert f.run_id is None and f.severity == "warning"
    assert f.summary.startswith("dqn (3 runs) does not beat the best heuristic always_switch (3 runs)")
    assert "verdict worse" in f.summary
    assert f.actual["verdict"] == "worse" and f.expected["baseline"] == "always_switch"
    assert f.p_value < 0.01 and f.p_method == "welch one-sided (agent mean below baseline mean)"
    assert f.q_value is not None
    assert [r[0] for r in f.evidence.rows] == [*(f"always_switch-s{i}" for i in range(3)),
                                               *(f"dqn-s{i}" for i in range(3))]
    assert f.evidence.columns == ("run_id", "agent", "episodes", "score")


def test_a_tie_is_flagged_with_a_large_p_value(tmp_path):
    record_agent_runs(tmp_path, "dqn", 30.0, spread=3.0)
    record_agent_runs(tmp_path, "always_switch", 30.0, spread=3.0)
    (f,) = _run(tmp_path).findings
    assert f.actual["verdict"] == "tie" and f.p_value > 0.05
    assert f.expected["min_detectable_effect"] > 0


def test_tasks_are_judged_apart(tmp_path):
    record_agent_runs(tmp_path, "dqn", 20.0, reward="hard")
    record_agent_runs(tmp_path, "always_switch", 30.0, reward="hard")
    record_agent_runs(tmp_path, "dqn", 40.0, reward="easy", prefix="easy-")
    record_agent_runs(tmp_path, "always_switch", 30.0, reward="easy", prefix="easy-")
    (f,) = _run(tmp_path).findings
    assert "reward hard" in f.summary and f.actual["runs"] == ["dqn-s0", "dqn-s1", "dqn-s2"]


@pytest.mark.parametrize("case", ["no-heuristic", "no-learner", "one-seed"])
def test_skipped_with_the_reason_when_data_is_missing(tmp_path, case):
    if case != "no-heuristic":
        record_agent_runs(tmp_path, "always_switch", 30.0)
    if case != "no-learner":
        record_agent_runs(tmp_path, "dqn", 20.0, seeds=range(1) if case == "one-seed" else range(3))
    out = _run(tmp_path)
    (r,) = out.results
    assert r.status == "skipped" and out.findings == ()
    assert r.reason.startswith("needs, for one task (env, reward, regime), a learning agent and a heuristic "
                               "baseline with at least 2 scored runs each")
    assert "--make-baselines" in r.reason


def test_agent_kind_in_the_manifest_declares_a_heuristic(tmp_path):
    from tests.analyzer.recording import record_run

    for seed in range(3):
        for agent, level in (("my_rule", 30.0), ("sac", 10.0)):
            kind = "heuristic" if agent == "my_rule" else "learning"
            record_run(tmp_path, f"{agent}-s{seed}", [[0.0], [level + seed]], phase=lambda k: "eval" if k else "train",
                       config={"agent": agent, "agent_kind": kind, "seed": seed})
    (f,) = _run(tmp_path).findings
    assert f.expected["baseline"] == "my_rule" and f.actual["agent"] == "sac"
