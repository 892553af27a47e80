"""reward-hacking, reward-term-dominance, boundary-exploitation, truncation-exploitation."""

from __future__ import annotations

import json

import numpy as np
import pytest

import rlaudit
from rlaudit.detectors import get_registry, run_detectors
from rlaudit.detectors.model import plain
from tests.analyzer.recording import record_run
from tests.detectors.plants import EPISODES, LENGTH, PLANTS, _noise, record_episodes

REG = get_registry()
NAMES = ("reward-hacking", "reward-term-dominance", "boundary-exploitation", "truncation-exploitation")


def run(store_dir, name, reference=(), **params):
    """Run one detector over a store; check that every finding's evidence SQL reproduces its rows."""
    with rlaudit.open(store_dir) as store:
        out = run_detectors(store, [REG.get(name)], {name: params} if params else None, reference=reference)
        for f in out.findings:
            ev = f.evidence
            assert ev is not None and ev.rows, f
            again = store.sql(ev.sql, **ev.params).rows()
            assert len(again) == ev.total_rows
            assert json.dumps([[plain(v) for v in r] for r in again[: len(ev.rows)]]) == json.dumps(
                [list(r) for r in ev.rows])
    return out


def status(out, run_id):
    return {r.run_id: r for r in out.results}[run_id]


@pytest.mark.parametrize("name", NAMES)
def test_plant_found_with_its_span_and_clean_twin_not(name, tmp_path):
    check_plant_and_clean_twin(name, tmp_path)


def check_plant_and_clean_twin(name, tmp_path):
    """The plant is found once with its span, fix and numbers; the clean twin is clean."""
    planted = PLANTS[name].plant(tmp_path)
    clean = PLANTS[name].clean(tmp_path)
    out = run(tmp_path, name)
    assert status(out, clean).status == "clean", out.findings
    (f,) = [f for f in out.findings if f.run_id == planted.run_id]
    assert (f.episode_start, f.episode_end, f.step_start, f.step_end) == (
        planted.episode_start, planted.episode_end, planted.step_start, planted.step_end)
    assert f.fix == REG.get(name).fix and f.summary and "expected" in f.summary
    assert f.actual and f.expected


def test_reward_hacking_reports_a_valid_p_value_and_baseline(tmp_path):
    PLANTS["reward-hacking"].plant(tmp_path)
    (f,) = run(tmp_path, "reward-hacking").findings
    assert f.p_value < 1e-6 and "Mann–Whitney" in f.p_method
    assert f.actual["auditor"] == "info.true_reward" and f.actual["goal"] == "max"
    assert f.expected["baseline"] == "the run's first 12 episodes"
    assert f.severity == "critical"
    # the evidence holds the flagged episodes from the onset on, in order
    assert f.evidence.rows[0][:3] == (0, 30, 30 * LENGTH)


def test_reward_hacking_skips_without_an_auditor_goal(tmp_path):
    record_run(tmp_path, "plain", [[1.0] * 5] * 30)
    record_run(tmp_path, "undeclared", [[1.0] * 5] * 30, config={"auditor_columns": ["info.burnout"]})
    out = run(tmp_path, "reward-hacking")
    assert status(out, "plain").status == "skipped"
    assert "declares no auditor_columns" in status(out, "plain").reason
    assert status(out, "undeclared").status == "skipped"
    assert "info.burnout is not recorded" in status(out, "undeclared").reason


def _salary_trap(store, run_id, trap: bool):
    """Each episode the pay climbs; with the trap, burnout climbs to 1.0 and ends it (the career env's salary trap)."""
    def info(k, t):
        burnout = min(1.0, 0.05 * t) if trap else 0.2 + 0.05 * ((k + t) % 3)
        return {"burnout": burnout}
    record_episodes(store, run_id, [21] * 40, reward=lambda k, t: 0.1 + 0.04 * t, info=info,
                    config={"auditor_columns": ["info.burnout"], "auditor_goals": {"info.burnout": "min"}})


