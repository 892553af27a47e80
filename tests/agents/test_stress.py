"""The stress suite and the benchmark matrix: protocols, measurements, resumability, detection."""

from __future__ import annotations

import dataclasses
import json

import pytest
from click.testing import CliRunner

import rlaudit
from rlaudit.agents.experiments import ExperimentProtocol, run_experiment
from rlaudit.agents.recording import record_protocols
from rlaudit.suites.stress import (
    QUICK_BUDGET,
    TESTS,
    RunData,
    run_stress,
    steps_differing,
    stress_protocol,
    stress_protocols,
)
from rlaudit.cli import main
from rlaudit.errors import ConfigError


def test_every_test_states_its_hypothesis_and_reference():
    assert list(TESTS) == ["T0.1", "T0.2", "T1.1", "T1.2", "T2.2", "T3.1", "T3.3", "T4.1", "T6.1", "T7.1", "T8.1"]
    for test in TESTS.values():
        assert test.setup and test.measures and test.hypothesis.startswith("H")
        assert test.reference
        for key in test.expected:
            assert key in test.runs
    # runs shared between tests are recorded once
    ids = [p.run_id for p in stress_protocols(list(TESTS.values()), 2, QUICK_BUDGET)]
    assert len(ids) == len(set(ids))
    assert "stress-dqn-dense-s1" in ids and "stress-dqn-dense-s2" in ids  # T2.2/T7.1 seeds 0-1, T8.1 seeds 1-2


def test_determinism_and_its_measure_can_fail(tmp_path):
    report, _ = run_stress(tmp_path, only=["T0.1"], seeds=1, budget=QUICK_BUDGET, workers=1)
    (outcome,) = report.outcomes
    assert outcome.passed and outcome.per_seed[0]["steps_differing"] == 0 and outcome.per_seed[0]["steps"] > 0
    # the same protocol with another seed differs: the measure is not blind
    other = dataclasses.replace(stress_protocol("determinism-a", 5, QUICK_BUDGET), name="other-seed")
    run_experiment(other, tmp_path)
    with rlaudit.open(tmp_path) as store:
        assert steps_differing(store, "stress-determinism-a-s0", "other-seed") > 0


def test_resumes_from_the_store(tmp_path):
    first, _ = run_stress(tmp_path, only=["T0.2"], seeds=2, budget=QUICK_BUDGET, workers=1)
    assert (first.recorded, first.reused) == (2, 0)
    again, _ = run_stress(tmp_path, only=["T0.2"], seeds=2, budget=QUICK_BUDGET, workers=1)
    assert (again.recorded, again.reused) == (0, 2)
    assert again.outcomes[0].per_seed == first.outcomes[0].per_seed
    # an interrupted recording is reported, not overwritten
    (tmp_path / "stress-random-s2.parquet.parts").mkdir()
    summary = record_protocols([stress_protocol("random", 2, QUICK_BUDGET)], tmp_path, workers=1)
    assert summary.results == [] and "rlaudit recover" in summary.skipped[0][1]


def test_environment_shift_is_recorded_and_measured(tmp_path):
    p = ExperimentProtocol(agent="always_switch", episodes=4, eval_interval=0, eval_episodes=2,
                           shift={"after_episode": 3, "regime": "recession"}, name="shifted")
    result = run_experiment(p, tmp_path)
    assert [e.after_episode for e in result.evaluations] == [3, 3, 4]
    with rlaudit.open(tmp_path) as store:
        data = RunData(store, "shifted")
        blocks = data.eval_blocks()
        manifest = store.runs["shifted"].manifest
    assert [len(b) for b in blocks] == [2, 2, 2]
    assert blocks[0][0]["ret"] > 100 > 1 > blocks[1][0]["ret"]  # always switching pays in stable, not in recession
    assert data.shift_step == blocks[0][-1]["first_step"] + blocks[0][-1]["length"]
    assert manifest["config"]["shifted_env_kwargs"]["regime"] == "recession"


@pytest.mark.parametrize("shift, message", [
    ({"after_episode": 0, "regime": "boom"}, "positive integer"),
    ({"after_episode": 9, "regime": "boom"}, "beyond the 4 training episodes"),
    ({"after_episode": 2}, "changes nothing"),
    ({"after_episode": 2, "regim": "boom"}, "unknown key 'regim'"),
    ({"after_episode": 2, "regime": "doom"}, "unknown market regime .doom."),
])
def test_shift_validation(shift, message):
    with pytest.raises(ConfigError, match=message):
        ExperimentProtocol(agent="random", episodes=4, shift=shift).validate()


