"""Counterfactual replay on real recordings: fidelity, refusals, common random numbers,
the planted reward bug, batch mode over audit findings, and the command line."""

from __future__ import annotations

import dataclasses
import json
import math

import gymnasium as gym
import numpy as np
import pytest
from click.testing import CliRunner

import rlaudit
from rlaudit.agents.experiments import ExperimentProtocol, run_experiment
from rlaudit.agents.heuristics import make_heuristic
from rlaudit.analyzer import replay as rp
from rlaudit.cli import main
from rlaudit.detectors.model import Finding
from rlaudit.errors import ReplayError
from rlaudit.recorder.wrappers import RecordTrajectory
from rlaudit.reports.audit import Audit, run_audit
from tests.analyzer.recording import rewrite_manifest


class NoisyEnv(gym.Env):
    """A one-dimensional walk whose noise comes from an unseeded generator."""

    observation_space = gym.spaces.Box(-100.0, 100.0, shape=(1,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self):
        self._noise = np.random.default_rng()  # OS entropy: not a function of reset(seed)
        self.x = 0.0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = 0.0
        return np.array([self.x], np.float32), {}

    def step(self, action):
        self.x += (1.0 if action else -1.0) + float(self._noise.normal())
        return np.array([self.x], np.float32), -abs(self.x), False, False, {}


class UncopyableWalk(NoisyEnv):
    """The walk with seeded noise (replayable) that refuses to be copied, like envs holding native handles."""

    def step(self, action):
        self.x += (1.0 if action else -1.0) + float(self.np_random.normal())
        return np.array([self.x], np.float32), -abs(self.x), False, False, {"x": self.x}

    def __deepcopy__(self, memo):
        raise TypeError("cannot copy this env")


def push_right(obs):
    return 1


NOISY_ID = "rlaudit-test/Noisy-v0"
if NOISY_ID not in gym.registry:
    gym.register(NOISY_ID, entry_point=f"{__name__}:NoisyEnv", max_episode_steps=20)


WALK_ID = "rlaudit-test/UncopyableWalk-v0"
if WALK_ID not in gym.registry:
    gym.register(WALK_ID, entry_point=f"{__name__}:UncopyableWalk", max_episode_steps=20)


def test_env_that_cannot_be_copied_is_replayed_per_rollout(tmp_path):
    env = RecordTrajectory(gym.make(WALK_ID), tmp_path, "walk", config={"auditor_columns": ["info.x"]})
    env.reset(seed=4)
    for t in range(20):
        env.step(t % 2)
    env.close()
    with rlaudit.open(tmp_path) as store:
        assert rp.check_fidelity(store, "walk", 0).replayable
        alternate = rp.replay(store, "walk", 0, 6, branches=[rp.Branch.of_policy("same", lambda obs: 1)],
                              recorded_policy=lambda obs: 1, rollouts=4)[0]
        right = rp.replay(store, "walk", 0, 6, branches=[rp.Branch.of_policy("left", lambda obs: 0)],
                          recorded_policy=lambda obs: 1, rollouts=4)[0]
    assert alternate.difference("return")["mean"] == 0.0  # common random numbers through rebuilt envs
    # 14 steps left: always-left ends 28 lower than always-right, whatever the (shared) noise
    d = right.difference("info.x")
    assert d["n"] == 4 and (d["mean"], d["low"], d["high"]) == pytest.approx((-28.0, -28.0, -28.0))


@pytest.fixture(scope="module")
def career(tmp_path_factory):
    """always_switch on short_term_v1: switching is nearly dominant and the reward ignores job stability."""
    store = tmp_path_factory.mktemp("career")
    protocol = ExperimentProtocol(agent="always_switch", reward="short_term_v1", episodes=2, eval_episodes=1,
                                  auditor_columns=["info.job_switches", "info.burnout"], name="hack")
    run_experiment(protocol, store)
    clean = ExperimentProtocol(agent="burnout_threshold", reward="short_term_v1", episodes=1, eval_episodes=0,
                               auditor_columns=["info.job_switches", "info.burnout"], name="honest")
    run_experiment(clean, store)
    return store


def _recorded(store, run_id):
    m = store.runs[run_id].manifest
    return make_heuristic(m["agent"], seed=m["config"]["agent_seed"], **(m["hyperparameters"] or {}))


def test_career_fidelity_is_exact(career):
    with rlaudit.open(career) as store:
        for episode in (0, 1, 2):  # two training episodes and the evaluation episode
            fid = rp.check_fidelity(store, "hack", episode)
            assert fid.replayable, fid.reason
            assert fid.checked_steps == 200
            assert fid.max_abs_obs_error == 0.0 and fid.max_abs_reward_error == 0.0


def test_classic_control_fidelity_with_unseeded_later_resets(tmp_path):
    env = RecordTrajectory(gym.make("CartPole-v1"), tmp_path, "cartpole")
    env.action_space.seed(3)
    for k in range(3):
        env.reset(seed=100 if k == 0 else None)  # only the first reset is seeded
        while True:
            *_, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                break
    env.close()
    with rlaudit.open(tmp_path) as store:
        for episode in (0, 2):  # episode 2 is replayed through episodes 0 and 1
            fid = rp.check_fidelity(store, "cartpole", episode)
            assert fid.replayable, fid.reason
            assert fid.max_abs_obs_error == 0.0
        length0 = store.sql("SELECT count(*) FROM steps WHERE episode = 0").scalar()
        assert rp.check_fidelity(store, "cartpole", 0).checked_steps == length0
        out = rp.replay(store, "cartpole", 2, 1, branches=[rp.Branch.of_action(0, then=lambda obs: 1)],
                        against="recorded", recorded_policy=lambda obs: 1, rollouts=4)
        # CartPole draws no random numbers after reset: every rollout is the same
        assert out[0].difference("return")["low"] == out[0].difference("return")["high"]


@pytest.mark.parametrize("mode", ["sync", "vector_entry_point"])
def test_vector_run_sub_env_fidelity(tmp_path, mode):
    envs = rlaudit.RecordVectorTrajectory(gym.make_vec("CartPole-v1", 2, vectorization_mode=mode), tmp_path, "vec")
    envs.reset(seed=7)  # sub-env i is seeded 7 + i; autoresets are unseeded
    rng = np.random.default_rng(0)
    for _ in range(80):
        envs.step(rng.integers(0, 2, size=2))
    envs.close()
    with rlaudit.open(tmp_path) as store:
        fid = rp.check_fidelity(store, "vec", 2, env_index=1)  # through sub-env 1's episodes 0 and 1
    if mode == "sync":
        assert fid.replayable and fid.max_abs_obs_error == 0.0
    else:  # one numpy-vectorised CartPole: its sub-envs are not single seeded envs
        assert not fid.replayable and "vectorization_mode='sync'" in fid.reason


def test_never_seeded_run_is_refused(tmp_path):
    env = RecordTrajectory(gym.make("CartPole-v1"), tmp_path, "unseeded")
    env.reset()
    for _ in range(5):
        env.step(0)
    env.close()
    with rlaudit.open(tmp_path) as store, pytest.raises(ReplayError, match="seed"):
        rp.check_fidelity(store, "unseeded", 0)


def test_unseeded_dynamics_are_detected(tmp_path):
    env = RecordTrajectory(gym.make(NOISY_ID), tmp_path, "noisy")
    env.reset(seed=1)
    for t in range(20):
        env.step(t % 2)
    env.close()
    with rlaudit.open(tmp_path) as store:
        fid = rp.check_fidelity(store, "noisy", 0)
        assert not fid.replayable
        assert fid.first_mismatch["t"] == 0 and fid.first_mismatch["what"] == "reward"  # the first step already differs
        assert "not a function of the recorded seed" in fid.reason
        with pytest.raises(ReplayError, match="diverges"):
            rp.replay(store, "noisy", 0, 5, branches=[rp.Branch.of_policy("one", lambda obs: 1)],
                      recorded_policy=lambda obs: 0)


def test_modified_env_is_detected(career, tmp_path):
    manifest = rlaudit.open(career).runs["hack"].manifest
    env = dict(manifest["env"], kwargs={**manifest["env"]["kwargs"], "regime": "volatile"})
    rewrite_manifest(career / "hack.parquet", tmp_path / "hack.parquet", env=env)
    with rlaudit.open(tmp_path) as store:
        fid = rp.check_fidelity(store, "hack", 0)
    assert not fid.replayable and fid.max_abs_obs_error > 0


def test_paired_interval_is_the_student_t_interval():
    d = [1.0, 2.5, -0.5, 3.0, 1.5]
    got = rp.paired_interval(d, 0.9)
    half = 2.131846786 * np.std(d, ddof=1) / math.sqrt(5)  # t table: 0.95 quantile, 4 degrees of freedom
    assert got["n"] == 5 and got["mean"] == pytest.approx(1.5)
    assert (got["low"], got["high"]) == pytest.approx((1.5 - half, 1.5 + half))
    assert rp.paired_interval([2.0, 2.0, 2.0]) == {"mean": 2.0, "low": 2.0, "high": 2.0, "n": 3}


def test_common_random_numbers_pair_rollouts(career):
    with rlaudit.open(career) as store:
        recorded = _recorded(store, "hack")
        same = rp.replay(store, "hack", 0, 30, branches=[rp.Branch.of_policy("copy", make_heuristic("always_switch"))],
                         recorded_policy=recorded, rollouts=8)[0]
        # the same policy in both branches sees the same randomness: every paired difference is 0
        for d in same.differences:
            assert (d["mean"], d["low"], d["high"]) == (0.0, 0.0, 0.0), d
        # rollouts differ from each other (the env is reseeded per rollout) ...
        spread = rp.replay(store, "hack", 0, 30, branches=[rp.Branch.of_policy("stay", make_heuristic("always_stay"))],
                           recorded_policy=recorded, rollouts=8, seed=5)[0]
        again = rp.replay(store, "hack", 0, 30, branches=[rp.Branch.of_policy("stay", make_heuristic("always_stay"))],
                          recorded_policy=recorded, rollouts=8, seed=5)[0]
    assert spread.difference("return")["high"] > spread.difference("return")["low"]
    assert spread.to_dict() == again.to_dict()  # ... and the same seed repeats them exactly


def test_planted_reward_bug_confirmed_by_honest_baseline(career):
    with rlaudit.open(career) as store:
        result = rp.replay(store, "hack", 1, 0,
                           branches=[rp.Branch.of_policy("burnout_threshold", make_heuristic("burnout_threshold"))],
                           recorded_policy=_recorded(store, "hack"), rollouts=16)[0]
        goals = rp.auditor_goals(store.runs["hack"].manifest)
    assert goals == {"info.job_switches": "min", "info.burnout": "min"}
    ret = result.difference("return")
    switches = result.difference("info.job_switches")
    assert ret["high"] < 0  # the proxy return drops under the honest baseline
    assert switches["high"] < 0  # and the auditor signal improves (fewer job switches)
    assert result.values["recorded"]["return"] > 150 > result.values["policy=burnout_threshold"]["return"]
    verdict, note = rp.verdict(result, "reward-hacking", goals)
    assert verdict == "confirmed" and "info.job_switches" in note
    assert "200/200" in result.note  # the rebuilt heuristic is exactly the recorded policy


def test_clean_twin_is_refuted(career):
    with rlaudit.open(career) as store:
        result = rp.replay(store, "honest", 0, 0,
                           branches=[rp.Branch.of_policy("burnout_threshold", make_heuristic("burnout_threshold"))],
                           recorded_policy=_recorded(store, "honest"), rollouts=8)[0]
        verdict, _ = rp.verdict(result, "reward-hacking", rp.auditor_goals(store.runs["honest"].manifest))
    assert result.difference("return")["mean"] == 0.0
    assert verdict == "refuted"


def test_action_branch_needs_a_continuation(career):
    with rlaudit.open(career) as store:
        with pytest.raises(rlaudit.errors.ConfigError, match="needs a policy"):
            rp.replay(store, "hack", 0, 3, branches=[rp.Branch.of_action(0)], recorded_policy=lambda o: 1)
        one = rp.replay(store, "hack", 0, 3, branches=[rp.Branch.of_action(0)], recorded_policy=lambda o: 1,
                        horizon=1, rollouts=4)[0]
    assert one.horizon == 1 and one.difference("length")["mean"] == 0.0


def _audit_with_finding(store_dir, out, **span) -> tuple[Audit, str]:
    audit = run_audit([store_dir], detectors=["non-finite"])
    finding = Finding(detector="reward-hacking", severity="warning", run_id="hack",
                      summary="proxy return rises while job stability falls", fix="-", score=1.0, **span)
    audit = dataclasses.replace(audit, findings=(finding,))
    return audit, str(audit.write(out))


def test_batch_mode_writes_verdicts_into_the_audit(career, tmp_path):
    with rlaudit.open(career) as store:
        step = store.sql("SELECT global_step FROM steps WHERE run_id = 'hack' AND episode = 1 AND t = 10").scalar()
    before, path = _audit_with_finding(career, tmp_path, episode_start=1, step_start=step)
    result = CliRunner().invoke(main, ["replay", "--from-audit", path, "--rollouts", "8"])
    assert result.exit_code == 0, result.output
    assert "confirmed" in result.output
    after = Audit.load(path)
    records = after.counterfactuals
    assert [r["branch"] for r in records] == ["policy=burnout_threshold", "policy=adaptive"]
    for r in records:
        assert r["kind"] == "replay" and (r["episode"], r["t"], r["global_step"]) == (1, 10, step)
        assert r["finding"]["detector"] == "reward-hacking" and r["verdict"] == "confirmed"
        assert r["fidelity"]["replayable"] and r["differences"][0]["signal"] == "return"
    assert dataclasses.replace(after, counterfactuals=(), timings={}) == dataclasses.replace(before, timings={})
    # running it again replaces the records instead of adding copies
    assert CliRunner().invoke(main, ["replay", "--from-audit", path, "--rollouts", "8"]).exit_code == 0
    assert len(Audit.load(path).counterfactuals) == 2
    other = CliRunner().invoke(main, ["replay", "--from-audit", path, "--detector", "state-cycling"])
    assert other.exit_code == 0 and "nothing written" in other.output
    assert len(Audit.load(path).counterfactuals) == 2


def test_auditor_goals_from_the_manifest():
    goals = {"info.burnout": "min", "reward_terms.true": "max", "info.x": "sideways"}
    assert rp.auditor_goals({"auditor_goals": goals}) == {"info.burnout": "min", "reward_true": "max"}
    assert rp.auditor_goals({"auditor_columns": ["info.true_reward"]}) == {"info.true_reward": "max"}
    assert rp.auditor_goals({"config": {}}) == {}


def test_batch_mode_records_a_non_replayable_finding(career, tmp_path):
    _, path = _audit_with_finding(career, tmp_path, episode_start=99)
    result = CliRunner().invoke(main, ["replay", "--from-audit", path, "--policy", "adaptive"])
    assert result.exit_code == 0, result.output
    (record,) = Audit.load(path).counterfactuals
    assert record["verdict"] == "inconclusive" and not record["fidelity"]["replayable"]
    assert "no episode 99" in record["fidelity"]["reason"]


def test_cli_replay_and_json(career, tmp_path):
    run = str(career / "hack.parquet")
    result = CliRunner().invoke(main, ["replay", run, "--episode", "0", "--check"])
    assert result.exit_code == 0 and "replayable" in result.output
    result = CliRunner().invoke(main, ["replay", run, "--episode", "0", "--step", "5", "--policy", "always_stay",
                                       "--rollouts", "4", "--json"])
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.output)
    assert record["branch"] == "policy=always_stay" and record["rollouts"] == 4
    assert record["differences"][0]["signal"] == "return" and math.isfinite(record["differences"][0]["mean"])


