"""rlaudit.analyzer.compare and ``rlaudit compare`` on runs recorded through the real recorder."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import rlaudit
from rlaudit.analyzer.compare import CAREER_HEURISTICS, compare, score_runs, verdict
from rlaudit.analyzer.statistics import Interval
from rlaudit.cli import main
from rlaudit.errors import ConfigError
from rlaudit.reports.audit import Audit, comparison_json, run_audit
from tests.analyzer.recording import audit_json_without_timings, record_run
from tests.detectors.plants import record_agent_runs

GROUP_KEYS = {"name", "runs", "scores", "iqm", "mean", "median"}
TEST_KEYS = {"group", "baseline", "difference", "prob_improvement", "welch_p", "mannwhitney_p", "verdict", "mde", "note"}
INTERVAL_KEYS = {"value", "low", "high"}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """dqn clearly above the best heuristic, ppo level with it, random below; 4 seeds each."""
    path = tmp_path_factory.mktemp("compare")
    record_agent_runs(path, "dqn", 50.0, seeds=range(4))
    record_agent_runs(path, "ppo", 30.0, seeds=range(4), spread=4.0)
    record_agent_runs(path, "always_switch", 30.0, seeds=range(4))
    record_agent_runs(path, "random", 10.0, seeds=range(4))
    return path


def _check_shape(data):
    assert set(data) == {"by", "baseline", "score", "confidence", "resamples", "seed", "groups", "tests", "profiles"}
    assert set(data["score"]) == {"source", "k", "note"}
    for g in data["groups"]:
        assert set(g) == GROUP_KEYS
        for key in ("iqm", "mean", "median"):
            assert set(g[key]) == INTERVAL_KEYS and g[key]["low"] <= g[key]["value"] <= g[key]["high"]
        assert len(g["runs"]) == len(g["scores"])
    for t in data["tests"]:
        assert set(t) == TEST_KEYS
        assert set(t["difference"]) == INTERVAL_KEYS and set(t["prob_improvement"]) == INTERVAL_KEYS
        assert t["verdict"] in ("better", "worse", "tie")
    assert set(data["profiles"]) == {"thresholds", "groups"}
    for fractions in data["profiles"]["groups"].values():
        assert len(fractions) == len(data["profiles"]["thresholds"])


def test_compare_agents_against_the_best_heuristic(store):
    comp = compare(store, resamples=5000)
    data = comp.to_dict()
    _check_shape(data)
    assert data["by"] == "agent" and data["baseline"] == "always_switch"  # best heuristic by mean
    assert [g["name"] for g in data["groups"]] == ["always_switch", "dqn", "ppo", "random"]
    assert data["score"]["source"] == "eval" and data["score"]["k"] is None
    verdicts = {t["group"]: t["verdict"] for t in data["tests"]}
    assert verdicts == {"dqn": "better", "ppo": "tie", "random": "worse"}
    dqn = comp.test("dqn")
    assert dqn.prob_improvement.value == 1.0 and dqn.welch_p < 0.001 and dqn.difference.low > 0
    ppo = comp.test("ppo")
    assert "tie: with 4 and 4 runs a mean difference below" in ppo.note and ppo.mde > 0
    assert "fewer than 10 runs per group" in ppo.note
    # the profile of the best group dominates
    prof = data["profiles"]["groups"]
    assert all(a >= b for a, b in zip(prof["dqn"], prof["random"]))
    assert prof["dqn"][0] == 1.0 and prof["random"][-1] == 0.0


def test_scores_are_the_final_evaluation_means(store):
    comp = compare(store, resamples=1000)
    g = comp.group("dqn")
    with rlaudit.open(store) as s:
        for rid, score in zip(g.runs, g.scores):
            mean_eval = s.sql("SELECT avg(return) FROM episodes WHERE run_id = $r AND phase = 'eval'", r=rid).scalar()
            assert score == pytest.approx(mean_eval)
    # the evidence query of the comparison reproduces the scores
    with rlaudit.open(store) as s:
        rows = s.sql(comp.score_sql, **comp.score_params).rows()
    by_run = {r[0]: r[3] for r in rows}
    assert [by_run[r] for r in g.runs] == pytest.approx(list(g.scores))


def test_only_the_last_evaluation_counts(tmp_path):
    # evaluations after training episodes 2 and 4 (2 episodes each); the last pays 10 per episode
    def phase(k):
        return "eval" if k in (2, 3, 6, 7) else "train"

    for seed in range(2):
        episodes = [[1.0]] * 2 + [[-5.0]] * 2 + [[1.0]] * 2 + [[10.0], [10.0 + seed]]
        record_run(tmp_path, f"a-s{seed}", episodes, phase=phase, config={"agent": "a", "seed": seed})
        record_run(tmp_path, f"b-s{seed}", episodes, phase=phase, config={"agent": "b", "seed": seed})
    with rlaudit.open(tmp_path) as s:
        scores = score_runs(s, s.run_ids)
    assert scores.source == "eval"
    assert scores.values == {"a-s0": 10.0, "a-s1": 10.5, "b-s0": 10.0, "b-s1": 10.5}


def test_without_evaluation_the_last_k_training_episodes_score(tmp_path):
    for agent in ("a", "b"):
        for seed in range(3):
            episodes = [[0.0]] * 5 + [[float(seed + 1)]] * 10
            record_run(tmp_path, f"{agent}-s{seed}", episodes, config={"agent": agent, "seed": seed})
    comp = compare(tmp_path, baseline="a", resamples=1000, k=10)
    assert comp.score["source"] == "last_k_training" and comp.score["k"] == 10
    assert "no evaluation episodes in a-s0, a-s1, a-s2, b-s0, b-s1 and 1 more" in comp.score["note"]
    assert comp.group("a").scores == (1.0, 2.0, 3.0)
    # k = 15 reaches back into the zero-return episodes
    assert compare(tmp_path, baseline="a", resamples=100, k=15).group("b").scores == pytest.approx((10 / 15, 20 / 15, 30 / 15))
    t = comp.test("b")
    assert t.verdict == "tie" and t.welch_p == 1.0 and t.prob_improvement.value == 0.5


def test_compare_is_deterministic_and_groups_do_not_influence_each_other(store):
    a = compare(store, resamples=3000, seed=5).to_dict()
    b = compare(store, resamples=3000, seed=5).to_dict()
    assert a == b
    assert compare(store, resamples=3000, seed=6).to_dict() != a
    with rlaudit.open(store) as s:
        fewer = [r for r in s.run_ids if not r.startswith("random")]
        c = compare(s, runs=fewer, resamples=3000, seed=5)
    assert c.group("dqn") == next(g for g in compare(store, resamples=3000, seed=5).groups if g.name == "dqn")


def test_verdict_rule():
    hi, lo = Interval(10.0, 9.0, 11.0), Interval(5.0, 4.0, 6.0)
    assert verdict(0.01, 5.0, hi, lo) == "better"
    assert verdict(0.01, -5.0, lo, hi) == "worse"
    assert verdict(0.2, 5.0, hi, lo) == "tie"  # Welch does not reject
    assert verdict(0.01, 5.0, hi, Interval(8.0, 6.0, 9.5)) == "tie"  # intervals overlap


def test_like_with_like_errors(tmp_path):
    record_agent_runs(tmp_path, "dqn", 10.0, seeds=range(2), reward="r1")
    record_agent_runs(tmp_path, "always_stay", 10.0, seeds=range(2), reward="r2")
    with pytest.raises(ConfigError, match=r"expected runs that differ only in agent, found 2 different rewards: "
                                          r"r1 \(2 runs, e.g. dqn-s0\); r2 \(2 runs, e.g. always_stay-s0\); "
                                          r"pass the runs of one reward or use --by reward"):
        compare(tmp_path)
    with pytest.raises(ConfigError, match="differ only in reward, found 2 different agents"):
        compare(tmp_path, by="reward")
    with pytest.raises(ConfigError, match=r"unknown grouping --by 'agents' \(did you mean 'agent'\?\)"):
        compare(tmp_path, by="agents")
    one = tmp_path / "one-task"
    record_agent_runs(one, "dqn", 10.0, seeds=range(2), reward="r1")
    record_agent_runs(one, "always_stay", 10.0, seeds=range(2), reward="r1")
    with rlaudit.open(one) as s:
        with pytest.raises(ConfigError, match=r"at least 2 scored runs \(seeds\) per group, found dqn: 1"):
            compare(s, runs=["dqn-s0", "always_stay-s0", "always_stay-s1"])
        with pytest.raises(ConfigError, match=r"unknown baseline agent group 'dq' \(did you mean 'dqn'\?\)"):
            compare(s, baseline="dq")
        with pytest.raises(ConfigError, match=r"at least two agent groups to compare, found 1 \(dqn\)"):
            compare(s, runs=["dqn-s0", "dqn-s1"])


def test_by_reward_labels_reward_parameters(tmp_path):
    for name, params in (("plain", {"w": 1.0}), ("salary", {"w": 0.0})):
        for seed in range(2):
            record_run(tmp_path, f"{name}-s{seed}", [[1.0], [2.0 + seed]], phase=lambda k: "eval" if k else "train",
                       config={"agent": "dqn", "seed": seed, "reward": "short", "reward_params": params})
    comp = compare(tmp_path, by="reward", baseline="short(w=1.0)", resamples=500)
    assert [g.name for g in comp.groups] == ["short(w=0.0)", "short(w=1.0)"]
    assert comp.tests[0].group == "short(w=0.0)"


def test_runs_without_an_agent_name_are_refused(tmp_path):
    record_run(tmp_path, "anon", [[1.0]])
    record_run(tmp_path, "named", [[1.0]], config={"agent": "x"})
    with pytest.raises(ConfigError, match="expected every run to name its agent in the manifest, found none in anon"):
        compare(tmp_path)


def test_career_heuristic_names_match_the_agents_package():
    from rlaudit.agents.heuristics import HEURISTICS

    assert set(CAREER_HEURISTICS) == set(HEURISTICS)


# -- CLI and audit ---------------------------------------------------------------------


def test_cli_prints_the_table_and_writes_comparison_json(store, tmp_path):
    res = CliRunner().invoke(main, ["compare", str(store), "--resamples", "2000", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "compare by agent: 4 groups, 16 runs; baseline: always_switch" in out
    header = next(line for line in out.splitlines() if line.startswith("group"))
    for col in ("n", "IQM [95% CI]", "mean", "median", "mean diff vs baseline", "P(improvement)", "Welch p",
                "MWU p", "verdict", "MDE"):
        assert col in header
    rows = {line.split()[0]: line for line in out.splitlines()[1:] if line.split()}
    assert "better" in rows["dqn"] and "tie" in rows["ppo"] and "worse" in rows["random"]
    assert "(baseline)" in rows["always_switch"]
    assert "note: baseline: the best heuristic, always_switch" in out
    written = json.loads((tmp_path / "comparison.json").read_text())
    _check_shape(written)
    assert written == json.loads(comparison_json(compare(store, resamples=2000).to_dict()))
    # JSON on stdout is the same document
    res = CliRunner().invoke(main, ["compare", str(store), "--resamples", "2000", "--out", str(tmp_path),
                                    "--format", "json"])
    assert json.loads(res.output) == written


def test_cli_errors_are_one_line(tmp_path):
    record_agent_runs(tmp_path, "dqn", 10.0, seeds=range(2), reward="r1")
    record_agent_runs(tmp_path, "always_stay", 10.0, seeds=range(2), reward="r2")
    for args in ([], ["--by", "reword"], ["--by", "reward", "--resamples", "0"], ["--seed", "-1"]):
        res = CliRunner().invoke(main, ["compare", str(tmp_path), *args, "--out", str(tmp_path / "o")])
        assert res.exit_code == 2
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("rlaudit: error: "), res.output
    assert "did you mean 'reward'" in CliRunner().invoke(
        main, ["compare", str(tmp_path), "--by", "reword"]).output


def test_analyze_fills_the_comparison_and_compare_replaces_it(store, tmp_path):
    audit = run_audit([store], detectors=["non-finite"])
    assert audit.comparison is not None and audit.comparison["baseline"] == "always_switch"
    _check_shape(audit.comparison)
    path = audit.write(tmp_path)
    before = json.loads(audit_json_without_timings(path) + b"}")
    res = CliRunner().invoke(main, ["compare", str(store), "--by", "agent", "--baseline", "random",
                                    "--resamples", "1000", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert f"wrote {path}" in res.output
    after_audit = Audit.load(path)
    after = json.loads(audit_json_without_timings(path) + b"}")
    assert after["comparison"]["baseline"] == "random" and after["comparison"]["resamples"] == 1000
    before.pop("comparison")
    after.pop("comparison")
    assert after == before  # nothing else changed
    assert after_audit.timings == audit.timings or after_audit.timings["total_s"] == pytest.approx(audit.timings["total_s"])


def test_analyze_summary_names_the_verdicts(store, tmp_path):
    res = CliRunner().invoke(main, ["analyze", str(store), "-d", "non-finite", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "comparison by agent against always_switch: dqn better, ppo tie, random worse" in res.output


def test_analyze_leaves_the_comparison_empty_without_two_groups(tmp_path):
    record_agent_runs(tmp_path, "dqn", 10.0, seeds=range(3))
    record_agent_runs(tmp_path, "always_stay", 10.0, seeds=range(1))
    assert run_audit([tmp_path], detectors=["non-finite"]).comparison is None


def test_analyze_picks_the_largest_like_with_like_cell(tmp_path):
    record_agent_runs(tmp_path, "dqn", 10.0, seeds=range(3), reward="big")
    record_agent_runs(tmp_path, "always_stay", 5.0, seeds=range(3), reward="big")
    record_agent_runs(tmp_path, "always_switch", 5.0, seeds=range(1), reward="big")  # too few: left out
    record_agent_runs(tmp_path, "dqn", 10.0, seeds=range(10, 12), reward="small")
    record_agent_runs(tmp_path, "ppo", 10.0, seeds=range(10, 12), reward="small")
    comp = run_audit([tmp_path], detectors=["non-finite"]).comparison
    assert [g["name"] for g in comp["groups"]] == ["always_stay", "dqn"]
    assert all(r.endswith(("s0", "s1", "s2")) for g in comp["groups"] for r in g["runs"])


def _tiny_career_store(path, agent="always_stay", seeds=(0, 1)):
    from rlaudit.agents.experiments import ExperimentProtocol, run_experiment

    for seed in seeds:
        run_experiment(ExperimentProtocol(agent=agent, seed=seed, episodes=2, eval_interval=0, eval_episodes=2,
                                          env_params={"max_steps": 15}), path)


def test_baseline_plan_copies_the_protocol_and_skips_present_runs(tmp_path):
    from rlaudit.agents.baselines import plan_baselines

    _tiny_career_store(tmp_path, agent="random")
    with rlaudit.open(tmp_path) as s:
        manifests = [dict(s.runs[r].manifest, run_id=r) for r in s.run_ids]
    plan = plan_baselines(manifests, heuristics=("random", "always_stay"))
    assert plan.present == ["random-short_term_v1-stable-s0", "random-short_term_v1-stable-s1"]
    assert [(p.agent, p.seed) for p in plan.todo] == [("always_stay", 0), ("always_stay", 1)]
    p = plan.todo[0]
    assert (p.episodes, p.eval_episodes, p.eval_interval, p.env_params) == (2, 2, 0, {"max_steps": 15})
    foreign = plan_baselines([{"run_id": "x", "env": {"id": "CartPole-v1"}}])
    assert foreign.unsupported and not foreign.todo


def test_cli_make_baselines_records_heuristics_on_the_same_evaluation_episodes(tmp_path):
    store = tmp_path / "runs"
    _tiny_career_store(store, agent="random")
    res = CliRunner().invoke(main, ["compare", str(store), "--make-baselines", "--resamples", "500",
                                    "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "baselines: 12 recorded, 2 already present" in res.output
    data = json.loads((tmp_path / "out" / "comparison.json").read_text())
    assert sorted(g["name"] for g in data["groups"]) == sorted(CAREER_HEURISTICS)
    assert data["baseline"] in CAREER_HEURISTICS and len(data["tests"]) == 6
    with rlaudit.open(store) as s:
        seeds = s.sql("SELECT run_id, list(reset_seed ORDER BY episode) FROM episodes WHERE phase = 'eval' "
                      "GROUP BY run_id ORDER BY run_id").rows()
    by_seed: dict[str, set] = {}
    for rid, eval_seeds in seeds:
        by_seed.setdefault(rid.rsplit("-s", 1)[1], set()).add(tuple(eval_seeds))
    assert all(len(v) == 1 for v in by_seed.values())  # every agent of a seed met the same episodes
    again = CliRunner().invoke(main, ["compare", str(store), "--make-baselines", "--resamples", "500",
                                      "--out", str(tmp_path / "out")])
    assert "baselines: 0 recorded, 14 already present" in again.output


def test_make_baselines_needs_career_runs(store, tmp_path):
    res = CliRunner().invoke(main, ["compare", str(store), "--make-baselines", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "needs career-env runs recorded by rlaudit train" in res.output


def test_poi_interval_is_inside_unit_range(store):
    comp = compare(store, resamples=2000)
    for t in comp.tests:
        assert 0.0 <= t.prob_improvement.low <= t.prob_improvement.value <= t.prob_improvement.high <= 1.0
        assert np.isfinite(t.mannwhitney_p)