def test_cli_errors_are_one_line(tmp_path):
    result = CliRunner().invoke(main, ["stress", "--store", str(tmp_path), "--only", "T1.9"])
    assert result.exit_code == 2
    assert "unknown stress test 'T1.9'" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(main, ["bench", "--store", str(tmp_path), "--agents", "dqm"])
    assert result.exit_code == 2 and "did you mean 'dqn'" in result.output


def test_stress_cli_writes_stress_json(tmp_path):
    result = CliRunner().invoke(main, ["stress", "--store", str(tmp_path), "--only", "T0.2", "--seeds", "2",
                                       "--quick", "--workers", "1"])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "stress.json").read_text())
    assert data["format"] == "rlaudit-stress" and data["tests"][0]["id"] == "T0.2"
    assert data["tests"][0]["summary"]["mean_train_return"]["n"] == 2
    assert (tmp_path / "audit.json").exists()


def test_bench_quick_matrix_ranks_counts_and_renders(tmp_path):
    result = CliRunner().invoke(main, ["bench", "--store", str(tmp_path), "--agents", "always_switch,always_stay,random",
                                       "--rewards", "short_term_v1,sparse_v1", "--seeds", "2", "--quick",
                                       "--workers", "1"])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["format"] == "rlaudit-bench" and data["agents"] == ["always_switch", "always_stay", "random"]
    ranking = data["rankings"]["short_term_v1"]
    assert [r["name"] for r in ranking][0] == "always_switch"  # the optimum of short_term_v1
    assert all(r["low"] <= r["iqm"] <= r["high"] and r["n"] == 2 for r in ranking)
    assert set(data["scores"]["sparse_v1"]) == {"always_switch", "always_stay", "random"}
    html = (tmp_path / "report.html").read_text()
    assert 'id="bench"' in html and "Benchmark matrix" in html
    # a second run reuses every recording
    again = CliRunner().invoke(main, ["bench", "--store", str(tmp_path), "--agents", "always_switch,always_stay,random",
                                      "--rewards", "short_term_v1,sparse_v1", "--seeds", "2", "--quick"])
    assert again.exit_code == 0 and "0 runs recorded, 12 reused" in again.output


def test_rank_ranges_mark_ties():
    from rlaudit.suites.bench import rank_groups

    rows = rank_groups({"a": [1.0, 2.0, 3.0], "b": [1.5, 2.5, 3.5], "c": [10.0, 11.0, 12.0]}, resamples=2000)
    by = {r["name"]: r for r in rows}
    assert [r["name"] for r in rows] == ["c", "b", "a"]
    assert (by["c"]["rank_best"], by["c"]["rank_worst"], by["c"]["tie"]) == (1, 1, False)
    assert (by["a"]["rank_best"], by["a"]["rank_worst"], by["a"]["tie"]) == (2, 3, True)


#: The reference's 50 training episodes with fewer evaluation episodes. Training does not depend on
#: the number of evaluation episodes, so these runs train exactly as seed 0 (and 1) of `rlaudit stress`.
CI_BUDGET = dataclasses.replace(QUICK_BUDGET, episodes=50, max_steps=200)


@pytest.mark.slow
def test_reduced_stress_run_finds_every_expected_failure(tmp_path):
    pytest.importorskip("torch")
    report, audit = run_stress(tmp_path, only=["T3.3", "T4.1"], seeds=1, budget=CI_BUDGET)
    for outcome in report.outcomes:
        assert outcome.passed, (outcome.test.id, outcome.per_seed)
        assert outcome.detected is True, (outcome.test.id, outcome.detections, outcome.other_findings)
    shift = next(o for o in report.outcomes if o.test.id == "T4.1")
    (finding,) = [f for f in audit.findings if f.detector == "regime-shift" and f.run_id == "stress-regime-shift-s0"][:1]
    # episodes are numbered across phases: the first training episode in recession follows two evaluations
    onset = CI_BUDGET.episodes + 2 * CI_BUDGET.eval_episodes
    assert abs(finding.episode_start - onset) <= 5, finding
    assert shift.per_seed[0]["drop"] > 0

    # The salary trap is found wherever it really occurs: a seed whose episodes nearly all end burnt out
    # (the reference's band is a mean final burnout of 0.98). Seed 0 falls in only half-way within 50
    # episodes (final burnout 0.60), seed 1 fully (0.92); see docs/stress-tests.md.
    trap_report, _ = run_stress(tmp_path, only=["T1.1"], seeds=2, budget=CI_BUDGET)
    (trap,) = trap_report.outcomes
    found = set(trap.detections["reward-hacking"]["found"])
    trapped = [f"stress-salary-trap-s{seed}" for seed, m in zip(trap.seeds, trap.per_seed)
               if m["mean_final_burnout"] >= 0.9]
    assert trapped, trap.per_seed
    assert set(trapped) <= found, (trap.per_seed, trap.detections)