@pytest.mark.parametrize("args, message", [
    (["--episode", "0", "--policy", "burnot_threshold"], "did you mean 'burnout_threshold'"),
    (["--policy", "always_stay"], "expected --episode N"),
    (["--episode", "0"], "expected --action A or --policy NAME"),
    (["--episode", "0", "--step", "999", "--policy", "always_stay"], "step t must lie in [0, 199]"),
    (["--episode", "0", "--action", "zero"], "--action expects a JSON value"),
    (["--episode", "0", "--policy", "nomodule_xyz:fn"], "cannot load policy"),
])
def test_cli_errors_are_one_line(career, args, message):
    result = CliRunner().invoke(main, ["replay", str(career / "hack.parquet"), *args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rlaudit: error: ") and message in lines[0]


def test_cli_refuses_learned_agent_without_policy(career, tmp_path):
    rewrite_manifest(career / "hack.parquet", tmp_path / "hack.parquet", agent="dqn")
    result = CliRunner().invoke(main, ["replay", str(tmp_path / "hack.parquet"), "--episode", "0",
                                       "--policy", "always_stay"])
    assert result.exit_code == 2
    assert "learned dqn agent and keeps no saved policy" in result.output
    # two branches compared with each other need no recorded policy
    result = CliRunner().invoke(main, ["replay", str(tmp_path / "hack.parquet"), "--episode", "0", "--policy",
                                       "always_stay", "--policy", "adaptive", "--against", "policy=always_stay",
                                       "--rollouts", "4"])
    assert result.exit_code == 0, result.output
    assert "policy=adaptive minus policy=always_stay" in result.output


def test_cli_non_replayable_run_is_a_clear_message(tmp_path):
    env = RecordTrajectory(gym.make(NOISY_ID), tmp_path, "noisy")
    env.reset(seed=1)
    for t in range(20):
        env.step(t % 2)
    env.close()
    result = CliRunner().invoke(main, ["replay", str(tmp_path), "--episode", "0", "--check"])
    assert result.exit_code == 1 and result.output.startswith("not replayable: replay of run 'noisy' diverges")
    result = CliRunner().invoke(main, ["replay", str(tmp_path), "--episode", "0", "--step", "3",
                                       "--policy", f"{__name__}:push_right", "--recorded", f"{__name__}:push_right"])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "diverges" in result.output


@pytest.mark.slow  # trains DQN / PPO (imports torch)
@pytest.mark.parametrize("agent, params", [("dqn", {"batch_size": 16}), ("ppo", {"n_steps": 64, "minibatch_size": 16})])
def test_learned_agent_policy_is_saved_and_rolled_out(tmp_path, agent, params):
    pytest.importorskip("torch")
    protocol = ExperimentProtocol(agent=agent, episodes=3, eval_episodes=1, agent_params=params,
                                  env_params={"max_steps": 60}, name="learned")
    run_experiment(protocol, tmp_path)
    manifest = rlaudit.open(tmp_path).runs["learned"].manifest
    assert manifest["config"]["policy_file"] == "learned.policy.pt"
    assert (tmp_path / "learned.policy.pt").is_file()
    # the evaluation after training acted greedily with the saved (final) policy
    result = CliRunner().invoke(main, ["replay", str(tmp_path), "--episode", "3", "--policy", "always_stay",
                                       "--rollouts", "4", "--json"])
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.output)
    length = rlaudit.open(tmp_path).sql("SELECT count(*) FROM steps WHERE episode = 3").scalar()
    assert f"at {length}/{length} steps" in record["note"]
    # a second run never overwrites a policy file already there
    from rlaudit.agents.common import load_policy, save_policy

    before = (tmp_path / "learned.policy.pt").read_bytes()
    assert save_policy(load_policy(tmp_path / "learned.policy.pt"), tmp_path / "learned.policy.pt") is False
    assert (tmp_path / "learned.policy.pt").read_bytes() == before


def _result(**intervals) -> rp.ReplayResult:
    diffs = tuple({"signal": k, "mean": (lo + hi) / 2, "low": lo, "high": hi, "n": 16} for k, (lo, hi) in intervals.items())
    fid = rp.Fidelity(True, 10, 0.0)
    return rp.ReplayResult("r", 0, 0, 0, 0, "policy=b", "recorded", 16, None, fid, diffs)


@pytest.mark.parametrize("detector, intervals, goals, expected", [
    # proxy drops and the auditor improves (burnout lower): confirmed
    ("reward-hacking", {"return": (-5, -1), "info.burnout": (-0.5, -0.1)}, {"info.burnout": "min"}, "confirmed"),
    # proxy drops but no auditor goal is known: a hacking claim cannot be judged
    ("reward-hacking", {"return": (-5, -1), "info.burnout": (-0.5, -0.1)}, {}, "inconclusive"),
    # the flagged behaviour earns nothing over the baseline: refuted
    ("reward-hacking", {"return": (0, 3), "info.burnout": (-0.5, -0.1)}, {"info.burnout": "min"}, "refuted"),
    # every auditor signal is worse under the baseline: refuted
    ("reward-hacking", {"return": (-5, -1), "info.salary": (-9, -1)}, {"info.salary": "max"}, "refuted"),
    # straddling intervals: inconclusive
    ("reward-hacking", {"return": (-5, 1), "info.burnout": (-0.5, 0.1)}, {"info.burnout": "min"}, "inconclusive"),
    # behavioural exploits are confirmed by the proxy drop alone
    ("state-cycling", {"return": (-5, -1)}, {}, "confirmed"),
    ("boundary-exploitation", {"return": (-1, 2)}, {}, "inconclusive"),
])
def test_verdict_rule(detector, intervals, goals, expected):
    assert rp.verdict(_result(**intervals), detector, goals)[0] == expected