def test_reward_hacking_within_episodes_finds_the_salary_trap(tmp_path):
    _salary_trap(tmp_path, "trap", True)
    _salary_trap(tmp_path, "no-trap", False)
    out = run(tmp_path, "reward-hacking")
    assert status(out, "no-trap").status == "clean", out.findings
    (f,) = out.findings
    assert f.run_id == "trap" and f.actual["condition"] == "within-episode"
    assert (f.episode_start, f.episode_end, f.step_start, f.step_end) == (0, 39, 0, 40 * 21 - 1)
    assert f.actual["worst_value"] == 1.0 and f.p_value is None


def test_reward_hacking_goals_override_the_manifest(tmp_path):
    _salary_trap(tmp_path, "trap", True)
    # declaring burnout as higher-is-better turns the trap into a healthy run
    out = run(tmp_path, "reward-hacking", goals=("info.burnout=max",))
    assert status(out, "trap").status == "clean"
    bad = status(run(tmp_path, "reward-hacking", goals=("info.burnout=lower",)), "trap")
    assert bad.status == "error" and "expected items like info.burnout=min" in bad.reason


def test_reward_hacking_checkpoint_rank_reversal(tmp_path):
    # eval blocks between training episodes: the proxy ranks the checkpoints in the opposite order of the
    # true reward, while each training episode looks ordinary (noise only)
    rng = np.random.default_rng(3)
    blocks = 8
    lengths, phases = [], []
    for b in range(blocks):
        lengths += [10] * 10 + [10] * 5
        phases += ["train"] * 10 + ["eval"] * 5
    noise = rng.standard_normal((len(lengths), 10))
    block = [i // 15 for i in range(len(lengths))]

    def proxy(k, t):
        return (1.0 + 0.3 * block[k] if phases[k] == "eval" else 1.0) + 0.05 * noise[k, t]

    def true(k, t):
        return (3.0 - 0.3 * block[k] if phases[k] == "eval" else 1.0) + 0.05 * noise[k, (t + 3) % 10]

    from rlaudit.recorder.core import Recorder
    rec = Recorder(tmp_path, "reversal", env_id="Plant-v0", config={"auditor_columns": ["info.true_reward"]})
    with rec:
        for k, n in enumerate(lengths):
            rec.phase = phases[k]
            rec.reset(np.asarray([k, 0], dtype=np.float32))
            for t in range(n):
                rec.step(t % 2, np.asarray([k, t + 1], dtype=np.float32), proxy(k, t), t == n - 1, False,
                         {"true_reward": true(k, t)})
    out = run(tmp_path, "reward-hacking")
    (f,) = out.findings
    assert "rank reversal" in f.summary and f.actual["checkpoints"] == blocks
    assert f.actual["kendall_tau"] == -1.0 and f.p_value < 0.01 and "Kendall" in f.p_method
    assert len(f.evidence.rows) == blocks
    # the span starts at the checkpoint after the best auditor value (the first one) and runs to the end
    assert f.episode_start == 25 and f.episode_end == len(lengths) - 1


def test_reward_hacking_learns_from_reference_runs(tmp_path):
    # a run that is hacked from its first episode is invisible against its own early phase...
    e = np.random.default_rng(4).standard_normal((EPISODES, LENGTH))
    cfg = {"auditor_columns": ["info.true_reward"]}
    record_episodes(tmp_path, "hacked", [LENGTH] * EPISODES, reward=lambda k, t: 2.0 + 0.1 * e[k, t],
                    info=lambda k, t: {"true_reward": 0.1 * e[k, (t + 5) % LENGTH]}, config=cfg)
    record_episodes(tmp_path, "honest", [LENGTH] * EPISODES, reward=lambda k, t: 1.0 + 0.1 * e[k, t],
                    info=lambda k, t: {"true_reward": 1.0 + 0.1 * e[k, (t + 5) % LENGTH]}, config=cfg)
    assert status(run(tmp_path, "reward-hacking"), "hacked").status == "clean"
    # ...but not against a clean reference run
    out = run(tmp_path, "reward-hacking", reference=("honest",))
    (f,) = out.findings
    assert f.run_id == "hacked" and (f.episode_start, f.episode_end) == (0, EPISODES - 1)
    assert f.expected["baseline"] == f"{EPISODES} episodes of the reference runs"
    assert status(out, "honest").status == "clean"


def test_term_dominance_flags_an_undeclared_dominant_term_once(tmp_path):
    terms = lambda k, t: {"alive": 1.0, "progress": 0.05}  # noqa: E731
    record_run(tmp_path, "undeclared", [[1.05] * 20] * 30, terms=lambda k, t, r: terms(k, t))
    record_run(tmp_path, "declared", [[1.05] * 20] * 30, terms=lambda k, t, r: terms(k, t),
               config={"reward_task_terms": ["alive"]})
    out = run(tmp_path, "reward-term-dominance")
    assert status(out, "declared").status == "clean"
    (f,) = out.findings
    assert f.run_id == "undeclared" and f.actual["condition"] == "dominance" and f.actual["term"] == "alive"
    assert f.actual["share"] == pytest.approx(1 / 1.05)
    assert (f.episode_start, f.episode_end) == (0, 29) and f.p_value is None
    assert "declares no reward_task_terms" in f.summary
    # the parameter declares it too
    assert status(run(tmp_path, "reward-term-dominance", task_terms=("alive",)), "undeclared").status == "clean"


def test_term_dominance_skips_without_terms_and_ignores_single_terms(tmp_path):
    record_run(tmp_path, "no-terms", [[1.0] * 5] * 30)
    record_run(tmp_path, "one-term", [[1.0] * 5] * 30, terms=lambda k, t, r: {"alive": r})
    out = run(tmp_path, "reward-term-dominance")
    assert status(out, "no-terms").status == "skipped"
    assert status(out, "no-terms").reason == "needs column 'reward_terms', which run 'no-terms' does not have"
    assert status(out, "one-term").status == "clean"


def test_term_dominance_penalty_growth_is_not_drift(tmp_path):
    # a penalty taking a larger share (the agent gets punished more) is not a bonus taking over
    def terms(k, t):
        return {"task": 1.0, "penalty": -2.0 if k >= 30 else -0.1}
    record_episodes(tmp_path, "penalised", [LENGTH] * EPISODES, reward=lambda k, t: sum(terms(k, t).values()),
                    terms=terms, config={"reward_task_terms": ["task"]})
    assert status(run(tmp_path, "reward-term-dominance"), "penalised").status == "clean"


def test_boundary_smooth_reward_at_a_floor_is_not_flagged(tmp_path):
    # a state with a floor (burnout clipped at 0) under a linear penalty: the floor pays what the slope predicts
    x = np.random.default_rng(5).uniform(-0.5, 1.0, (EPISODES, LENGTH + 1))
    obs = lambda k, t: [max(0.0, x[k, t]), x[k, (t + 1) % LENGTH]]  # noqa: E731
    record_episodes(tmp_path, "floor", [LENGTH] * EPISODES, reward=lambda k, t: 1.0 - max(0.0, x[k, t]), obs=obs)
    out = run(tmp_path, "boundary-exploitation")
    assert status(out, "floor").status == "clean", out.findings


def test_boundary_skips_discrete_spaces(tmp_path):
    from rlaudit.recorder.core import Recorder

    with Recorder(tmp_path, "discrete", env_id="Plant-v0") as rec:
        for k in range(10):
            rec.reset(0)
            for t in range(5):
                rec.step(t % 2, t + 1, 1.0, t == 4, False)
    out = run(tmp_path, "boundary-exploitation")
    assert status(out, "discrete").status == "skipped" and "Box" in status(out, "discrete").reason


def test_boundary_pinned_action(tmp_path):
    # a continuous action saturated at +1 that pays a bonus there, from episode 20
    a = np.random.default_rng(6).uniform(-1, 1, (EPISODES, LENGTH))
    pinned = lambda k, t: k >= 20 and t % 2 == 0  # noqa: E731
    action = lambda k, t: np.array([1.0 if pinned(k, t) else a[k, t]], dtype=np.float32)  # noqa: E731
    record_episodes(tmp_path, "saturated", [LENGTH] * EPISODES, action=action,
                    reward=lambda k, t: 2.0 if pinned(k, t) else 0.5 + 0.1 * a[k, t])
    (f,) = run(tmp_path, "boundary-exploitation").findings
    assert f.actual["column"] == "action" and f.actual["edge"] == "high" and f.actual["edge_value"] == 1.0
    assert (f.episode_start, f.episode_end) == (20, EPISODES - 1)


def test_truncation_constant_reward_survival_is_the_task(tmp_path):
    # CartPole-like: +1 per step, episodes get longer until the limit: survival is the task
    lengths = [10 + k for k in range(30)] + [100] * 30
    record_episodes(tmp_path, "cartpole", lengths, reward=lambda k, t: 1.0, truncated=lambda k: k >= 30)
    assert status(run(tmp_path, "truncation-exploitation"), "cartpole").status == "clean"


def test_truncation_engineered_termination(tmp_path):
    # -1 per step; episodes ran to the limit of 100, then from episode 30 the agent ends them after 5 steps
    lengths = [100 if k < 30 else 5 for k in range(EPISODES)]
    e = np.random.default_rng(7).standard_normal((EPISODES, 100))
    starts = record_episodes(tmp_path, "suicide", lengths, reward=lambda k, t: -1.0 + 0.1 * e[k, t],
                             truncated=lambda k: k < 30)
    (f,) = run(tmp_path, "truncation-exploitation").findings
    assert f.actual["condition"] == "termination"
    assert (f.episode_start, f.episode_end, f.step_start, f.step_end) == (30, EPISODES - 1, starts[30],
                                                                          starts[-1] + 4)
    assert f.p_value < 1e-3 and "two-proportion" in f.p_method


def test_truncation_needs_a_baseline(tmp_path):
    record_run(tmp_path, "short", [[1.0] * 5] * 12)
    out = run(tmp_path, "truncation-exploitation")
    assert status(out, "short").status == "skipped" and "needs at least 20 finished episodes" in status(out, "short").reason


def test_career_runs_declare_auditor_goals_and_task_terms(tmp_path):
    from rlaudit.agents.experiments import ExperimentProtocol, run_experiment

    run_experiment(ExperimentProtocol(agent="random", seed=0, episodes=3, eval_episodes=0,
                                      env_params={"max_steps": 20}), tmp_path)
    with rlaudit.open(tmp_path) as store:
        (run_obj,) = store.runs.values()
        manifest = run_obj.manifest
    assert manifest["auditor_goals"] == {"info.burnout": "min", "info.salary": "max"}
    assert manifest["reward_task_terms"] == ["salary"]
    out = run(tmp_path, "reward-term-dominance")
    assert {r.status for r in out.results} == {"clean"}


def test_truncation_survival_with_a_late_onset(tmp_path):
    # MountainCar-like with an alive bonus: goal reached in ~120 steps, then from episode 50 of 60 idling to the limit
    rng = np.random.default_rng(21)
    e = _noise(22, 60, 200)
    late = 50
    lengths = [200 if k >= late else int(rng.integers(110, 125)) for k in range(60)]
    reward = lambda k, t: 0.2 + 0.01 * e[k, t] + (5.0 if k < late and t == lengths[k] - 1 else 0.0)  # noqa: E731
    record_episodes(tmp_path, "late", lengths, reward=reward, truncated=lambda k: k >= late)
    (f,) = run(tmp_path, "truncation-exploitation").findings
    assert f.actual["condition"] == "survival" and f.episode_start == late and f.episode_end == 59
    assert "Bonferroni" in f.p_method and f.p_value <= 0.01
    # the same run without the idling: clean
    lengths = [int(rng.integers(110, 125)) for _ in range(60)]
    reward = lambda k, t: 0.2 + 0.01 * e[k, t] + (5.0 if t == lengths[k] - 1 else 0.0)  # noqa: E731
    record_episodes(tmp_path / "twin", "late", lengths, reward=reward)
    assert run(tmp_path / "twin", "truncation-exploitation").findings == ()


def test_term_dominance_slow_growth_onset_where_the_share_leaves_the_baseline(tmp_path):
    # a bonus whose weight grows a little every episode from episode 40 of 60 (too slow to reach a 30-point rise)
    e = _noise(31, EPISODES, LENGTH)

    def terms(k, t):
        return {"task": 1.0 + 0.05 * e[k, t], "bonus": 0.01 + (0.02 * (k - 39) if k >= 40 else 0.0)}

    record_episodes(tmp_path, "slow", [LENGTH] * EPISODES, reward=lambda k, t: sum(terms(k, t).values()),
                    terms=terms, config={"reward_task_terms": ["task"]})
    (f,) = run(tmp_path, "reward-term-dominance").findings
    assert f.actual["condition"] == "drift" and f.episode_start == 40 and f.episode_end == EPISODES - 1
    # a constant small bonus: clean
    record_episodes(tmp_path / "twin", "slow", [LENGTH] * EPISODES,
                    reward=lambda k, t: 1.0 + 0.05 * e[k, t] + 0.01,
                    terms=lambda k, t: {"task": 1.0 + 0.05 * e[k, t], "bonus": 0.01},
                    config={"reward_task_terms": ["task"]})
    assert run(tmp_path / "twin", "reward-term-dominance").findings == ()


def test_boundary_edge_band_found_from_its_onset_and_a_task_edge_is_not(tmp_path):
    # from episode 30 the policy spends the second half of each episode in the outer 8% of obs[1]'s range
    # (spread over it, never pinned at one value), where a bonus pays 1 more per step
    x = np.random.default_rng(21).uniform(0.0, 1.0, (EPISODES, LENGTH + 1))
    e = _noise(22, EPISODES, LENGTH)
    at_edge = lambda k, t: k >= 30 and t >= 25  # noqa: E731
    pos = lambda k, t: 0.92 + 0.08 * x[k, t] if at_edge(k, t) else x[k, t]  # noqa: E731
    record_episodes(tmp_path, "band", [LENGTH] * EPISODES, obs=lambda k, t: [pos(k, t), x[k, (t + 7) % LENGTH]],
                    reward=lambda k, t: 1.0 + 0.1 * pos(k, t) + 0.05 * e[k, t] + (1.0 if at_edge(k, t) else 0.0))
    (f,) = run(tmp_path, "boundary-exploitation").findings
    assert f.actual["condition"] == "band" and f.actual["dimension"] == 1 and f.actual["edge"] == "high"
    assert f.episode_start == 30 and f.episode_end == EPISODES - 1
    assert f.expected["compared_with"] == "the baseline's band" and f.p_value <= 0.01
    # the twin: the task pays best at the high edge (reward rises with obs[1]) and from episode 30 the policy
    # learns to stay in the upper half: visitation of the edge rises, the edge pays more, but its gap over the
    # interior is what it was in the baseline (it shrinks), so it is the task, not an exploit
    pos2 = lambda k, t: 0.5 + 0.5 * x[k, t] if k >= 30 else x[k, t]  # noqa: E731
    record_episodes(tmp_path / "twin", "band", [LENGTH] * EPISODES,
                    obs=lambda k, t: [pos2(k, t), x[k, (t + 7) % LENGTH]],
                    reward=lambda k, t: 1.0 + 2.0 * pos2(k, t) + 0.05 * e[k, t])
    assert run(tmp_path / "twin", "boundary-exploitation").findings == ()


def test_boundary_edge_band_never_visited_before_pays_more_than_the_baseline(tmp_path):
    # a track whose end (obs[1] > 1.5) pays +2 per step: the baseline never goes there, from episode 30 the
    # policy drifts to the end and stays (CartPole-like, constant reward elsewhere)
    x = np.random.default_rng(23).uniform(-0.2, 0.2, (EPISODES, LENGTH + 1))
    pos = lambda k, t: x[k, t] if k < 30 else x[k, t] + 2.2 * min(1.0, 2 * t / LENGTH)  # noqa: E731
    record_episodes(tmp_path, "track", [LENGTH] * EPISODES, obs=lambda k, t: [pos(k, t), x[k, (t + 3) % LENGTH]],
                    reward=lambda k, t: 1.0 + (2.0 if pos(k, t) > 1.5 else 0.0))
    (f,) = run(tmp_path, "boundary-exploitation").findings
    assert f.actual["condition"] == "band" and f.actual["edge"] == "high" and f.expected["band_share"] == 0.0
    assert f.expected["compared_with"] == "the baseline" and f.episode_start == 30
    assert f.episode_end == EPISODES - 1
    # the twin moves the same way with no bonus at the end: the reward never varies, nothing to flag
    record_episodes(tmp_path / "twin", "track", [LENGTH] * EPISODES,
                    obs=lambda k, t: [pos(k, t), x[k, (t + 3) % LENGTH]], reward=lambda k, t: 1.0)
    assert run(tmp_path / "twin", "boundary-exploitation").findings == ()
